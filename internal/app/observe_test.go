package app_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/app"
	"github.com/creditsessions/creditsessions/internal/emulator"
	"github.com/creditsessions/creditsessions/internal/observe"
	"github.com/creditsessions/creditsessions/internal/plaid"
	"github.com/creditsessions/creditsessions/server"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func (s *service) admin(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + s.app.AdminAddr().String() + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

// scrape reads /metrics and returns metric name → label set ("k=v,k=v", sorted as
// exposed) → value.
func (s *service) scrape(t *testing.T) map[string]map[string]float64 {
	t.Helper()
	code, body := s.admin(t, "/metrics")
	require.Equal(t, http.StatusOK, code)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	require.NoError(t, err)
	out := map[string]map[string]float64{}
	for name, f := range families {
		out[name] = map[string]float64{}
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			out[name][strings.Join(labels, ",")] = value(m)
		}
	}
	return out
}

func value(m *dto.Metric) float64 {
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetHistogram() != nil:
		return float64(m.GetHistogram().GetSampleCount())
	default:
		return m.GetUntyped().GetValue()
	}
}

func TestMetricsMoveWithCalls(t *testing.T) {
	s := start(t, app.Config{})
	const handledOK = "grpc_code=OK,grpc_method=CreditSessionsGet,grpc_service=plaid.credit.v1.CreditService,grpc_type=unary"
	const handledNotFound = "grpc_code=NotFound,grpc_method=CreditSessionsGet,grpc_service=plaid.credit.v1.CreditService,grpc_type=unary"
	before := s.scrape(t)

	ctx := context.Background()
	for range 3 {
		_, err := s.grpc.CreditSessionsGet(ctx, &creditv1.CreditSessionsGetRequest{UserToken: "user-sandbox-example"})
		require.NoError(t, err)
	}
	for range 2 {
		resp, _ := s.post(t, "/credit/sessions/get", `{"user_token":"user-sandbox-full"}`)
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	_, err := s.grpc.CreditSessionsGet(ctx, &creditv1.CreditSessionsGetRequest{UserToken: "user-nobody"})
	require.Error(t, err)

	after := s.scrape(t)
	delta := func(name, labels string) float64 { return after[name][labels] - before[name][labels] }
	assert.Equal(t, 5.0, delta("grpc_server_handled_total", handledOK), "gRPC and REST calls are both counted")
	assert.Equal(t, 1.0, delta("grpc_server_handled_total", handledNotFound))
	assert.Equal(t, 6.0, delta("grpc_server_handling_seconds", "grpc_method=CreditSessionsGet,grpc_service=plaid.credit.v1.CreditService,grpc_type=unary"))
	assert.Equal(t, 5.0, delta("creditsessions_upstream_requests_total", "error_code=,outcome=ok"))
	assert.Equal(t, 1.0, delta("creditsessions_upstream_requests_total", "error_code=INVALID_USER_TOKEN,outcome=plaid_error"))
	assert.Equal(t, 6.0, delta("creditsessions_guarded_calls_total", ""))
	assert.Equal(t, 3.0, delta("creditsessions_calls_total", "caller=other,code=OK,method=/plaid.credit.v1.CreditService/CreditSessionsGet,transport=grpc"))
	assert.Equal(t, 2.0, delta("creditsessions_calls_total", "caller=other,code=OK,method=/plaid.credit.v1.CreditService/CreditSessionsGet,transport=rest"))
	assert.Equal(t, 1.0, delta("creditsessions_calls_total", "caller=other,code=NotFound,method=/plaid.credit.v1.CreditService/CreditSessionsGet,transport=grpc"))
	assert.Equal(t, 0.0, after["creditsessions_circuit_breaker_state"][""], "closed")
	for _, name := range []string{"creditsessions_coalesced_calls_total", "creditsessions_upstream_retries_total",
		"creditsessions_upstream_in_flight", "creditsessions_overloaded_total", "go_goroutines", "process_resident_memory_bytes"} {
		assert.Contains(t, after, name)
	}

	// A retry shows as a retry.
	s.app.Emulator().Script(apiError(t))
	_, err = s.grpc.CreditSessionsGet(ctx, &creditv1.CreditSessionsGetRequest{UserToken: "user-sandbox-example"})
	require.NoError(t, err)
	again := s.scrape(t)
	assert.Equal(t, 1.0, again["creditsessions_upstream_retries_total"][""]-after["creditsessions_upstream_retries_total"][""])
	assert.Equal(t, 1.0, again["creditsessions_upstream_requests_total"]["error_code=INTERNAL_SERVER_ERROR,outcome=plaid_error"])
}

func TestAdminProbesAndProfiles(t *testing.T) {
	s := start(t, app.Config{})
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/debug/pprof/": 200, "/debug/pprof/cmdline": 200, "/nope": 404} {
		code, _ := s.admin(t, path)
		assert.Equal(t, want, code, path)
	}
	resp, _ := s.post(t, "/metrics", `{}`)
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode, "metrics are not on the public listener")
}

