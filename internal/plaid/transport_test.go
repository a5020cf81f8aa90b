package plaid_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/creditsessions/creditsessions/internal/plaid"
)

// checkLeaks fails the test if it leaves a goroutine behind. Call it first: its check
// then runs after every cleanup registered later, servers included.
func checkLeaks(t *testing.T) {
	t.Helper()
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
}

// transportClient returns a client on tr, whose idle connections close with the test.
func transportClient(t *testing.T, tr http.RoundTripper) *http.Client {
	t.Helper()
	hc := &http.Client{Transport: tr}
	t.Cleanup(hc.CloseIdleConnections)
	return hc
}

// countingServer starts an httptest server (TLS if asked) that counts the connections it
// accepts.
func countingServer(t *testing.T, h http.Handler, useTLS bool) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	if useTLS {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv, &conns
}

// echo answers "echo: " and the request body.
var echo = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	_, _ = w.Write(append([]byte("echo: "), body...))
})

// post sends body to url with the test secret in a header, bounded by callTimeout, and
// returns the status and the body read to the end.
func post(t *testing.T, hc *http.Client, url, body string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Plaid-Secret", testSecret)
	resp, err := hc.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(got)
}

// rawServer is an HTTP/1.1 server written against the wire, so a test decides exactly
// what each connection gets and learns when the client closes one.
type rawServer struct {
	URL string
	// accepted carries each connection's number, from 1, as it is accepted.
	accepted chan int
	// gone carries the number of each connection the client closed.
	gone chan int
	// closed carries the number of each connection the server closed after answering.
	closed chan int
	// requests counts the requests read, on all connections.
	requests atomic.Int32
}

// rawAnswer is what a rawServer writes back for one request.
type rawAnswer struct {
	raw   string // written as is; empty writes nothing
	close bool   // the server closes the connection after writing
	reset bool   // and resets it, rather than closing it cleanly
}

// serveRaw serves answer on 127.0.0.1:0 until the test ends. answer gets the number of
// the connection and the request, whose body has been read into body.
func serveRaw(t *testing.T, answer func(conn int, req *http.Request, body string) rawAnswer) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &rawServer{URL: "http://" + ln.Addr().String(), accepted: make(chan int, 100), gone: make(chan int, 100), closed: make(chan int, 100)}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	serve := func(n int, nc net.Conn) {
		defer nc.Close()
		br := bufio.NewReader(nc)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				s.gone <- n // the client closed it, or the test ended
				return
			}
			body, _ := io.ReadAll(req.Body)
			s.requests.Add(1)
			a := answer(n, req, string(body))
			_, _ = io.WriteString(nc, a.raw)
			if a.close || a.reset {
				if a.reset {
					_ = nc.(*net.TCPConn).SetLinger(0)
				}
				_ = nc.Close()
				s.closed <- n
				return
			}
		}
	}
	wg.Go(func() {
		for n := 1; ; n++ {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
			s.accepted <- n
			wg.Go(func() { serve(n, nc) })
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, nc := range conns {
			_ = nc.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return s
}

// okResponse is a small complete response that keeps the connection open.
const okResponse = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

func okAnswer(int, *http.Request, string) rawAnswer { return rawAnswer{raw: okResponse} }

// none reports that ch has nothing waiting.
func none[T any](t *testing.T, ch <-chan T, msgAndArgs ...any) {
	t.Helper()
	select {
	case v := <-ch:
		assert.Fail(t, "unexpected value", "got %v; %v", v, msgAndArgs)
	default:
	}
}

// Sequential requests of every kind of response that allows it share one connection.
func TestTransportReusesConnection(t *testing.T) {
	tests := []struct {
		name    string
		method  string
		handler http.HandlerFunc
		want    string
	}{
		{name: "content length", method: http.MethodPost, handler: echo, want: "echo: hello"},
		{name: "chunked", method: http.MethodPost, handler: func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			for _, part := range []string{"one ", "two ", "three"} {
				_, _ = io.WriteString(w, part)
				assert.NoError(t, http.NewResponseController(w).Flush())
			}
		}, want: "one two three"},
		{name: "no content", method: http.MethodPost, handler: func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusNoContent)
		}},
		{name: "head", method: http.MethodHead, handler: echo},
		{name: "error status", method: http.MethodPost, handler: func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			http.Error(w, "no", http.StatusTooManyRequests)
		}, want: "no\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkLeaks(t)
			srv, conns := countingServer(t, tt.handler, false)
			hc := transportClient(t, &plaid.Transport{})
			for range 5 {
				req, err := http.NewRequestWithContext(t.Context(), tt.method, srv.URL+"/credit/sessions/get", strings.NewReader("hello"))
				require.NoError(t, err)
				resp, err := hc.Do(req)
				require.NoError(t, err)
				got, err := io.ReadAll(resp.Body)
				require.NoError(t, err)
				require.NoError(t, resp.Body.Close())
				assert.Equal(t, tt.want, string(got))
				assert.Same(t, req, resp.Request)
			}
			assert.EqualValues(t, 1, conns.Load(), "connections")
		})
	}
}

