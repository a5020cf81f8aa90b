package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/plaidjson"
	"github.com/creditsessions/creditsessions/server"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// getPath is the hot route, which the mirror serves itself (serveGet) rather than through
// grpc-gateway's generated handler: per call the gateway built the incoming metadata as
// pairs and joined it, copied the request to annotate its context four times, looked up
// marshalers, wrapped the answer's header metadata in copies and ran its response
// options through closures; together about a quarter of a REST call's CPU beyond a gRPC
// call's. serveGet answers exactly as that handler did (get_test.go compares the two),
// so every route but this one still goes through the gateway.
const getPath = "/credit/sessions/get"

// getCall is the state of one call on the hot route, allocated once: the
// grpc.ServerTransportStream that grpc.SetHeader finds in the call's context, the
// request message, and the backing of the incoming metadata's values.
type getCall struct {
	body requestBody
	req  creditv1.CreditSessionsGetRequest

	mu      sync.Mutex
	header  metadata.MD
	trailer metadata.MD

	values [8]string // the first metadata values, each a slice of one of these
	used   int
}

var _ grpc.ServerTransportStream = (*getCall)(nil)

// Method is empty, as on grpc-gateway's stream: what a REST call names is its path.
func (c *getCall) Method() string { return "" }

// SetHeader keeps the first header metadata as given rather than a copy of it: the
// service sets one (its request id) per call, from a map it never touches again.
func (c *getCall) SetHeader(md metadata.MD) error {
	if md.Len() == 0 {
		return nil
	}
	c.mu.Lock()
	if c.header == nil {
		c.header = md
	} else {
		c.header = metadata.Join(c.header, md)
	}
	c.mu.Unlock()
	return nil
}

// SendHeader is SetHeader: the header goes out with the answer, as on the gateway.
func (c *getCall) SendHeader(md metadata.MD) error { return c.SetHeader(md) }

func (c *getCall) SetTrailer(md metadata.MD) error {
	if md.Len() == 0 {
		return nil
	}
	c.mu.Lock()
	if c.trailer == nil {
		c.trailer = md
	} else {
		c.trailer = metadata.Join(c.trailer, md)
	}
	c.mu.Unlock()
	return nil
}

func (c *getCall) metadata() (header, trailer metadata.MD) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.header, c.trailer
}

// serveGet answers `POST /credit/sessions/get` as the front handler and grpc-gateway's
// handler for it, with the mirror's options, did: the same checks of the body, the same
// metadata for the service, the same interceptor chain, headers, body and errors.
func (h *handler) serveGet(w http.ResponseWriter, r *http.Request) {
	call := &getCall{}
	body := &call.body
	body.ReadCloser = http.MaxBytesReader(w, r.Body, h.maxBody)
	r.Body = body
	if !h.acceptsBody(w, r, body) {
		return
	}
	ctx := r.Context()
	if h.memory != nil {
		var end func()
		ctx, end = h.memory.Hold(ctx)
		defer end()
	}
	ctx = grpc.NewContextWithServerTransportStream(ctx, call)
	if tm := r.Header.Get("Grpc-Timeout"); tm != "" {
		timeout, err := timeoutDecode(tm)
		if err != nil {
			answerError(w, body, status.Errorf(codes.InvalidArgument, "invalid grpc-timeout: %s", tm))
			return
		}
		if timeout != 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
	}
	if md := call.incoming(r); len(md) > 0 {
		ctx = metadata.NewIncomingContext(ctx, md)
	}

	buf := bodyBuffers.Get().(*[]byte)
	defer putBodyBuffer(buf) // after the answer: nothing the call keeps points into it
	data, err := readAll(body, (*buf)[:0])
	*buf = data
	if err == nil {
		err = plaidjson.UnmarshalRequest(data, &call.req) // copies the strings it keeps
	}
	body.err = err // for answerError, as the gateway's decoder left it
	if err != nil && !errors.Is(err, io.EOF) {
		requestError(err).write(w)
		return
	}

	resp, err := h.rest.CreditSessionsGet(ctx, &call.req)
	if err != nil {
		answerError(w, body, err)
		return
	}
	header, trailer := call.metadata()
	h.writeGet(w, r, body, resp, header, trailer)
}

