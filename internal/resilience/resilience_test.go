package resilience_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/creditsessions/creditsessions/internal/plaid"
	"github.com/creditsessions/creditsessions/internal/resilience"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// upstream is a Plaid-compatible server on loopback whose answers a test controls.
type upstream struct {
	calls   atomic.Int64
	started chan struct{} // receives when a request arrives
	release chan struct{} // a request waits for this (or its cancellation) when blocking
	ended   chan error    // receives each request's context error when it ends
	answer  func(n int64) (int, string)
	block   atomic.Bool
	stop    chan struct{} // closed at cleanup, so no handler outlives its test
}

func newUpstream(t *testing.T, answer func(n int64) (int, string)) (*upstream, *plaid.Client) {
	t.Helper()
	u := &upstream{started: make(chan struct{}, 1000), release: make(chan struct{}), ended: make(chan error, 1000),
		answer: answer, stop: make(chan struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: u, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	hc := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(func() {
		close(u.stop)
		hc.CloseIdleConnections()
		_ = srv.Close()
	})
	c, err := plaid.NewClient(plaid.Config{BaseURL: "http://" + ln.Addr().String(),
		Credentials: plaid.Credentials{ClientID: "id", Secret: "secret"}, HTTPClient: hc})
	require.NoError(t, err)
	return u, c
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Reading the body to its end is what lets net/http notice the client leaving.
	_, _ = io.Copy(io.Discard, r.Body)
	n := u.calls.Add(1)
	u.started <- struct{}{}
	if u.block.Load() {
		select {
		case <-u.release:
		case <-r.Context().Done():
			u.ended <- r.Context().Err()
			return
		case <-u.stop:
			return
		}
	}
	code, body := u.answer(n)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = fmt.Fprint(w, body)
	u.ended <- nil
}

func ok(int64) (int, string) { return 200, `{"request_id":"r","sessions":[]}` }

const apiError = `{"error_type":"API_ERROR","error_code":"INTERNAL_SERVER_ERROR","error_message":"m","display_message":null,"request_id":"x"}`

func receive[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting")
		var zero T
		return zero
	}
}

func TestSharedCallIsCanceledWhenTheLastCallerLeaves(t *testing.T) {
	u, c := newUpstream(t, ok)
	u.block.Store(true)
	g := resilience.New(c, resilience.Config{})

	ctx1, cancel1 := context.WithCancel(context.Background())
	ctx2, cancel2 := context.WithCancel(context.Background())
	errs := make(chan error, 2)
	go func() { _, err := g.CreditSessionsGet(ctx1, plaid.Request{UserToken: "u"}); errs <- err }()
	receive(t, u.started)
	go func() { _, err := g.CreditSessionsGet(ctx2, plaid.Request{UserToken: "u"}); errs <- err }()
	require.Eventually(t, func() bool { return g.Stats().Coalesced == 1 }, 5*time.Second, time.Millisecond)

	cancel1()
	assert.ErrorIs(t, receive(t, errs), context.Canceled)
	select {
	case err := <-u.ended:
		t.Fatalf("the upstream request ended (%v) while a caller still waited", err)
	default:
	}
	cancel2()
	assert.ErrorIs(t, receive(t, errs), context.Canceled)
	assert.ErrorIs(t, receive(t, u.ended), context.Canceled, "the last caller leaving cancels the upstream request")
	assert.Equal(t, int64(1), u.calls.Load())
}

func TestSharedCallLivesAsLongAsItsLongestDeadline(t *testing.T) {
	u, c := newUpstream(t, ok)
	u.block.Store(true)
	g := resilience.New(c, resilience.Config{})

	// The first caller's deadline passes once the second has joined, not on a timer: a
	// 100 ms deadline passed, on a busy machine, before the second caller arrived, which
	// then rightly started a call of its own and never joined.
	short := &passingDeadline{Context: context.Background(), deadline: time.Now().Add(time.Minute), done: make(chan struct{})}
	errs := make(chan error, 1)
	go func() { _, err := g.CreditSessionsGet(short, plaid.Request{UserToken: "u"}); errs <- err }()
	receive(t, u.started)
	long, cancelLong := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelLong()
	results := make(chan error, 1)
	go func() { _, err := g.CreditSessionsGet(long, plaid.Request{UserToken: "u"}); results <- err }()
	require.Eventually(t, func() bool { return g.Stats().Coalesced == 1 }, 5*time.Second, time.Millisecond)

	close(short.done)
	assert.ErrorIs(t, receive(t, errs), context.DeadlineExceeded)
	close(u.release) // the first caller's deadline has passed; the call is still alive
	assert.NoError(t, receive(t, results))
	assert.NoError(t, receive(t, u.ended))
}

// passingDeadline is a caller's context whose deadline passes when the test says so.
type passingDeadline struct {
	context.Context
	deadline time.Time
	done     chan struct{}
}

func (c *passingDeadline) Deadline() (time.Time, bool) { return c.deadline, true }
func (c *passingDeadline) Done() <-chan struct{}       { return c.done }
func (c *passingDeadline) Err() error {
	select {
	case <-c.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

// Coalesced callers share one answer, read-only, rather than one clone each: N clones of
// a large answer would sit outside the answer-memory budget, which counts its body once.
func TestCoalescedCallersShareOneAnswer(t *testing.T) {
	u, c := newUpstream(t, func(int64) (int, string) {
		return 200, `{"request_id":"r","sessions":[{"link_session_id":"a"}]}`
	})
	u.block.Store(true)
	g := resilience.New(c, resilience.Config{})
	type result struct {
		id  *string
		err error
	}
	results := make(chan result, 2)
	for range 2 {
		go func() {
			resp, err := g.CreditSessionsGet(context.Background(), plaid.Request{UserToken: "u"})
			if err != nil {
				results <- result{err: err}
				return
			}
			results <- result{id: resp.GetSessions()[0].LinkSessionId}
		}()
	}
	receive(t, u.started)
	require.Eventually(t, func() bool { return g.Stats().Coalesced == 1 }, 5*time.Second, time.Millisecond)
	close(u.release)
	a, b := receive(t, results), receive(t, results)
	require.NoError(t, a.err)
	require.NoError(t, b.err)
	assert.Equal(t, *a.id, *b.id)
	assert.Same(t, a.id, b.id, "one message, shared")
}

func TestDifferentCredentialsAreNotCoalesced(t *testing.T) {
	u, c := newUpstream(t, ok)
	u.block.Store(true)
	g := resilience.New(c, resilience.Config{})
	var wg sync.WaitGroup
	for _, creds := range []plaid.Credentials{{ClientID: "a", Secret: "1"}, {ClientID: "b", Secret: "1"}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := g.CreditSessionsGet(context.Background(), plaid.Request{UserToken: "u", Credentials: creds})
			assert.NoError(t, err)
		}()
	}
	receive(t, u.started)
	receive(t, u.started)
	close(u.release)
	wg.Wait()
	assert.Equal(t, int64(2), u.calls.Load())
	assert.Zero(t, g.Stats().Coalesced)
}

func TestRetryBudgetBoundsTrafficDuringAnOutage(t *testing.T) {
	u, c := newUpstream(t, func(int64) (int, string) { return 500, apiError })
	g := resilience.New(c, resilience.Config{
		MaxAttempts: 3, BackoffBase: time.Millisecond, BackoffMax: time.Millisecond,
		RetryBudgetRatio: 0.1, RetryBudgetBurst: 5,
		BreakerConsecutiveFailures: 1 << 30, BreakerMinRequests: 1 << 30,
	})
	const calls = 200
	for i := range calls {
		_, err := g.CreditSessionsGet(context.Background(), plaid.Request{UserToken: fmt.Sprint(i)})
		require.Error(t, err)
	}
	st := g.Stats()
	// Without a budget: 3 attempts a call. With it: the burst, then 0.1 retries a call.
	assert.LessOrEqual(t, st.Attempts, int64(calls+5+calls/10+1))
	assert.Equal(t, st.Attempts, u.calls.Load())
	assert.Positive(t, st.RetryBudgetEmpty)
	assert.Greater(t, st.Retries, int64(0))
}

func TestNotRetried(t *testing.T) {
	for name, body := range map[string]string{
		"caller error":      `{"error_type":"INVALID_INPUT","error_code":"INVALID_USER_TOKEN","error_message":"m","display_message":null,"request_id":"x"}`,
		"credits exhausted": `{"error_type":"RATE_LIMIT_EXCEEDED","error_code":"CREDITS_EXHAUSTED","error_message":"m","display_message":null,"request_id":"x"}`,
		"not a response":    `{"sessions":"nope"}`,
	} {
		t.Run(name, func(t *testing.T) {
			status := 400
			if name == "not a response" {
				status = 200
			}
			u, c := newUpstream(t, func(int64) (int, string) { return status, body })
			g := resilience.New(c, resilience.Config{BackoffBase: time.Millisecond})
			_, err := g.CreditSessionsGet(context.Background(), plaid.Request{UserToken: "u"})
			require.Error(t, err)
			assert.Equal(t, int64(1), u.calls.Load())
		})
	}
}

func TestConnectionFailuresAreRetried(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	c, err := plaid.NewClient(plaid.Config{BaseURL: "http://" + addr, Credentials: plaid.Credentials{ClientID: "id", Secret: "s"}})
	require.NoError(t, err)
	g := resilience.New(c, resilience.Config{BackoffBase: time.Millisecond})
	_, err = g.CreditSessionsGet(context.Background(), plaid.Request{UserToken: "u"})
	var netErr net.Error
	assert.True(t, errors.As(err, &netErr), "%v", err)
	assert.Equal(t, int64(3), g.Stats().Attempts)
}
