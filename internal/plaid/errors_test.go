package plaid_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/creditsessions/creditsessions/internal/emulator"
	"github.com/creditsessions/creditsessions/internal/plaid"
)

// requirePlaidError checks that err is a *plaid.Error, and no protocol error, and
// returns it.
func requirePlaidError(t *testing.T, err error) *plaid.Error {
	t.Helper()
	require.Error(t, err)
	perr, ok := errors.AsType[*plaid.Error](err)
	require.Truef(t, ok, "want a *plaid.Error, got %T: %v", err, err)
	_, isProtocol := errors.AsType[*plaid.ProtocolError](err)
	assert.False(t, isProtocol, "a Plaid error must not also be a protocol error")
	assertNoSecrets(t, err)
	return perr
}

// Every error the emulator knows reaches the caller as a *plaid.Error holding exactly
// what Plaid sent.
func TestCreditSessionsGetPlaidErrors(t *testing.T) {
	baseURL, sent := recordingEmulator(t, nil)
	c := newClient(t, baseURL)

	type kept struct {
		err  *plaid.Error
		sent []byte
	}
	var all []kept
	for _, spec := range emulator.Errors() {
		t.Run(spec.Type+"/"+spec.Code, func(t *testing.T) {
			resp, err := c.CreditSessionsGet(t.Context(), plaid.Request{UserToken: emulator.ErrorToken(spec.Type, spec.Code)})
			assert.Nil(t, resp)
			body := receive(t, sent)
			perr := requirePlaidError(t, err)

			var wire struct {
				RequestID string `json:"request_id"`
			}
			require.NoError(t, json.Unmarshal(body, &wire))
			require.NotEmpty(t, wire.RequestID)

			assert.Equal(t, spec.HTTPStatus, perr.HTTPStatus)
			assert.Equal(t, spec.Type, perr.ErrorType)
			assert.Equal(t, spec.Code, perr.ErrorCode)
			assert.Equal(t, spec.Message, perr.ErrorMessage)
			assert.Equal(t, spec.DisplayMessage, perr.DisplayMessage)
			assert.Equal(t, wire.RequestID, perr.RequestID)
			assert.NotEmpty(t, perr.DocumentationURL)
			assert.Zero(t, perr.RetryAfter)
			assert.Equal(t, string(body), string(perr.Body))
			for _, part := range []string{spec.Type, spec.Code, wire.RequestID, strconv.Itoa(spec.HTTPStatus)} {
				assert.Contains(t, err.Error(), part)
			}
			all = append(all, kept{perr, body})
		})
	}
	require.Len(t, all, len(emulator.Errors()))
	// Each Body is the error's own copy: later calls, which reuse the client's buffers,
	// leave it alone.
	for _, k := range all {
		assert.Equal(t, string(k.sent), string(k.err.Body), "%s/%s", k.err.ErrorType, k.err.ErrorCode)
	}
}

// The emulator's own request checks reach the caller as Plaid errors too.
func TestCreditSessionsGetPlaidErrorsFromChecks(t *testing.T) {
	tests := []struct {
		name     string
		req      plaid.Request
		wantCode string
	}{
		{name: "wrong secret", req: plaid.Request{UserToken: "user-sandbox-example",
			Credentials: plaid.Credentials{ClientID: testClientID, Secret: "not-" + testSecret}}, wantCode: "INVALID_API_KEYS"},
		{name: "no user token", req: plaid.Request{}, wantCode: "MISSING_FIELDS"},
		{name: "unknown user token", req: plaid.Request{UserToken: testUserToken}, wantCode: "INVALID_USER_TOKEN"},
	}
	baseURL, sent := recordingEmulator(t, nil)
	c := newClient(t, baseURL)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.CreditSessionsGet(t.Context(), tt.req)
			body := receive(t, sent)
			perr := requirePlaidError(t, err)
			assert.Equal(t, tt.wantCode, perr.ErrorCode)
			assert.Equal(t, http.StatusBadRequest, perr.HTTPStatus)
			assert.Equal(t, string(body), string(perr.Body))
		})
	}
}

