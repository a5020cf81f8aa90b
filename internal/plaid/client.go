// Package plaid is a client for Plaid's REST API, limited to `/credit/sessions/get`.
//
// It speaks HTTP and Plaid's JSON only. A call returns the decoded response, a *Error
// when Plaid answered with one of its error bodies, a *ProtocolError when the upstream
// answered with something that is not Plaid's protocol, or the transport's error
// (including the context's, so errors.Is(err, context.DeadlineExceeded) works).
package plaid

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/plaidjson"
)

// APIVersion is the Plaid API version this client speaks, sent as Plaid-Version.
const APIVersion = "2020-09-14"

// Plaid's hosts, by environment name.
var environments = map[string]string{
	"sandbox":    "https://sandbox.plaid.com",
	"production": "https://production.plaid.com",
}

// EnvironmentURL returns the base URL of Plaid's named environment: "sandbox" or
// "production".
func EnvironmentURL(name string) (string, error) {
	if u, ok := environments[name]; ok {
		return u, nil
	}
	return "", fmt.Errorf("plaid: unknown environment %q (want sandbox or production)", name)
}

// Credentials are a Plaid API client id and secret. They format as redacted, so they
// can not leak through a log line or an error by accident.
type Credentials struct {
	ClientID string
	Secret   string
}

// String redacts the secret.
func (c Credentials) String() string { return "{ClientID:" + c.ClientID + " Secret:REDACTED}" }

// GoString redacts the secret from %#v as well.
func (c Credentials) GoString() string { return c.String() }

// LogValue redacts the secret in structured logs.
func (c Credentials) LogValue() slog.Value {
	return slog.GroupValue(slog.String("client_id", c.ClientID), slog.String("secret", "REDACTED"))
}

// MarshalJSON redacts the secret from JSON too, the form a JSON log handler gives a
// struct that holds Credentials (a Config, a Request), where LogValue is not consulted.
func (c Credentials) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct{ ClientID, Secret string }{c.ClientID, "REDACTED"})
}

// Complete reports whether both halves are set.
func (c Credentials) Complete() bool { return c.ClientID != "" && c.Secret != "" }

// DefaultMaxResponseBytes bounds a response body: about 30,000 sessions.
const DefaultMaxResponseBytes = 10 << 20

// Config configures a Client.
type Config struct {
	// BaseURL is Plaid's base URL, such as https://sandbox.plaid.com. Required.
	BaseURL string
	// Credentials are sent with every call that does not bring its own.
	Credentials Credentials
	// CredentialSource, if set, is asked for the credentials on every call instead, so
	// that a rotated secret is used from the next call on.
	CredentialSource func() Credentials `json:"-"`
	// HTTPClient makes the calls; nil means one from NewHTTPClient. Its CheckRedirect is
	// replaced: redirects are never followed, since they would carry the credentials to
	// wherever they point.
	HTTPClient *http.Client
	// MaxResponseBytes bounds a response body; 0 means DefaultMaxResponseBytes.
	MaxResponseBytes int64
	// UserAgent is sent as User-Agent; empty means "creditsessions".
	UserAgent string
	// Admit, if set, is called with the size of each response body before the body is
	// read, with the call's context; it may wait. When the size is not announced, it is
	// called as the body arrives, with each 64 KiB the body grows by past the first. Its
	// error ends the call, wrapping ErrWaitingForMemory. The service bounds the memory of
	// large answers in flight with it (see package membudget).
	Admit func(ctx context.Context, bodyBytes int64) error `json:"-"`
}

// Client calls Plaid. It is safe for concurrent use.
type Client struct {
	endpoint string
	url      *url.URL // endpoint, parsed once; shared, read-only, by every request
	creds    Credentials
	source   func() Credentials
	http     *http.Client
	// direct is the client's Transport when it is this package's and the http.Client
	// adds nothing to it (no jar, no timeout): requests go to it without http.Client,
	// whose per-request work (copying headers for redirects it never follows, redirect
	// checks, deadline plumbing) was a tenth of the exchange's allocations.
	direct *Transport
	// headers are the last request headers built, shared by the requests whose
	// credentials match: every header of a request is fixed but the keys, which change
	// only when a secret rotates (or, with callers' keys, from caller to caller).
	headers   atomic.Pointer[requestHeaders]
	maxBody   int64
	userAgent string
	admit     func(context.Context, int64) error
	// growing lets one body of unannounced size at a time grow past its first piece
	// under Admit; see readUnsized.
	growing chan struct{}
}

