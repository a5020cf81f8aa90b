package plaid

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
)

// Transport defaults and fixed bounds.
const (
	// DefaultMaxIdleConnsPerHost is how many idle connections a Transport keeps per host
	// when its MaxIdleConnsPerHost is 0.
	DefaultMaxIdleConnsPerHost = 128
	// DefaultIdleConnTimeout is how long a Transport keeps an idle connection when its
	// IdleConnTimeout is 0.
	DefaultIdleConnTimeout = 90 * time.Second

	dialTimeout         = 5 * time.Second
	dialKeepAlive       = 30 * time.Second
	tlsHandshakeTimeout = 5 * time.Second
	// maxResponseHead bounds the bytes read before a final response head ends, 1xx heads
	// included: far above any real head, far below what would hurt.
	maxResponseHead = 1 << 20
	bufferSize      = 4 << 10
)

// Transport is an HTTP/1.1 http.RoundTripper that keeps no goroutine per connection.
// RoundTrip writes the request and reads the response head on the caller's goroutine,
// and the caller reads the body straight from the connection. net/http's Transport hands
// every request to a per-connection writer goroutine and every answer back from a
// per-connection reader goroutine; for calls as small as ours those hand-offs are a
// large share of the CPU a call costs. The HTTP framing is still the standard
// library's: (*http.Request).Write and http.ReadResponse. What Transport owns is the
// connection pool, cancellation and the rules for reusing a connection.
//
// The request's context is the only bound on an exchange once it is connected: when it
// ends, the connection's deadline moves to the past, whatever is blocked on it returns,
// and the error satisfies errors.Is with context.Canceled or context.DeadlineExceeded.
// There is no ResponseHeaderTimeout or other per-request timer, since every call this
// package makes carries a context deadline; a request without one waits as long as the
// server does. Dialing and the TLS handshake are bounded at 5 s each as well.
//
// Transport asks for no compression (it sends no Accept-Encoding, so responses arrive
// as identity and nothing is decompressed behind the caller's back), speaks no HTTP/2,
// and sends a body without waiting for 100 Continue; informational responses (1xx but
// 101) are skipped. A response head may not exceed 1 MiB. Idle connections close after
// IdleConnTimeout, by a timer that runs only while some are idle. A request that Proxy
// sends through a proxy is handed to an http.Transport instead.
//
// Fields must not change once the Transport is in use. It is safe for concurrent use.
type Transport struct {
	// Proxy chooses a proxy for a request, as http.Transport's does; nil or a nil URL
	// means none. Proxied requests go through an http.Transport made on first use.
	Proxy func(*http.Request) (*url.URL, error)
	// TLSClientConfig is the base of every TLS client configuration; nil means the
	// defaults. It is cloned: ServerName defaults to the URL's host, NextProtos is
	// http/1.1 only and MinVersion at least TLS 1.2.
	TLSClientConfig *tls.Config
	// MaxIdleConnsPerHost bounds the idle connections kept per scheme and host;
	// 0 means DefaultMaxIdleConnsPerHost.
	MaxIdleConnsPerHost int
	// IdleConnTimeout is how long an idle connection is kept; 0 means
	// DefaultIdleConnTimeout.
	IdleConnTimeout time.Duration

	tlsOnce sync.Once
	tlsBase *tls.Config

	// dialConn, if set, replaces dialing TCP: the fuzz test answers from a net.Pipe.
	dialConn func(ctx context.Context, addr string) (net.Conn, error)

	mu           sync.Mutex
	idle         map[connKey]*idleList
	janitor      *time.Timer // closes expired idle connections, armed while any exist
	janitorArmed bool
	proxied      *http.Transport
}

var _ http.RoundTripper = (*Transport)(nil)

// connKey names the connections that can carry a request: same scheme, same host:port.
type connKey struct {
	scheme string
	addr   string
}

// idleList holds a key's idle connections, most recently used last.
type idleList struct {
	conns []*conn
}