// A chunked body arrives whole, trailers included, read straight from the connection.
func TestTransportChunkedBody(t *testing.T) {
	checkLeaks(t)
	srv, conns := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Parts")
		for _, part := range []string{`{"request_id":`, `"chunked",`, `"sessions":[]}`} {
			_, _ = io.WriteString(w, part)
			assert.NoError(t, http.NewResponseController(w).Flush())
		}
		w.Header().Set("X-Parts", "3")
	}), false)
	hc := transportClient(t, &plaid.Transport{})

	for range 2 {
		resp, err := hc.Get(srv.URL)
		require.NoError(t, err)
		assert.Equal(t, []string{"chunked"}, resp.TransferEncoding)
		assert.EqualValues(t, -1, resp.ContentLength)
		got, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		assert.JSONEq(t, `{"request_id":"chunked","sessions":[]}`, string(got))
		assert.Equal(t, "3", resp.Trailer.Get("X-Parts"))
	}
	assert.EqualValues(t, 1, conns.Load(), "connections")
}

// Requests in flight at once each get a connection, and every one of them comes back to
// the pool: a second wave needs no new connection.
func TestTransportConcurrentRequests(t *testing.T) {
	checkLeaks(t)
	const n = 8
	var (
		mu      sync.Mutex
		arrived int
		all     = make(chan struct{})
	)
	// Each wave's handlers wait for one another, so n requests are in flight at once.
	srv, conns := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		arrived++
		wave := all
		if arrived%n == 0 {
			close(all)
			all = make(chan struct{})
		}
		mu.Unlock()
		receive(t, wave)
		echo(w, r)
	}), false)
	hc := transportClient(t, &plaid.Transport{})

	for range 2 {
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				status, got := post(t, hc, srv.URL, strings.Repeat("x", i))
				assert.Equal(t, http.StatusOK, status)
				assert.Equal(t, "echo: "+strings.Repeat("x", i), got)
			})
		}
		wg.Wait()
	}
	assert.EqualValues(t, n, conns.Load(), "connections")
}

