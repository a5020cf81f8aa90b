// Package mirror publishes CreditService over HTTP/JSON with grpc-gateway, shaped like
// Plaid's own API, so that a Plaid client library pointed at this service's base URL
// works unchanged.
//
// The gateway calls the service in-process (RegisterCreditServiceHandlerServer), not
// over a loopback gRPC connection: that saves a marshal, an HTTP/2 round trip and an
// unmarshal per call. That path skips the gRPC server's interceptors, so the mirror runs
// the server's interceptor chain itself around every call: whatever auth, metrics or
// limits live in interceptors apply to REST callers exactly as to gRPC callers.
//
// The hot route, `POST /credit/sessions/get`, is served by the mirror's own handler
// (get.go), which answers exactly as the gateway's did without its per-call machinery;
// the other routes go through the gateway.
package mirror

import (
	"context"
	"errors"
	"mime"
	"net/http"
	"strings"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/membudget"
	"github.com/creditsessions/creditsessions/server"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// DefaultMaxRequestBytes bounds a request body. Plaid's requests are a few hundred bytes.
const DefaultMaxRequestBytes = 64 << 10

// Options configure New.
type Options struct {
	// Interceptor is the gRPC server's unary interceptor chain, run around every call.
	Interceptor grpc.UnaryServerInterceptor
	// StreamInterceptor is the gRPC server's stream interceptor chain, run around every
	// watch.
	StreamInterceptor grpc.StreamServerInterceptor
	// MaxRequestBytes bounds a request body; 0 means DefaultMaxRequestBytes.
	MaxRequestBytes int64
	// AnswerMemory, if set, is held by every call until its answer is written: the
	// mirror holds the answer's message and its JSON until then, after the handler has
	// returned.
	AnswerMemory *membudget.Budget
}

// New returns the HTTP handler of the mirror: `POST /credit/sessions/get` and the
// OpenAPI document at `GET /openapi.json`. Every error it answers is in Plaid's shape.
func New(svc creditv1.CreditServiceServer, opts Options) (http.Handler, error) {
	if opts.MaxRequestBytes <= 0 {
		opts.MaxRequestBytes = DefaultMaxRequestBytes
	}
	gw := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, plaidMarshaler{}),
		runtime.WithIncomingHeaderMatcher(incomingHeader),
		runtime.WithOutgoingHeaderMatcher(outgoingHeader),
		runtime.WithErrorHandler(handleError),
		runtime.WithRoutingErrorHandler(handleRoutingError),
		runtime.WithDisableHTTPMethodOverride(),
		runtime.WithForwardResponseOption(streamLargeAnswer),
		runtime.WithForwardResponseRewriter(skipStreamedAnswer),
	)
	rest := newIntercepted(svc, opts.Interceptor)
	if err := creditv1.RegisterCreditServiceHandlerServer(context.Background(), gw, rest); err != nil {
		return nil, err
	}
	doc, err := openAPIDocument()
	if err != nil {
		return nil, err
	}
	return &handler{gateway: gw, openAPI: doc, maxBody: opts.MaxRequestBytes, memory: opts.AnswerMemory,
		svc: svc, rest: rest, streamInterceptor: opts.StreamInterceptor}, nil
}

// handler is the mirror's front door. It does what Plaid does before a request reaches
// the endpoint: it tolerates the doubled slash a base URL ending in "/" produces (where
// http.ServeMux would redirect, and a redirected POST loses its body), and it rejects a
// body that is not declared JSON.
type handler struct {
	gateway *runtime.ServeMux
	openAPI []byte
	maxBody int64
	memory  *membudget.Budget

	svc               creditv1.CreditServiceServer
	rest              *intercepted // svc behind the interceptor chain, for REST calls
	streamInterceptor grpc.StreamServerInterceptor

	// viaGateway sends the hot route through grpc-gateway too, as before serveGet: for
	// the test that compares the two, never in production.
	viaGateway bool
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.Contains(r.URL.Path, "//") {
		r.URL.Path = collapseSlashes(r.URL.Path)
		r.URL.RawPath = ""
	}
	if r.URL.Path == "/openapi.json" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		serveDocument(w, h.openAPI)
		return
	}
	// An escaped path (RawPath set) is left to the gateway's matching.
	if r.URL.Path == getPath && r.Method == http.MethodPost && r.URL.RawPath == "" && !h.viaGateway {
		h.serveGet(w, r)
		return
	}
	body := &requestBody{ReadCloser: http.MaxBytesReader(w, r.Body, h.maxBody)}
	r.Body = body
	if r.Method == http.MethodPost && !h.acceptsBody(w, r, body) {
		return
	}
	if r.URL.Path == watchPath {
		h.serveWatch(w, r)
		return
	}
	ctx := context.WithValue(r.Context(), answerKey{}, &answer{})
	if h.memory != nil {
		var end func()
		ctx, end = h.memory.Hold(ctx)
		defer end()
	}
	h.gateway.ServeHTTP(w, r.WithContext(ctx))
}