func TestCreditSessionsGetRetryAfter(t *testing.T) {
	tests := []struct {
		name     string
		header   func() string
		min, max time.Duration
	}{
		{name: "absent", header: func() string { return "" }},
		{name: "seconds", header: func() string { return "120" }, min: 2 * time.Minute, max: 2 * time.Minute},
		{name: "zero seconds", header: func() string { return "0" }},
		{name: "negative seconds", header: func() string { return "-5" }},
		{name: "not a delay", header: func() string { return "soon" }},
		{name: "HTTP date an hour ahead",
			header: func() string { return time.Now().Add(time.Hour).UTC().Format(http.TimeFormat) },
			// The date has whole seconds, and the clock moves on before the client reads it.
			min: time.Hour - time.Minute, max: time.Hour},
		// Absurd delays are the maximum, never an overflow that wraps to zero or below.
		{name: "absurd seconds", header: func() string { return "9999999999999" },
			min: plaid.MaxRetryAfter, max: plaid.MaxRetryAfter},
		{name: "seconds past int64", header: func() string { return "99999999999999999999999" },
			min: plaid.MaxRetryAfter, max: plaid.MaxRetryAfter},
		{name: "HTTP date decades ahead",
			header: func() string { return time.Now().AddDate(50, 0, 0).UTC().Format(http.TimeFormat) },
			min:    plaid.MaxRetryAfter, max: plaid.MaxRetryAfter},
		{name: "HTTP date in the past",
			header: func() string { return time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			extra := http.Header{}
			if v := tt.header(); v != "" {
				extra.Set("Retry-After", v)
			}
			baseURL, sent := recordingEmulator(t, extra)
			c := newClient(t, baseURL)
			_, err := c.CreditSessionsGet(t.Context(), plaid.Request{UserToken: emulator.ErrorToken("RATE_LIMIT_EXCEEDED", "RATE_LIMIT")})
			receive(t, sent)
			perr := requirePlaidError(t, err)
			assert.Equal(t, http.StatusTooManyRequests, perr.HTTPStatus)
			assert.GreaterOrEqual(t, perr.RetryAfter, tt.min)
			assert.LessOrEqual(t, perr.RetryAfter, tt.max)
		})
	}
}