// Responses that end their connection, or are not read to the end, leave it closed, even
// when the server would keep it open; the next request dials.
func TestTransportDoesNotReuse(t *testing.T) {
	tests := []struct {
		name  string
		raw   string
		close bool // the request asks for Connection: close
		read  int  // bytes of the body to read before closing it; -1 for all
	}{
		{name: "Connection: close response", raw: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", read: -1},
		{name: "Connection: close request", raw: okResponse, close: true, read: -1},
		{name: "HTTP/1.0 response", raw: "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", read: -1},
		{name: "body closed before EOF", raw: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789", read: 1},
		{name: "body closed unread", raw: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789", read: 0},
		{name: "101 Switching Protocols", raw: "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: other\r\n\r\n", read: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkLeaks(t)
			srv := serveRaw(t, func(conn int, _ *http.Request, _ string) rawAnswer {
				if conn == 1 {
					return rawAnswer{raw: tt.raw}
				}
				return rawAnswer{raw: okResponse}
			})
			hc := transportClient(t, &plaid.Transport{})

			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL, nil)
			require.NoError(t, err)
			req.Close = tt.close
			resp, err := hc.Do(req)
			require.NoError(t, err)
			if tt.read < 0 {
				_, err = io.ReadAll(resp.Body)
				require.NoError(t, err)
			} else {
				_, err = io.ReadFull(resp.Body, make([]byte, tt.read))
				require.NoError(t, err)
			}
			require.NoError(t, resp.Body.Close())
			assert.Equal(t, 1, receive(t, srv.gone), "the client closes the first connection")

			status, got := post(t, hc, srv.URL, "")
			assert.Equal(t, http.StatusOK, status)
			assert.Equal(t, "ok", got)
			assert.Equal(t, 1, receive(t, srv.accepted))
			assert.Equal(t, 2, receive(t, srv.accepted), "the second request dials")
		})
	}
}

// A body's Close is idempotent, and Read after it fails; after EOF, Read keeps saying EOF.
func TestTransportBodyAfterEOFAndClose(t *testing.T) {
	checkLeaks(t)
	srv := serveRaw(t, okAnswer)
	hc := transportClient(t, &plaid.Transport{})

	resp, err := hc.Get(srv.URL)
	require.NoError(t, err)
	got, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, "ok", string(got))
	n, err := resp.Body.Read(make([]byte, 1))
	assert.Zero(t, n)
	assert.ErrorIs(t, err, io.EOF)
	require.NoError(t, resp.Body.Close())
	require.NoError(t, resp.Body.Close())
	_, err = resp.Body.Read(make([]byte, 1))
	assert.Error(t, err)
	assert.NotErrorIs(t, err, io.EOF)

	// Its connection went back to the pool at EOF and carries the next request.
	status, _ := post(t, hc, srv.URL, "")
	assert.Equal(t, http.StatusOK, status)
	assert.Equal(t, 1, receive(t, srv.accepted))
	none(t, srv.accepted, "a second connection")
}

// A request ends when its context does, whether it waits for the head or is reading the
// body; the error says why, holds no header, and the connection closes.
func TestTransportStopsWithContext(t *testing.T) {
	tests := []struct {
		name     string
		midBody  bool // the server sends the head and part of the body, then stalls
		deadline bool // a deadline ends the request rather than a cancel
		want     error
	}{
		{name: "cancel before the head", want: context.Canceled},
		{name: "cancel in the body", midBody: true, want: context.Canceled},
		{name: "deadline before the head", deadline: true, want: context.DeadlineExceeded},
		{name: "deadline in the body", midBody: true, deadline: true, want: context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkLeaks(t)
			arrived := make(chan struct{}, 1)
			srv := serveRaw(t, func(int, *http.Request, string) rawAnswer {
				arrived <- struct{}{}
				if tt.midBody {
					return rawAnswer{raw: "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"request_id\":"}
				}
				return rawAnswer{}
			})
			hc := transportClient(t, &plaid.Transport{})

			ctx, cancel := context.WithCancel(t.Context())
			const deadline = 100 * time.Millisecond
			if tt.deadline {
				ctx, cancel = context.WithTimeout(t.Context(), deadline)
			}
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL, strings.NewReader(testUserToken))
			require.NoError(t, err)
			req.Header.Set("Plaid-Secret", testSecret)

			done := make(chan error, 1)
			go func() {
				resp, err := hc.Do(req)
				if err == nil {
					defer resp.Body.Close()
					_, err = io.ReadAll(resp.Body)
				}
				done <- err
			}()
			receive(t, arrived)
			if !tt.deadline {
				cancel()
			}
			err = receive(t, done)
			require.ErrorIs(t, err, tt.want)
			var opErr *net.OpError
			assert.False(t, errors.As(err, &opErr), "the context's error, not the i/o timeout it caused: %v", err)
			assertNoSecrets(t, err)
			assert.Equal(t, 1, receive(t, srv.gone), "the server sees the connection closed")
		})
	}
}

// A request whose context has ended is not sent.
func TestTransportEndedContext(t *testing.T) {
	checkLeaks(t)
	srv := serveRaw(t, okAnswer)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	require.NoError(t, err)
	_, err = (&plaid.Transport{}).RoundTrip(req)
	assert.ErrorIs(t, err, context.Canceled)
	none(t, srv.accepted)
}

