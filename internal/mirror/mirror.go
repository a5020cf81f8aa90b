// Package mirror publishes CreditService over HTTP/JSON with grpc-gateway, shaped like
// Plaid's own API, so that a Plaid client library pointed at this service's base URL
// works unchanged.
//
// The gateway calls the service in-process (RegisterCreditServiceHandlerServer), not
// over a loopback gRPC connection: that saves a marshal, an HTTP/2 round trip and an
// unmarshal per call. That path skips the gRPC server's interceptors, so the mirror runs
// the server's interceptor chain itself around every call: whatever auth, metrics or
// limits live in interceptors apply to REST callers exactly as to gRPC callers.
package mirror

import (
	"context"
	"net/http"

	creditv1 "creditsessions/gen/plaid/credit/v1"

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
	// MaxRequestBytes bounds a request body; 0 means DefaultMaxRequestBytes.
	MaxRequestBytes int64
}

// New returns the HTTP handler of the mirror: `POST /credit/sessions/get` and the
// OpenAPI document at `GET /openapi.json`.
func New(svc creditv1.CreditServiceServer, opts Options) (http.Handler, error) {
	if opts.MaxRequestBytes <= 0 {
		opts.MaxRequestBytes = DefaultMaxRequestBytes
	}
	gw := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, plaidMarshaler{}),
		runtime.WithIncomingHeaderMatcher(incomingHeader),
		runtime.WithOutgoingHeaderMatcher(outgoingHeader),
	)
	if err := creditv1.RegisterCreditServiceHandlerServer(context.Background(), gw,
		intercepted{next: svc, interceptor: opts.Interceptor}); err != nil {
		return nil, err
	}
	doc, err := openAPIDocument()
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /openapi.json", serveDocument(doc))
	mux.Handle("/", limitBody(gw, opts.MaxRequestBytes))
	return mux, nil
}

// intercepted runs the interceptor chain around the service, as the gRPC server would.
type intercepted struct {
	creditv1.UnimplementedCreditServiceServer
	next        creditv1.CreditServiceServer
	interceptor grpc.UnaryServerInterceptor
}

var creditSessionsGetInfo = &grpc.UnaryServerInfo{FullMethod: creditv1.CreditService_CreditSessionsGet_FullMethodName}

func (s intercepted) CreditSessionsGet(ctx context.Context, req *creditv1.CreditSessionsGetRequest) (*creditv1.CreditSessionsGetResponse, error) {
	if s.interceptor == nil {
		return s.next.CreditSessionsGet(ctx, req)
	}
	info := *creditSessionsGetInfo
	info.Server = s.next
	resp, err := s.interceptor(ctx, req, &info, func(ctx context.Context, req any) (any, error) {
		return s.next.CreditSessionsGet(ctx, req.(*creditv1.CreditSessionsGetRequest))
	})
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
	}
	return runtime.DefaultHeaderMatcher(key)
}

// outgoingHeader sends the service's response metadata back as plain headers for the
// keys a Plaid client may read, and with grpc-gateway's Grpc-Metadata- prefix otherwise.
func outgoingHeader(key string) (string, bool) {
	if key == "plaid-request-id" {
		return "Plaid-Request-Id", true
	}
	return runtime.MetadataHeaderPrefix + key, true
}

// limitBody caps request bodies and marks them so the error handler can see why
// decoding failed.
func limitBody(next http.Handler, max int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = &requestBody{ReadCloser: http.MaxBytesReader(w, r.Body, max)}
		next.ServeHTTP(w, r)
	})
}
