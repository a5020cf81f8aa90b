package app_test

import (
	"context"
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
	"github.com/creditsessions/creditsessions/internal/emulator"
	"github.com/creditsessions/creditsessions/internal/resilience"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

func apiError(t *testing.T) emulator.Fault {
	t.Helper()
	spec, ok := emulator.ErrorFor("API_ERROR", "INTERNAL_SERVER_ERROR")
	require.True(t, ok)
	return emulator.Fault{Kind: emulator.FaultError, Error: spec}
}

func plaidFault(t *testing.T, errorType, errorCode string, retryAfter time.Duration) emulator.Fault {
	t.Helper()
	spec, ok := emulator.ErrorFor(errorType, errorCode)
	require.True(t, ok)
	return emulator.Fault{Kind: emulator.FaultError, Error: spec, RetryAfter: retryAfter}
}

// both makes the same call through gRPC and through REST; each way it reports the gRPC
// code or the HTTP status.
type outcome struct {
	grpcCode   codes.Code
	httpStatus int
}

func callBoth(t *testing.T, s *service, token string, before func()) outcome {
	t.Helper()
	var o outcome
	before()
	_, err := s.grpc.CreditSessionsGet(context.Background(), &creditv1.CreditSessionsGetRequest{UserToken: token})
	o.grpcCode = status.Code(err)
	before()
	resp, _ := s.post(t, "/credit/sessions/get", `{"user_token":"`+token+`"}`)
	o.httpStatus = resp.StatusCode
	return o
}

func TestRetryThenSuccess(t *testing.T) {
	// Twelve calls that each need two retries would spend the default budget (see
	// TestRetryBudgetBoundsTrafficDuringAnOutage); here every fault kind gets its chance.
	s := start(t, app.Config{Resilience: resilience.Config{RetryBudgetBurst: 100}})
	e := s.app.Emulator()
	for _, fault := range []emulator.Fault{
		apiError(t),
		plaidFault(t, "API_ERROR", "PLANNED_MAINTENANCE", 100*time.Millisecond),
		plaidFault(t, "INCOME_VERIFICATION_ERROR", "PRODUCT_NOT_READY", 0),
		plaidFault(t, "RATE_LIMIT_EXCEEDED", "RATE_LIMIT", 0),
		{Kind: emulator.FaultReset},
		{Kind: emulator.FaultStall, Delay: 50 * time.Millisecond},
	} {
		before := e.Calls()
		got := callBoth(t, s, "user-sandbox-example", func() { e.Script(fault, fault) })
		assert.Equal(t, outcome{codes.OK, http.StatusOK}, got, "fault %v", fault.Kind)
		assert.Equal(t, before+6, e.Calls(), "two failed attempts and a success, each way")
	}
}

func TestCallerErrorsAreNotRetried(t *testing.T) {
	s := start(t, app.Config{})
	e := s.app.Emulator()
	before := e.Calls()
	got := callBoth(t, s, "user-nobody", func() {})
	assert.Equal(t, outcome{codes.NotFound, http.StatusBadRequest}, got)
	assert.Equal(t, before+2, e.Calls(), "one attempt each way")

	before = e.Calls()
	credits := plaidFault(t, "RATE_LIMIT_EXCEEDED", "CREDITS_EXHAUSTED", 0)
	got = callBoth(t, s, "user-sandbox-example", func() { e.Script(credits) })
	assert.Equal(t, outcome{codes.ResourceExhausted, http.StatusTooManyRequests}, got)
	assert.Equal(t, before+2, e.Calls(), "CREDITS_EXHAUSTED is never retried")
}

func TestRetryAfterIsHonoured(t *testing.T) {
	s := start(t, app.Config{})
	e := s.app.Emulator()
	e.Script(plaidFault(t, "RATE_LIMIT_EXCEEDED", "RATE_LIMIT", time.Second))
	began := time.Now()
	_, err := s.grpc.CreditSessionsGet(context.Background(), &creditv1.CreditSessionsGetRequest{UserToken: "user-sandbox-example"})
	require.NoError(t, err)
	assert.GreaterOrEqual(t, time.Since(began), time.Second, "the retry waited for Plaid's Retry-After")

	// A Retry-After the caller's deadline cannot wait for ends the call at once, with
	// Plaid's error and a RetryInfo, instead of failing at the deadline.
	e.Script(plaidFault(t, "RATE_LIMIT_EXCEEDED", "RATE_LIMIT", 3*time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	began = time.Now()
	_, err = s.grpc.CreditSessionsGet(ctx, &creditv1.CreditSessionsGetRequest{UserToken: "user-sandbox-example"})
	assert.Equal(t, codes.ResourceExhausted, status.Code(err))
	assert.Less(t, time.Since(began), time.Second)
}

func TestRetriesStopAtTheDeadline(t *testing.T) {
	s := start(t, app.Config{Resilience: resilience.Config{MaxAttempts: 10, BackoffBase: 50 * time.Millisecond,
		BreakerConsecutiveFailures: 1000, BreakerMinRequests: 1000}})
	e := s.app.Emulator()
	slowFailure := apiError(t)
	e.SetFaults(emulator.Faults{Latency: 150 * time.Millisecond, ErrorRate: 1, Errors: []emulator.ErrorSpec{slowFailure.Error}})

	const deadline = 600 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	began := time.Now()
	before := e.Calls()
	_, err := s.grpc.CreditSessionsGet(ctx, &creditv1.CreditSessionsGetRequest{UserToken: "user-sandbox-example"})
	elapsed := time.Since(began)
	code := status.Code(err)
	assert.Contains(t, []codes.Code{codes.DeadlineExceeded, codes.Unavailable}, code, "%v", err)
	assert.Less(t, elapsed, deadline+200*time.Millisecond, "the call did not outlive its deadline")
	assert.Less(t, e.Calls()-before, int64(10), "retries stopped at the deadline, not at MaxAttempts")

	// REST callers set a deadline with grpc-gateway's Grpc-Timeout header.
	req, err := http.NewRequest(http.MethodPost, s.rest+"/credit/sessions/get", strings.NewReader(`{"user_token":"user-sandbox-example"}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Grpc-Timeout", "600m")
	began = time.Now()
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	rb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.GreaterOrEqual(t, resp.StatusCode, 500, "a Plaid-shaped 5xx: %s", rb)
	assert.Less(t, time.Since(began), deadline+200*time.Millisecond)
}

func TestBreakerOpensFailsFastAndCloses(t *testing.T) {
	const openFor = 300 * time.Millisecond
	s := start(t, app.Config{Resilience: resilience.Config{MaxAttempts: 1, BreakerConsecutiveFailures: 3, BreakerOpenFor: openFor}})
	e := s.app.Emulator()
	e.SetFaults(emulator.Faults{ErrorRate: 1})
	for i := range 3 {
		// Failures across distinct users: Plaid is down. (One user failing again and
		// again is that user's trouble; see TestOneFailingUserDoesNotDenyOthers.)
		_, err := s.grpc.CreditSessionsGet(context.Background(), &creditv1.CreditSessionsGetRequest{UserToken: "user-sandbox-example#" + strconv.Itoa(i)})
		require.Equal(t, codes.Unavailable, status.Code(err))
	}

	// Open: calls fail fast, with a RetryInfo, and Plaid hears nothing of them.
	before := e.Calls()
	st, info, retry, _, _ := grpcError(t, s, "user-sandbox-example")
	assert.Equal(t, codes.Unavailable, st.Code())
	assert.Equal(t, "creditsessions", info.GetDomain())
	require.NotNil(t, retry)
	assert.LessOrEqual(t, retry.GetRetryDelay().AsDuration(), openFor)
	resp, _ := s.post(t, "/credit/sessions/get", `{"user_token":"user-sandbox-example"}`)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.NotEmpty(t, resp.Header.Get("Retry-After"))
	assert.Equal(t, before, e.Calls(), "no upstream call while the circuit is open")

	// Plaid recovers; once the open period is over, one probe goes through and closes
	// the circuit. (Waiting out the period is the behaviour under test.)
	e.ClearFaults()
	<-time.After(openFor)
	got := callBoth(t, s, "user-sandbox-example", func() {})
	assert.Equal(t, outcome{codes.OK, http.StatusOK}, got)
	assert.Equal(t, "closed", s.app.Guard().BreakerState().String())
}

func TestConcurrencyCapAnswersResourceExhausted(t *testing.T) {
	s := start(t, app.Config{Resilience: resilience.Config{MaxInFlight: 2, MaxQueueWait: 20 * time.Millisecond}})
	e := s.app.Emulator()
	e.Script(emulator.Fault{Kind: emulator.FaultStall}, emulator.Fault{Kind: emulator.FaultStall})

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, token := range []string{"user-sandbox-full", "user-sandbox-zero"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = s.grpc.CreditSessionsGet(ctx, &creditv1.CreditSessionsGetRequest{UserToken: token})
		}()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	require.Eventually(t, func() bool { return s.app.Guard().InFlight() == 2 }, 5*time.Second, time.Millisecond,
		"two stalled calls hold both places")

	began := time.Now()
	st, info, retry, _, _ := grpcError(t, s, "user-sandbox-example")
	assert.Equal(t, codes.ResourceExhausted, st.Code())
	assert.Equal(t, "RATE_LIMIT", info.GetReason())
	assert.NotNil(t, retry)
	assert.Less(t, time.Since(began), time.Second, "answered quickly, not queued")
	resp, body := s.post(t, "/credit/sessions/get", `{"user_token":"user-sandbox-example"}`)
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "body: %s", body)
	assert.NotEmpty(t, resp.Header.Get("Retry-After"))
}

func TestIdenticalCallsShareOneUpstreamCall(t *testing.T) {
	s := start(t, app.Config{})
	e := s.app.Emulator()
	// The first request is slow enough for the others to join it.
	e.Script(emulator.Fault{Kind: emulator.FaultLatency, Delay: 500 * time.Millisecond})
	before := e.Calls()

	const n = 20
	responses := make([]*creditv1.CreditSessionsGetResponse, n)
	restBodies := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				resp, err := s.grpc.CreditSessionsGet(context.Background(), &creditv1.CreditSessionsGetRequest{UserToken: "user-sandbox-full"})
				assert.NoError(t, err)
				responses[i] = resp
				return
			}
			resp, body := s.post(t, "/credit/sessions/get", `{"user_token":"user-sandbox-full"}`)
			assert.Equal(t, http.StatusOK, resp.StatusCode)
			restBodies[i] = string(body)
		}()
	}
	wg.Wait()
	assert.Equal(t, before+1, e.Calls(), "%d identical calls, one upstream call", n)
	assert.Equal(t, int64(n-1), s.app.Guard().Stats().Coalesced)
	for i := 2; i < n; i += 2 {
		assert.Equal(t, responses[0].GetRequestId(), responses[i].GetRequestId(), "the same answer")
	}
	for i := 3; i < n; i += 2 {
		assert.Equal(t, restBodies[1], restBodies[i])
	}
}

func TestCallerCancellingDoesNotHurtOthers(t *testing.T) {
	s := start(t, app.Config{})
	e := s.app.Emulator()
	e.Script(emulator.Fault{Kind: emulator.FaultLatency, Delay: 400 * time.Millisecond})
	before := e.Calls()

	impatient, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := s.grpc.CreditSessionsGet(impatient, &creditv1.CreditSessionsGetRequest{UserToken: "user-sandbox-example"})
		done <- err
	}()
	resp, err := s.grpc.CreditSessionsGet(context.Background(), &creditv1.CreditSessionsGetRequest{UserToken: "user-sandbox-example"})
	require.NoError(t, err, "the patient caller gets its answer")
	assert.Len(t, resp.GetSessions(), 2)
	assert.Equal(t, codes.DeadlineExceeded, status.Code(<-done))
	assert.Equal(t, before+1, e.Calls(), "they shared one upstream call")
}

// TestShutdownUnderLoadLosesNoAcceptedCall runs gRPC and REST load through a restart:
// every call the service accepted must reach its caller as a success.
func TestShutdownUnderLoadLosesNoAcceptedCall(t *testing.T) {
	var accepted, completedOK atomic.Int64
	var mu sync.Mutex
	var failedAccepted []string
	record := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		accepted.Add(1)
		resp, err := handler(ctx, req)
		if err != nil {
			mu.Lock()
			failedAccepted = append(failedAccepted, status.Convert(err).String())
			mu.Unlock()
		} else {
			completedOK.Add(1)
		}
		return resp, err
	}
	cfg := app.Config{
		Interceptors:  []grpc.UnaryServerInterceptor{record},
		ShutdownDrain: 200 * time.Millisecond,
		ShutdownGrace: 5 * time.Second,
	}
	first := start(t, cfg)
	first.app.Emulator().SetFaults(emulator.Faults{Latency: 30 * time.Millisecond})
	cfg.GRPCAddr, cfg.HTTPAddr = first.app.GRPCAddr().String(), first.app.HTTPAddr().String()
	cfg.AdminAddr = first.app.AdminAddr().String()

	var succeeded atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	restClient := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(restClient.CloseIdleConnections)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				var ok bool
				if w%2 == 0 {
					_, err := first.grpc.CreditSessionsGet(ctx, &creditv1.CreditSessionsGetRequest{UserToken: "user-sandbox-example"})
					ok = err == nil
				} else {
					req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+cfg.HTTPAddr+"/credit/sessions/get",
						strings.NewReader(`{"user_token":"user-sandbox-example"}`))
					req.Header.Set("Content-Type", "application/json")
					if resp, err := restClient.Do(req); err == nil {
						var body strings.Builder
						_, readErr := ioCopy(&body, resp)
						ok = resp.StatusCode == http.StatusOK && readErr == nil && strings.HasSuffix(body.String(), "}")
					}
				}
				cancel()
				if ok {
					succeeded.Add(1)
				}
			}
		}()
	}
	waitFor := func(n int64) {
		t.Helper()
		require.Eventually(t, func() bool { return succeeded.Load() >= n }, 20*time.Second, 5*time.Millisecond)
	}
	waitFor(40)

	// Watch health: NOT_SERVING must come before the listeners close.
	watch, err := healthpb.NewHealthClient(first.conn).Watch(context.Background(), &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	first0, err := watch.Recv()
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, first0.GetStatus())
	stopped := make(chan error, 1)
	go func() { stopped <- first.stopFn() }()
	next, err := watch.Recv()
	require.NoError(t, err)
	assert.Equal(t, healthpb.HealthCheckResponse_NOT_SERVING, next.GetStatus())
	require.NoError(t, <-stopped)

	// The restart: a new process on the same addresses; the load goes on.
	second := start(t, cfg)
	second.app.Emulator().SetFaults(emulator.Faults{Latency: 30 * time.Millisecond})
	waitFor(succeeded.Load() + 40)
	close(stop)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	assert.Empty(t, failedAccepted, "every accepted call succeeded")
	assert.Equal(t, accepted.Load(), completedOK.Load())
	assert.Equal(t, completedOK.Load(), succeeded.Load(), "every call the service completed reached its caller")
}

func ioCopy(b *strings.Builder, resp *http.Response) (int64, error) {
	defer resp.Body.Close()
	return io.Copy(b, resp.Body)
}
