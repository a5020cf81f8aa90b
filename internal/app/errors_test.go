package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/app"
	"github.com/creditsessions/creditsessions/internal/emulator"
	"github.com/creditsessions/creditsessions/internal/plaid"
	"github.com/creditsessions/creditsessions/internal/resilience"
	"github.com/creditsessions/creditsessions/server"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// wantMapping is the mapping from Plaid errors to gRPC codes, written out here on its
// own so that a change to server.ErrorTable has to be made twice, on purpose.
var wantMapping = []struct {
	errorType, errorCode string
	code                 codes.Code
	callerKeysCode       codes.Code // when the caller's keys were forwarded; OK means same as code
	retry                bool
}{
	{"INVALID_REQUEST", "MISSING_FIELDS", codes.InvalidArgument, 0, false},
	{"INVALID_REQUEST", "INVALID_FIELD", codes.InvalidArgument, 0, false},
	{"INVALID_REQUEST", "SOMETHING_NEW", codes.InvalidArgument, 0, false}, // the type's wildcard row
	{"INVALID_REQUEST", "INVALID_BODY", codes.Internal, 0, false},
	{"INVALID_REQUEST", "UNKNOWN_FIELDS", codes.Internal, 0, false},
	{"INVALID_REQUEST", "INVALID_HEADERS", codes.Internal, 0, false},
	{"INVALID_REQUEST", "INCOMPATIBLE_API_VERSION", codes.Internal, 0, false},
	{"INVALID_REQUEST", "NOT_FOUND", codes.Internal, 0, false},
	{"INVALID_REQUEST", "SANDBOX_ONLY", codes.Internal, 0, false},
	{"INVALID_REQUEST", "NO_LONGER_AVAILABLE", codes.Unimplemented, 0, false},
	{"INVALID_INPUT", "SOMETHING_NEW", codes.InvalidArgument, 0, false},
	{"INVALID_INPUT", "INVALID_API_KEYS", codes.Internal, codes.Unauthenticated, false},
	{"INVALID_INPUT", "UNAUTHORIZED_ENVIRONMENT", codes.Internal, codes.PermissionDenied, false},
	{"INVALID_INPUT", "UNAUTHORIZED_ROUTE_ACCESS", codes.Internal, codes.PermissionDenied, false},
	{"INVALID_INPUT", "INVALID_PRODUCT", codes.FailedPrecondition, 0, false},
	{"INVALID_INPUT", "INVALID_USER_TOKEN", codes.NotFound, 0, false},
	{"INVALID_INPUT", "ADDITIONAL_CONSENT_REQUIRED", codes.FailedPrecondition, 0, false},
	{"INVALID_INPUT", "USER_PERMISSION_REVOKED", codes.FailedPrecondition, 0, false},
	{"USER_ERROR", "SOMETHING_NEW", codes.FailedPrecondition, 0, false},
	{"USER_ERROR", "USER_NOT_FOUND", codes.NotFound, 0, false},
	{"INCOME_VERIFICATION_ERROR", "PRODUCT_NOT_ENABLED", codes.FailedPrecondition, 0, false},
	{"INCOME_VERIFICATION_ERROR", "VERIFICATION_STATUS_PENDING_APPROVAL", codes.FailedPrecondition, 0, false},
	{"INCOME_VERIFICATION_ERROR", "PRODUCT_NOT_READY", codes.Unavailable, 0, true},
	{"INCOME_VERIFICATION_ERROR", "INCOME_VERIFICATION_NOT_FOUND", codes.NotFound, 0, false},
	{"RATE_LIMIT_EXCEEDED", "RATE_LIMIT", codes.ResourceExhausted, 0, true},
	{"RATE_LIMIT_EXCEEDED", "CREDITS_EXHAUSTED", codes.ResourceExhausted, 0, false},
	{"API_ERROR", "INTERNAL_SERVER_ERROR", codes.Unavailable, 0, true},
	{"API_ERROR", "PLANNED_MAINTENANCE", codes.Unavailable, 0, true},
}