// bodyBuffers hold request bodies while they are decoded.
var bodyBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 1<<10); return &b }}

func putBodyBuffer(b *[]byte) {
	if cap(*b) <= 16<<10 {
		bodyBuffers.Put(b)
	}
}

// readAll is io.ReadAll into b.
func readAll(r io.Reader, b []byte) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return b, err
		}
	}
}

// Shared values of the headers every answer sets: net/http only reads them, and
// Header().Set made a new slice per call.
var (
	jsonContentType = []string{"application/json; charset=utf-8"}
	chunkedEncoding = []string{"chunked"}
)

// answerBuffers hold a small answer's JSON until it is written; net/http copies it.
var answerBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// writeGet sends a successful answer as grpc-gateway's ForwardResponseMessage did with
// the mirror's options: header metadata as headers (outgoingHeader), trailer metadata
// as Grpc-Trailer- trailers when the request accepts trailers, then the JSON.
func (h *handler) writeGet(w http.ResponseWriter, r *http.Request, body *requestBody, resp *creditv1.CreditSessionsGetResponse, header, trailer metadata.MD) {
	hdr := w.Header()
	for k, vs := range header {
		name, _ := outgoingHeader(k)
		name = textproto.CanonicalMIMEHeaderKey(name)
		if len(hdr[name]) == 0 && len(vs) > 0 {
			// The service's own slice, capped so that an Add copies it: net/http only
			// reads it, and a copy per call was an allocation.
			hdr[name] = vs[:len(vs):len(vs)]
			continue
		}
		for _, v := range vs {
			hdr.Add(name, v)
		}
	}
	withTrailers := requestAcceptsTrailers(r)
	if withTrailers {
		for k := range trailer {
			hdr.Add("Trailer", textproto.CanonicalMIMEHeaderKey(trailerPrefix+k))
		}
		hdr["Transfer-Encoding"] = chunkedEncoding
	}
	hdr["Content-Type"] = jsonContentType

	if len(resp.GetSessions()) >= streamFromSessions {
		written, err := writeLargeAnswer(w, resp)
		switch {
		case err == nil:
		case written == 0:
			// As the gateway reported a failed response option.
			answerError(w, body, fmt.Errorf("error handling ForwardResponseOptions: %w", err))
			return
		default:
			// Half an answer has gone out with a 200: the only honest end is to cut
			// the connection, so that the client sees a broken response, not a short one.
			panic(http.ErrAbortHandler)
		}
	} else {
		buf := answerBuffers.Get().(*[]byte)
		data, err := plaidjson.AppendResponse((*buf)[:0], resp)
		if err != nil {
			answerBuffers.Put(buf)
			answerError(w, body, err)
			return
		}
		_, _ = w.Write(data) // a failed write means the client went away
		if cap(data) <= 2*streamChunk {
			*buf = data
			answerBuffers.Put(buf)
		}
	}
	if withTrailers {
		for k, vs := range trailer {
			for _, v := range vs {
				hdr.Add(trailerPrefix+k, v)
			}
		}
	}
}

const trailerPrefix = "Grpc-Trailer-" // grpc-gateway's default outgoing trailer names

func requestAcceptsTrailers(r *http.Request) bool {
	te := r.Header.Get("TE")
	return te != "" && strings.Contains(strings.ToLower(te), "trailers")
}

// incoming is the metadata grpc-gateway's AnnotateIncomingContext made of r with the
// mirror's incomingHeader, built as a map directly: authorization first, the headers
// incomingKey names, x-forwarded-host and x-forwarded-for. nil when there is none.
func (c *getCall) incoming(r *http.Request) metadata.MD {
	md := make(metadata.MD, 8)
	for _, v := range r.Header["Authorization"] {
		if validMetadataText(v) {
			c.add(md, "authorization", v)
		}
	}
	for key, vals := range r.Header {
		key = textproto.CanonicalMIMEHeaderKey(key)
		name, ok := incomingKey(key)
		if !ok {
			continue // X-Forwarded-For and -Host among them, added below
		}
		for _, v := range vals {
			if validMetadataText(v) {
				c.add(md, name, v)
			}
		}
	}
	if host := r.Header.Get("X-Forwarded-Host"); host != "" && validMetadataText(host) {
		c.add(md, "x-forwarded-host", host)
	} else if r.Host != "" && validMetadataText(r.Host) {
		c.add(md, "x-forwarded-host", r.Host)
	}
	if xff := forwardedFor(r); xff != "" {
		c.add(md, "x-forwarded-for", xff)
	}
	if len(md) == 0 {
		return nil
	}
	return md
}