var (
	errBodyClosed   = errors.New("read on closed response body")
	errHeadTooLarge = fmt.Errorf("response head over %d bytes", maxResponseHead)
	// aLongTimeAgo is a deadline that has passed, to unblock whatever waits on a connection.
	aLongTimeAgo = time.Unix(1, 0)
)

// RoundTrip sends req and returns the response, whose body must be read to the end or
// closed for the connection to be reused.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	key, host, err := requestKey(req)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	if t.Proxy != nil {
		proxyURL, err := t.Proxy(req)
		if err != nil {
			closeBody(req)
			return nil, fmt.Errorf("choosing a proxy: %w", err)
		}
		if proxyURL != nil {
			return t.proxyTransport().RoundTrip(req)
		}
	}
	ctx := req.Context()
	if err := ctx.Err(); err != nil {
		closeBody(req)
		return nil, err
	}

	c := t.getIdle(key)
	if c == nil {
		if c, err = t.dial(ctx, key, host); err != nil {
			closeBody(req)
			return nil, err
		}
	}
	resp, stale, err := c.roundTrip(req)
	if err != nil && stale && c.reused {
		// The server closed the idle connection before our request reached it: writing
		// failed (it had reset the connection), or the connection ended cleanly before any
		// byte of an answer (it had closed it). Send the request once more on a fresh
		// connection. Should the server have seen it after all, resending is still safe:
		// the only request this package sends, POST /credit/sessions/get, reads and
		// changes nothing.
		if again, ok := rewound(req); ok {
			if c, err = t.dial(ctx, key, host); err != nil {
				closeBody(again)
				return nil, err
			}
			resp, _, err = c.roundTrip(again)
		}
	}
	if err != nil {
		return nil, err
	}
	resp.Request = req
	return resp, nil
}

// CloseIdleConnections closes the connections that are not carrying a request; the ones
// that are close or come back to the pool as their responses end.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	if t.janitorArmed {
		t.janitor.Stop()
		t.janitorArmed = false
	}
	proxied := t.proxied
	t.mu.Unlock()
	for _, l := range idle {
		for _, c := range l.conns {
			c.close()
		}
	}
	if proxied != nil {
		proxied.CloseIdleConnections()
	}
}

// requestKey checks that req is one Transport can send and returns its pool key and the
// host name to verify a TLS certificate against.
func requestKey(req *http.Request) (connKey, string, error) {
	u := req.URL
	if u == nil {
		return connKey{}, "", errors.New("nil request URL")
	}
	var port string
	switch u.Scheme {
	case "http":
		port = "80"
	case "https":
		port = "443"
	default:
		return connKey{}, "", fmt.Errorf("unsupported protocol scheme %q", u.Scheme)
	}
	host := u.Hostname()
	if host == "" {
		return connKey{}, "", errors.New("no Host in request URL")
	}
	if !validMethod(req.Method) {
		return connKey{}, "", fmt.Errorf("invalid method %q", req.Method)
	}
	// Request.Write copies header fields as they are, so a value holding CR or LF (a
	// caller's "secret", with caller keys) would add fields or requests of its own. The
	// error names the field, never the value: it may be a secret.
	for k, vs := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return connKey{}, "", fmt.Errorf("invalid header field name %q", k)
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				return connKey{}, "", fmt.Errorf("invalid value for header field %q", k)
			}
		}
	}
	if p := u.Port(); p != "" {
		port = p
	}
	return connKey{scheme: u.Scheme, addr: net.JoinHostPort(host, port)}, host, nil
}

// validMethod reports whether m is an HTTP token, so it can not break the request line.
func validMethod(m string) bool {
	for i := 0; i < len(m); i++ {
		b := m[i]
		if b <= ' ' || b >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, b) >= 0 {
			return false
		}
	}
	return true
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

