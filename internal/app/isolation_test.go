package app_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/app"
	"github.com/creditsessions/creditsessions/internal/emulator"
	"github.com/creditsessions/creditsessions/internal/plaid"
	"github.com/creditsessions/creditsessions/internal/resilience"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// goodCall makes one call for a healthy user, alternating gRPC and REST, and reports
// whether it succeeded and how long it took.
func goodCall(t *testing.T, s *service, n int) (bool, time.Duration) {
	t.Helper()
	token := "user-sandbox-example#good-" + strconv.Itoa(n)
	began := time.Now()
	if n%2 == 0 {
		_, err := s.grpc.CreditSessionsGet(context.Background(), &creditv1.CreditSessionsGetRequest{UserToken: token})
		return err == nil, time.Since(began)
	}
	req, err := http.NewRequest(http.MethodPost, s.rest+"/credit/sessions/get", strings.NewReader(`{"user_token":"`+token+`"}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, time.Since(began)
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK, time.Since(began)
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// One user whose every call fails, called 50 times one at a time and 10 at a time,
// costs Plaid a bounded number of attempts, gets an error that says what is happening,
// and denies nobody else: every other user's calls meanwhile succeed, none fails fast,
// and their latency does not grow.
func TestOneFailingUserDoesNotDenyOthers(t *testing.T) {
	const (
		calls        = 50
		isolateAfter = 3
		maxAttempts  = 3
	)
	for _, bad := range []struct {
		name, token string
		kind        resilience.Kind
		plaidBody   bool
	}{
		{"plaid 500", emulator.ErrorToken("API_ERROR", "INTERNAL_SERVER_ERROR"), resilience.KindPlaidError, true},
		{"malformed 200", "user-sandbox-fault-garbage", resilience.KindBadAnswer, false},
		{"html 502", "user-sandbox-fault-html-502", resilience.KindEdge5xx, false},
		{"stalled body", "user-sandbox-fault-stall", resilience.KindTimeout, false},
	} {
		for _, concurrency := range []int{1, 10} {
			t.Run(bad.name+"/"+strconv.Itoa(concurrency)+" at a time", func(t *testing.T) {
				s := start(t, app.Config{Resilience: resilience.Config{
					AttemptTimeout: 300 * time.Millisecond, // the stalled body's attempts end here
					IsolateFor:     time.Minute,            // no probe within the test
				}})
				e := s.app.Emulator()

				// A baseline for healthy users' latency, in this same test.
				var baseline []time.Duration
				for i := range 20 {
					ok, d := goodCall(t, s, -1-i)
					require.True(t, ok)
					baseline = append(baseline, d)
				}

				badCalls := e.CountCalls(bad.token)
				var goodCalls, goodFailed atomic.Int64
				var mu sync.Mutex
				var during []time.Duration
				stop := make(chan struct{})
				goodDone := make(chan struct{})
				go func() {
					defer close(goodDone)
					for n := 0; ; n++ {
						select {
						case <-stop:
							return
						default:
						}
						ok, d := goodCall(t, s, n)
						goodCalls.Add(1)
						if !ok {
							goodFailed.Add(1)
						}
						mu.Lock()
						during = append(during, d)
						mu.Unlock()
					}
				}()

				var wg sync.WaitGroup
				var badCodes sync.Map
				for w := range concurrency {
					wg.Go(func() {
						for i := w; i < calls; i += concurrency {
							if i%2 == 0 {
								_, err := s.grpc.CreditSessionsGet(context.Background(), &creditv1.CreditSessionsGetRequest{UserToken: bad.token})
								badCodes.Store(status.Code(err), true)
								continue
							}
							req, err := http.NewRequest(http.MethodPost, s.rest+"/credit/sessions/get", strings.NewReader(`{"user_token":"`+bad.token+`"}`))
							if err != nil {
								continue
							}
							req.Header.Set("Content-Type", "application/json")
							if resp, err := http.DefaultClient.Do(req); err == nil {
								badCodes.Store(resp.StatusCode, true)
								_ = resp.Body.Close()
							}
						}
					})
				}
				wg.Wait()
				// Enough healthy calls during and after the failing user's to compare.
				require.Eventually(t, func() bool { return goodCalls.Load() >= 20 }, 10*time.Second, 5*time.Millisecond)
				close(stop)
				<-goodDone

				assert.Zero(t, goodFailed.Load(), "every other user's call succeeded (%d calls)", goodCalls.Load())
				mu.Lock()
				assert.Less(t, median(during), 5*median(baseline)+20*time.Millisecond,
					"healthy users' latency did not grow: %v during, %v before", median(during), median(baseline))
				mu.Unlock()
				// Counted by token: a healthy call retried under load is not the failing user's.
				badAttempts := badCalls()
				assert.LessOrEqual(t, badAttempts, int64(isolateAfter*maxAttempts),
					"the failing user cost Plaid at most %d calls of %d attempts, then none", isolateAfter, maxAttempts)
				assert.Equal(t, "closed", s.app.Guard().BreakerState().String())
				_, grpcFailed := badCodes.Load(codes.Unavailable)
				assert.True(t, grpcFailed)
				badCodes.Range(func(k, _ any) bool {
					if httpStatus, ok := k.(int); ok {
						assert.GreaterOrEqual(t, httpStatus, 500, "the failing user's REST calls get a 5xx")
					}
					return true
				})

				// What the failing user hears now: Unavailable with a RetryInfo (REST: a
				// 5xx with Retry-After, and Plaid's own body when Plaid sent one).
				st, _, retry, _, _ := grpcError(t, s, bad.token)
				assert.Equal(t, codes.Unavailable, st.Code())
				require.NotNil(t, retry)
				assert.Greater(t, retry.GetRetryDelay().AsDuration(), 30*time.Second)
				resp, body := s.post(t, "/credit/sessions/get", `{"user_token":"`+bad.token+`"}`)
				assert.GreaterOrEqual(t, resp.StatusCode, 500)
				assert.NotEmpty(t, resp.Header.Get("Retry-After"))
				var plaidErr struct {
					ErrorCode string `json:"error_code"`
					RequestID string `json:"request_id"`
				}
				require.NoError(t, json.Unmarshal(body, &plaidErr))
				if bad.plaidBody {
					assert.Equal(t, http.StatusInternalServerError, resp.StatusCode)
					assert.Equal(t, "INTERNAL_SERVER_ERROR", plaidErr.ErrorCode)
					assert.False(t, strings.HasPrefix(plaidErr.RequestID, "creditsessions-"), "Plaid's body, with Plaid's request id")
				}

				m := s.scrape(t)
				assert.Equal(t, 1.0, m["creditsessions_isolated_users"][""])
				assert.Positive(t, m["creditsessions_isolated_rejections_total"][""])
				assert.Positive(t, m["creditsessions_upstream_failures_total"]["kind="+string(bad.kind)+",scope=user"])
				for labels := range m["creditsessions_circuit_breaker_opened_total"] {
					assert.Zero(t, m["creditsessions_circuit_breaker_opened_total"][labels])
				}
			})
		}
	}
}

// Answers that are bad for one user (over -max-response-bytes) are that user's problem:
// ten of them leave the breaker closed for everybody else.
func TestOversizedAnswersForOneUserDoNotOpenTheBreaker(t *testing.T) {
	s := start(t, app.Config{MaxResponseBytes: 100 << 10})
	for range 10 {
		_, err := s.grpc.CreditSessionsGet(context.Background(), &creditv1.CreditSessionsGetRequest{UserToken: "user-sandbox-sessions-1000"})
		require.Error(t, err)
	}
	got := callBoth(t, s, "user-sandbox-example", func() {})
	assert.Equal(t, outcome{codes.OK, http.StatusOK}, got)
	assert.Equal(t, "closed", s.app.Guard().BreakerState().String())
	m := s.scrape(t)
	assert.Positive(t, m["creditsessions_upstream_failures_total"]["kind=too_large,scope=user"])
	assert.Zero(t, m["creditsessions_upstream_failures_total"]["kind=too_large,scope=upstream"])
}

// Every user failing is an outage: the breaker opens within a bounded number of
// upstream attempts, Plaid hears nothing while it is open, and one probe closes it once
// Plaid is back.
func TestEveryUserFailingTripsFastAndRecovers(t *testing.T) {
	const openFor = 300 * time.Millisecond
	s := start(t, app.Config{Resilience: resilience.Config{BreakerOpenFor: openFor}})
	e := s.app.Emulator()
	e.SetFaults(emulator.Faults{ErrorRate: 1})
	before := e.Calls()
	calls := 0
	for ; calls < 50 && s.app.Guard().BreakerState().String() != "open"; calls++ {
		_, err := s.grpc.CreditSessionsGet(context.Background(), &creditv1.CreditSessionsGetRequest{UserToken: "user-sandbox-example#" + strconv.Itoa(calls)})
		require.Equal(t, codes.Unavailable, status.Code(err))
	}
	require.Equal(t, "open", s.app.Guard().BreakerState().String())
	assert.LessOrEqual(t, calls, 10, "ten users failing in a row open the circuit")
	// Each of those calls made one counted attempt; its retries came from the budget
	// (a burst of 10, and 0.2 per call).
	assert.LessOrEqual(t, e.Calls()-before, int64(calls+10+calls/5+1))

	opened := time.Now()
	before = e.Calls()
	for i := range 20 {
		st, _, retry, _, _ := grpcError(t, s, "user-sandbox-example#open-"+strconv.Itoa(i))
		require.Equal(t, codes.Unavailable, st.Code())
		require.NotNil(t, retry)
	}
	assert.Equal(t, before, e.Calls(), "no upstream call while the circuit is open")

	e.ClearFaults()
	require.Eventually(t, func() bool {
		_, err := s.grpc.CreditSessionsGet(context.Background(), &creditv1.CreditSessionsGetRequest{UserToken: "user-sandbox-example#probe"})
		return err == nil
	}, 5*time.Second, 10*time.Millisecond)
	assert.Less(t, time.Since(opened), openFor+time.Second, "recovered within -breaker-open-for and one probe")
	assert.Equal(t, before+1, e.Calls(), "one probe")
	assert.Equal(t, "closed", s.app.Guard().BreakerState().String())
	m := s.scrape(t)
	assert.Equal(t, 1.0, m["creditsessions_circuit_breaker_opened_total"]["reason=plaid_error"])
}

// Plaid unreachable trips the breaker within ten attempts, whatever the users.
func TestConnectionRefusedTripsFast(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close()) // nothing listens there now: connection refused
	s := start(t, app.Config{Plaid: app.PlaidConfig{BaseURL: "http://" + addr,
		Credentials: plaid.Credentials{ClientID: "id", Secret: "secret"}}})
	for range 10 {
		// One user, again and again: connection failures are everybody's.
		_, err := s.grpc.CreditSessionsGet(context.Background(), &creditv1.CreditSessionsGetRequest{UserToken: "user-sandbox-example"})
		require.Equal(t, codes.Unavailable, status.Code(err))
		if s.app.Guard().BreakerState().String() == "open" {
			break
		}
	}
	require.Equal(t, "open", s.app.Guard().BreakerState().String())
	assert.LessOrEqual(t, s.app.Guard().Stats().Attempts, int64(10), "ten refused attempts open the circuit")
	m := s.scrape(t)
	assert.Equal(t, 1.0, m["creditsessions_circuit_breaker_opened_total"]["reason=connection"])
	assert.Zero(t, m["creditsessions_isolated_users"][""], "an outage isolates nobody")
}

// PLANNED_MAINTENANCE is retried after the delay Plaid suggests, never after 100 ms; a
// retry the caller's deadline cannot wait for is not made.
func TestPlannedMaintenanceHonoursPlaidsDelay(t *testing.T) {
	s := start(t, app.Config{})
	e := s.app.Emulator()

	// No Retry-After: the table's minute, which no call waits for. One attempt.
	e.Script(plaidFault(t, "API_ERROR", "PLANNED_MAINTENANCE", 0))
	before, began := e.Calls(), time.Now()
	st, info, retry, _, _ := grpcError(t, s, "user-sandbox-example#m1")
	assert.Less(t, time.Since(began), time.Second)
	assert.Equal(t, codes.Unavailable, st.Code())
	assert.Equal(t, "PLANNED_MAINTENANCE", info.GetReason())
	require.NotNil(t, retry)
	assert.Equal(t, resilience.PlannedMaintenanceDelay, retry.GetRetryDelay().AsDuration())
	assert.Equal(t, before+1, e.Calls(), "not retried after 100 ms")

	e.Script(plaidFault(t, "API_ERROR", "PLANNED_MAINTENANCE", 0))
	resp, _ := s.post(t, "/credit/sessions/get", `{"user_token":"user-sandbox-example#m2"}`)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Equal(t, "60", resp.Header.Get("Retry-After"))

	// Retry-After: 1: the retry waits that second, and succeeds.
	e.Script(plaidFault(t, "API_ERROR", "PLANNED_MAINTENANCE", time.Second))
	before, began = e.Calls(), time.Now()
	_, err := s.grpc.CreditSessionsGet(context.Background(), &creditv1.CreditSessionsGetRequest{UserToken: "user-sandbox-example#m3"})
	require.NoError(t, err)
	assert.GreaterOrEqual(t, time.Since(began), time.Second)
	assert.Equal(t, before+2, e.Calls())

	// Retry-After: 2 against a 1 s deadline: no retry, Plaid's error at once.
	e.Script(plaidFault(t, "API_ERROR", "PLANNED_MAINTENANCE", 2*time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	before, began = e.Calls(), time.Now()
	_, err = s.grpc.CreditSessionsGet(ctx, &creditv1.CreditSessionsGetRequest{UserToken: "user-sandbox-example#m4"})
	assert.Equal(t, codes.Unavailable, status.Code(err))
	assert.Less(t, time.Since(began), 500*time.Millisecond)
	assert.Equal(t, before+1, e.Calls())
}

// A large answer sent chunked (no Content-Length) is held within the answer-memory
// budget as it arrives: calls wait for their turn instead of all buffering at once.
func TestChunkedAnswersAreBudgeted(t *testing.T) {
	const limit = 6 << 20
	// The calls take turns for the memory, each decoding 10,000 sessions: under -race on
	// a busy machine the last of them outlived the default 10 s attempt timeout, which
	// is not what this test is about.
	s := start(t, app.Config{AnswerMemory: limit, Resilience: resilience.Config{
		AttemptTimeout: 2 * time.Minute, CallTimeout: 3 * time.Minute}})
	// The memory held, sampled while the calls run: chunked bodies are counted as they
	// arrive, and never past the limit.
	stopSampling := sampleMax(s, "creditsessions_answer_memory_bytes")
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := range 6 {
		wg.Go(func() {
			token := emulator.ChunkedTokenPrefix + "sessions-10000#" + strconv.Itoa(i)
			if i%2 == 0 {
				resp, err := s.grpc.CreditSessionsGet(context.Background(), &creditv1.CreditSessionsGetRequest{UserToken: token})
				if err != nil || len(resp.GetSessions()) != 10000 {
					t.Logf("gRPC: %v", err)
					failed.Add(1)
				}
				return
			}
			req, err := http.NewRequest(http.MethodPost, s.rest+"/credit/sessions/get", strings.NewReader(`{"user_token":"`+token+`"}`))
			if err != nil {
				failed.Add(1)
				return
			}
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				failed.Add(1)
				return
			}
			var body struct{ Sessions []json.RawMessage }
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || len(body.Sessions) != 10000 {
				t.Logf("REST: %d %v", resp.StatusCode, err)
				failed.Add(1)
			}
			_ = resp.Body.Close()
		})
	}
	wg.Wait()
	most := stopSampling()
	assert.Zero(t, failed.Load())
	assert.Positive(t, most, "chunked bodies are counted against the budget")
	assert.LessOrEqual(t, most, int64(limit))
	m := s.scrape(t)
	assert.Zero(t, m["creditsessions_answer_memory_bytes"][""], "all given back")
}

// An outage seen through only two users (one calling over gRPC, one over REST) opens the
// breaker within a few attempts: their repeated failures are Plaid's, not theirs, since
// nobody is answered between. Nobody is isolated for it, and the metrics say upstream.
// Before, each user's failure counted once per -failure-memory, two users never added up
// to the breaker's thresholds, and both users were isolated instead.
func TestAnOutageSeenThroughTwoUsersOpensTheBreaker(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	refused := "http://" + ln.Addr().String()
	require.NoError(t, ln.Close()) // nothing listens there now: connection refused

	for _, tt := range []struct {
		name   string
		cfg    app.Config
		faults emulator.Faults
		reason resilience.Kind
	}{
		{name: "plaid 500 for every call", faults: emulator.Faults{ErrorRate: 1}, reason: resilience.KindPlaidError},
		{name: "every body stalls", faults: emulator.Faults{StallRate: 1},
			cfg:    app.Config{Resilience: resilience.Config{AttemptTimeout: 200 * time.Millisecond}},
			reason: resilience.KindTimeout},
		{name: "connection refused",
			cfg: app.Config{Plaid: app.PlaidConfig{BaseURL: refused,
				Credentials: plaid.Credentials{ClientID: "id", Secret: "secret"}}},
			reason: resilience.KindConnection},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Resilience.IsolateFor = time.Minute // an isolation would last the test
			s := start(t, tt.cfg)
			if e := s.app.Emulator(); tt.cfg.Plaid.BaseURL == "" {
				e.SetFaults(tt.faults)
			}
			open := func() bool { return s.app.Guard().BreakerState().String() == "open" }

			began := time.Now()
			var wg sync.WaitGroup
			var calls atomic.Int64
			for _, viaREST := range []bool{false, true} {
				token := "user-sandbox-example#grpc"
				if viaREST {
					token = "user-sandbox-example#rest"
				}
				wg.Go(func() {
					for i := 0; i < 30 && !open(); i++ {
						calls.Add(1)
						if !viaREST {
							_, err := s.grpc.CreditSessionsGet(context.Background(), &creditv1.CreditSessionsGetRequest{UserToken: token})
							assert.Contains(t, []codes.Code{codes.Unavailable, codes.DeadlineExceeded}, status.Code(err), "%v", err)
							continue
						}
						resp, _ := s.post(t, "/credit/sessions/get", `{"user_token":"`+token+`"}`)
						assert.GreaterOrEqual(t, resp.StatusCode, 500)
					}
				})
			}
			wg.Wait()
			require.True(t, open(), "the breaker opened after %d calls by two users", calls.Load())
			assert.Less(t, time.Since(began), 10*time.Second, "within seconds")
			assert.LessOrEqual(t, s.app.Guard().Stats().Attempts, int64(20),
				"ten failures in a row, and the retries the budget allows, open it")

			m := s.scrape(t)
			assert.Equal(t, 1.0, m["creditsessions_circuit_breaker_opened_total"]["reason="+string(tt.reason)])
			assert.Zero(t, m["creditsessions_isolated_users"][""], "an outage isolates nobody")
			assert.Zero(t, m["creditsessions_isolated_rejections_total"][""])
			assert.Positive(t, m["creditsessions_upstream_failures_total"]["kind="+string(tt.reason)+",scope=upstream"])

			// Both users, on both paths, now fail fast with the breaker's answer.
			for _, token := range []string{"user-sandbox-example#grpc", "user-sandbox-example#rest"} {
				st, _, retry, _, _ := grpcError(t, s, token)
				assert.Equal(t, codes.Unavailable, st.Code())
				require.NotNil(t, retry)
				assert.LessOrEqual(t, retry.GetRetryDelay().AsDuration(), 5*time.Second, "the breaker's delay, not an isolation's")
				resp, _ := s.post(t, "/credit/sessions/get", `{"user_token":"`+token+`"}`)
				assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
			}
		})
	}
}

// One user failing alone, with nobody else calling, is still that user's trouble: the
// breaker stays closed however often they call, and the user is isolated.
func TestOneUserFailingAloneNeverOpensTheBreaker(t *testing.T) {
	s := start(t, app.Config{Resilience: resilience.Config{IsolateFor: time.Minute}})
	bad := emulator.ErrorToken("API_ERROR", "INTERNAL_SERVER_ERROR")
	for i := range 30 {
		if i%2 == 0 {
			_, err := s.grpc.CreditSessionsGet(context.Background(), &creditv1.CreditSessionsGetRequest{UserToken: bad})
			assert.Equal(t, codes.Unavailable, status.Code(err))
			continue
		}
		resp, _ := s.post(t, "/credit/sessions/get", `{"user_token":"`+bad+`"}`)
		assert.Equal(t, http.StatusInternalServerError, resp.StatusCode)
	}
	assert.Equal(t, "closed", s.app.Guard().BreakerState().String())
	m := s.scrape(t)
	assert.Equal(t, 1.0, m["creditsessions_isolated_users"][""])
	assert.Zero(t, m["creditsessions_upstream_failures_total"]["kind=plaid_error,scope=upstream"]-1, "only the first failure counted")
	_, err := s.grpc.CreditSessionsGet(context.Background(), &creditv1.CreditSessionsGetRequest{UserToken: "user-sandbox-example"})
	assert.NoError(t, err, "everybody else is served")
}