// add appends v to md[k], taking the value's slice from the call's backing array while
// it lasts. Each slice is capped at its length, so that an append to it copies.
func (c *getCall) add(md metadata.MD, k, v string) {
	if vs, ok := md[k]; ok {
		md[k] = append(vs, v)
		return
	}
	if c.used < len(c.values) {
		c.values[c.used] = v
		md[k] = c.values[c.used : c.used+1 : c.used+1]
		c.used++
		return
	}
	md[k] = []string{v}
}

// forwardedFor is the gateway's x-forwarded-for: the request's valid X-Forwarded-For
// values, then the connection's address, joined by ", ".
func forwardedFor(r *http.Request) string {
	remote := ""
	if r.RemoteAddr != "" {
		if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil && validMetadataText(ip) {
			remote = ip
		}
	}
	var b strings.Builder
	for _, v := range r.Header["X-Forwarded-For"] {
		if !validMetadataText(v) {
			continue
		}
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		b.WriteString(v)
	}
	if b.Len() == 0 {
		return remote
	}
	if remote != "" {
		b.WriteString(", ")
		b.WriteString(remote)
	}
	return b.String()
}

// permanentHeaders are the headers grpc-gateway's DefaultHeaderMatcher passes on as
// "grpcgateway-" metadata: IANA's permanent request headers.
var permanentHeaders = []string{
	"Accept", "Accept-Charset", "Accept-Language", "Accept-Ranges", "Authorization",
	"Cache-Control", "Content-Type", "Cookie", "Date", "Expect", "From", "Host", "If-Match",
	"If-Modified-Since", "If-None-Match", "If-Schedule-Tag-Match", "If-Unmodified-Since",
	"Max-Forwards", "Origin", "Pragma", "Referer", "User-Agent", "Via", "Warning",
}

// metadataKeys maps a canonical header name to its metadata key, lower case, as
// incomingHeader and metadata.Pairs made it; made once, where the gateway concatenated
// and lowered the key on every call.
var metadataKeys = func() map[string]string {
	m := make(map[string]string, len(permanentHeaders)+4)
	for _, k := range permanentHeaders {
		m[k] = "grpcgateway-" + strings.ToLower(k)
	}
	m["Plaid-Client-Id"] = "plaid-client-id"
	m["Plaid-Secret"] = "plaid-secret"
	m["Cache-Control"] = strings.ToLower(server.CacheControlHeader)
	m["Plaid-User-Id"] = strings.ToLower(server.UserIDHeader)
	return m
}()

func incomingKey(canonical string) (string, bool) {
	k, ok := metadataKeys[canonical]
	return k, ok
}

// validMetadataText is grpc-gateway's test of a metadata value: printable ASCII.
func validMetadataText(v string) bool {
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7E {
			return false
		}
	}
	return true
}

// timeoutDecode reads a Grpc-Timeout header as grpc-gateway does: digits and one unit.
func timeoutDecode(s string) (time.Duration, error) {
	size := len(s)
	if size < 2 {
		return 0, fmt.Errorf("timeout string is too short: %q", s)
	}
	var d time.Duration
	switch s[size-1] {
	case 'H':
		d = time.Hour
	case 'M':
		d = time.Minute
	case 'S':
		d = time.Second
	case 'm':
		d = time.Millisecond
	case 'u':
		d = time.Microsecond
	case 'n':
		d = time.Nanosecond
	default:
		return 0, fmt.Errorf("timeout unit is not recognized: %q", s)
	}
	t, err := strconv.ParseUint(s[:size-1], 10, 64)
	if err != nil {
		return 0, err
	}
	if t > uint64(math.MaxInt64)/uint64(d) {
		return time.Duration(math.MaxInt64), nil
	}
	return d * time.Duration(t), nil
}