// String describes the client without its secret. Without it, fmt would print the
// unexported credentials field raw, since it can not call their String method.
func (c *Client) String() string {
	return "plaid.Client{endpoint:" + c.endpoint + " credentials:" + c.creds.String() + "}"
}

// GoString redacts the secret from %#v as well.
func (c *Client) GoString() string { return c.String() }

// NewClient returns a client for the Plaid API at cfg.BaseURL.
func NewClient(cfg Config) (*Client, error) {
	base, err := ParseBaseURL(cfg.BaseURL)
	if err != nil {
		return nil, err
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = NewHTTPClient()
	}
	noRedirects := *hc
	noRedirects.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	endpoint := strings.TrimSuffix(base.String(), "/") + "/credit/sessions/get"
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, fmt.Errorf("plaid: base URL: %w", err)
	}
	c := &Client{
		endpoint:  endpoint,
		url:       u,
		creds:     cfg.Credentials,
		source:    cfg.CredentialSource,
		http:      &noRedirects,
		maxBody:   cfg.MaxResponseBytes,
		userAgent: cfg.UserAgent,
		admit:     cfg.Admit,
		growing:   make(chan struct{}, 1),
	}
	if c.maxBody <= 0 {
		c.maxBody = DefaultMaxResponseBytes
	}
	if c.userAgent == "" {
		c.userAgent = "creditsessions"
	}
	if t, ok := hc.Transport.(*Transport); ok && hc.Jar == nil && hc.Timeout == 0 {
		c.direct = t
	}
	return c, nil
}

// requestHeaders are a request's header fields for one pair of credentials. The map is
// read-only once built: requests share it, and nothing on their way (http.Request.Write,
// Transport) writes to a request's header.
type requestHeaders struct {
	creds  Credentials
	header http.Header
}

// header returns the header fields of a request made with creds.
func (c *Client) header(creds Credentials) http.Header {
	if h := c.headers.Load(); h != nil && h.creds == creds {
		return h.header
	}
	h := &requestHeaders{creds: creds, header: http.Header{
		"Content-Type":    {"application/json"},
		"Accept":          {"application/json"},
		"User-Agent":      {c.userAgent},
		"Plaid-Version":   {APIVersion},
		"Plaid-Client-Id": {creds.ClientID},
		"Plaid-Secret":    {creds.Secret},
	}}
	c.headers.Store(h)
	return h.header
}

// roundTrip sends the request for body with creds and returns Plaid's response.
func (c *Client) roundTrip(ctx context.Context, creds Credentials, body []byte) (*http.Response, error) {
	if c.direct == nil {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, bytes.NewReader(body))
		if err != nil {
			return nil, fmt.Errorf("plaid: credit sessions get: %w", err)
		}
		// A copy: the http.Client's transport may be anyone's, and may write to it.
		req.Header = c.header(creds).Clone()
		resp, err := c.http.Do(req)
		if err != nil {
			return nil, fmt.Errorf("plaid: credit sessions get: %w", scrubURLError(err))
		}
		return resp, nil
	}
	// A NopCloser around a *bytes.Reader, which http.Request.Write knows for an
	// in-memory body: a body of any other type has its headers flushed on their own
	// first, two writes (and two reads at the other end) where one does.
	tmpl := http.Request{
		Method:        http.MethodPost,
		URL:           c.url,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        c.header(creds),
		Body:          io.NopCloser(bytes.NewReader(body)),
		GetBody:       func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil },
		ContentLength: int64(len(body)),
		Host:          c.url.Host,
	}
	resp, err := c.direct.RoundTrip(tmpl.WithContext(ctx))
	if err != nil {
		// Worded as http.Client's *url.Error reads once scrubURLError has dropped its URL.
		return nil, fmt.Errorf("plaid: credit sessions get: Post: %w", err)
	}
	return resp, nil
}