// An idle connection the server closed or reset meanwhile costs the next request nothing:
// it goes again, body and all, on a fresh connection. (Closed, the read finds the end of
// the connection; reset, the write fails.)
func TestTransportRetriesStaleConnection(t *testing.T) {
	for _, reset := range []bool{false, true} {
		name := "closed"
		if reset {
			name = "reset"
		}
		t.Run(name, func(t *testing.T) {
			checkLeaks(t)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			type seen struct {
				conn int
				body string
			}
			requests := make(chan seen, 10)
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				conn := r.Context().Value(connNumber{}).(int)
				requests <- seen{conn, string(body)}
				_, _ = io.WriteString(w, "ok")
			})}
			var accepted atomic.Int32
			conns := make(chan net.Conn, 10)
			srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
				conns <- c
				return context.WithValue(ctx, connNumber{}, int(accepted.Add(1)))
			}
			served := make(chan error, 1)
			go func() { served <- srv.Serve(ln) }()
			t.Cleanup(func() {
				assert.NoError(t, srv.Close())
				assert.ErrorIs(t, <-served, http.ErrServerClosed)
			})
			base := "http://" + ln.Addr().String()
			hc := transportClient(t, &plaid.Transport{})

			status, _ := post(t, hc, base, "first")
			require.Equal(t, http.StatusOK, status)
			assert.Equal(t, seen{1, "first"}, receive(t, requests))
			// The server drops the idle connection behind the client's back.
			first := receive(t, conns)
			if reset {
				require.NoError(t, first.(*net.TCPConn).SetLinger(0))
			}
			require.NoError(t, first.Close())

			status, got := post(t, hc, base, "second")
			assert.Equal(t, http.StatusOK, status)
			assert.Equal(t, "ok", got)
			assert.Equal(t, seen{2, "second"}, receive(t, requests), "the request goes again, whole, on a new connection")
			none(t, requests)
		})
	}
}

type connNumber struct{}

// A fresh connection that fails is not tried again, nor is a stale one whose request body
// can not be replayed, nor one the server reset after the request arrived, nor one whose
// response had begun.
func TestTransportDoesNotRetry(t *testing.T) {
	t.Run("fresh connection", func(t *testing.T) {
		checkLeaks(t)
		srv := serveRaw(t, func(int, *http.Request, string) rawAnswer { return rawAnswer{close: true} })
		hc := transportClient(t, &plaid.Transport{})
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL, strings.NewReader("x"))
		require.NoError(t, err)
		req.Header.Set("Plaid-Secret", testSecret)
		_, err = hc.Do(req)
		require.Error(t, err)
		assert.ErrorIs(t, err, io.EOF)
		assertNoSecrets(t, err)
		// Had it gone again, the server would have read it before the client heard back.
		assert.EqualValues(t, 1, srv.requests.Load())
		assert.Equal(t, 1, receive(t, srv.accepted))
		none(t, srv.accepted, "a second connection")
	})

	t.Run("body not replayable", func(t *testing.T) {
		checkLeaks(t)
		srv := serveRaw(t, func(int, *http.Request, string) rawAnswer { return rawAnswer{raw: okResponse, close: true} })
		hc := transportClient(t, &plaid.Transport{})
		status, _ := post(t, hc, srv.URL, "")
		require.Equal(t, http.StatusOK, status)
		assert.Equal(t, 1, receive(t, srv.closed))

		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL, io.NopCloser(strings.NewReader("once")))
		require.NoError(t, err)
		req.ContentLength = 4
		require.Nil(t, req.GetBody)
		_, err = hc.Do(req)
		require.Error(t, err)
		assert.Equal(t, 1, receive(t, srv.accepted))
		none(t, srv.accepted, "a second connection")
	})

	t.Run("reset after the request arrived", func(t *testing.T) {
		checkLeaks(t)
		srv := serveRaw(t, func(_ int, req *http.Request, _ string) rawAnswer {
			if req.URL.Path == "/reset" {
				return rawAnswer{reset: true}
			}
			return rawAnswer{raw: okResponse}
		})
		hc := transportClient(t, &plaid.Transport{})
		status, _ := post(t, hc, srv.URL, "")
		require.Equal(t, http.StatusOK, status)

		resp, err := hc.Post(srv.URL+"/reset", "text/plain", strings.NewReader("x"))
		if err == nil {
			resp.Body.Close()
		}
		require.ErrorIs(t, err, syscall.ECONNRESET)
		assert.EqualValues(t, 2, srv.requests.Load(), "the server saw each request once")
		assert.Equal(t, 1, receive(t, srv.accepted))
		none(t, srv.accepted, "a second connection")
	})

	t.Run("response begun", func(t *testing.T) {
		checkLeaks(t)
		srv := serveRaw(t, func(_ int, req *http.Request, _ string) rawAnswer {
			if req.URL.Path == "/cut" {
				return rawAnswer{raw: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n", close: true}
			}
			return rawAnswer{raw: okResponse}
		})
		hc := transportClient(t, &plaid.Transport{})
		status, _ := post(t, hc, srv.URL, "")
		require.Equal(t, http.StatusOK, status)

		resp, err := hc.Post(srv.URL+"/cut", "text/plain", strings.NewReader("x"))
		if err == nil {
			resp.Body.Close()
		}
		require.Error(t, err)
		assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
		assert.EqualValues(t, 2, srv.requests.Load())
		assert.Equal(t, 1, receive(t, srv.accepted))
		none(t, srv.accepted, "a second connection")
	})
}

