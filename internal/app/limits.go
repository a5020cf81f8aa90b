package app

import (
	"log/slog"
	"net/http"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// What one caller, or one connection, may make the service hold or do. The defaults of
// grpc-go and net/http are for servers that do not know their requests: unbounded
// concurrent streams per connection, 4 MiB messages, 16 MiB of metadata, two minutes to
// finish a handshake, 1 MiB of REST headers. This service knows its requests are a few
// hundred bytes.
const (
	// MaxRequestMessageBytes bounds a gRPC request message. A CreditSessionsGetRequest
	// is a user token (at most server.MaxUserTokenBytes) and, in pass-through mode, a
	// client id and a secret of a few dozen bytes; reflection and health requests are
	// smaller. Larger is refused with ResourceExhausted before it is decoded.
	MaxRequestMessageBytes = 16 << 10
	// MaxHeaderBytes bounds a REST request's headers and a gRPC call's metadata: room for
	// a bearer token or a Kubernetes service-account JWT (1-2 KiB) many times over.
	MaxHeaderBytes = 64 << 10
	// MaxConcurrentStreams bounds the calls one gRPC connection may have open at once:
	// twice the default cap on requests to Plaid in flight (-max-in-flight), past which
	// calls only queue. A client past it has its streams refused (grpc-go clients wait
	// for a free one instead), so one connection cannot hold a goroutine per stream it
	// opens.
	MaxConcurrentStreams = 128
	// KeepaliveMinTime is the shortest interval at which a client may ping, with or
	// without calls open (PermitWithoutStream). A client pinging more often is sent
	// GOAWAY "too_many_pings". The Go client package pings every 30 s, within it.
	KeepaliveMinTime = 20 * time.Second
	// DefaultHeaderTimeout bounds how long a client may take to send a REST request's
	// headers, or to set up a gRPC connection (TLS handshake and HTTP/2 preface): a slow
	// client trickling bytes holds a connection for no longer than that.
	DefaultHeaderTimeout = 10 * time.Second
	// restReadTimeout bounds reading a whole REST request, headers and body (a body is at
	// most 64 KiB); restWriteTimeout writing its answer, which may be 10 MB; restIdleTimeout
	// keeping a kept-alive connection no request arrives on.
	restReadTimeout  = 30 * time.Second
	restWriteTimeout = 2 * time.Minute
	restIdleTimeout  = 2 * time.Minute
)

// KeepalivePolicy is the keepalive enforcement of the gRPC server.
func KeepalivePolicy() keepalive.EnforcementPolicy {
	return keepalive.EnforcementPolicy{MinTime: KeepaliveMinTime, PermitWithoutStream: true}
}

// grpcLimits are the gRPC server's options for hostile or broken clients.
func grpcLimits(headerTimeout time.Duration) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxRequestMessageBytes),
		grpc.MaxHeaderListSize(MaxHeaderBytes),
		grpc.MaxConcurrentStreams(MaxConcurrentStreams),
		grpc.KeepaliveEnforcementPolicy(KeepalivePolicy()),
		grpc.ConnectionTimeout(headerTimeout),
	}
}

// restServer is the REST mirror's HTTP server, bounded for hostile or broken clients.
func restServer(h http.Handler, logger *slog.Logger, headerTimeout time.Duration) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: headerTimeout,
		ReadTimeout:       restReadTimeout,
		WriteTimeout:      restWriteTimeout,
		IdleTimeout:       restIdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}
