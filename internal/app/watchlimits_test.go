package app_test

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/creditsessions/creditsessions/internal/app"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sampleMax reads the gauge name from s's /metrics every few milliseconds until the
// returned function is called, which returns the largest value seen.
func sampleMax(s *service, name string) (stop func() int64) {
	var most atomic.Int64
	done := make(chan struct{})
	quit := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(2 * time.Millisecond) // a sampling rate, not a wait for anything
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
			}
			resp, err := http.Get("http://" + s.app.AdminAddr().String() + "/metrics")
			if err != nil {
				continue
			}
			raw, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			for line := range strings.Lines(string(raw)) {
				if v, ok := strings.CutPrefix(line, name+" "); ok {
					if n, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && int64(n) > most.Load() {
						most.Store(int64(n))
					}
				}
			}
		}
	}()
	return func() int64 {
		close(quit)
		<-done
		return most.Load()
	}
}

// REST watches of large answers read and encode their first answer under the
// answer-memory budget, as gRPC watches do: several at once against a budget of one
// answer take turns, and the budget is never exceeded.
func TestRESTWatchesHoldTheAnswerMemoryBudget(t *testing.T) {
	const limit = 4 << 20 // one 3 MB answer at a time
	s := start(t, fastWatch(app.Config{AnswerMemory: limit}))
	stop := sampleMax(s, "creditsessions_answer_memory_bytes")
	var wg sync.WaitGroup
	firsts := make([]watchEvent, 4)
	for i := range firsts {
		wg.Go(func() {
			w, _ := watchREST(t, s, `{"user_token":"user-sandbox-sessions-10000#big`+strconv.Itoa(i)+`"}`)
			firsts[i] = w.next(t)
			w.cancel()
		})
	}
	wg.Wait()
	most := stop()
	for i, ev := range firsts {
		assert.Equal(t, "INITIAL", ev.reason, "watch %d", i)
		assert.Equal(t, 10000, ev.sessions, "watch %d", i)
	}
	assert.Positive(t, most, "the REST watches' answers are counted against the budget")
	assert.LessOrEqual(t, most, int64(limit))
	require.Eventually(t, func() bool { return s.scrape(t)["creditsessions_answer_memory_bytes"][""] == 0 },
		5*time.Second, 10*time.Millisecond, "all given back once the first answers are sent")
}