// rewound returns req with a fresh copy of its body, or false if the body can not be
// sent again.
func rewound(req *http.Request) (*http.Request, bool) {
	if req.Body == nil || req.Body == http.NoBody {
		return req, true
	}
	if req.GetBody == nil {
		return nil, false
	}
	body, err := req.GetBody()
	if err != nil {
		return nil, false
	}
	again := *req
	again.Body = body
	return &again, true
}

// wantsClose reports whether req asked for its connection to close after the response.
func wantsClose(req *http.Request) bool {
	if req.Close {
		return true
	}
	for _, v := range req.Header["Connection"] {
		for token := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(token), "close") {
				return true
			}
		}
	}
	return false
}

// proxyTransport returns the http.Transport that carries proxied requests, with the
// settings NewHTTPClient used before Transport existed.
func (t *Transport) proxyTransport() *http.Transport {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.proxied == nil {
		dialer := &net.Dialer{Timeout: dialTimeout, KeepAlive: dialKeepAlive}
		t.proxied = &http.Transport{
			Proxy:                 t.Proxy,
			DialContext:           dialer.DialContext,
			TLSClientConfig:       t.TLSClientConfig.Clone(),
			ForceAttemptHTTP2:     true,
			TLSHandshakeTimeout:   tlsHandshakeTimeout,
			ResponseHeaderTimeout: 30 * time.Second,
			ExpectContinueTimeout: time.Second,
			MaxIdleConns:          256,
			MaxIdleConnsPerHost:   t.maxIdlePerHost(),
			IdleConnTimeout:       t.idleTimeout(),
		}
	}
	return t.proxied
}

func (t *Transport) maxIdlePerHost() int {
	if t.MaxIdleConnsPerHost > 0 {
		return t.MaxIdleConnsPerHost
	}
	return DefaultMaxIdleConnsPerHost
}

func (t *Transport) idleTimeout() time.Duration {
	if t.IdleConnTimeout > 0 {
		return t.IdleConnTimeout
	}
	return DefaultIdleConnTimeout
}

// getIdle takes the most recently used idle connection for key, closing any it finds
// expired or holding bytes nobody asked for.
func (t *Transport) getIdle(key connKey) *conn {
	timeout := t.idleTimeout()
	now := time.Now()
	var found *conn
	var stale []*conn
	t.mu.Lock()
	if l := t.idle[key]; l != nil {
		for n := len(l.conns); n > 0 && found == nil; n-- {
			c := l.conns[n-1]
			l.conns[n-1] = nil
			l.conns = l.conns[:n-1]
			// An idle connection has no reader: anything buffered arrived unasked.
			if now.Sub(c.idleAt) >= timeout || c.br.Buffered() > 0 {
				stale = append(stale, c)
				continue
			}
			found = c
		}
	}
	t.mu.Unlock()
	for _, c := range stale {
		c.close()
	}
	if found != nil {
		found.reused = true
	}
	return found
}

// putIdle pools c for the next request to its host, or closes it if the pool is full.
func (t *Transport) putIdle(c *conn) {
	if err := c.nc.SetDeadline(time.Time{}); err != nil {
		c.close()
		return
	}
	now := time.Now()
	t.mu.Lock()
	l := t.idle[c.key]
	if l == nil {
		if t.idle == nil {
			t.idle = make(map[connKey]*idleList)
		}
		l = new(idleList)
		t.idle[c.key] = l
	}
	if len(l.conns) >= t.maxIdlePerHost() {
		t.mu.Unlock()
		c.close()
		return
	}
	c.idleAt = now
	l.conns = append(l.conns, c)
	if !t.janitorArmed {
		t.armJanitorLocked(t.idleTimeout())
	}
	t.mu.Unlock()
}

func (t *Transport) armJanitorLocked(after time.Duration) {
	t.janitorArmed = true
	if t.janitor == nil {
		t.janitor = time.AfterFunc(after, t.closeExpired)
		return
	}
	t.janitor.Reset(after)
}

