package resilience_test

import (
	"context"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"weak"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/plaid"
	"github.com/creditsessions/creditsessions/internal/resilience"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// answersMade is an upstream that remembers, weakly, every answer it gave.
type answersMade struct {
	mu   sync.Mutex
	made []weak.Pointer[creditv1.CreditSessionsGetResponse]
}

func (u *answersMade) CreditSessionsGet(_ context.Context, r plaid.Request) (*creditv1.CreditSessionsGetResponse, error) {
	m := &creditv1.CreditSessionsGetResponse{RequestId: r.UserToken, Sessions: make([]*creditv1.CreditSession, 1000)}
	u.mu.Lock()
	u.made = append(u.made, weak.Make(m))
	u.mu.Unlock()
	return m, nil
}

// Once its callers have their answer, a shared call keeps nothing of it alive: neither
// the runner that made it, idle until its next call, nor its deadline's stopped timer,
// which the runtime drops from its timer heap only some time later. Under load every
// answer kept that way was a 6 MB message outside the answer-memory budget, and a
// service at 20 calls of 10,000 sessions in flight held dozens of them.
func TestFinishedCallsKeepNoAnswerAlive(t *testing.T) {
	u := &answersMade{}
	g := resilience.New(u, resilience.Config{})
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := range 8 {
				token := "user-" + strconv.Itoa(w) + "-" + strconv.Itoa(i)
				resp, err := g.CreditSessionsGet(t.Context(), plaid.Request{UserToken: token})
				assert.NoError(t, err)
				assert.Equal(t, token, resp.GetRequestId())
			}
		})
	}
	wg.Wait()
	runtime.GC()
	runtime.GC()
	u.mu.Lock()
	defer u.mu.Unlock()
	require.Len(t, u.made, 128)
	kept := 0
	for _, w := range u.made {
		if w.Value() != nil {
			kept++
		}
	}
	assert.Zero(t, kept, "answers still reachable after their callers let go")
}
