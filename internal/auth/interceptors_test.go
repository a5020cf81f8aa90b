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
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// A policy's header rules see the call's metadata; the caller is in the context the
// handler gets.
func TestTheInterceptorHandsHeaderRulesTheMetadata(t *testing.T) {
	dir := t.TempDir()
	ca, err := devcerts.NewCA("t", time.Hour)
	require.NoError(t, err)
	server, err := ca.Issue(devcerts.Options{Server: true, DNSNames: []string{"x"}})
	require.NoError(t, err)
	client, err := ca.Issue(devcerts.Options{Client: true, URIs: []string{"spiffe://example.org/a"}})
	require.NoError(t, err)
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, data, 0o600))
		return p
	}
	s, err := New(Options{
		TLSCert: write("c", server.CertPEM), TLSKey: write("k", server.KeyPEM), ClientCA: write("ca", ca.CertPEM),
		PolicyFile: write("p", []byte(`{"name":"p","allow_rules":[{"name":"red","source":{"principals":["*"]},
			"request":{"headers":[{"key":"x-team","values":["red"]}]}}]}`)),
	}, nil, NewMetrics(prometheus.NewRegistry()))
	require.NoError(t, err)
	state := tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{client.Cert}}}
	base := peer.NewContext(context.Background(), &peer.Peer{
		Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, AuthInfo: credentials.TLSInfo{State: state}})
	info := &grpc.UnaryServerInfo{FullMethod: "/a.B/C"}
	var seen string
	handler := func(ctx context.Context, _ any) (any, error) {
		seen, _ = CallerFrom(ctx)
		return nil, nil
	}

	_, err = s.Unary()(metadata.NewIncomingContext(base, metadata.Pairs("x-team", "red")), nil, info, handler)
	require.NoError(t, err)
	assert.Equal(t, "spiffe://example.org/a", seen)
	_, err = s.Unary()(metadata.NewIncomingContext(base, metadata.Pairs("x-team", "blue")), nil, info, handler)
	assert.Equal(t, codes.PermissionDenied, status.Code(err))
	_, ok := CallerFrom(context.Background())
	assert.False(t, ok)
}