// Informational responses before the real one are skipped, and leave the connection
// reusable.
func TestTransportSkipsInformationalResponses(t *testing.T) {
	checkLeaks(t)
	srv := serveRaw(t, func(int, *http.Request, string) rawAnswer {
		return rawAnswer{raw: "HTTP/1.1 100 Continue\r\n\r\n" +
			"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" +
			"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}"}
	})
	hc := transportClient(t, &plaid.Transport{})
	for range 2 {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL, strings.NewReader("{}"))
		require.NoError(t, err)
		req.Header.Set("Expect", "100-continue")
		resp, err := hc.Do(req)
		require.NoError(t, err)
		got, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, `{"ok":true}`, string(got))
		assert.Empty(t, resp.Header.Get("Link"), "the 1xx's headers are not the response's")
	}
	assert.Equal(t, 1, receive(t, srv.accepted))
	none(t, srv.accepted, "a second connection")
}

// A response head that never ends is cut off, not buffered without bound.
func TestTransportBoundsResponseHead(t *testing.T) {
	checkLeaks(t)
	srv := serveRaw(t, func(int, *http.Request, string) rawAnswer {
		return rawAnswer{raw: "HTTP/1.1 200 OK\r\nX-Long: " + strings.Repeat("x", 2<<20) + "\r\n\r\n"}
	})
	hc := transportClient(t, &plaid.Transport{})
	_, err := hc.Get(srv.URL)
	assert.ErrorContains(t, err, "response head over")
	assert.Equal(t, 1, receive(t, srv.gone), "the connection is closed")
}

// Over TLS the transport verifies the server against TLSClientConfig, speaks HTTP/1.1,
// and reuses the connection.
func TestTransportTLS(t *testing.T) {
	checkLeaks(t)
	srv, conns := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		assert.Equal(t, "HTTP/1.1", r.Proto)
		echo(w, r)
	}), true)
	roots := srv.Client().Transport.(*http.Transport).TLSClientConfig

	hc := transportClient(t, &plaid.Transport{TLSClientConfig: roots})
	for range 3 {
		status, got := post(t, hc, srv.URL, "secure")
		assert.Equal(t, http.StatusOK, status)
		assert.Equal(t, "echo: secure", got)
	}
	resp, err := hc.Get(srv.URL)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.NotNil(t, resp.TLS)
	assert.Equal(t, "http/1.1", resp.TLS.NegotiatedProtocol)
	assert.GreaterOrEqual(t, resp.TLS.Version, uint16(tls.VersionTLS12))
	assert.EqualValues(t, 1, conns.Load(), "connections")

	// Without the test CA the server's certificate is not trusted.
	_, err = transportClient(t, &plaid.Transport{}).Get(srv.URL)
	var unverified *tls.CertificateVerificationError
	assert.ErrorAs(t, err, &unverified)
}

