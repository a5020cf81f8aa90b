package app_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/app"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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
			// They take turns, each a 3 MB answer: slow under the race detector.
			select {
			case firsts[i] = <-w.events:
			case <-time.After(time.Minute):
			}
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

// twoWatchersPolicy lets the operator and the underwriter both use every CreditService
// method: two tenants of one fleet.
const twoWatchersPolicy = `{
  "name": "creditsessions",
  "allow_rules": [
    {"name": "tenants", "source": {"principals": ["` + operatorID + `", "` + underwriterID + `"]},
     "request": {"paths": ["/plaid.credit.v1.CreditService/*"]}}
  ]
}`

// tlsWatch opens a watch over gRPC or REST with a client certificate and returns its
// first event: a message, or the refusal.
func tlsWatch(t *testing.T, s *service, p *pki, cert *tls.Certificate, transport, token string) (watchEvent, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if transport == "grpc" {
		c, _ := p.grpcClient(t, s.app.GRPCAddr().String(), cert)
		stream, err := c.WatchCreditSessions(ctx, &creditv1.WatchCreditSessionsRequest{UserToken: token})
		require.NoError(t, err)
		m, err := stream.Recv()
		if err != nil {
			ev := watchEvent{end: true, code: status.Code(err)}
			for _, d := range status.Convert(err).Details() {
				if _, ok := d.(*errdetails.RetryInfo); ok {
					ev.retryInfo = true
				}
			}
			return ev, cancel
		}
		return watchEvent{reason: strings.TrimPrefix(m.GetReason().String(), "WATCH_CREDIT_SESSIONS_REASON_")}, cancel
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+s.app.HTTPAddr().String()+"/credit/sessions/watch",
		strings.NewReader(`{"user_token":"`+token+`"}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.httpClient(t, cert).Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { _ = resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		var e map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&e)
		ev := watchEvent{end: true, code: codes.Unknown, errorLine: e, httpStatus: resp.StatusCode}
		ev.retryInfo = resp.Header.Get("Retry-After") != ""
		return ev, cancel
	}
	line, err := bufio.NewReader(resp.Body).ReadBytes('\n')
	require.NoError(t, err)
	var m struct{ Reason string }
	require.NoError(t, json.Unmarshal(line, &m))
	return watchEvent{reason: m.Reason, httpStatus: resp.StatusCode}, cancel
}

// One caller holding all the watches -caller-max-watches allows it, over gRPC and REST
// together, is refused more with ResourceExhausted (429 on REST) and a RetryInfo, while
// another caller opens its own as if the first were not there; and the first caller's
// watches, each one user, keep the users polled for it within its cap.
func TestCallerMaxWatchesLeavesOtherCallersTheirShare(t *testing.T) {
	p := newPKI(t)
	cfg := secureConfig(p, false)
	cfg.Security.PolicyFile = p.write(t, "tenants.json", []byte(twoWatchersPolicy))
	cfg.Security.CallerMaxWatches = 3
	s := start(t, cfg) // polls a minute apart: Plaid hears only of the watches opened

	// The operator fills its share, on both transports.
	var operatorWatches []context.CancelFunc
	for i, transport := range []string{"grpc", "rest", "grpc"} {
		ev, cancel := tlsWatch(t, s, p, &p.operator, transport, "user-sandbox-example#op"+strconv.Itoa(i))
		require.Equal(t, "INITIAL", ev.reason, "operator watch %d over %s", i, transport)
		operatorWatches = append(operatorWatches, cancel)
	}
	calls := s.app.Emulator().Calls()
	for _, transport := range []string{"grpc", "rest"} {
		ev, _ := tlsWatch(t, s, p, &p.operator, transport, "user-sandbox-example#op-more")
		require.True(t, ev.end, "the operator's watch past its cap over %s is refused", transport)
		assert.True(t, ev.retryInfo, "with when to try again, over %s", transport)
		if transport == "grpc" {
			assert.Equal(t, codes.ResourceExhausted, ev.code)
		} else {
			assert.Equal(t, http.StatusTooManyRequests, ev.httpStatus)
			assert.Equal(t, "RATE_LIMIT_EXCEEDED", ev.errorLine["error_type"])
		}
	}
	assert.Equal(t, calls, s.app.Emulator().Calls(), "refused before Plaid hears of it")
	assert.LessOrEqual(t, s.app.Hub().Users(), 3, "the operator's watches keep at most 3 users polled")

	// The underwriter is unaffected: its whole share, on both transports.
	for i, transport := range []string{"rest", "grpc", "rest"} {
		ev, _ := tlsWatch(t, s, p, &p.underwriter, transport, "user-sandbox-example#uw"+strconv.Itoa(i))
		assert.Equal(t, "INITIAL", ev.reason, "underwriter watch %d over %s", i, transport)
	}
	m := s.scrape(t)["creditsessions_caller_watch_rejections_total"]
	assert.Equal(t, 2.0, m["caller="+operatorID])
	assert.Zero(t, m["caller="+underwriterID])

	// A watch that ends gives its place back.
	operatorWatches[0]()
	require.Eventually(t, func() bool {
		ev, cancel := tlsWatch(t, s, p, &p.operator, "grpc", "user-sandbox-example#op-again")
		defer cancel()
		return ev.reason == "INITIAL"
	}, 5*time.Second, 20*time.Millisecond)
}

// A replica allowed little memory takes the watches that fit in it and refuses the rest
// with ResourceExhausted and a RetryInfo (429 on REST), so that clients try another
// replica, instead of growing until it is OOM-killed; its calls keep working.
func TestWatchCapFollowsTheMemoryLimit(t *testing.T) {
	const limit = 4 << 20
	capacity := app.MaxWatchesFor(limit)
	require.Equal(t, 85, capacity, "half of 4 MiB at 24 KiB a watch")
	s := start(t, app.Config{MemoryLimit: limit})
	assert.Equal(t, float64(capacity), s.scrape(t)["creditsessions_watches_limit"][""])

	var wg sync.WaitGroup
	firsts := make([]watchEvent, capacity)
	for i := range firsts {
		wg.Go(func() {
			w := watchGRPC(t, s, &creditv1.WatchCreditSessionsRequest{UserToken: "user-sandbox-example#cap" + strconv.Itoa(i)})
			firsts[i] = w.next(t)
		})
	}
	wg.Wait()
	for i, ev := range firsts {
		require.Equal(t, "INITIAL", ev.reason, "watch %d of %d", i, capacity)
	}

	g := watchGRPC(t, s, &creditv1.WatchCreditSessionsRequest{UserToken: "user-sandbox-example#one-more"})
	ev := g.next(t)
	assert.Equal(t, codes.ResourceExhausted, ev.code)
	assert.True(t, ev.retryInfo, "with a RetryInfo: another replica may have room")
	r, resp := watchREST(t, s, `{"user_token":"user-sandbox-example#one-more"}`)
	assert.Equal(t, http.StatusTooManyRequests, r.next(t).httpStatus)
	assert.NotEmpty(t, resp.Header.Get("Retry-After"))
	assert.Equal(t, 2.0, s.scrape(t)["creditsessions_watch_refusals_total"][""])

	_, err := s.grpc.CreditSessionsGet(context.Background(), example)
	assert.NoError(t, err, "calls are unaffected")
}
