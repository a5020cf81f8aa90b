package app_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/app"
	"github.com/creditsessions/creditsessions/internal/emulator"
	"github.com/creditsessions/creditsessions/server"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// attempts records when each call reached the service: the server side of a client's
// retries.
type attempts struct {
	mu    sync.Mutex
	times []time.Time
}

func (a *attempts) interceptor(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	a.mu.Lock()
	a.times = append(a.times, time.Now())
	a.mu.Unlock()
	return handler(ctx, req)
}

func (a *attempts) get() []time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]time.Time(nil), a.times...)
}

// retryingClient is a plain grpc-go client whose service config retries the given codes
// with a backoff of 10 ms: far from any delay the service asks for, so the gap between
// attempts tells whose delay the client followed.
func retryingClient(t *testing.T, s *service, maxAttempts int, retryable ...string) creditv1.CreditServiceClient {
	t.Helper()
	codesJSON := ""
	for i, c := range retryable {
		if i > 0 {
			codesJSON += ","
		}
		codesJSON += fmt.Sprintf("%q", c)
	}
	config := fmt.Sprintf(`{"methodConfig":[{"name":[{"service":"plaid.credit.v1.CreditService"}],
		"retryPolicy":{"maxAttempts":%d,"initialBackoff":"0.01s","maxBackoff":"0.01s","backoffMultiplier":1,
		"retryableStatusCodes":[%s]}}]}`, maxAttempts, codesJSON)
	conn, err := grpc.NewClient(s.app.GRPCAddr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDefaultServiceConfig(config))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return creditv1.NewCreditServiceClient(conn)
}

func TestPushbackTrailerFollowsRetryInfo(t *testing.T) {
	s := start(t, app.Config{Resilience: mappingOnly})
	for _, tt := range []struct {
		token    string
		code     codes.Code
		pushback []string // nil: no trailer
	}{
		{emulator.ErrorToken("API_ERROR", "INTERNAL_SERVER_ERROR"), codes.Unavailable, []string{"1000"}},
		{emulator.ErrorToken("RATE_LIMIT_EXCEEDED", "RATE_LIMIT"), codes.ResourceExhausted, []string{"2000"}},
		{emulator.ErrorToken("API_ERROR", "PLANNED_MAINTENANCE"), codes.Unavailable, []string{"60000"}},
		{emulator.ErrorToken("RATE_LIMIT_EXCEEDED", "CREDITS_EXHAUSTED"), codes.ResourceExhausted, []string{"-1"}},
		{emulator.ErrorToken("INVALID_REQUEST", "INVALID_BODY"), codes.Internal, []string{"-1"}},
		{"user-nobody", codes.NotFound, nil},
		{"", codes.InvalidArgument, nil},
	} {
		t.Run(tt.token, func(t *testing.T) {
			var header, trailer metadata.MD
			_, err := s.grpc.CreditSessionsGet(context.Background(), &creditv1.CreditSessionsGetRequest{UserToken: tt.token},
				grpc.Header(&header), grpc.Trailer(&trailer))
			require.Equal(t, tt.code, status.Code(err), "%v", err)
			assert.Equal(t, tt.pushback, trailer.Get(server.PushbackTrailer))
			assert.Empty(t, header, "trailers-only, or no client would retry it")
			if tt.code != codes.InvalidArgument {
				assert.NotEmpty(t, trailer.Get(server.RequestIDHeader), "Plaid's request id, in the trailer")
			}
		})
	}
}

func TestStockClientWaitsAsTheServiceAsks(t *testing.T) {
	hook := &attempts{}
	s := start(t, app.Config{Resilience: mappingOnly, Interceptors: []grpc.UnaryServerInterceptor{hook.interceptor}})
	client := retryingClient(t, s, 2, "UNAVAILABLE")

	var trailer metadata.MD
	_, err := client.CreditSessionsGet(context.Background(),
		&creditv1.CreditSessionsGetRequest{UserToken: emulator.ErrorToken("API_ERROR", "INTERNAL_SERVER_ERROR")}, grpc.Trailer(&trailer))
	require.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
	times := hook.get()
	require.Len(t, times, 2, "one retry, as the policy allows")
	gap := times[1].Sub(times[0])
	t.Logf("gap between attempts: %v (RetryInfo and pushback: 1s; the client's own backoff: 10ms)", gap)
	assert.GreaterOrEqual(t, gap, time.Second, "the client waited the pushback, not its own 10ms backoff")
	assert.Less(t, gap, 5*time.Second)
}

func TestStockClientDoesNotRetryWhenToldNot(t *testing.T) {
	hook := &attempts{}
	s := start(t, app.Config{Resilience: mappingOnly, Interceptors: []grpc.UnaryServerInterceptor{hook.interceptor}})
	// A policy that would retry ResourceExhausted and Internal five times over.
	client := retryingClient(t, s, 5, "UNAVAILABLE", "RESOURCE_EXHAUSTED", "INTERNAL")
	for _, tt := range []struct {
		token string
		code  codes.Code
	}{
		{emulator.ErrorToken("RATE_LIMIT_EXCEEDED", "CREDITS_EXHAUSTED"), codes.ResourceExhausted},
		{emulator.ErrorToken("INVALID_REQUEST", "INVALID_BODY"), codes.Internal},
	} {
		before := len(hook.get())
		_, err := client.CreditSessionsGet(context.Background(), &creditv1.CreditSessionsGetRequest{UserToken: tt.token})
		require.Equal(t, tt.code, status.Code(err), "%v", err)
		assert.Len(t, hook.get(), before+1, "%s: a pushback of -1 means no retry", tt.token)
	}

}