// An upstream that does not speak Plaid's protocol gives a *plaid.ProtocolError that
// says what was wrong, never a response and never a Plaid error.
func TestCreditSessionsGetProtocolErrors(t *testing.T) {
	const limit = 1024
	tooBig := `{"request_id":"x","sessions":[],"pad":"` + strings.Repeat("a", 2*limit) + `"}`
	tests := []struct {
		name       string
		handler    func(t *testing.T) http.Handler
		wantStatus int
		wantReason string // a part of Reason
		wantCause  error  // when set, errors.Is(err, wantCause)
	}{
		{
			name:       "HTML 502 from a load balancer",
			handler:    fixed(reply(http.StatusBadGateway, "text/html; charset=utf-8", "<html><body><h1>502 Bad Gateway</h1></body></html>")),
			wantStatus: http.StatusBadGateway, wantReason: `"text/html"`,
		},
		{
			name:       "plain text 503",
			handler:    fixed(reply(http.StatusServiceUnavailable, "text/plain", "upstream connect error")),
			wantStatus: http.StatusServiceUnavailable, wantReason: `"text/plain"`,
		},
		{
			name:       "JSON error without error_type or error_code",
			handler:    fixed(reply(http.StatusInternalServerError, "application/json", `{"request_id":"r1","error_message":"boom"}`)),
			wantStatus: http.StatusInternalServerError, wantReason: "no error_type or error_code",
		},
		{
			name:       "JSON error with error_type only",
			handler:    fixed(reply(http.StatusBadRequest, "application/json", `{"request_id":"r1","error_type":"INVALID_INPUT"}`)),
			wantStatus: http.StatusBadRequest, wantReason: "no error_type or error_code",
		},
		{
			name:       "JSON error body null",
			handler:    fixed(reply(http.StatusBadRequest, "application/json", `null`)),
			wantStatus: http.StatusBadRequest, wantReason: "no error_type or error_code",
		},
		{
			name:       "error body that is not JSON",
			handler:    fixed(reply(http.StatusInternalServerError, "application/json", `Internal Server Error`)),
			wantStatus: http.StatusInternalServerError, wantReason: "not Plaid's JSON",
		},
		{
			name:       "empty error body without a Content-Type",
			handler:    fixed(reply(http.StatusServiceUnavailable, "", "")),
			wantStatus: http.StatusServiceUnavailable, wantReason: "not Plaid's JSON",
		},
		{
			name: "200 cut short of its Content-Length",
			handler: func(t *testing.T) http.Handler {
				return rawReply(t, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"+
					`{"request_id":"x","sessions":[{"link_session_id":"a"}`)
			},
			wantStatus: http.StatusOK, wantReason: "cut short", wantCause: io.ErrUnexpectedEOF,
		},
		{
			name: "200 cut short in the middle of a chunk",
			handler: func(t *testing.T) http.Handler {
				return rawReply(t, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"+
					"40\r\n"+`{"request_id":"x","sessions":[`)
			},
			wantStatus: http.StatusOK, wantReason: "cut short", wantCause: io.ErrUnexpectedEOF,
		},
		{
			name: "200 cut short without a length",
			// Without a length, the close ends the body: the JSON itself must show the cut.
			handler: func(t *testing.T) http.Handler {
				return rawReply(t, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"+
					`{"request_id":"x","sessions":[{"link_session_id":"a"}`)
			},
			wantStatus: http.StatusOK, wantReason: "not a credit sessions response",
		},
		{
			name:       "200 with an array",
			handler:    fixed(reply(http.StatusOK, "application/json", `[]`)),
			wantStatus: http.StatusOK, wantReason: "not a credit sessions response",
		},
		{
			name:       "200 with an empty object",
			handler:    fixed(reply(http.StatusOK, "application/json", `{}`)),
			wantStatus: http.StatusOK, wantReason: "no request_id",
		},
		{
			name:       "200 with sessions but no request_id",
			handler:    fixed(reply(http.StatusOK, "application/json", `{"sessions":[]}`)),
			wantStatus: http.StatusOK, wantReason: "no request_id",
		},
		{
			name:       "200 with an empty request_id",
			handler:    fixed(reply(http.StatusOK, "application/json", `{"request_id":"","sessions":[]}`)),
			wantStatus: http.StatusOK, wantReason: "no request_id",
		},
		{
			name:       "200 with null",
			handler:    fixed(reply(http.StatusOK, "application/json", `null`)),
			wantStatus: http.StatusOK, wantReason: "not a credit sessions response",
		},
		{
			name:       "200 with an empty body",
			handler:    fixed(reply(http.StatusOK, "application/json", ``)),
			wantStatus: http.StatusOK, wantReason: "not a credit sessions response",
		},
		{
			name:       "204 No Content",
			handler:    fixed(reply(http.StatusNoContent, "", ``)),
			wantStatus: http.StatusNoContent, wantReason: "not a credit sessions response",
		},
		{
			name:       "200 with sessions of the wrong type",
			handler:    fixed(reply(http.StatusOK, "application/json", `{"request_id":"x","sessions":"nope"}`)),
			wantStatus: http.StatusOK, wantReason: "not a credit sessions response",
		},
		{
			name:       "200 with trailing garbage",
			handler:    fixed(reply(http.StatusOK, "application/json", `{"request_id":"x","sessions":[]}{}`)),
			wantStatus: http.StatusOK, wantReason: "not a credit sessions response",
		},
		{
			name:       "200 with HTML",
			handler:    fixed(reply(http.StatusOK, "text/html", `<html>maintenance</html>`)),
			wantStatus: http.StatusOK, wantReason: "not a credit sessions response",
		},
		{
			name: "200 over the size limit, with a Content-Length",
			handler: fixed(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", strconv.Itoa(len(tooBig)))
				reply(http.StatusOK, "application/json", tooBig)(w, r)
			}),
			wantStatus: http.StatusOK, wantReason: "limit", wantCause: plaid.ErrTooLarge,
		},
		{
			name:       "200 over the size limit, chunked",
			handler:    fixed(chunked(http.StatusOK, tooBig)),
			wantStatus: http.StatusOK, wantReason: "limit", wantCause: plaid.ErrTooLarge,
		},
		{
			name:       "error over the size limit, chunked",
			handler:    fixed(chunked(http.StatusInternalServerError, tooBig)),
			wantStatus: http.StatusInternalServerError, wantReason: "limit", wantCause: plaid.ErrTooLarge,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, serve(t, tt.handler(t)), func(cfg *plaid.Config) { cfg.MaxResponseBytes = limit })
			resp, err := call(t, c)
			assert.Nil(t, resp)
			perr := requireProtocolError(t, err)
			assert.Equal(t, tt.wantStatus, perr.HTTPStatus)
			assert.Contains(t, perr.Reason, tt.wantReason)
			assert.Contains(t, err.Error(), perr.Reason)
			if tt.wantCause != nil {
				assert.ErrorIs(t, err, tt.wantCause)
			} else {
				assert.NotErrorIs(t, err, plaid.ErrTooLarge)
			}
		})
	}
}

