package emulator

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStartAndClose(t *testing.T) {
	s, err := Start("127.0.0.1:0", Config{})
	require.NoError(t, err)
	assert.Regexp(t, `^http://127\.0\.0\.1:\d+$`, s.URL)
	require.NotNil(t, s.Emulator)

	c := newClient(t)
	getSessions(t, c, s.URL, "user-sandbox-example")

	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "a second Close returns the first one's result")

	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.URL+"/credit/sessions/get",
		strings.NewReader(tokenBody("user-sandbox-example")))
	require.NoError(t, err)
	c.Transport.(*http.Transport).CloseIdleConnections()
	resp, err := c.Do(req)
	if err == nil {
		resp.Body.Close()
	}
	assert.Error(t, err, "nothing listens after Close")
}

func TestStartFailsOnABusyAddress(t *testing.T) {
	s := startServer(t, Config{})
	_, err := Start(strings.TrimPrefix(s.URL, "http://"), Config{})
	assert.Error(t, err)
}

func TestCloseWaitsForRequestsInFlight(t *testing.T) {
	e := New(Config{})
	reached := make(chan struct{})
	var once sync.Once
	s, err := start("127.0.0.1:0", e, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { close(reached) })
		e.ServeHTTP(w, r)
	}))
	require.NoError(t, err)
	shuttingDown := make(chan struct{})
	s.http.RegisterOnShutdown(func() { close(shuttingDown) })
	c := newClient(t)

	// A request whose body is still arriving is in flight: Close must let it finish.
	pr, pw := io.Pipe()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.URL+"/credit/sessions/get", pr)
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("PLAID-CLIENT-ID", DefaultClientID)
	req.Header.Set("PLAID-SECRET", DefaultSecret)

	type result struct {
		status int
		err    error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := c.Do(req)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		_, err = io.Copy(io.Discard, resp.Body)
		done <- result{status: resp.StatusCode, err: err}
	}()
	_, err = io.WriteString(pw, `{"user_token":`)
	require.NoError(t, err)
	<-reached // the handler is reading the body

	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	<-shuttingDown
	_, err = io.WriteString(pw, `"user-sandbox-example"}`)
	require.NoError(t, err)
	require.NoError(t, pw.Close())

	r := <-done
	require.NoError(t, r.err)
	assert.Equal(t, http.StatusOK, r.status)
	assert.NoError(t, <-closed)
}

// syncBuffer is a bytes.Buffer that a logger may write to from many goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newTextLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, nil))
}

func TestLogsNeverHoldSecretsOrTokens(t *testing.T) {
	var logs syncBuffer
	const secret, clientID = "very-secret-value", "client-for-logs"
	s := startServer(t, Config{ClientID: clientID, Secret: secret, Logger: newTextLogger(&logs)})
	c := newClient(t)
	creds := map[string]string{"PLAID-CLIENT-ID": clientID, "PLAID-SECRET": secret}

	ok := send(t, c, s.URL, request{headers: creds, body: tokenBody("user-sandbox-example")})
	require.Equal(t, http.StatusOK, ok.status)
	send(t, c, s.URL, request{headers: creds, body: tokenBody("user-sandbox-private-token")})
	send(t, c, s.URL, request{body: `{"client_id":"` + clientID + `","secret":"` + secret + `","user_token":"user-sandbox-private-token"}`})
	send(t, c, s.URL, request{headers: creds, path: "/credit/sessions/get?user_token=user-sandbox-private-token", body: tokenBody("user-sandbox-example")})

	out := logs.String()
	assert.Equal(t, 4, strings.Count(out, "plaid emulator request"), out)
	assert.Contains(t, out, ok.object(t)["request_id"], "log lines carry the request_id")
	assert.Contains(t, out, "error_code=INVALID_USER_TOKEN")
	assert.NotContains(t, out, secret)
	assert.NotContains(t, out, "user-sandbox-private-token")
	assert.NotContains(t, out, "user-sandbox-example")
}
