package observe

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// GRPCMetrics are the gRPC server metrics go-grpc-middleware's Prometheus provider
// defines, under the same names, labels and help: grpc_server_started_total,
// grpc_server_handled_total, grpc_server_msg_received_total, grpc_server_msg_sent_total
// and grpc_server_handling_seconds. The provider resolves every label value of every
// series on every call, and allocates a reporter and five label slices for it; these
// resolve each method's series once, so that a call costs five atomic adds and no
// allocation.
type GRPCMetrics struct {
	started, handled, received, sent *prometheus.CounterVec
	handling                         *prometheus.HistogramVec

	methods sync.Map // full method name → *methodMetrics
}

// methodMetrics are one method's series.
type methodMetrics struct {
	started, received, sent prometheus.Counter
	handling                prometheus.Observer
	handled                 [maxCode + 1]prometheus.Counter
}

const maxCode = codes.Unauthenticated

func newGRPCMetrics(buckets []float64) *GRPCMetrics {
	labels := []string{"grpc_type", "grpc_service", "grpc_method"}
	return &GRPCMetrics{
		started: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_started_total", Help: "Total number of RPCs started on the server.",
		}, labels),
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_handled_total", Help: "Total number of RPCs completed on the server, regardless of success or failure.",
		}, append(labels[:3:3], "grpc_code")),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_msg_received_total", Help: "Total number of RPC stream messages received on the server.",
		}, labels),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_msg_sent_total", Help: "Total number of gRPC stream messages sent by the server.",
		}, labels),
		handling: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "grpc_server_handling_seconds",
			Help:    "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
			Buckets: buckets,
		}, labels),
	}
}

// Describe implements prometheus.Collector.
func (m *GRPCMetrics) Describe(ch chan<- *prometheus.Desc) {
	m.started.Describe(ch)
	m.handled.Describe(ch)
	m.received.Describe(ch)
	m.sent.Describe(ch)
	m.handling.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *GRPCMetrics) Collect(ch chan<- prometheus.Metric) {
	m.started.Collect(ch)
	m.handled.Collect(ch)
	m.received.Collect(ch)
	m.sent.Collect(ch)
	m.handling.Collect(ch)
}

// InitializeMetrics creates every series of every method the server has, at zero, so
// that they exist before the first call.
func (m *GRPCMetrics) InitializeMetrics(server interface {
	GetServiceInfo() map[string]grpc.ServiceInfo
}) {
	for service, info := range server.GetServiceInfo() {
		for _, mi := range info.Methods {
			m.method("/"+service+"/"+mi.Name, grpcType(mi.IsClientStream, mi.IsServerStream))
		}
	}
}

func grpcType(clientStream, serverStream bool) string {
	switch {
	case clientStream && serverStream:
		return "bidi_stream"
	case clientStream:
		return "client_stream"
	case serverStream:
		return "server_stream"
	}
	return "unary"
}

// method returns fullMethod's series, creating them on its first call.
func (m *GRPCMetrics) method(fullMethod, typ string) *methodMetrics {
	if mm, ok := m.methods.Load(fullMethod); ok {
		return mm.(*methodMetrics)
	}
	service, name, _ := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	mm := &methodMetrics{
		started:  m.started.WithLabelValues(typ, service, name),
		received: m.received.WithLabelValues(typ, service, name),
		sent:     m.sent.WithLabelValues(typ, service, name),
		handling: m.handling.WithLabelValues(typ, service, name),
	}
	for c := codes.OK; c <= maxCode; c++ {
		mm.handled[c] = m.handled.WithLabelValues(typ, service, name, c.String())
	}
	actual, _ := m.methods.LoadOrStore(fullMethod, mm)
	return actual.(*methodMetrics)
}

// codeOf is the code grpc-go answers err with: a status's, a context error's, or Unknown.
func codeOf(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	if s, ok := status.FromError(err); ok {
		return s.Code()
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	}
	return codes.Unknown
}

func (mm *methodMetrics) done(err error, start time.Time) {
	c := codeOf(err)
	if c > maxCode {
		c = codes.Unknown
	}
	mm.handled[c].Inc()
	mm.handling.Observe(time.Since(start).Seconds())
}

// UnaryServerInterceptor counts and times every unary call.
func (m *GRPCMetrics) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		mm := m.method(info.FullMethod, "unary")
		mm.started.Inc()
		mm.received.Inc()
		resp, err := handler(ctx, req)
		if err == nil {
			mm.sent.Inc()
		}
		mm.done(err, start)
		return resp, err
	}
}

// StreamServerInterceptor counts and times every stream, and its messages.
func (m *GRPCMetrics) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		mm := m.method(info.FullMethod, grpcType(info.IsClientStream, info.IsServerStream))
		mm.started.Inc()
		err := handler(srv, &countedStream{ServerStream: ss, mm: mm})
		mm.done(err, start)
		return err
	}
}

type countedStream struct {
	grpc.ServerStream
	mm *methodMetrics
}

func (s *countedStream) SendMsg(msg any) error {
	err := s.ServerStream.SendMsg(msg)
	if err == nil {
		s.mm.sent.Inc()
	}
	return err
}

func (s *countedStream) RecvMsg(msg any) error {
	err := s.ServerStream.RecvMsg(msg)
	if err == nil {
		s.mm.received.Inc()
	}
	return err
}