func TestEveryMappingRowIsTested(t *testing.T) {
	tested := map[string]bool{}
	for _, w := range wantMapping {
		row, ok := server.Lookup(w.errorType, w.errorCode)
		require.True(t, ok, "%s/%s", w.errorType, w.errorCode)
		tested[row.ErrorType+"/"+row.ErrorCode] = true
	}
	for _, row := range server.ErrorTable {
		assert.True(t, tested[row.ErrorType+"/"+row.ErrorCode], "row %s/%s of server.ErrorTable has no test", row.ErrorType, row.ErrorCode)
	}
}

// mappingOnly isolates the mapping from the resilience layer: one attempt per call and a
// breaker that never opens, so each call shows the mapping of exactly one upstream
// answer. The resilience tests cover the rest.
var mappingOnly = resilience.Config{MaxAttempts: 1, BreakerConsecutiveFailures: math.MaxUint32, BreakerMinRequests: math.MaxUint32}

// grpcError calls over gRPC and returns the status, its details and the
// plaid-request-id metadata (a trailer on failures: see server.Pushback).
func grpcError(t *testing.T, s *service, token string, opts ...grpc.CallOption) (*status.Status, *errdetails.ErrorInfo, *errdetails.RetryInfo, *errdetails.LocalizedMessage, string) {
	t.Helper()
	var header, trailer metadata.MD
	_, err := s.grpc.CreditSessionsGet(context.Background(), &creditv1.CreditSessionsGetRequest{UserToken: token},
		append(opts, grpc.Header(&header), grpc.Trailer(&trailer))...)
	require.Error(t, err)
	st := status.Convert(err)
	var info *errdetails.ErrorInfo
	var retry *errdetails.RetryInfo
	var localized *errdetails.LocalizedMessage
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			require.Nil(t, info, "one ErrorInfo")
			info = d
		case *errdetails.RetryInfo:
			retry = d
		case *errdetails.LocalizedMessage:
			localized = d
		}
	}
	require.NotNil(t, info, "every error carries an ErrorInfo: %v", st)
	assert.Empty(t, header, "a failed call's answer is trailers-only, so that clients may retry it")
	return st, info, retry, localized, first(trailer.Get("plaid-request-id"))
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// errorUpstream answers every call with one Plaid error body of its own.
func errorUpstream(t *testing.T, httpStatus int, errorType, errorCode string) string {
	t.Helper()
	return startUpstream(t, &plaidCompatible{status: httpStatus, answer: fmt.Sprintf(
		`{"display_message":null,"error_code":%q,"error_message":"m","error_type":%q,"request_id":"req-%s","causes":[{"x":1}]}`,
		errorCode, errorType, strings.ToLower(errorCode))})
}

