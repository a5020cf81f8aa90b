package emulator

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRequestChecks(t *testing.T) {
	s := startServer(t, Config{})
	c := newClient(t)

	notFound := ErrorSpec{Type: "INVALID_REQUEST", Code: "NOT_FOUND", HTTPStatus: 400}
	invalidBody := ErrorSpec{Type: "INVALID_REQUEST", Code: "INVALID_BODY", HTTPStatus: 400}
	invalidField := ErrorSpec{Type: "INVALID_REQUEST", Code: "INVALID_FIELD", HTTPStatus: 400}
	missing := func(fields string) ErrorSpec {
		return ErrorSpec{Type: "INVALID_REQUEST", Code: "MISSING_FIELDS", HTTPStatus: 400,
			Message: "the following required fields are missing: " + fields}
	}
	unknown := func(fields string) ErrorSpec {
		return ErrorSpec{Type: "INVALID_REQUEST", Code: "UNKNOWN_FIELDS", HTTPStatus: 400,
			Message: "the following fields are not recognized by this endpoint: " + fields}
	}
	badKeys := ErrorSpec{Type: "INVALID_INPUT", Code: "INVALID_API_KEYS", HTTPStatus: 400,
		Message: "invalid client_id or secret provided"}
	badToken := ErrorSpec{Type: "INVALID_INPUT", Code: "INVALID_USER_TOKEN", HTTPStatus: 400,
		Message: "could not find matching user token"}

	const token = "user-sandbox-example"
	wrongHeaders := map[string]string{"PLAID-CLIENT-ID": "someone-else", "PLAID-SECRET": "not-the-secret"}
	bodyCreds := func(clientID, secret, userToken string) string {
		return fmt.Sprintf(`{"client_id":%q,"secret":%q,"user_token":%q}`, clientID, secret, userToken)
	}

	tests := []struct {
		name string
		req  request
		want *ErrorSpec // nil means success
	}{
		// Routing.
		{name: "unknown path", req: request{path: "/credit/sessions/list", headers: defaultHeaders(), body: tokenBody(token)}, want: &notFound},
		{name: "root path", req: request{path: "/", headers: defaultHeaders(), body: tokenBody(token)}, want: &notFound},
		{name: "path with trailing segment", req: request{path: "/credit/sessions/get/x", headers: defaultHeaders(), body: tokenBody(token)}, want: &notFound},
		{name: "GET", req: request{method: http.MethodGet, headers: defaultHeaders()}, want: &notFound},
		{name: "PUT", req: request{method: http.MethodPut, headers: defaultHeaders(), body: tokenBody(token)}, want: &notFound},
		{name: "DELETE", req: request{method: http.MethodDelete, headers: defaultHeaders()}, want: &notFound},
		{name: "doubled slash from a base URL ending in a slash", req: request{path: "//credit/sessions/get", headers: defaultHeaders(), body: tokenBody(token)}},
		{name: "query string is ignored", req: request{path: "/credit/sessions/get?x=1", headers: defaultHeaders(), body: tokenBody(token)}},

		// Content type and body.
		{name: "no content type", req: request{contentType: "-", headers: defaultHeaders(), body: tokenBody(token)}, want: &invalidBody},
		{name: "text/plain", req: request{contentType: "text/plain", headers: defaultHeaders(), body: tokenBody(token)}, want: &invalidBody},
		{name: "form", req: request{contentType: "application/x-www-form-urlencoded", headers: defaultHeaders(), body: "user_token=" + token}, want: &invalidBody},
		{name: "json with charset", req: request{contentType: "application/json; charset=utf-8", headers: defaultHeaders(), body: tokenBody(token)}},
		{name: "json in upper case", req: request{contentType: "Application/JSON; Charset=UTF-8", headers: defaultHeaders(), body: tokenBody(token)}},
		{name: "empty body", req: request{headers: defaultHeaders()}, want: &invalidBody},
		{name: "malformed JSON", req: request{headers: defaultHeaders(), body: `{"user_token":`}, want: &invalidBody},
		{name: "JSON array", req: request{headers: defaultHeaders(), body: `[]`}, want: &invalidBody},
		{name: "JSON null", req: request{headers: defaultHeaders(), body: `null`}, want: &invalidBody},
		{name: "JSON string", req: request{headers: defaultHeaders(), body: `"user-sandbox-example"`}, want: &invalidBody},
		{name: "two JSON objects", req: request{headers: defaultHeaders(), body: tokenBody(token) + " {}"}, want: &invalidBody},
		{name: "body over 1 MiB", req: request{headers: defaultHeaders(), body: `{"user_token":"` + strings.Repeat("x", 1<<20) + `"}`}, want: &invalidBody},
		{name: "body with surrounding whitespace", req: request{headers: defaultHeaders(), body: "\n " + tokenBody(token) + "\n"}},

		// Unknown fields come before every other field check.
		{name: "unknown fields, sorted", req: request{headers: defaultHeaders(), body: `{"user_token":"user-sandbox-example","zeta":1,"alpha":{},"user_id":"u"}`}, want: ptr(unknown("alpha, user_id, zeta"))},
		{name: "unknown field beats missing fields", req: request{body: `{"options":null}`}, want: ptr(unknown("options"))},
		{name: "unknown field beats wrong type", req: request{headers: defaultHeaders(), body: `{"user_token":5,"count":1}`}, want: ptr(unknown("count"))},

		// Field types.
		{name: "user_token a number", req: request{headers: defaultHeaders(), body: `{"user_token":42}`}, want: &invalidField},
		{name: "client_id an object", req: request{headers: defaultHeaders(), body: `{"client_id":{},"user_token":"user-sandbox-example"}`}, want: &invalidField},
		{name: "secret a bool", req: request{headers: defaultHeaders(), body: `{"secret":true,"user_token":"user-sandbox-example"}`}, want: &invalidField},

		// Missing fields, all listed.
		{name: "everything missing", req: request{body: `{}`}, want: ptr(missing("client_id, secret, user_token"))},
		{name: "client_id and user_token missing", req: request{headers: map[string]string{"PLAID-SECRET": DefaultSecret}, body: `{}`}, want: ptr(missing("client_id, user_token"))},
		{name: "user_token missing", req: request{headers: defaultHeaders(), body: `{}`}, want: ptr(missing("user_token"))},
		{name: "user_token empty", req: request{headers: defaultHeaders(), body: `{"user_token":""}`}, want: ptr(missing("user_token"))},
		{name: "user_token null", req: request{headers: defaultHeaders(), body: `{"user_token":null}`}, want: ptr(missing("user_token"))},
		{name: "secret missing", req: request{headers: map[string]string{"PLAID-CLIENT-ID": DefaultClientID}, body: tokenBody(token)}, want: ptr(missing("secret"))},
		{name: "empty header counts as missing", req: request{headers: map[string]string{"PLAID-CLIENT-ID": "", "PLAID-SECRET": DefaultSecret}, body: tokenBody(token)}, want: ptr(missing("client_id"))},
		{name: "missing beats wrong credentials", req: request{headers: wrongHeaders, body: `{}`}, want: ptr(missing("user_token"))},

		// Credentials: headers, body, body over headers.
		{name: "credentials in headers", req: request{headers: defaultHeaders(), body: tokenBody(token)}},
		{name: "credentials in body", req: request{body: bodyCreds(DefaultClientID, DefaultSecret, token)}},
		{name: "client_id in header, secret in body", req: request{headers: map[string]string{"PLAID-CLIENT-ID": DefaultClientID}, body: fmt.Sprintf(`{"secret":%q,"user_token":%q}`, DefaultSecret, token)}},
		{name: "header names are case-insensitive", req: request{headers: map[string]string{"plaid-client-id": DefaultClientID, "plaid-secret": DefaultSecret}, body: tokenBody(token)}},
		{name: "body wins over wrong headers", req: request{headers: wrongHeaders, body: bodyCreds(DefaultClientID, DefaultSecret, token)}},
		{name: "wrong body loses over right headers", req: request{headers: defaultHeaders(), body: bodyCreds("someone-else", "not-the-secret", token)}, want: &badKeys},
		{name: "wrong secret", req: request{headers: map[string]string{"PLAID-CLIENT-ID": DefaultClientID, "PLAID-SECRET": "not-the-secret"}, body: tokenBody(token)}, want: &badKeys},
		{name: "wrong client_id", req: request{headers: map[string]string{"PLAID-CLIENT-ID": "someone-else", "PLAID-SECRET": DefaultSecret}, body: tokenBody(token)}, want: &badKeys},
		{name: "wrong credentials beat an unknown token", req: request{headers: wrongHeaders, body: tokenBody("user-sandbox-nobody")}, want: &badKeys},
		{name: "wrong credentials beat an error token", req: request{headers: wrongHeaders, body: tokenBody(ErrorToken("API_ERROR", "INTERNAL_SERVER_ERROR"))}, want: &badKeys},

		// Tokens.
		{name: "unknown token", req: request{headers: defaultHeaders(), body: tokenBody("user-sandbox-nobody")}, want: &badToken},
		{name: "token is case-sensitive", req: request{headers: defaultHeaders(), body: tokenBody("USER-SANDBOX-EXAMPLE")}, want: &badToken},
		{name: "error token not in the table", req: request{headers: defaultHeaders(), body: tokenBody(ErrorToken("ITEM_ERROR", "ITEM_LOGIN_REQUIRED"))}, want: &badToken},
		{name: "sessions over the maximum", req: request{headers: defaultHeaders(), body: tokenBody("user-sandbox-sessions-20001")}, want: &badToken},
		{name: "sessions negative", req: request{headers: defaultHeaders(), body: tokenBody("user-sandbox-sessions--1")}, want: &badToken},
		{name: "sessions with leading zero", req: request{headers: defaultHeaders(), body: tokenBody("user-sandbox-sessions-01")}, want: &badToken},
		{name: "sessions with plus sign", req: request{headers: defaultHeaders(), body: tokenBody("user-sandbox-sessions-+1")}, want: &badToken},
		{name: "sessions not a number", req: request{headers: defaultHeaders(), body: tokenBody("user-sandbox-sessions-ten")}, want: &badToken},
		{name: "sessions without a number", req: request{headers: defaultHeaders(), body: tokenBody("user-sandbox-sessions-")}, want: &badToken},
		{name: "another user of a fixture", req: request{headers: defaultHeaders(), body: tokenBody("user-sandbox-example#42")}},
		{name: "another user of an error token", req: request{headers: defaultHeaders(), body: tokenBody(ErrorToken("API_ERROR", "INTERNAL_SERVER_ERROR") + "#7")}, want: ptr(mustErrorFor(t, "API_ERROR", "INTERNAL_SERVER_ERROR"))},
		{name: "another user of an unknown token", req: request{headers: defaultHeaders(), body: tokenBody("user-sandbox-nobody#1")}, want: &badToken},
		{name: "the id alone", req: request{headers: defaultHeaders(), body: tokenBody("#1")}, want: &badToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := send(t, c, s.URL, tt.req)
			if tt.want != nil {
				assertPlaidError(t, resp, *tt.want)
			} else {
				assert.Equal(t, http.StatusOK, resp.status, "body: %s", resp.raw)
				assert.Equal(t, contentType, resp.header.Get("Content-Type"))
				body := resp.object(t)
				assert.Regexp(t, requestIDPattern, body["request_id"])
				assert.Contains(t, body, "sessions")
			}
			// Neither the secret nor a user token is ever echoed.
			assert.NotContains(t, string(resp.raw), DefaultSecret)
			assert.NotContains(t, string(resp.raw), "not-the-secret")
			assert.NotContains(t, string(resp.raw), "user-sandbox-nobody")
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestCustomCredentials(t *testing.T) {
	s := startServer(t, Config{ClientID: "custom-id", Secret: "custom-secret"})
	c := newClient(t)
	assert.Equal(t, "custom-id", s.Emulator.ClientID())
	assert.Equal(t, "custom-secret", s.Emulator.Secret())

	ok := send(t, c, s.URL, request{
		headers: map[string]string{"PLAID-CLIENT-ID": "custom-id", "PLAID-SECRET": "custom-secret"},
		body:    tokenBody("user-sandbox-empty"),
	})
	assert.Equal(t, http.StatusOK, ok.status, "body: %s", ok.raw)

	defaults := send(t, c, s.URL, request{headers: defaultHeaders(), body: tokenBody("user-sandbox-empty")})
	assertPlaidError(t, defaults, ErrorSpec{Type: "INVALID_INPUT", Code: "INVALID_API_KEYS", HTTPStatus: 400})
	assert.NotContains(t, string(defaults.raw), "custom-secret")
}

func TestDefaultCredentials(t *testing.T) {
	e := New(Config{})
	assert.Equal(t, DefaultClientID, e.ClientID())
	assert.Equal(t, DefaultSecret, e.Secret())
}

func TestRequestIDsAreFresh(t *testing.T) {
	s := startServer(t, Config{})
	c := newClient(t)
	seen := map[string]bool{}
	for i := range 50 {
		token := "user-sandbox-example"
		if i%2 == 1 {
			token = "user-sandbox-nobody" // errors get fresh ids too
		}
		resp := send(t, c, s.URL, request{headers: defaultHeaders(), body: tokenBody(token)})
		id, _ := resp.object(t)["request_id"].(string)
		require.Regexp(t, requestIDPattern, id)
		assert.False(t, seen[id], "request_id %s repeated", id)
		seen[id] = true
	}
}

func TestCalls(t *testing.T) {
	s := startServer(t, Config{})
	c := newClient(t)
	require.Zero(t, s.Emulator.Calls())

	counted := []request{
		{headers: defaultHeaders(), body: tokenBody("user-sandbox-example")},                             // success
		{headers: defaultHeaders(), body: tokenBody("user-sandbox-nobody")},                              // unknown token
		{body: tokenBody("user-sandbox-example")},                                                        // missing credentials
		{contentType: "text/plain", body: "hello"},                                                       // bad content type
		{method: http.MethodGet},                                                                         // wrong method, same path
		{path: "//credit/sessions/get", headers: defaultHeaders(), body: tokenBody("user-sandbox-full")}, // doubled slash
		{headers: defaultHeaders(), body: tokenBody(ErrorToken("API_ERROR", "INTERNAL_SERVER_ERROR"))},   // provoked error
	}
	for i, req := range counted {
		send(t, c, s.URL, req)
		assert.Equal(t, int64(i+1), s.Emulator.Calls())
	}
	send(t, c, s.URL, request{path: "/item/get", headers: defaultHeaders(), body: tokenBody("user-sandbox-example")})
	assert.Equal(t, int64(len(counted)), s.Emulator.Calls(), "another path is not counted")
}

func TestConcurrentRequests(t *testing.T) {
	var logs syncBuffer
	s := startServer(t, Config{Logger: newTextLogger(&logs)})
	c := newClient(t)

	cases := []struct {
		token  string
		status int
	}{
		{"user-sandbox-example", http.StatusOK},
		{"user-sandbox-full", http.StatusOK},
		{"user-sandbox-sessions-500", http.StatusOK},
		{"user-sandbox-nobody", http.StatusBadRequest},
		{ErrorToken("RATE_LIMIT_EXCEEDED", "RATE_LIMIT"), http.StatusTooManyRequests},
		{ErrorToken("API_ERROR", "PLANNED_MAINTENANCE"), http.StatusServiceUnavailable},
	}
	const workers, perWorker = 16, 24
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				tc := cases[(w+i)%len(cases)]
				hr, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.URL+"/credit/sessions/get",
					strings.NewReader(tokenBody(tc.token)))
				if !assert.NoError(t, err) {
					return
				}
				hr.Header.Set("Content-Type", "application/json")
				hr.Header.Set("PLAID-CLIENT-ID", DefaultClientID)
				hr.Header.Set("PLAID-SECRET", DefaultSecret)
				resp, err := c.Do(hr)
				if !assert.NoError(t, err) {
					return
				}
				var buf bytes.Buffer
				_, err = buf.ReadFrom(resp.Body)
				resp.Body.Close()
				assert.NoError(t, err)
				assert.Equal(t, tc.status, resp.StatusCode, "token %s", tc.token)
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int64(workers*perWorker), s.Emulator.Calls())
	assert.Equal(t, workers*perWorker, strings.Count(logs.String(), "plaid emulator request"))
}
