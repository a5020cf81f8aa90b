package app_test

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/app"
	"github.com/creditsessions/creditsessions/internal/emulator"
	"github.com/creditsessions/creditsessions/internal/plaid"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/google/go-cmp/cmp"
)

// service is a running App with clients for both of its faces.
type service struct {
	app    *app.App
	grpc   creditv1.CreditServiceClient
	conn   *grpc.ClientConn
	rest   string // base URL of the REST mirror
	logs   *syncBuffer
	stopFn func() error
}

// start runs the real wiring on loopback ports until the test ends, and checks that it
// then shuts down cleanly.
func start(t *testing.T, cfg app.Config) *service {
	t.Helper()
	logs := &syncBuffer{}
	if cfg.GRPCAddr == "" {
		cfg.GRPCAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	}
	if cfg.AdminAddr == "" {
		cfg.AdminAddr = "127.0.0.1:0"
	}
	cfg.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	a, err := app.New(cfg)
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			runErr = <-done
		})
		return runErr
	}
	t.Cleanup(func() { assert.NoError(t, stop(), "Run must end cleanly") })

	conn, err := grpc.NewClient(a.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return &service{
		app: a, grpc: creditv1.NewCreditServiceClient(conn), conn: conn,
		rest: "http://" + a.HTTPAddr().String(), logs: logs, stopFn: stop,
	}
}

func (s *service) post(t *testing.T, path, body string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.rest+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, data
}