func TestTraceFollowsTheCallToPlaid(t *testing.T) {
	spans := tracetest.NewInMemoryExporter()
	tracing := observe.NewTracing(sdktrace.WithSyncer(spans))
	p := &plaidCompatible{answer: `{"request_id":"r1","sessions":[]}`}
	s := start(t, app.Config{Tracing: tracing, Plaid: app.PlaidConfig{
		BaseURL: startUpstream(t, p), Credentials: plaid.Credentials{ClientID: "id", Secret: "secret"},
	}})

	const callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	const callerSpan = "00f067aa0ba902b7"
	traceparent := fmt.Sprintf("00-%s-%s-01", callerTrace, callerSpan)

	check := func(t *testing.T, serverKind trace.SpanKind) {
		t.Helper()
		var serverSpan, clientSpan *tracetest.SpanStub
		find := func() bool {
			serverSpan, clientSpan = nil, nil
			got := spans.GetSpans()
			for i := range got {
				switch got[i].SpanKind {
				case trace.SpanKindServer:
					serverSpan = &got[i]
				case trace.SpanKindClient:
					clientSpan = &got[i]
				}
			}
			return serverSpan != nil && clientSpan != nil
		}
		// The server span ends when grpc-go reports the call's end, which may come just
		// after the caller has its answer.
		require.Eventually(t, find, 5*time.Second, time.Millisecond, "a server span and a span for the call to Plaid")
		assert.Equal(t, serverKind, serverSpan.SpanKind)
		assert.Equal(t, callerTrace, serverSpan.SpanContext.TraceID().String(), "the caller's trace continues")
		assert.Equal(t, callerSpan, serverSpan.Parent.SpanID().String())
		assert.Equal(t, serverSpan.SpanContext.SpanID(), clientSpan.Parent.SpanID(), "the upstream call is the server span's child")
		assert.Equal(t, callerTrace, clientSpan.SpanContext.TraceID().String())

		p.mu.Lock()
		defer p.mu.Unlock()
		assert.Equal(t, fmt.Sprintf("00-%s-%s-01", callerTrace, clientSpan.SpanContext.SpanID()), p.headers.Get("Traceparent"),
			"Plaid receives W3C trace context naming the client span")
	}

	t.Run("grpc", func(t *testing.T) {
		spans.Reset()
		ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", traceparent)
		_, err := s.grpc.CreditSessionsGet(ctx, &creditv1.CreditSessionsGetRequest{UserToken: "user-t"})
		require.NoError(t, err)
		check(t, trace.SpanKindServer)
	})
	t.Run("rest", func(t *testing.T) {
		spans.Reset()
		resp, body := send(t, "POST", s.rest+"/credit/sessions/get", "application/json", `{"user_token":"user-t"}`,
			http.Header{"Traceparent": {traceparent}})
		require.Equal(t, http.StatusOK, resp.StatusCode, "body: %s", body)
		check(t, trace.SpanKindServer)
	})
}