// ParseBaseURL checks that s is an absolute http or https URL with a host and no query.
func ParseBaseURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("plaid: base URL: %w", err)
	}
	// Redacted, so a password in the user info does not reach the error.
	shown := u.Redacted()
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("plaid: base URL %q: scheme must be http or https", shown)
	case u.Hostname() == "": // "https://:443" has a Host but no host name
		return nil, fmt.Errorf("plaid: base URL %q: no host", shown)
	// A bare "?" is a query too: the endpoint path appended after it would become one.
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.User != nil:
		return nil, fmt.Errorf("plaid: base URL %q: must not have user info, a query or a fragment", shown)
	}
	return u, nil
}

// NewHTTPClient returns an HTTP client for Plaid: a Transport, which keeps a pool of
// HTTP/1.1 keep-alive connections (no HTTP/2) and bounds dialing and the TLS handshake
// at 5 s each. Waiting for the answer is bounded by the call's context, not by a timer
// of the client's. Requests that the environment's proxy settings send through a proxy
// go through an http.Transport.
func NewHTTPClient() *http.Client {
	return &http.Client{Transport: &Transport{Proxy: http.ProxyFromEnvironment}}
}

// Request is one `/credit/sessions/get` call.
type Request struct {
	// UserToken names the user. Required.
	UserToken string
	// Credentials, when complete, are sent instead of the client's own.
	Credentials Credentials
}

// credentials are the service's own: the source's current ones when there is a source.
func (c *Client) credentials() Credentials {
	if c.source != nil {
		return c.source()
	}
	return c.creds
}

// CreditSessionsGet calls `POST /credit/sessions/get`.
func (c *Client) CreditSessionsGet(ctx context.Context, r Request) (*creditv1.CreditSessionsGetResponse, error) {
	creds := c.credentials()
	if r.Credentials.Complete() {
		creds = r.Credentials
	}
	body := plaidjson.AppendRequest(make([]byte, 0, 32+len(r.UserToken)),
		&creditv1.CreditSessionsGetRequest{UserToken: r.UserToken})
	resp, err := c.roundTrip(ctx, creds, body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()

	if c.admit != nil && resp.ContentLength >= 0 {
		if err := c.admit(ctx, resp.ContentLength); err != nil {
			return nil, fmt.Errorf("plaid: credit sessions get: %w to read the response: %w", ErrWaitingForMemory, err)
		}
	}
	var buf *bytes.Buffer
	if resp.ContentLength >= 0 {
		buf = getBuffer(min(resp.ContentLength, c.maxBody) + bytes.MinRead)
		defer putBuffer(buf)
		if err := readBody(buf, resp, c.maxBody); err != nil {
			return nil, err
		}
	} else {
		if buf, err = c.readUnsized(ctx, resp); err != nil {
			return nil, err
		}
		defer putBuffer(buf)
	}
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		out := new(creditv1.CreditSessionsGetResponse)
		if err := plaidjson.UnmarshalResponse(buf.Bytes(), out); err != nil {
			return nil, &ProtocolError{HTTPStatus: resp.StatusCode, Reason: "the success body is not a credit sessions response", Err: err}
		}
		if out.GetRequestId() == "" {
			return nil, &ProtocolError{HTTPStatus: resp.StatusCode, Reason: "the success body has no request_id"}
		}
		return out, nil
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return nil, &ProtocolError{HTTPStatus: resp.StatusCode, Reason: "redirect not followed (it would resend the credentials)"}
	default:
		return nil, parseError(resp, buf.Bytes())
	}
}

// readBody reads the whole body into buf, failing past max bytes or on a body cut short.
func readBody(buf *bytes.Buffer, resp *http.Response, max int64) error {
	if resp.ContentLength > max {
		return &ProtocolError{HTTPStatus: resp.StatusCode, Reason: fmt.Sprintf("a body of %d bytes, over the %d-byte limit", resp.ContentLength, max), Err: ErrTooLarge}
	}
	if resp.ContentLength > 0 {
		// ReadFrom wants MinRead bytes free before each read, the one that finds the
		// end included: without them, a buffer sized to the body would be copied into
		// one twice as large to read nothing.
		buf.Grow(int(resp.ContentLength) + bytes.MinRead)
	}
	n, err := buf.ReadFrom(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return readError(resp, err)
	}
	if n > max {
		return tooLarge(resp, max)
	}
	return nil
}

