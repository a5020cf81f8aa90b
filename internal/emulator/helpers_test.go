package emulator

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9]{5,15}$`)

// startServer starts an emulator on a free loopback port, closed when the test ends.
func startServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	s, err := Start("127.0.0.1:0", cfg)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, s.Close()) })
	return s
}

// newClient returns an HTTP client of the test's own, with a timeout, whose idle
// connections are closed when the test ends.
func newClient(t *testing.T) *http.Client {
	t.Helper()
	transport := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(transport.CloseIdleConnections)
	return &http.Client{Transport: transport, Timeout: 30 * time.Second}
}

// request is one HTTP request to send to the emulator.
type request struct {
	method      string // "" means POST
	path        string // "" means /credit/sessions/get
	contentType string // "" means application/json; "-" sends none
	headers     map[string]string
	body        string
}

// response is what came back.
type response struct {
	status int
	header http.Header
	raw    []byte
}

func (r response) object(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(r.raw))
	dec.UseNumber()
	require.NoError(t, dec.Decode(&m), "body: %s", r.raw)
	return m
}

func send(t *testing.T, c *http.Client, baseURL string, req request) response {
	t.Helper()
	method, path, ct := req.method, req.path, req.contentType
	if method == "" {
		method = http.MethodPost
	}
	if path == "" {
		path = "/credit/sessions/get"
	}
	if ct == "" {
		ct = "application/json"
	}
	hr, err := http.NewRequestWithContext(t.Context(), method, baseURL+path, strings.NewReader(req.body))
	require.NoError(t, err)
	if ct != "-" {
		hr.Header.Set("Content-Type", ct)
	}
	for k, v := range req.headers {
		hr.Header.Set(k, v)
	}
	resp, err := c.Do(hr)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return response{status: resp.StatusCode, header: resp.Header, raw: raw}
}

// defaultHeaders carries the default credentials in Plaid's headers.
func defaultHeaders() map[string]string {
	return map[string]string{"PLAID-CLIENT-ID": DefaultClientID, "PLAID-SECRET": DefaultSecret}
}

// tokenBody is a request body holding only a user token, as Plaid's clients send it.
func tokenBody(token string) string {
	b, _ := json.Marshal(map[string]string{"user_token": token})
	return string(b)
}

// getSessions asks for token with the default credentials and expects success.
func getSessions(t *testing.T, c *http.Client, baseURL, token string) response {
	t.Helper()
	resp := send(t, c, baseURL, request{headers: defaultHeaders(), body: tokenBody(token)})
	require.Equal(t, http.StatusOK, resp.status, "body: %s", resp.raw)
	return resp
}

// assertPlaidError checks that resp is Plaid's error body for want, with every member
// Plaid always sends.
func assertPlaidError(t *testing.T, resp response, want ErrorSpec) {
	t.Helper()
	assert.Equal(t, want.HTTPStatus, resp.status, "body: %s", resp.raw)
	assert.Equal(t, contentType, resp.header.Get("Content-Type"))
	body := resp.object(t)
	keys := make([]string, 0, len(body))
	for k := range body {
		keys = append(keys, k)
	}
	assert.ElementsMatch(t, []string{
		"display_message", "documentation_url", "error_code", "error_code_reason",
		"error_message", "error_type", "request_id", "suggested_action",
	}, keys)
	assert.Equal(t, want.Type, body["error_type"])
	assert.Equal(t, want.Code, body["error_code"])
	if want.Message != "" {
		assert.Equal(t, want.Message, body["error_message"])
	} else {
		assert.NotEmpty(t, body["error_message"])
	}
	if want.DisplayMessage != "" {
		assert.Equal(t, want.DisplayMessage, body["display_message"])
	} else {
		assert.Nil(t, body["display_message"])
	}
	assert.Nil(t, body["error_code_reason"])
	assert.Nil(t, body["suggested_action"])
	assert.Regexp(t, `^https://plaid\.com/docs/errors/[a-z-]+/#[a-z_]+$`, body["documentation_url"])
	assert.Regexp(t, requestIDPattern, body["request_id"])
}