// fixed adapts a handler that needs no *testing.T to the protocol error table.
func fixed(h http.HandlerFunc) func(*testing.T) http.Handler {
	return func(*testing.T) http.Handler { return h }
}

// chunked answers with status and a JSON body sent without a Content-Length.
func chunked(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		// Flushing the header before any of the body rules out a Content-Length.
		_ = http.NewResponseController(w).Flush()
		_, _ = io.WriteString(w, body)
	}
}

// The size limit holds to the byte, whether or not the upstream declares the length.
func TestCreditSessionsGetSizeLimitBoundary(t *testing.T) {
	body := `{"request_id":"x","sessions":[],"pad":"` + strings.Repeat("a", 3000) + `"}`
	n := int64(len(body))
	for _, withLength := range []bool{true, false} {
		handler := chunked(http.StatusOK, body)
		if withLength {
			handler = func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", strconv.Itoa(len(body)))
				reply(http.StatusOK, "application/json", body)(w, r)
			}
		}
		baseURL := serve(t, handler)
		for _, tt := range []struct {
			limit   int64
			tooLong bool
		}{{limit: n}, {limit: n + 1}, {limit: n - 1, tooLong: true}} {
			t.Run(fmt.Sprintf("Content-Length %v, limit %d of %d", withLength, tt.limit, n), func(t *testing.T) {
				c := newClient(t, baseURL, func(cfg *plaid.Config) { cfg.MaxResponseBytes = tt.limit })
				resp, err := call(t, c)
				if tt.tooLong {
					requireProtocolError(t, err)
					assert.ErrorIs(t, err, plaid.ErrTooLarge)
					assert.Nil(t, resp)
					return
				}
				require.NoError(t, err)
				assert.Equal(t, "x", resp.GetRequestId())
			})
		}
	}
}

// A redirect is reported, not followed: following it would hand the credentials to
// whatever it points at.
func TestCreditSessionsGetDoesNotFollowRedirects(t *testing.T) {
	var elsewhereCalls atomic.Int64
	elsewhere := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhereCalls.Add(1)
		reply(http.StatusOK, "application/json", `{"request_id":"stolen","sessions":[]}`)(w, r)
	}))
	for _, status := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		for _, own := range []bool{false, true} {
			t.Run(fmt.Sprintf("%d, own http.Client %v", status, own), func(t *testing.T) {
				var redirectorCalls atomic.Int64
				redirector := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					redirectorCalls.Add(1)
					http.Redirect(w, r, elsewhere+"/credit/sessions/get", status)
				}))
				c := newClient(t, redirector, func(cfg *plaid.Config) {
					if own {
						// A caller's client that would follow redirects: the Client must override it.
						cfg.HTTPClient = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return nil }}
					}
				})
				resp, err := call(t, c)
				assert.Nil(t, resp)
				perr := requireProtocolError(t, err)
				assert.Equal(t, status, perr.HTTPStatus)
				assert.Contains(t, perr.Reason, "redirect")
				assert.EqualValues(t, 1, redirectorCalls.Load())
				assert.Zero(t, elsewhereCalls.Load(), "the redirect was followed")
			})
		}
	}
}