func TestLogsNeverHoldSecretsOrTokens(t *testing.T) {
	s := start(t, app.Config{Plaid: app.PlaidConfig{CredentialsMode: server.CallerKeys}})
	id, secret := s.app.Emulator().ClientID(), s.app.Emulator().Secret()
	ctx := metadata.AppendToOutgoingContext(context.Background(), "plaid-client-id", id, "plaid-secret", secret)
	const token = "user-sandbox-example"
	_, err := s.grpc.CreditSessionsGet(ctx, &creditv1.CreditSessionsGetRequest{UserToken: token})
	require.NoError(t, err)
	_, err = s.grpc.CreditSessionsGet(ctx, &creditv1.CreditSessionsGetRequest{UserToken: "user-secret-person"})
	require.Error(t, err)
	wrong := metadata.AppendToOutgoingContext(context.Background(), "plaid-client-id", id, "plaid-secret", "wrong-secret-123")
	_, err = s.grpc.CreditSessionsGet(wrong, &creditv1.CreditSessionsGetRequest{UserToken: token})
	require.Error(t, err)
	resp, _ := send(t, "POST", s.rest+"/credit/sessions/get", "application/json",
		`{"user_token":"`+token+`","client_id":"`+id+`","secret":"`+secret+`"}`, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	s.app.Emulator().Script(emulator.Fault{Kind: emulator.FaultReset}, emulator.Fault{Kind: emulator.FaultReset}, emulator.Fault{Kind: emulator.FaultReset})
	_, err = s.grpc.CreditSessionsGet(ctx, &creditv1.CreditSessionsGetRequest{UserToken: token})
	require.Error(t, err)

	logs := s.logs.String()
	for _, leak := range []string{secret, "wrong-secret-123", token, "user-secret-person"} {
		assert.NotContains(t, logs, leak)
	}
	// What the log line does say.
	assert.Contains(t, logs, `"user_token_sha256":"`+server.TokenHash(token)+`"`)
	assert.Contains(t, logs, `"method":"/plaid.credit.v1.CreditService/CreditSessionsGet"`)
	assert.Contains(t, logs, `"transport":"rest"`)
	assert.Contains(t, logs, `"transport":"grpc"`)
	assert.Contains(t, logs, `"caller":"127.0.0.1"`)
	assert.Contains(t, logs, `"plaid_client_id":"`+id+`"`)
	assert.Regexp(t, `"code":"OK","latency":\d+,"plaid_request_id":"\w+"`, logs)
}

// Large answers wait for memory that other calls' large answers hold; small ones never do.
func TestLargeAnswersWaitTheirTurn(t *testing.T) {
	s := start(t, app.Config{MaxResponseBytes: 1 << 20, AnswerMemory: 1 << 20})
	// About 620 KB of body, 1.85 MB with its decoded message: one fills the 1 MiB budget.
	const large = "user-sandbox-sessions-2000"
	ctx := context.Background()

	// The first large answer stalls halfway through its body, holding its share.
	cancelStalled, firstDone := stalledLargeCall(t, s, large+"#1")

	small, err := s.grpc.CreditSessionsGet(ctx, &creditv1.CreditSessionsGetRequest{UserToken: "user-sandbox-example"})
	require.NoError(t, err, "a small answer does not wait")
	assert.Len(t, small.GetSessions(), 2)

	// A second large answer, for another user (the same user's call would join the first),
	// waits, and stops waiting when its caller leaves.
	cancelWaiting, secondDone := largeCall(s, large+"#2")
	require.Eventually(t, func() bool { return s.scrape(t)["creditsessions_answer_memory_waits_total"][""] == 1 },
		10*time.Second, 5*time.Millisecond, "the second large answer waits")
	cancelWaiting()
	assert.Equal(t, codes.Canceled, status.Code(<-secondDone))

	cancelStalled()
	err = <-firstDone
	assert.Equal(t, codes.Canceled, status.Code(err), "%v", err)
	require.Eventually(t, func() bool { return s.scrape(t)["creditsessions_answer_memory_bytes"][""] == 0 },
		10*time.Second, 5*time.Millisecond, "the calls gave their memory back")
	resp, body := s.post(t, "/credit/sessions/get", `{"user_token":"`+large+`"}`)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, string(body), `"sessions":[`)
	assert.Equal(t, float64(1<<20), s.scrape(t)["creditsessions_answer_memory_limit_bytes"][""])
}
