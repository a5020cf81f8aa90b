package auth

import (
	"context"
	"crypto/tls"
	"net/http"
	"strings"
)

// httpCall is what the mirror's HTTP handler learned of a REST call's connection and
// credential, for the interceptor.
type httpCall struct {
	tls           *tls.ConnectionState
	authorization string
	remoteAddr    string
}

type httpCallKey struct{}

// HTTP wraps the REST mirror's handler. It hands the request's TLS state and
// Authorization header to the interceptor through the context (the Authorization
// header is then removed, so the token never becomes metadata), and removes the headers
// a caller could use to impersonate what grpc-gateway itself adds: X-Forwarded-For and
// X-Forwarded-Host (the logged caller address is the connection's), and Grpc-Metadata-
// headers naming those or the credential.
func (s *Security) HTTP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hc := &httpCall{tls: r.TLS, authorization: r.Header.Get("Authorization"), remoteAddr: r.RemoteAddr}
		stripForgeable(r.Header)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), httpCallKey{}, hc)))
	})
}

// stripForgeable deletes the headers that would reach the service as metadata only
// grpc-gateway or the connection may set.
func stripForgeable(h http.Header) {
	for k := range h {
		lk := k
		if len(lk) > len("grpc-metadata-") && strings.EqualFold(lk[:len("grpc-metadata-")], "grpc-metadata-") {
			lk = lk[len("grpc-metadata-"):]
		}
		// Compared without folding the key into a new string: this runs on every header
		// of every REST call, and strings.ToLower allocated for each canonical key.
		switch {
		case strings.EqualFold(lk, "authorization"), strings.EqualFold(lk, "forwarded"), hasPrefixFold(lk, "x-forwarded-"),
			hasPrefixFold(lk, "grpcgateway-"):
			delete(h, k)
		}
	}
}

// Transport names the transport a call came over: "rest" for a call the mirror's
// handler (HTTP) passed on, else "grpc". It goes by the context HTTP makes, which
// nothing a caller sends can forge.
func Transport(ctx context.Context) string {
	if _, ok := ctx.Value(httpCallKey{}).(*httpCall); ok {
		return "rest"
	}
	return "grpc"
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}