// segmentSize is the piece a body of unannounced size is read in.
const segmentSize = 64 << 10

// segments are the pieces bodies of unannounced size are read into, kept for the next
// such body: reading one then costs no garbage beyond the body's own buffer, as when its
// size is announced.
var segments = sync.Pool{New: func() any { b := make([]byte, segmentSize); return &b }}

// readUnsized reads a body whose size was not announced (chunked, or ended by closing
// the connection) and returns it in a body buffer (see bodies.go). It reads into 64 KiB
// segments, admitting each before filling it (from the second on: a body that fits one
// passes as a small one would), so that the answer-memory budget applies as the body
// arrives rather than once it is all in memory, and no more than max+1 bytes are ever
// read. At the end the segments are copied into that buffer, sized to the body, and go
// back to the pool: the body costs what it would have with a Content-Length, and one
// copy.
//
// One such body at a time grows past its first piece, from its first reservation on: the
// others wait for their turn holding that piece, and no reservation. (Taking the turn any
// later would let waiters hold reservations the one growing may be waiting for.) Calls growing their reservations together could each hold part
// of the budget and all wait for more; the budget breaks that by having a waiter give
// back what it holds, but its pieces stay in memory, uncounted, so twenty such waiters
// would hold twenty partial bodies outside the budget.
func (c *Client) readUnsized(ctx context.Context, resp *http.Response) (*bytes.Buffer, error) {
	max, admit := c.maxBody, c.admit
	var segs []*[]byte
	turn := false
	defer func() {
		for _, seg := range segs {
			segments.Put(seg)
		}
		if turn {
			<-c.growing
		}
	}()
	var total int64
	fill := 0 // bytes in the last segment
	for {
		if len(segs) == 0 || fill == segmentSize {
			if admit != nil && len(segs) > 0 {
				if !turn {
					select {
					case c.growing <- struct{}{}:
						turn = true
					case <-ctx.Done():
						return nil, fmt.Errorf("plaid: credit sessions get: %w to read the rest of the response: %w", ErrWaitingForMemory, ctx.Err())
					}
				}
				n := min(segmentSize, max+1-total) // the most this segment will hold
				if len(segs) == 1 {
					n += segmentSize // and the first, unadmitted until now
				}
				if err := admit(ctx, n); err != nil {
					return nil, fmt.Errorf("plaid: credit sessions get: %w to read the rest of the response: %w", ErrWaitingForMemory, err)
				}
			}
			segs = append(segs, segments.Get().(*[]byte))
			fill = 0
		}
		seg := *segs[len(segs)-1]
		room := min(int64(segmentSize-fill), max+1-total)
		n, err := resp.Body.Read(seg[fill : fill+int(room)])
		fill += n
		total += int64(n)
		if total > max {
			return nil, tooLarge(resp, max)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, readError(resp, err)
		}
	}
	buf := getBuffer(total)
	buf.Grow(int(total))
	for i, seg := range segs {
		if i == len(segs)-1 {
			buf.Write((*seg)[:fill])
		} else {
			buf.Write(*seg)
		}
	}
	return buf, nil
}

func readError(resp *http.Response, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("plaid: credit sessions get: reading the response: %w", err)
	}
	return &ProtocolError{HTTPStatus: resp.StatusCode, Reason: "the response body was cut short", Err: fmt.Errorf("%w: %w", ErrCutShort, err)}
}

func tooLarge(resp *http.Response, max int64) error {
	return &ProtocolError{HTTPStatus: resp.StatusCode, Reason: fmt.Sprintf("a body over the %d-byte limit", max), Err: ErrTooLarge}
}

// scrubURLError drops the URL from a *url.Error: the method and path are enough, and a
// base URL may carry something an operator would rather not see in every log line.
func scrubURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}
