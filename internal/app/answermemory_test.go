package app_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"runtime"
	"testing"
	"time"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/app"
	"github.com/creditsessions/creditsessions/internal/emulator"
	"github.com/creditsessions/creditsessions/internal/plaidjson"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// plaidBody is the body the service's embedded emulator answers token with.
func plaidBody(t *testing.T, s *service, token string) []byte {
	t.Helper()
	e := s.app.Emulator()
	req := `{"client_id":"` + e.ClientID() + `","secret":"` + e.Secret() + `","user_token":"` + token + `"}`
	resp, err := http.Post(s.app.EmulatorURL()+"/credit/sessions/get", "application/json", bytes.NewReader([]byte(req)))
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return body
}

// largeCall starts a gRPC call for token that runs until cancel, and returns what it
// ended in on done.
func largeCall(s *service, token string) (cancel context.CancelFunc, done <-chan error) {
	ctx, cancel := context.WithCancel(context.Background())
	ended := make(chan error, 1)
	go func() {
		_, err := s.grpc.CreditSessionsGet(ctx, &creditv1.CreditSessionsGetRequest{UserToken: token})
		ended <- err
	}()
	return cancel, ended
}

// stalledLargeCall starts a call for token whose answer stalls halfway through its
// body, and returns once the call holds its share of the answer memory.
func stalledLargeCall(t *testing.T, s *service, token string) (cancel context.CancelFunc, done <-chan error) {
	t.Helper()
	s.app.Emulator().Script(emulator.Fault{Kind: emulator.FaultStall})
	cancel, done = largeCall(s, token)
	require.Eventually(t, func() bool { return s.scrape(t)["creditsessions_answer_memory_bytes"][""] > 0 },
		10*time.Second, 5*time.Millisecond, "the stalled call reserved its answer")
	return cancel, done
}

// The answer-memory budget counts what a large answer holds: its body and the message
// it decodes into, AnswerBytesPerBodyByte for each byte of the body. A budget of 3 MiB
// holds one 2,000-session answer (620 KB of body, 1.85 MB held), not five.
func TestAnswerMemoryCountsTheDecodedMessage(t *testing.T) {
	s := start(t, app.Config{MaxResponseBytes: 1 << 20, AnswerMemory: 3 << 20})
	const large = "user-sandbox-sessions-2000"
	body := plaidBody(t, s, large)

	cancelStalled, firstDone := stalledLargeCall(t, s, large+"#1")
	// Within a few bytes: the request ids of the two answers differ in length.
	assert.InDelta(t, float64(int64(len(body))*app.AnswerBytesPerBodyByte), s.scrape(t)["creditsessions_answer_memory_bytes"][""],
		3*64, "the body and its decoded message")

	// Two such answers would hold 3.7 MB: the second waits for the first.
	cancelWaiting, secondDone := largeCall(s, large+"#2")
	require.Eventually(t, func() bool { return s.scrape(t)["creditsessions_answer_memory_waits_total"][""] == 1 },
		10*time.Second, 5*time.Millisecond, "the second large answer waits")
	cancelWaiting()
	assert.Equal(t, codes.Canceled, status.Code(<-secondDone))
	cancelStalled()
	assert.Equal(t, codes.Canceled, status.Code(<-firstDone))
	require.Eventually(t, func() bool { return s.scrape(t)["creditsessions_answer_memory_bytes"][""] == 0 },
		10*time.Second, 5*time.Millisecond, "the calls gave their memory back")
}

// AnswerBytesPerBodyByte stays honest: decoding a large body allocates no more than
// AnswerBytesPerBodyByte-1 times the body (the body itself is the one). The least of a
// few decodes is taken: the allocation counter is the process's, and other goroutines
// only ever add to it.
func TestAnswerCostEstimate(t *testing.T) {
	s := start(t, app.Config{})
	body := plaidBody(t, s, "user-sandbox-sessions-10000")
	least := uint64(1 << 62)
	for range 3 {
		var before, after runtime.MemStats
		m := new(creditv1.CreditSessionsGetResponse)
		runtime.ReadMemStats(&before)
		require.NoError(t, plaidjson.UnmarshalResponse(body, m))
		runtime.ReadMemStats(&after)
		require.Len(t, m.GetSessions(), 10000)
		least = min(least, after.TotalAlloc-before.TotalAlloc)
	}
	t.Logf("a %d-byte body decodes into %d bytes (%.2f per body byte)", len(body), least, float64(least)/float64(len(body)))
	assert.LessOrEqual(t, least, uint64(len(body))*(app.AnswerBytesPerBodyByte-1))
	assert.Greater(t, least, uint64(len(body))*(app.AnswerBytesPerBodyByte-2), "the estimate is not far above the cost either")
}