// A request that Proxy sends to a proxy goes there, as an absolute URI; one it does not
// goes straight to its server.
func TestTransportProxy(t *testing.T) {
	checkLeaks(t)
	seen := make(chan string, 1)
	proxy, _ := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.RequestURI
		_, _ = io.WriteString(w, "via proxy")
	}), false)
	direct, _ := countingServer(t, echo, false)
	proxyURL, err := url.Parse(proxy.URL)
	require.NoError(t, err)
	tr := &plaid.Transport{Proxy: func(r *http.Request) (*url.URL, error) {
		if r.URL.Host == "plaid.invalid" {
			return proxyURL, nil
		}
		return nil, nil
	}}
	hc := transportClient(t, tr)

	status, got := post(t, hc, "http://plaid.invalid/credit/sessions/get", "")
	assert.Equal(t, http.StatusOK, status)
	assert.Equal(t, "via proxy", got)
	assert.Equal(t, "http://plaid.invalid/credit/sessions/get", receive(t, seen))

	status, got = post(t, hc, direct.URL, "direct")
	assert.Equal(t, http.StatusOK, status)
	assert.Equal(t, "echo: direct", got)
	none(t, seen, "a proxied request")

	failing := transportClient(t, &plaid.Transport{Proxy: func(*http.Request) (*url.URL, error) {
		return nil, errors.New("no proxy for you")
	}})
	_, err = failing.Get(direct.URL)
	assert.ErrorContains(t, err, "no proxy for you")
}

// Idle connections close once IdleConnTimeout passes, and on CloseIdleConnections.
func TestTransportClosesIdleConnections(t *testing.T) {
	t.Run("timeout", func(t *testing.T) {
		checkLeaks(t)
		srv := serveRaw(t, okAnswer)
		hc := transportClient(t, &plaid.Transport{IdleConnTimeout: 20 * time.Millisecond})
		for conn := 1; conn <= 2; conn++ {
			status, _ := post(t, hc, srv.URL, "")
			assert.Equal(t, http.StatusOK, status)
			assert.Equal(t, conn, receive(t, srv.accepted))
			assert.Equal(t, conn, receive(t, srv.gone), "the idle connection is closed")
		}
	})
	t.Run("CloseIdleConnections", func(t *testing.T) {
		checkLeaks(t)
		srv := serveRaw(t, okAnswer)
		tr := &plaid.Transport{}
		hc := transportClient(t, tr)
		status, _ := post(t, hc, srv.URL, "")
		assert.Equal(t, http.StatusOK, status)
		none(t, srv.gone)
		tr.CloseIdleConnections()
		assert.Equal(t, 1, receive(t, srv.gone))
	})
	t.Run("MaxIdleConnsPerHost", func(t *testing.T) {
		checkLeaks(t)
		srv := serveRaw(t, func(int, *http.Request, string) rawAnswer {
			return rawAnswer{raw: "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"}
		})
		hc := transportClient(t, &plaid.Transport{MaxIdleConnsPerHost: 1})
		// Two responses held open at once need two connections; only one stays.
		var bodies []io.ReadCloser
		for range 2 {
			resp, err := hc.Get(srv.URL)
			require.NoError(t, err)
			bodies = append(bodies, resp.Body)
		}
		for _, b := range bodies {
			_, err := io.ReadAll(b)
			require.NoError(t, err)
			require.NoError(t, b.Close())
		}
		assert.Equal(t, 2, receive(t, srv.gone), "the second connection back finds the pool full")
		none(t, srv.gone)
	})
}

// The pool's connections hold no goroutine of their own: with idle connections open,
// nothing of the client's runs. net/http's Transport, by contrast, keeps a reader and
// a writer per connection, which the same check finds.
func TestTransportLeavesNoGoroutinePerConnection(t *testing.T) {
	serverSide := []goleak.Option{
		goleak.IgnoreAnyFunction("net/http.(*conn).serve"),
		goleak.IgnoreAnyFunction("net/http.(*Server).Serve"),
	}
	for _, tt := range []struct {
		name       string
		transport  func() http.RoundTripper
		goroutines bool
	}{
		{name: "lean", transport: func() http.RoundTripper { return &plaid.Transport{} }},
		{name: "net-http", transport: func() http.RoundTripper { return &http.Transport{} }, goroutines: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			checkLeaks(t)
			before := goleak.IgnoreCurrent()
			srv, conns := countingServer(t, echo, false)
			hc := transportClient(t, tt.transport())
			var wg sync.WaitGroup
			for range 4 {
				wg.Go(func() { post(t, hc, srv.URL, "hello") })
			}
			wg.Wait()
			require.Positive(t, conns.Load())

			err := goleak.Find(append([]goleak.Option{before}, serverSide...)...)
			if tt.goroutines {
				assert.Error(t, err, "the check finds net/http's connection goroutines")
			} else {
				assert.NoError(t, err, "idle connections hold goroutines")
			}
		})
	}
}

