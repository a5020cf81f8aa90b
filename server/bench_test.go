package server

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"

	"github.com/creditsessions/creditsessions/internal/logbuf"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// stubStream stands for grpc-go's stream, whose header a call sets.
type stubStream struct{}

func (stubStream) Method() string                  { return benchMethod }
func (stubStream) SetHeader(metadata.MD) error     { return nil }
func (stubStream) SendHeader(metadata.MD) error    { return nil }
func (stubStream) SetTrailer(md metadata.MD) error { return nil }

const benchMethod = "/plaid.credit.v1.CreditService/CreditSessionsGet"

// BenchmarkInterceptors is each of the service's own interceptors alone, around a
// handler that sets the Plaid request id header and returns, as the service's does: the
// per-call cost of each stage of the chain. log-line/null-device writes the line as
// production did before, one write(2) per line; log-line/buffered through logbuf.
func BenchmarkInterceptors(b *testing.B) {
	info := &grpc.UnaryServerInfo{FullMethod: benchMethod}
	handler := func(ctx context.Context, _ any) (any, error) {
		setRequestID(ctx, "req-0123456789abcdef")
		if ci := callInfoFrom(ctx); ci != nil {
			ci.requestID, ci.tokenHash = "req-0123456789abcdef", "0a1b2c3d4e5f"
		}
		return nil, nil
	}
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer null.Close()
	buffered := logbuf.New(null, logbuf.Options{})
	defer buffered.Stop()
	for _, bb := range []struct {
		name string
		icpt grpc.UnaryServerInterceptor
	}{
		{"none", func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			return h(ctx, req)
		}},
		{"pushback", pushbackUnary},
		{"recovery", recoverPanics(slog.New(slog.NewJSONHandler(io.Discard, nil)))},
		{"log-line/encode-only", logCalls(slog.New(slog.NewJSONHandler(io.Discard, nil)))},
		{"log-line/null-device", logCalls(slog.New(slog.NewJSONHandler(null, nil)))},
		{"log-line/buffered", logCalls(slog.New(slog.NewJSONHandler(buffered, nil)))},
	} {
		b.Run(bb.name, func(b *testing.B) {
			// A peer, as grpc-go gives every call: the log line names its address.
			ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50123}})
			ctx = grpc.NewContextWithServerTransportStream(ctx, stubStream{})
			b.ReportAllocs()
			for b.Loop() {
				_, _ = bb.icpt(ctx, nil, info, handler)
			}
		})
	}
}
