package auth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/creditsessions/creditsessions/internal/devcerts"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// BenchmarkInterceptor is the cost the interceptor adds to a call: with nothing
// configured (the loopback default, metrics only), and with a client certificate, a
// policy and a quota.
func BenchmarkInterceptor(b *testing.B) {
	info := &grpc.UnaryServerInfo{FullMethod: "/plaid.credit.v1.CreditService/CreditSessionsGet"}
	handler := func(context.Context, any) (any, error) { return nil, nil }
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}

	b.Run("default", func(b *testing.B) {
		s, err := New(Options{}, nil, NewMetrics(prometheus.NewRegistry()))
		require.NoError(b, err)
		icpt := s.Unary()
		ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: addr})
		b.ReportAllocs()
		for b.Loop() {
			_, _ = icpt(ctx, nil, info, handler)
		}
	})
	b.Run("mTLS, policy, quota", func(b *testing.B) {
		dir := b.TempDir()
		ca, err := devcerts.NewCA("bench", time.Hour)
		require.NoError(b, err)
		server, err := ca.Issue(devcerts.Options{Server: true, DNSNames: []string{"x"}})
		require.NoError(b, err)
		client, err := ca.Issue(devcerts.Options{Client: true, URIs: []string{"spiffe://example.org/ns/billing/sa/underwriter"}})
		require.NoError(b, err)
		write := func(name string, data []byte) string {
			p := filepath.Join(dir, name)
			require.NoError(b, os.WriteFile(p, data, 0o600))
			return p
		}
		s, err := New(Options{
			TLSCert: write("c", server.CertPEM), TLSKey: write("k", server.KeyPEM), ClientCA: write("ca", ca.CertPEM),
			PolicyFile: write("p", []byte(`{"name":"p","allow_rules":[{"name":"a","source":{"principals":["spiffe://example.org/ns/billing/*"]},
				"request":{"paths":["/plaid.credit.v1.CreditService/*"]}}]}`)),
			CallerRate: 1e9, CallerBurst: 1e9,
		}, nil, NewMetrics(prometheus.NewRegistry()))
		require.NoError(b, err)
		icpt := s.Unary()
		state := tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{client.Cert}}}
		ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: addr, AuthInfo: credentials.TLSInfo{State: state}})
		b.ReportAllocs()
		for b.Loop() {
			if _, err := icpt(ctx, nil, info, handler); err != nil {
				b.Fatal(err)
			}
		}
	})
}