func TestPlaidErrorsReachGRPCAndRESTCallers(t *testing.T) {
	specs := map[string]emulator.ErrorSpec{}
	for _, spec := range emulator.Errors() {
		specs[spec.Type+"/"+spec.Code] = spec
	}
	embedded := start(t, app.Config{Resilience: mappingOnly})

	for _, w := range wantMapping {
		t.Run(w.errorType+"/"+w.errorCode, func(t *testing.T) {
			// Pairs the emulator knows come from it; the rest from an upstream of our own.
			s, token, httpStatus := embedded, emulator.ErrorToken(w.errorType, w.errorCode), 400
			spec, known := specs[w.errorType+"/"+w.errorCode]
			if known {
				httpStatus = spec.HTTPStatus
			} else {
				s = start(t, app.Config{Resilience: mappingOnly, Plaid: app.PlaidConfig{
					BaseURL:     errorUpstream(t, httpStatus, w.errorType, w.errorCode),
					Credentials: plaid.Credentials{ClientID: "id", Secret: "secret"},
				}})
				token = "user-any"
			}

			st, info, retry, localized, requestID := grpcError(t, s, token)
			assert.Equal(t, w.code, st.Code(), st.Message())
			assert.Contains(t, st.Message(), w.errorType+"/"+w.errorCode)
			assert.Equal(t, w.errorCode, info.GetReason())
			assert.Equal(t, "plaid.com", info.GetDomain())
			assert.Equal(t, w.errorType, info.GetMetadata()["errorType"])
			assert.Equal(t, fmt.Sprint(httpStatus), info.GetMetadata()["httpStatus"])
			require.NotEmpty(t, info.GetMetadata()["requestId"])
			assert.Equal(t, info.GetMetadata()["requestId"], requestID, "Plaid's request id is also response metadata")
			assert.Equal(t, w.retry, retry != nil, "RetryInfo where retrying is right")
			if retry != nil {
				assert.Positive(t, retry.GetRetryDelay().AsDuration())
			}
			if known && spec.DisplayMessage != "" {
				require.NotNil(t, localized)
				assert.Equal(t, spec.DisplayMessage, localized.GetMessage())
			} else {
				assert.Nil(t, localized, "no LocalizedMessage without a display message")
			}

			// REST: Plaid's status and Plaid's body, unchanged.
			resp, body := s.post(t, "/credit/sessions/get", `{"user_token":"`+token+`"}`)
			assert.Equal(t, httpStatus, resp.StatusCode)
			var got map[string]any
			require.NoError(t, json.Unmarshal(body, &got), "body: %s", body)
			assert.Equal(t, w.errorType, got["error_type"])
			assert.Equal(t, w.errorCode, got["error_code"])
			assert.Equal(t, got["request_id"], resp.Header.Get("Plaid-Request-Id"))
			assert.Equal(t, w.retry, resp.Header.Get("Retry-After") != "", "Retry-After where retrying is right")
			if known {
				direct := directError(t, s, token)
				delete(direct, "request_id")
				delete(got, "request_id")
				assert.Equal(t, direct, got, "the mirror answers with Plaid's error body as Plaid sent it")
			} else {
				assert.Equal(t, []any{map[string]any{"x": 1.0}}, got["causes"], "members we do not model pass through")
			}
		})
	}
}

