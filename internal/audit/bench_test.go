package audit

import (
	"context"
	"log/slog"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
)

// BenchmarkCallPath is what the trail adds to a call: the interceptor, the notes the
// security layer and the service make, and, off the call's path, the writer's share
// (encoding, hashing, the batched write and fsync). cpu-ns/op is the process's CPU time
// (user and system, every goroutine) per call, the writer's included, since the writer
// runs on another core and ns/op alone would not show it. "off" is the same call without
// the trail.
func BenchmarkCallPath(b *testing.B) {
	handler := func(ctx context.Context, _ any) (any, error) {
		NoteCaller(ctx, "spiffe://example.org/ns/billing/sa/underwriter")
		n := NoteFrom(ctx)
		n.SetUser("user-sandbox-3f2f8c4e-5d1b-4b0e-9a59-0a6f1c2b7d11", "")
		n.SetRequestID("Ab1Cd2Ef3Gh4Ij5")
		n.AddSessions(2)
		return nil, nil
	}
	info := &grpc.UnaryServerInfo{FullMethod: ServicePrefix + "CreditSessionsGet"}
	transport := func(context.Context) string { return "grpc" }
	for _, tc := range []struct {
		name string
		open bool
	}{{"off", false}, {"file", true}} {
		b.Run(tc.name, func(b *testing.B) {
			icpt := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				return h(ctx, req)
			}
			var l *Log
			if tc.open {
				var err error
				l, err = Open(Options{Path: filepath.Join(b.TempDir(), "audit.log"), Required: true, FlushEvery: 100 * time.Millisecond,
					Logger: slog.New(slog.DiscardHandler), Metrics: NewMetrics(prometheus.NewRegistry()), ServiceClientID: func() string { return "client-1" }})
				if err != nil {
					b.Fatal(err)
				}
				icpt = l.Unary(transport)
			}
			ctx := context.Background()
			before := cpuTime()
			b.ReportAllocs()
			b.ResetTimer()
			i := 0
			for b.Loop() {
				if _, err := icpt(ctx, nil, info, handler); err != nil {
					b.Fatal(err)
				}
				// A million calls a second would outrun any disk: the queue, not the
				// call, would be measured. A batch every 4,096 calls keeps it in bounds.
				if i++; l != nil && i%4096 == 0 {
					if err := l.Flush(); err != nil {
						b.Fatal(err)
					}
				}
			}
			if l != nil {
				if err := l.Close(); err != nil { // every record written: its cost counted
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(cpuTime()-before)/float64(b.N), "cpu-ns/op")
		})
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
