package plaid_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/emulator"
	"github.com/creditsessions/creditsessions/internal/plaid"
)

// Distinctive values, so a test can look for them in anything the client prints.
const (
	testClientID  = "client-id-for-tests"
	testSecret    = "secret-d41d8cd98f00b204"
	testUserToken = "user-token-9e107d9d372bb682"
)

var testCredentials = plaid.Credentials{ClientID: testClientID, Secret: testSecret}

// callTimeout bounds every call a test makes, so a client that hangs fails the test
// instead of stalling the run. Tests that time calls use much tighter bounds of their own.
const callTimeout = 30 * time.Second

// serve serves h on a fresh 127.0.0.1:0 listener until the test ends and returns its base
// URL, with no trailing slash.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		// Close, not Shutdown: it does not wait for handlers that stall on purpose.
		assert.NoError(t, srv.Close())
		assert.ErrorIs(t, <-served, http.ErrServerClosed)
	})
	return "http://" + ln.Addr().String()
}

// startEmulator starts the Plaid emulator for the test and returns it.
func startEmulator(t *testing.T, cfg emulator.Config) *emulator.Server {
	t.Helper()
	emu, err := emulator.Start("127.0.0.1:0", cfg)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, emu.Close()) })
	return emu
}

// newClient returns a client for baseURL with the test credentials, after apply edits
// its Config.
func newClient(t *testing.T, baseURL string, apply ...func(*plaid.Config)) *plaid.Client {
	t.Helper()
	cfg := plaid.Config{BaseURL: baseURL, Credentials: testCredentials}
	for _, f := range apply {
		f(&cfg)
	}
	c, err := plaid.NewClient(cfg)
	require.NoError(t, err)
	return c
}

// call makes one call with the test user token, bounded by callTimeout.
func call(t *testing.T, c *plaid.Client) (*creditv1.CreditSessionsGetResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	defer cancel()
	return c.CreditSessionsGet(ctx, plaid.Request{UserToken: testUserToken})
}

// reply answers every request with status, Content-Type and body, after draining the
// request body.
func reply(status int, contentType, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// rawReply takes over the connection and writes raw, bytes and all, then closes it: the
// way to send a response that lies about its length.
func rawReply(t *testing.T, raw string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		conn, rw, err := http.NewResponseController(w).Hijack()
		if !assert.NoError(t, err) {
			return
		}
		defer conn.Close()
		_, _ = rw.WriteString(raw)
		_ = rw.Flush()
	}
}

// recordingEmulator serves the emulator with the test credentials and reports the exact
// body of each response it sends on the returned channel. Each response also carries
// the extra headers.
func recordingEmulator(t *testing.T, extra http.Header) (baseURL string, sent <-chan []byte) {
	t.Helper()
	emu := emulator.New(emulator.Config{ClientID: testClientID, Secret: testSecret})
	bodies := make(chan []byte, 100)
	baseURL = serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		emu.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		for k, v := range extra {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
		bodies <- rec.Body.Bytes()
	}))
	return baseURL, bodies
}

// receive returns the next value from ch, failing the test if none comes in time.
func receive[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(callTimeout):
		require.FailNow(t, "nothing arrived in time")
		var zero T
		return zero
	}
}

// assertNoSecrets checks that no way of printing err shows the secret or the user token.
func assertNoSecrets(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, s := range []string{err.Error(), fmt.Sprintf("%v", err), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)} {
		assert.NotContains(t, s, testSecret)
		assert.NotContains(t, s, testUserToken)
	}
	// Walk the chain as well: a cause may print more than the wrapper shows.
	for e := errors.Unwrap(err); e != nil; e = errors.Unwrap(e) {
		assert.NotContains(t, fmt.Sprintf("%+v %#v", e, e), testSecret)
		assert.NotContains(t, fmt.Sprintf("%+v %#v", e, e), testUserToken)
	}
}

// requireProtocolError checks that err is a *plaid.ProtocolError, and nothing that
// claims Plaid answered, and returns it.
func requireProtocolError(t *testing.T, err error) *plaid.ProtocolError {
	t.Helper()
	require.Error(t, err)
	perr, ok := errors.AsType[*plaid.ProtocolError](err)
	require.Truef(t, ok, "want a *plaid.ProtocolError, got %T: %v", err, err)
	_, isPlaid := errors.AsType[*plaid.Error](err)
	assert.False(t, isPlaid, "a protocol error must not also be a Plaid error")
	assert.NotEmpty(t, perr.Reason)
	assert.True(t, strings.HasPrefix(err.Error(), "plaid: "), "error %q lacks the package prefix", err)
	assertNoSecrets(t, err)
	return perr
}