// closeRecorder is a request body that records that it was closed.
type closeRecorder struct {
	io.Reader
	closed atomic.Bool
}

func (c *closeRecorder) Close() error { c.closed.Store(true); return nil }

// Requests the transport can not send fail before dialing, and their bodies are closed.
func TestTransportRejectsRequests(t *testing.T) {
	tests := []struct {
		name    string
		url     string
		method  string
		header  http.Header
		wantErr string
	}{
		{name: "scheme", url: "ftp://127.0.0.1/x", method: http.MethodPost, wantErr: `unsupported protocol scheme "ftp"`},
		{name: "no host", url: "http:///x", method: http.MethodPost, wantErr: "no Host"},
		{name: "method", url: "http://127.0.0.1/x", method: "PO ST", wantErr: "invalid method"},
		// A caller's secret must not smuggle header fields into the request to Plaid.
		{name: "CRLF in a value", url: "http://127.0.0.1/x", method: http.MethodPost,
			header: http.Header{"Plaid-Secret": {testSecret + "\r\nX-Injected: 1"}}, wantErr: `invalid value for header field "Plaid-Secret"`},
		{name: "bad name", url: "http://127.0.0.1/x", method: http.MethodPost,
			header: http.Header{"Plaid Secret": {testSecret}}, wantErr: `invalid header field name "Plaid Secret"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := url.Parse(tt.url)
			require.NoError(t, err)
			body := &closeRecorder{Reader: strings.NewReader("x")}
			header := tt.header
			if header == nil {
				header = http.Header{"Plaid-Secret": {testSecret}}
			}
			req := (&http.Request{Method: tt.method, URL: u, Header: header, Body: body}).WithContext(t.Context())
			_, err = (&plaid.Transport{}).RoundTrip(req)
			assert.ErrorContains(t, err, tt.wantErr)
			assertNoSecrets(t, err)
			assert.True(t, body.closed.Load(), "the request body is closed")
		})
	}
}

// A dial that fails is a network error that names no header.
func TestTransportDialFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+addr, bytes.NewReader([]byte("x")))
	require.NoError(t, err)
	req.Header.Set("Plaid-Secret", testSecret)
	_, err = (&plaid.Transport{}).RoundTrip(req)
	var netErr net.Error
	require.ErrorAs(t, err, &netErr)
	assert.False(t, netErr.Timeout())
	assertNoSecrets(t, err)
}

// BenchmarkRoundTrip is one small POST and its answer over loopback, through net/http's
// Transport (as NewHTTPClient had it) and through Transport. The server is the same for
// both, so the difference is the client's. Run it with -cpu 1 to read ns/op as CPU per
// round trip, server included.
func BenchmarkRoundTrip(b *testing.B) {
	answer := []byte(`{"request_id":"bench","sessions":[]}`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(answer)
	}))
	defer srv.Close()
	body := []byte(`{"user_token":"user-sandbox-example"}`)
	endpoint := srv.URL + "/credit/sessions/get"

	for _, bb := range []struct {
		name      string
		transport http.RoundTripper
	}{
		{name: "net-http", transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			ForceAttemptHTTP2:     true,
			TLSHandshakeTimeout:   5 * time.Second,
			ResponseHeaderTimeout: 30 * time.Second,
			ExpectContinueTimeout: time.Second,
			MaxIdleConns:          256,
			MaxIdleConnsPerHost:   128,
			IdleConnTimeout:       90 * time.Second,
		}},
		{name: "lean", transport: &plaid.Transport{Proxy: http.ProxyFromEnvironment}},
	} {
		b.Run(bb.name, func(b *testing.B) {
			hc := &http.Client{Transport: bb.transport}
			defer hc.CloseIdleConnections()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				buf := make([]byte, 512)
				for pb.Next() {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
					if err != nil {
						b.Fatal(err)
					}
					req.Header["Content-Type"] = []string{"application/json"}
					req.Header["Plaid-Secret"] = []string{testSecret}
					resp, err := hc.Do(req)
					if err != nil {
						b.Fatal(err)
					}
					for err == nil {
						_, err = resp.Body.Read(buf)
					}
					_ = resp.Body.Close()
					cancel()
					if err != io.EOF {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