// acceptsBody checks a POST's Content-Type, answering the call if it is not JSON.
func (h *handler) acceptsBody(w http.ResponseWriter, r *http.Request, body *requestBody) bool {
	switch mediaType(r.Header.Get("Content-Type")) {
	case "application/json":
		return true
	case "application/x-www-form-urlencoded":
		// curl -d labels a body so unless told otherwise. No Plaid client sends it; a
		// developer trying the service with curl gets the answer when the body is
		// plainly a JSON object. Anything else is Plaid's INVALID_BODY.
		if body.startsWithObject() {
			return true
		}
	}
	h.badContentType(w)
	return false
}

func (h *handler) badContentType(w http.ResponseWriter) {
	newAPIError(http.StatusBadRequest, "INVALID_REQUEST", "INVALID_BODY",
		"the request Content-Type must be application/json").write(w)
}

// mediaType is the media type of a Content-Type value, lower case, parameters dropped.
func mediaType(contentType string) string {
	// What Plaid's clients send, without mime's map of parameters.
	if equalFoldASCII(contentType, "application/json") || equalFoldASCII(contentType, "application/json; charset=utf-8") {
		return "application/json"
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil && !errors.Is(err, mime.ErrInvalidMediaParameter) {
		return ""
	}
	return mt
}

// equalFoldASCII is strings.EqualFold for ASCII only, as mime compares: under Unicode
// folding "ſ" would match "s".
func equalFoldASCII(s, t string) bool {
	if len(s) != len(t) {
		return false
	}
	for i := 0; i < len(s); i++ {
		a, b := s[i], t[i]
		if 'A' <= a && a <= 'Z' {
			a += 'a' - 'A'
		}
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		if a != b {
			return false
		}
	}
	return true
}

func collapseSlashes(p string) string {
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		if p[i] != '/' || i == 0 || p[i-1] != '/' {
			b.WriteByte(p[i])
		}
	}
	return b.String()
}

// intercepted runs the interceptor chain around the service, as the gRPC server would.
// Each method's grpc.UnaryServerInfo and the handler at the end of the chain are made
// once, in newIntercepted: per call they cost a copy and a closure.
type intercepted struct {
	creditv1.UnimplementedCreditServiceServer
	next        creditv1.CreditServiceServer
	interceptor grpc.UnaryServerInterceptor

	getInfo, batchInfo       *grpc.UnaryServerInfo
	getHandler, batchHandler grpc.UnaryHandler
}

func newIntercepted(svc creditv1.CreditServiceServer, interceptor grpc.UnaryServerInterceptor) *intercepted {
	s := &intercepted{next: svc, interceptor: interceptor,
		getInfo:   &grpc.UnaryServerInfo{Server: svc, FullMethod: creditv1.CreditService_CreditSessionsGet_FullMethodName},
		batchInfo: &grpc.UnaryServerInfo{Server: svc, FullMethod: creditv1.CreditService_BatchGetCreditSessions_FullMethodName},
	}
	s.getHandler, s.batchHandler = s.handleGet, s.handleBatch
	return s
}

func (s *intercepted) handleGet(ctx context.Context, req any) (any, error) {
	return s.next.CreditSessionsGet(ctx, req.(*creditv1.CreditSessionsGetRequest))
}

func (s *intercepted) CreditSessionsGet(ctx context.Context, req *creditv1.CreditSessionsGetRequest) (*creditv1.CreditSessionsGetResponse, error) {
	ctx = server.WithTransport(ctx, "rest")
	if s.interceptor == nil {
		return s.next.CreditSessionsGet(ctx, req)
	}
	resp, err := s.interceptor(ctx, req, s.getInfo, s.getHandler)
	if err != nil {
		return nil, err
	}
	out, ok := resp.(*creditv1.CreditSessionsGetResponse)
	if !ok || out == nil {
		return nil, status.Error(codes.Internal, "interceptor returned no response")
	}
	return out, nil
}

// incomingHeader passes Plaid's credential headers to the service as gRPC metadata
// (plaid-client-id, plaid-secret) and everything else as grpc-gateway does by default.
func incomingHeader(key string) (string, bool) {
	switch http.CanonicalHeaderKey(key) {
	case "Plaid-Client-Id", "Plaid-Secret":
		return http.CanonicalHeaderKey(key), true
	case "Cache-Control": // RFC 9111 request directives, for the service's cache
		return server.CacheControlHeader, true
	case "Plaid-User-Id":
		return server.UserIDHeader, true
	}
	return runtime.DefaultHeaderMatcher(key)
}

// outgoingHeader sends the service's response metadata back as plain headers for the
// keys a Plaid client may read, and with grpc-gateway's Grpc-Metadata- prefix otherwise.
func outgoingHeader(key string) (string, bool) {
	switch key {
	case "plaid-request-id":
		return "Plaid-Request-Id", true
	case server.AgeHeader:
		return "Age", true
	}
	return runtime.MetadataHeaderPrefix + key, true
}