// closeExpired closes the idle connections past IdleConnTimeout, and re-arms the janitor
// for the next to expire while any remain.
func (t *Transport) closeExpired() {
	timeout := t.idleTimeout()
	now := time.Now()
	var expired []*conn
	var next time.Time
	t.mu.Lock()
	t.janitorArmed = false
	for key, l := range t.idle {
		i := 0 // oldest first: conns[:i] have expired
		for i < len(l.conns) && now.Sub(l.conns[i].idleAt) >= timeout {
			i++
		}
		expired = append(expired, l.conns[:i]...)
		n := copy(l.conns, l.conns[i:])
		clear(l.conns[n:])
		l.conns = l.conns[:n]
		if n == 0 {
			delete(t.idle, key)
			continue
		}
		if at := l.conns[0].idleAt.Add(timeout); next.IsZero() || at.Before(next) {
			next = at
		}
	}
	if !next.IsZero() {
		t.armJanitorLocked(next.Sub(now))
	}
	t.mu.Unlock()
	for _, c := range expired {
		c.close()
	}
}

// tlsConfig returns the TLS client configuration for a connection to host.
func (t *Transport) tlsConfig(host string) *tls.Config {
	t.tlsOnce.Do(func() {
		base := t.TLSClientConfig.Clone()
		if base == nil {
			base = new(tls.Config)
		}
		base.NextProtos = []string{"http/1.1"}
		base.MinVersion = max(base.MinVersion, tls.VersionTLS12)
		if base.ClientSessionCache == nil {
			// Resumption makes a reconnect after an idle close cheaper.
			base.ClientSessionCache = tls.NewLRUClientSessionCache(0)
		}
		t.tlsBase = base
	})
	cfg := t.tlsBase.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	return cfg
}

// dial opens a connection for key, with TLS for https.
func (t *Transport) dial(ctx context.Context, key connKey, host string) (*conn, error) {
	var nc net.Conn
	var err error
	if t.dialConn != nil {
		nc, err = t.dialConn(ctx, key.addr)
	} else {
		dialer := net.Dialer{Timeout: dialTimeout, KeepAlive: dialKeepAlive}
		nc, err = dialer.DialContext(ctx, "tcp", key.addr)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, contextOr(ctx, err, "dial "+key.addr)
		}
		return nil, err // a *net.OpError, which names the address already
	}
	var tlsState *tls.ConnectionState
	if key.scheme == "https" {
		tc := tls.Client(nc, t.tlsConfig(host))
		hctx, cancel := context.WithTimeout(ctx, tlsHandshakeTimeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			_ = nc.Close()
			if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
				err = handshakeTimeoutError{}
			}
			return nil, contextOr(ctx, err, "TLS handshake with "+key.addr)
		}
		state := tc.ConnectionState()
		tlsState = &state
		nc = tc
	}
	c := &conn{t: t, key: key, nc: nc, tlsState: tlsState}
	c.wire.nc = nc
	c.br = bufio.NewReaderSize(&c.wire, bufferSize)
	c.bw = bufio.NewWriterSize(&c.wire, bufferSize)
	c.abort = func() { _ = nc.SetDeadline(aLongTimeAgo) }
	return c, nil
}

// handshakeTimeoutError is the TLS handshake outliving its own bound, not the caller's.
type handshakeTimeoutError struct{}

func (handshakeTimeoutError) Error() string {
	return fmt.Sprintf("no TLS handshake within %v", tlsHandshakeTimeout)
}
func (handshakeTimeoutError) Timeout() bool   { return true }
func (handshakeTimeoutError) Temporary() bool { return true }

// contextOr returns the context's error if it has ended, since that is why whatever was
// blocked failed, else err; either way with what was being done.
func contextOr(ctx context.Context, err error, doing string) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		err = ctxErr
	}
	return fmt.Errorf("%s: %w", doing, err)
}