// directError asks the emulator behind s directly and decodes its error body.
func directError(t *testing.T, s *service, token string) map[string]any {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.app.EmulatorURL()+"/credit/sessions/get", strings.NewReader(`{"user_token":"`+token+`"}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("PLAID-CLIENT-ID", s.app.Emulator().ClientID())
	req.Header.Set("PLAID-SECRET", s.app.Emulator().Secret())
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var v map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&v))
	return v
}

func TestUnknownErrorTypesFallBackOnHTTPStatus(t *testing.T) {
	for httpStatus, want := range map[int]codes.Code{
		400: codes.FailedPrecondition, 401: codes.Unauthenticated, 403: codes.PermissionDenied, 404: codes.NotFound,
		429: codes.ResourceExhausted, 500: codes.Unavailable, 503: codes.Unavailable, 418: codes.Unknown,
	} {
		t.Run(fmt.Sprint(httpStatus), func(t *testing.T) {
			s := start(t, app.Config{Resilience: mappingOnly, Plaid: app.PlaidConfig{
				BaseURL:     errorUpstream(t, httpStatus, "BRAND_NEW_ERROR", "SOMETHING"),
				Credentials: plaid.Credentials{ClientID: "id", Secret: "secret"},
			}})
			st, info, retry, _, _ := grpcError(t, s, "user-any")
			assert.Equal(t, want, st.Code())
			assert.Equal(t, "SOMETHING", info.GetReason())
			assert.Equal(t, httpStatus == 429 || httpStatus >= 500, retry != nil)

			resp, body := s.post(t, "/credit/sessions/get", `{"user_token":"user-any"}`)
			assert.Equal(t, httpStatus, resp.StatusCode)
			assert.Contains(t, string(body), `"error_type":"BRAND_NEW_ERROR"`)
		})
	}
}

// plaidAnswer is what an error answer says, in the terms a Plaid client branches on.
type plaidAnswer struct {
	Status    int
	ErrorType string `json:"error_type"`
	ErrorCode string `json:"error_code"`
}

func answerOf(t *testing.T, resp *http.Response, body []byte) plaidAnswer {
	t.Helper()
	a := plaidAnswer{Status: resp.StatusCode}
	if resp.StatusCode != http.StatusOK {
		require.NoError(t, json.Unmarshal(body, &a), "a Plaid-shaped error body: %s", body)
		var full map[string]any
		require.NoError(t, json.Unmarshal(body, &full))
		for _, k := range []string{"error_type", "error_code", "error_message", "display_message", "request_id"} {
			assert.Contains(t, full, k, "Plaid's error body has %s", k)
		}
	}
	return a
}

func send(t *testing.T, method, url, contentType, body string, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, data
}

func TestMirrorHandlesRequestsAsPlaidDoes(t *testing.T) {
	s := start(t, app.Config{})
	creds := http.Header{"Plaid-Client-Id": {s.app.Emulator().ClientID()}, "Plaid-Secret": {s.app.Emulator().Secret()}}
	big := `{"user_token":"` + strings.Repeat("x", 1100<<10) + `"}` // over both limits
	tests := []struct {
		name, method, path, contentType, body string
		want                                  plaidAnswer
	}{
		{"json", "POST", "/credit/sessions/get", "application/json", `{"user_token":"user-sandbox-example"}`, plaidAnswer{Status: 200}},
		{"json with charset", "POST", "/credit/sessions/get", "application/json; charset=utf-8", `{"user_token":"user-sandbox-example"}`, plaidAnswer{Status: 200}},
		{"media type in capitals", "POST", "/credit/sessions/get", "Application/JSON", `{"user_token":"user-sandbox-example"}`, plaidAnswer{Status: 200}},
		{"doubled slash from a base URL ending in /", "POST", "//credit/sessions/get", "application/json", `{"user_token":"user-sandbox-example"}`, plaidAnswer{Status: 200}},
		{"form content type, form body", "POST", "/credit/sessions/get", "application/x-www-form-urlencoded", `user_token=user-sandbox-example`, plaidAnswer{400, "INVALID_REQUEST", "INVALID_BODY"}},
		{"text content type", "POST", "/credit/sessions/get", "text/plain", `{"user_token":"user-sandbox-example"}`, plaidAnswer{400, "INVALID_REQUEST", "INVALID_BODY"}},
		{"no content type", "POST", "/credit/sessions/get", "", `{"user_token":"user-sandbox-example"}`, plaidAnswer{400, "INVALID_REQUEST", "INVALID_BODY"}},
		{"not JSON", "POST", "/credit/sessions/get", "application/json", `user_token=abc`, plaidAnswer{400, "INVALID_REQUEST", "INVALID_BODY"}},
		{"truncated JSON", "POST", "/credit/sessions/get", "application/json", `{"user_token":"abc"`, plaidAnswer{400, "INVALID_REQUEST", "INVALID_BODY"}},
		{"empty body", "POST", "/credit/sessions/get", "application/json", ``, plaidAnswer{400, "INVALID_REQUEST", "INVALID_BODY"}},
		{"array body", "POST", "/credit/sessions/get", "application/json", `[]`, plaidAnswer{400, "INVALID_REQUEST", "INVALID_BODY"}},
		{"body over the limit", "POST", "/credit/sessions/get", "application/json", big, plaidAnswer{400, "INVALID_REQUEST", "INVALID_BODY"}},
		{"unknown fields", "POST", "/credit/sessions/get", "application/json", `{"user_token":"user-sandbox-example","user_id":"u","options":{}}`, plaidAnswer{400, "INVALID_REQUEST", "UNKNOWN_FIELDS"}},
		{"unknown before wrong type", "POST", "/credit/sessions/get", "application/json", `{"user_token":5,"extra":1}`, plaidAnswer{400, "INVALID_REQUEST", "UNKNOWN_FIELDS"}},
		{"wrong type", "POST", "/credit/sessions/get", "application/json", `{"user_token":5}`, plaidAnswer{400, "INVALID_REQUEST", "INVALID_FIELD"}},
		{"missing user_token", "POST", "/credit/sessions/get", "application/json", `{}`, plaidAnswer{400, "INVALID_REQUEST", "MISSING_FIELDS"}},
		{"unknown user", "POST", "/credit/sessions/get", "application/json", `{"user_token":"nobody"}`, plaidAnswer{400, "INVALID_INPUT", "INVALID_USER_TOKEN"}},
		{"unknown route", "POST", "/credit/sessions/list", "application/json", `{}`, plaidAnswer{400, "INVALID_REQUEST", "NOT_FOUND"}},
		{"wrong method", "GET", "/credit/sessions/get", "", ``, plaidAnswer{400, "INVALID_REQUEST", "NOT_FOUND"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := send(t, tt.method, s.rest+tt.path, tt.contentType, tt.body, nil)
			got := answerOf(t, resp, body)
			assert.Equal(t, tt.want, got, "body: %.300s", body)
			assert.Equal(t, "application/json; charset=utf-8", resp.Header.Get("Content-Type"))

			// Plaid (the emulator) answers the same request, with keys, the same way.
			resp, body = send(t, tt.method, s.app.EmulatorURL()+tt.path, tt.contentType, tt.body, creds)
			assert.Equal(t, tt.want, answerOf(t, resp, body), "the emulator disagrees: %.300s", body)
		})
	}
}

// TestCurlsDefaultContentTypeWorks is the one place the mirror is more lenient than
// Plaid: curl -d labels a JSON body application/x-www-form-urlencoded.
func TestCurlsDefaultContentTypeWorks(t *testing.T) {
	s := start(t, app.Config{})
	body := " \n{\"user_token\":\"user-sandbox-example\"}"
	resp, data := send(t, "POST", s.rest+"/credit/sessions/get", "application/x-www-form-urlencoded", body, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, "body: %s", data)
	assert.Equal(t, normalize(t, upstreamBody(t, s.app.Emulator(), s.app.EmulatorURL(), "user-sandbox-example")), normalize(t, data))
}

func TestCallerKeysAreIgnoredByDefault(t *testing.T) {
	p := &plaidCompatible{answer: `{"request_id":"r1","sessions":[]}`}
	s := start(t, app.Config{Plaid: app.PlaidConfig{
		BaseURL:     startUpstream(t, p),
		Credentials: plaid.Credentials{ClientID: "service-id", Secret: "service-secret"},
	}})
	callerKeys := http.Header{"Plaid-Client-Id": {"caller-id"}, "Plaid-Secret": {"caller-secret"}}
	resp, body := send(t, "POST", s.rest+"/credit/sessions/get", "application/json",
		`{"user_token":"u","client_id":"body-id","secret":"body-secret"}`, callerKeys)
	require.Equal(t, http.StatusOK, resp.StatusCode, "body: %s", body)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "plaid-client-id", "caller-id", "plaid-secret", "caller-secret")
	_, err := s.grpc.CreditSessionsGet(ctx, &creditv1.CreditSessionsGetRequest{UserToken: "u"})
	require.NoError(t, err)

	p.mu.Lock()
	defer p.mu.Unlock()
	assert.Equal(t, "service-id", p.headers.Get("PLAID-CLIENT-ID"))
	assert.Equal(t, "service-secret", p.headers.Get("PLAID-SECRET"))
	assert.JSONEq(t, `{"user_token":"u"}`, string(p.body), "caller keys are never forwarded")
	assert.NotContains(t, s.logs.String(), "caller-secret")
	assert.NotContains(t, s.logs.String(), "body-secret")
}

func TestCallerKeysArePassedThroughWhenConfigured(t *testing.T) {
	s := start(t, app.Config{Plaid: app.PlaidConfig{CredentialsMode: server.CallerKeys}})
	id, secret := s.app.Emulator().ClientID(), s.app.Emulator().Secret()
	ctx := context.Background()

	withKeys := metadata.AppendToOutgoingContext(ctx, "plaid-client-id", id, "plaid-secret", secret)
	resp, err := s.grpc.CreditSessionsGet(withKeys, &creditv1.CreditSessionsGetRequest{UserToken: "user-sandbox-example"})
	require.NoError(t, err)
	assert.Len(t, resp.GetSessions(), 2)

	inBody := &creditv1.CreditSessionsGetRequest{UserToken: "user-sandbox-example", ClientId: &id, Secret: &secret}
	_, err = s.grpc.CreditSessionsGet(ctx, inBody)
	require.NoError(t, err, "keys in the request message work too")

	st, info, _, _, _ := grpcError(t, s, "user-sandbox-example")
	assert.Equal(t, codes.InvalidArgument, st.Code(), "no keys at all is the caller's error")
	assert.Equal(t, "MISSING_FIELDS", info.GetReason())
	assert.Contains(t, st.Message(), "client_id, secret")

	wrong := metadata.AppendToOutgoingContext(ctx, "plaid-client-id", id, "plaid-secret", "not-the-secret")
	_, err = s.grpc.CreditSessionsGet(wrong, &creditv1.CreditSessionsGetRequest{UserToken: "user-sandbox-example"})
	assert.Equal(t, codes.Unauthenticated, status.Code(err), "a bad caller key is the caller's error")
	assert.NotContains(t, err.Error(), "not-the-secret")

	for name, tc := range map[string]struct {
		header http.Header
		body   string
		want   plaidAnswer
	}{
		"headers":    {http.Header{"Plaid-Client-Id": {id}, "Plaid-Secret": {secret}}, `{"user_token":"user-sandbox-example"}`, plaidAnswer{Status: 200}},
		"body":       {nil, `{"user_token":"user-sandbox-example","client_id":"` + id + `","secret":"` + secret + `"}`, plaidAnswer{Status: 200}},
		"wrong keys": {http.Header{"Plaid-Client-Id": {id}, "Plaid-Secret": {"nope"}}, `{"user_token":"user-sandbox-example"}`, plaidAnswer{400, "INVALID_INPUT", "INVALID_API_KEYS"}},
		"no keys":    {nil, `{"user_token":"user-sandbox-example"}`, plaidAnswer{400, "INVALID_REQUEST", "MISSING_FIELDS"}},
		// Caller keys become header fields upstream: a line break in one must not add any.
		"a line break in the secret": {nil, `{"user_token":"user-sandbox-example","client_id":"` + id + `","secret":"` + secret + `\r\nX-Injected: 1"}`,
			plaidAnswer{400, "INVALID_INPUT", "INVALID_API_KEYS"}},
	} {
		t.Run(name, func(t *testing.T) {
			resp, body := send(t, "POST", s.rest+"/credit/sessions/get", "application/json", tc.body, tc.header)
			assert.Equal(t, tc.want, answerOf(t, resp, body), "body: %s", body)
		})
	}
	assert.NotContains(t, s.logs.String(), secret, "caller secrets never reach the logs")

	before := s.app.Emulator().Calls()
	broken := "not-a-secret\nX-Injected: 1"
	inBody = &creditv1.CreditSessionsGetRequest{UserToken: "user-sandbox-example", ClientId: &id, Secret: &broken}
	_, err = s.grpc.CreditSessionsGet(ctx, inBody)
	assert.Equal(t, codes.Unauthenticated, status.Code(err), "a key no real key looks like: %v", err)
	assert.NotContains(t, err.Error(), "not-a-secret")
	assert.Equal(t, before, s.app.Emulator().Calls(), "and Plaid never hears of it")
}

func TestMisbehavingUpstreamGetsAClearError(t *testing.T) {
	dead := listen(t)
	deadURL := "http://" + dead.Addr().String()
	require.NoError(t, dead.Close())
	tests := []struct {
		name     string
		upstream func(t *testing.T) string
		code     codes.Code
		http     int
	}{
		{"HTML error page", func(t *testing.T) string {
			return startUpstream(t, &plaidCompatible{status: 502, contentType: "text/html", answer: "<html><body>Bad Gateway</body></html>"})
		}, codes.Unavailable, 502},
		{"success that is not a response", func(t *testing.T) string {
			return startUpstream(t, &plaidCompatible{answer: `{"sessions":"nope"}`})
		}, codes.Unavailable, 502},
		{"empty body", func(t *testing.T) string { return startUpstream(t, &plaidCompatible{answer: " "}) }, codes.Unavailable, 502},
		{"redirect", func(t *testing.T) string {
			return startUpstream(t, &plaidCompatible{status: 307, location: "http://127.0.0.1:1/elsewhere"})
		}, codes.Internal, 502},
		{"unreachable", func(t *testing.T) string { return deadURL }, codes.Unavailable, 503},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t, app.Config{Resilience: mappingOnly, Plaid: app.PlaidConfig{
				BaseURL:     tt.upstream(t),
				Credentials: plaid.Credentials{ClientID: "id", Secret: "top-secret"},
			}})
			st, info, retry, _, _ := grpcError(t, s, "user-x")
			assert.Equal(t, tt.code, st.Code(), st.Message())
			assert.Equal(t, "creditsessions", info.GetDomain())
			assert.Equal(t, tt.code == codes.Unavailable, retry != nil)
			assert.NotContains(t, st.Message(), "top-secret")

			resp, body := s.post(t, "/credit/sessions/get", `{"user_token":"user-x"}`)
			assert.Equal(t, plaidAnswer{tt.http, "API_ERROR", "INTERNAL_SERVER_ERROR"}, answerOf(t, resp, body))
			assert.Equal(t, tt.code == codes.Unavailable, resp.Header.Get("Retry-After") != "")
		})
	}
}

func TestGRPCErrorDetailsForOperators(t *testing.T) {
	s := start(t, app.Config{})
	st, info, retry, _, requestID := grpcError(t, s, emulator.ErrorToken("RATE_LIMIT_EXCEEDED", "RATE_LIMIT"))
	assert.Equal(t, codes.ResourceExhausted, st.Code())
	assert.Equal(t, "RATE_LIMIT", info.GetReason())
	assert.Equal(t, "RATE_LIMIT_EXCEEDED", info.GetMetadata()["errorType"])
	assert.Equal(t, 2*time.Second, retry.GetRetryDelay().AsDuration())
	assert.NotEmpty(t, requestID)

	var header metadata.MD
	resp, err := s.grpc.CreditSessionsGet(context.Background(), &creditv1.CreditSessionsGetRequest{UserToken: "user-sandbox-example"}, grpc.Header(&header))
	require.NoError(t, err)
	assert.Equal(t, []string{resp.GetRequestId()}, header.Get("plaid-request-id"), "the request id is metadata on success too")

	restResp, body := s.post(t, "/credit/sessions/get", `{"user_token":"user-sandbox-example"}`)
	var got map[string]any
	require.NoError(t, json.Unmarshal(body, &got))
	assert.Equal(t, got["request_id"], restResp.Header.Get("Plaid-Request-Id"), "and a header on REST")
}
