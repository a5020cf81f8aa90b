package observe_test

import (
	"context"
	"strings"
	"testing"

	"github.com/creditsessions/creditsessions/internal/observe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type serviceInfo map[string]grpc.ServiceInfo

func (s serviceInfo) GetServiceInfo() map[string]grpc.ServiceInfo { return s }

const method = "/plaid.credit.v1.CreditService/CreditSessionsGet"

// The series are the ones go-grpc-middleware's provider wrote, under the same names and
// labels, so that dashboards, rules and alerts read them unchanged.
func TestGRPCMetricsCountAsTheProviderDid(t *testing.T) {
	m := observe.NewMetrics()
	m.GRPC.InitializeMetrics(serviceInfo{"plaid.credit.v1.CreditService": {Methods: []grpc.MethodInfo{
		{Name: "CreditSessionsGet"}, {Name: "WatchCreditSessions", IsServerStream: true}}}})
	icpt := m.UnaryServerInterceptor()
	info := &grpc.UnaryServerInfo{FullMethod: method}
	ok := func(context.Context, any) (any, error) { return "resp", nil }
	fail := func(context.Context, any) (any, error) { return nil, status.Error(codes.Unavailable, "no") }
	gone := func(context.Context, any) (any, error) { return nil, context.Canceled }
	for _, h := range []grpc.UnaryHandler{ok, ok, fail, gone} {
		_, _ = icpt(context.Background(), nil, info, h)
	}

	families, err := m.Registry.Gather()
	require.NoError(t, err)
	got := map[string]float64{} // "family{method,type,code}" → value, for the non-zero ones
	series := map[string]int{}
	for _, f := range families {
		if !strings.HasPrefix(f.GetName(), "grpc_server_") {
			continue
		}
		for _, mt := range f.GetMetric() {
			series[f.GetName()]++
			labels := map[string]string{}
			for _, l := range mt.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			require.Equal(t, "plaid.credit.v1.CreditService", labels["grpc_service"])
			v := mt.GetCounter().GetValue() + float64(mt.GetHistogram().GetSampleCount())
			if v != 0 {
				got[f.GetName()+"{"+labels["grpc_method"]+","+labels["grpc_type"]+","+labels["grpc_code"]+"}"] = v
			}
		}
	}
	assert.Equal(t, map[string]float64{
		"grpc_server_started_total{CreditSessionsGet,unary,}":            4,
		"grpc_server_msg_received_total{CreditSessionsGet,unary,}":       4,
		"grpc_server_msg_sent_total{CreditSessionsGet,unary,}":           2,
		"grpc_server_handled_total{CreditSessionsGet,unary,OK}":          2,
		"grpc_server_handled_total{CreditSessionsGet,unary,Unavailable}": 1,
		"grpc_server_handled_total{CreditSessionsGet,unary,Canceled}":    1,
		"grpc_server_handling_seconds{CreditSessionsGet,unary,}":         4,
	}, got)
	assert.Equal(t, map[string]int{
		"grpc_server_started_total": 2, "grpc_server_msg_received_total": 2, "grpc_server_msg_sent_total": 2,
		"grpc_server_handling_seconds": 2, "grpc_server_handled_total": 2 * 17,
	}, series, "every series of both methods exists from the start, every code included")
}

// The interceptor runs on every call: it must cost no allocation.
func TestGRPCMetricsUnaryAllocatesNothing(t *testing.T) {
	m := observe.NewMetrics()
	icpt := m.UnaryServerInterceptor()
	info := &grpc.UnaryServerInfo{FullMethod: method}
	ok := func(context.Context, any) (any, error) { return nil, nil }
	ctx := context.Background()
	_, _ = icpt(ctx, nil, info, ok) // the method's series are made on its first call
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _, _ = icpt(ctx, nil, info, ok) }))
}

func BenchmarkGRPCMetricsUnary(b *testing.B) {
	m := observe.NewMetrics()
	icpt := m.UnaryServerInterceptor()
	info := &grpc.UnaryServerInfo{FullMethod: method}
	ok := func(context.Context, any) (any, error) { return nil, nil }
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_, _ = icpt(ctx, nil, info, ok)
	}
}