// upstreamBody asks the emulator directly, as a Plaid client would ask Plaid.
func upstreamBody(t *testing.T, e *emulator.Emulator, baseURL, token string) []byte {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, baseURL+"/credit/sessions/get",
		strings.NewReader(`{"user_token":"`+token+`"}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("PLAID-CLIENT-ID", e.ClientID())
	req.Header.Set("PLAID-SECRET", e.Secret())
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return data
}

// normalize decodes a credit sessions response and keeps what must survive the
// service: every member the contract names and every unknown top-level member. It drops
// what Plaid's schema treats as absent (null, empty arrays), unknown members below the
// top level (the service may drop those), and request_id, which differs per call.
// Timestamps are compared as instants and numbers as doubles, the range in which JSON
// numbers interoperate (RFC 8259, section 6). 0, "" and {} stay.
func normalize(t *testing.T, data []byte) any {
	t.Helper()
	var v map[string]any
	require.NoError(t, json.Unmarshal(data, &v), "body: %s", data)
	delete(v, "request_id")
	desc := (&creditv1.CreditSessionsGetResponse{}).ProtoReflect().Descriptor()
	for k, x := range v {
		if f := desc.Fields().ByName(protoreflect.Name(k)); f != nil && f.Message() != nil {
			x = prune(t, x, f.Message())
		}
		v[k] = x
	}
	return prune(t, v, nil)
}

// prune applies normalize's rules to v, a value of message desc (nil: any JSON).
func prune(t *testing.T, v any, desc protoreflect.MessageDescriptor) any {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			var field protoreflect.FieldDescriptor
			if desc != nil {
				if field = desc.Fields().ByName(protoreflect.Name(k)); field == nil {
					delete(v, k)
					continue
				}
			}
			var sub protoreflect.MessageDescriptor
			if field != nil {
				sub = field.Message()
				if sub != nil && sub.FullName() == "google.protobuf.Timestamp" {
					ts, err := time.Parse(time.RFC3339Nano, x.(string))
					require.NoError(t, err)
					x, sub = ts.UTC().Format(time.RFC3339Nano), nil
				}
			}
			x = prune(t, x, sub)
			if l, ok := x.([]any); x == nil || (ok && len(l) == 0) {
				delete(v, k)
				continue
			}
			v[k] = x
		}
	case []any:
		for i := range v {
			v[i] = prune(t, v[i], desc)
		}
	}
	return v
}

func TestRESTMirrorReturnsWhatUpstreamSent(t *testing.T) {
	s := start(t, app.Config{})
	// Answers of 128 sessions or more are written as they are encoded, in chunks.
	tokens := []string{"user-sandbox-sessions-0", "user-sandbox-sessions-250", "user-sandbox-sessions-5000"}
	for _, f := range emulator.Fixtures() {
		tokens = append(tokens, f.Token)
	}
	for _, token := range tokens {
		t.Run(token, func(t *testing.T) {
			want := upstreamBody(t, s.app.Emulator(), s.app.EmulatorURL(), token)
			resp, got := s.post(t, "/credit/sessions/get", `{"user_token":"`+token+`"}`)
			require.Equal(t, http.StatusOK, resp.StatusCode, "body: %s", got)
			assert.Equal(t, "application/json; charset=utf-8", resp.Header.Get("Content-Type"))
			assert.Equal(t, normalize(t, want), normalize(t, got))

			var body map[string]any
			require.NoError(t, json.Unmarshal(got, &body))
			assert.NotEmpty(t, body["request_id"], "request_id passes through")
			assert.NotEmpty(t, resp.Header.Get("Plaid-Request-Id"))
		})
	}
}

func TestGRPCReturnsTheSpecExample(t *testing.T) {
	s := start(t, app.Config{})
	got, err := s.grpc.CreditSessionsGet(context.Background(), &creditv1.CreditSessionsGetRequest{UserToken: "user-sandbox-example"})
	require.NoError(t, err)
	assert.NotEmpty(t, got.GetRequestId())

	str := func(s string) *string { return &s }
	i32 := func(n int32) *int32 { return &n }
	want := &creditv1.CreditSessionsGetResponse{
		RequestId: got.GetRequestId(),
		Sessions: []*creditv1.CreditSession{{
			LinkSessionId:    str("356dbb28-7f98-44d1-8e6d-0cec580f3171"),
			SessionStartTime: timestamppb.New(time.Date(2022, 9, 30, 23, 40, 30, 946225000, time.UTC)),
			Results: &creditv1.CreditSessionResults{
				ItemAddResults: []*creditv1.CreditSessionItemAddResult{{
					PublicToken:   str("public-sandbox-5c224a01-8314-4491-a06f-39e193d5cddc"),
					ItemId:        str("M5eVJqLnv3tbzdngLDp9FL5OlDNxlNhlE55op"),
					InstitutionId: str("ins_56"),
				}},
				BankIncomeResults: []*creditv1.CreditSessionBankIncomeResult{{
					StatusValue: &creditv1.CreditSessionBankIncomeResult_Status{
						Status: creditv1.CreditSessionBankIncomeStatus_CREDIT_SESSION_BANK_INCOME_STATUS_APPROVED,
					},
					ItemId:        str("M5eVJqLnv3tbzdngLDp9FL5OlDNxlNhlE55op"),
					InstitutionId: str("ins_56"),
				}},
			},
		}, {
			LinkSessionId:    str("f742cae8-31e4-49cc-a621-6cafbdb26fb9"),
			SessionStartTime: timestamppb.New(time.Date(2022, 9, 26, 23, 40, 30, 946225000, time.UTC)),
			Results: &creditv1.CreditSessionResults{
				PayrollIncomeResults: []*creditv1.CreditSessionPayrollIncomeResult{{
					NumPaystubsRetrieved: i32(2),
					NumW2SRetrieved:      i32(1),
					InstitutionId:        str("ins_92"),
				}},
			},
		}},
	}
	assert.Empty(t, cmp.Diff(want, got, protocmp.Transform()))
}

func TestGRPCKeepsPresenceAndWhatPlaidAddsTomorrow(t *testing.T) {
	s := start(t, app.Config{})
	ctx := context.Background()

	zero, err := s.grpc.CreditSessionsGet(ctx, &creditv1.CreditSessionsGetRequest{UserToken: "user-sandbox-zero"})
	require.NoError(t, err)
	var doc *creditv1.CreditSessionDocumentIncomeResult
	var payroll *creditv1.CreditSessionPayrollIncomeResult
	for _, session := range zero.GetSessions() {
		if d := session.GetResults().GetDocumentIncomeResults(); d != nil {
			doc = d
		}
		for _, p := range session.GetResults().GetPayrollIncomeResults() {
			payroll = p
		}
	}
	require.NotNil(t, doc, "document_income_results with zero counts is present")
	for name, count := range map[string]*int32{
		"num_paystubs_uploaded": doc.NumPaystubsUploaded, "num_w2s_uploaded": doc.NumW2SUploaded,
		"num_bank_statements_uploaded": doc.NumBankStatementsUploaded, "num_1099s_uploaded": doc.Num_1099SUploaded,
	} {
		require.NotNil(t, count, "%s: a 0 Plaid sent is kept as present", name)
		assert.Zero(t, *count, name)
	}
	require.NotNil(t, payroll)
	require.NotNil(t, payroll.InstitutionName, `"" Plaid sent is kept as present`)
	assert.Empty(t, payroll.GetInstitutionName())

	future, err := s.grpc.CreditSessionsGet(ctx, &creditv1.CreditSessionsGetRequest{UserToken: "user-sandbox-future"})
	require.NoError(t, err)
	extra := future.GetAdditionalProperties()
	require.NotEmpty(t, extra, "unknown top-level members reach gRPC callers")
	assert.Equal(t, 1.25, extra["coverage_ratio"].GetNumberValue())
	var unrecognizedIncome, unrecognizedEmployment []string
	for _, session := range future.GetSessions() {
		for _, r := range session.GetResults().GetBankIncomeResults() {
			if u := r.GetUnrecognizedStatus(); u != "" {
				unrecognizedIncome = append(unrecognizedIncome, u)
			}
		}
		for _, r := range session.GetResults().GetBankEmploymentResults() {
			if u := r.GetUnrecognizedStatus(); u != "" {
				unrecognizedEmployment = append(unrecognizedEmployment, u)
			}
		}
	}
	assert.Equal(t, []string{"PENDING_REVIEW"}, unrecognizedIncome)
	assert.Equal(t, []string{"PENDING_REVIEW"}, unrecognizedEmployment)
}

func TestMissingUserTokenIsRejectedBeforeUpstream(t *testing.T) {
	s := start(t, app.Config{})
	before := s.app.Emulator().Calls()

	_, err := s.grpc.CreditSessionsGet(context.Background(), &creditv1.CreditSessionsGetRequest{})
	st := status.Convert(err)
	assert.Equal(t, codes.InvalidArgument, st.Code())
	assert.Contains(t, st.Message(), "user_token")

	for _, body := range []string{`{}`, `{"user_token":""}`, `{"user_token":null}`} {
		resp, data := s.post(t, "/credit/sessions/get", body)
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, body)
		assert.Contains(t, string(data), "user_token", body)
	}
	assert.Equal(t, before, s.app.Emulator().Calls(), "no upstream call for a request without user_token")
}

func TestOperatorsSeeHealthAndReflection(t *testing.T) {
	s := start(t, app.Config{})
	ctx := context.Background()
	for _, service := range []string{"", "plaid.credit.v1.CreditService"} {
		resp, err := healthpb.NewHealthClient(s.conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		require.NoError(t, err)
		assert.Equal(t, healthpb.HealthCheckResponse_SERVING, resp.GetStatus(), "service %q", service)
	}

	stream, err := reflectionpb.NewServerReflectionClient(s.conn).ServerReflectionInfo(ctx)
	require.NoError(t, err)
	require.NoError(t, stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
	}))
	resp, err := stream.Recv()
	require.NoError(t, err)
	require.NoError(t, stream.CloseSend())
	var names []string
	for _, svc := range resp.GetListServicesResponse().GetService() {
		names = append(names, svc.GetName())
	}
	assert.Subset(t, names, []string{"plaid.credit.v1.CreditService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"})
}

func TestInterceptorsRunOnRESTCallsToo(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	record := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		mu.Lock()
		seen = append(seen, info.FullMethod)
		mu.Unlock()
		return handler(ctx, req)
	}
	s := start(t, app.Config{Interceptors: []grpc.UnaryServerInterceptor{record}})

	resp, body := s.post(t, "/credit/sessions/get", `{"user_token":"user-sandbox-example"}`)
	require.Equal(t, http.StatusOK, resp.StatusCode, "body: %s", body)
	mu.Lock()
	assert.Equal(t, []string{creditv1.CreditService_CreditSessionsGet_FullMethodName}, seen, "the REST call went through the chain")
	mu.Unlock()

	_, err := s.grpc.CreditSessionsGet(context.Background(), &creditv1.CreditSessionsGetRequest{UserToken: "user-sandbox-example"})
	require.NoError(t, err)
	mu.Lock()
	assert.Len(t, seen, 2, "the gRPC call went through the chain")
	mu.Unlock()
}

// plaidCompatible is another Plaid-compatible server: it records what it was sent and
// answers with a body of its own.
type plaidCompatible struct {
	mu          sync.Mutex
	headers     http.Header
	body        []byte
	status      int    // 0 means 200
	contentType string // "" means application/json
	location    string // a Location header, for redirects
	answer      string
	canceled    chan struct{} // closed when the first request's context ends before it is answered
	cancelOnce  sync.Once     // a blocking upstream serves many requests: a retry, the REST call after the gRPC one
	block       bool
}

func (p *plaidCompatible) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	p.mu.Lock()
	p.headers, p.body = r.Header.Clone(), body
	p.mu.Unlock()
	if p.block {
		<-r.Context().Done()
		p.cancelOnce.Do(func() { close(p.canceled) })
		return
	}
	contentType := p.contentType
	if contentType == "" {
		contentType = "application/json"
	}
	w.Header().Set("Content-Type", contentType)
	if p.location != "" {
		w.Header().Set("Location", p.location)
	}
	if p.status != 0 {
		w.WriteHeader(p.status)
	}
	_, _ = io.WriteString(w, p.answer)
}

func startUpstream(t *testing.T, p *plaidCompatible) string {
	t.Helper()
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 5 * time.Second}
	ln := listen(t)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

// A blocking upstream sees every request it blocks end, however many there are: the
// exposure test sends it a gRPC and a REST call, and retries are more requests still.
// Its handler closed its channel once per request, and the second panicked.
func TestABlockingUpstreamServesManyRequests(t *testing.T) {
	p := &plaidCompatible{block: true, canceled: make(chan struct{})}
	errs := &syncBuffer{}
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 5 * time.Second, ErrorLog: log.New(errs, "", 0)}
	ln := listen(t)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	for range 3 {
		ctx, cancel := context.WithCancel(context.Background())
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+ln.Addr().String()+"/credit/sessions/get", strings.NewReader(`{}`))
		require.NoError(t, err)
		result := make(chan error, 1)
		go func() {
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				_ = resp.Body.Close()
			}
			result <- err
		}()
		require.Eventually(t, func() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.body != nil }, 10*time.Second, time.Millisecond,
			"the request arrived")
		cancel()
		require.ErrorIs(t, <-result, context.Canceled)
		p.mu.Lock()
		p.body = nil
		p.mu.Unlock()
	}
	// Shutdown returns once every connection is closed: every handler has returned.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, srv.Shutdown(ctx))
	require.ErrorIs(t, <-served, http.ErrServerClosed)
	select {
	case <-p.canceled:
	default:
		t.Fatal("canceled was not closed")
	}
	assert.NotContains(t, errs.String(), "panic")
}

func TestServesFromAnotherPlaidCompatibleServer(t *testing.T) {
	const answer = `{"request_id":"other-1","sessions":[{"link_session_id":"ls-1",` +
		`"session_start_time":"2024-05-06T07:08:09.5Z","results":{"bank_employment_results":` +
		`[{"status":"EMPLOYER_NOT_LISTED","item_id":"it-1"}],"document_income_results":` +
		`{"num_paystubs_uploaded":0,"num_w2s_uploaded":3,"num_bank_statements_uploaded":0,"num_1099s_uploaded":1}},` +
		`"errors":[{"error_type":"ITEM_ERROR","error_code":"ITEM_LOGIN_REQUIRED","error_message":"m","display_message":null}]}],` +
		`"brand_new":{"nested":[1,"two",false]}}`
	p := &plaidCompatible{answer: answer}
	base := startUpstream(t, p)
	s := start(t, app.Config{Plaid: app.PlaidConfig{
		BaseURL:     base,
		Credentials: plaid.Credentials{ClientID: "id-123", Secret: "shh-456"},
	}})
	assert.Empty(t, s.app.EmulatorURL(), "no emulator when an upstream is configured")

	got, err := s.grpc.CreditSessionsGet(context.Background(), &creditv1.CreditSessionsGetRequest{UserToken: "user-abc"})
	require.NoError(t, err)
	assert.Equal(t, "other-1", got.GetRequestId())
	require.Len(t, got.GetSessions(), 1)
	employment := got.GetSessions()[0].GetResults().GetBankEmploymentResults()[0]
	assert.Equal(t, creditv1.CreditSessionBankEmploymentStatus_CREDIT_SESSION_BANK_EMPLOYMENT_STATUS_EMPLOYER_NOT_LISTED, employment.GetStatus())
	assert.Equal(t, []any{1.0, "two", false}, got.GetAdditionalProperties()["brand_new"].GetStructValue().AsMap()["nested"])

	p.mu.Lock()
	assert.Equal(t, "id-123", p.headers.Get("PLAID-CLIENT-ID"))
	assert.Equal(t, "shh-456", p.headers.Get("PLAID-SECRET"))
	assert.Equal(t, "2020-09-14", p.headers.Get("Plaid-Version"))
	assert.Equal(t, "application/json", p.headers.Get("Content-Type"))
	assert.JSONEq(t, `{"user_token":"user-abc"}`, string(p.body))
	p.mu.Unlock()

	resp, rest := s.post(t, "/credit/sessions/get", `{"user_token":"user-abc"}`)
	require.Equal(t, http.StatusOK, resp.StatusCode, "body: %s", rest)
	assert.Equal(t, normalize(t, []byte(answer)), normalize(t, rest))
	assert.Contains(t, string(rest), `"request_id":"other-1"`)
}

func TestCallerDeadlineReachesUpstream(t *testing.T) {
	p := &plaidCompatible{block: true, canceled: make(chan struct{})}
	s := start(t, app.Config{Plaid: app.PlaidConfig{
		BaseURL:     startUpstream(t, p),
		Credentials: plaid.Credentials{ClientID: "id", Secret: "secret"},
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := s.grpc.CreditSessionsGet(ctx, &creditv1.CreditSessionsGetRequest{UserToken: "user-slow"})
	assert.Equal(t, codes.DeadlineExceeded, status.Code(err))
	select {
	case <-p.canceled:
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream request was not canceled when the caller's deadline passed")
	}
}

func TestShutdownEndsRunCleanly(t *testing.T) {
	s := start(t, app.Config{})
	_, err := s.grpc.CreditSessionsGet(context.Background(), &creditv1.CreditSessionsGetRequest{UserToken: "user-sandbox-example"})
	require.NoError(t, err)
	require.NoError(t, s.stopFn())
	_, err = http.Post(s.rest+"/credit/sessions/get", "application/json", strings.NewReader(`{}`))
	assert.Error(t, err, "the REST listener is closed after shutdown")
	assert.Contains(t, s.logs.String(), `"msg":"stopped"`)
}
