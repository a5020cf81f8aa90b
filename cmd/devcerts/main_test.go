package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/creditsessions/creditsessions/internal/auth"
)

// TestWritesCertificatesAndTokensTheServiceAccepts: what devcerts writes is what the
// service's own loaders take: the server pair, client certificates chaining to ca.crt, a
// JWKS -jwt-jwks loads, and for each client a token whose sub is the certificate's
// SPIFFE ID, so a policy names a caller once for both ways in.
func TestWritesCertificatesAndTokensTheServiceAccepts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	var out bytes.Buffer
	require.NoError(t, run([]string{"-dir", dir, "-token-ttl", "10m",
		"-clients", "underwriter=spiffe://example.org/ns/billing/sa/underwriter,operator=spiffe://example.org/ns/ops/sa/operator"},
		&out, io.Discard))
	assert.Contains(t, out.String(), "jwks.json (iss "+DefaultIssuer+", aud "+DefaultAudience+")")

	_, err := tls.LoadX509KeyPair(filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"))
	require.NoError(t, err)
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(caPEM))

	verifier, err := auth.NewJWTVerifier(filepath.Join(dir, "jwks.json"), DefaultIssuer, DefaultAudience,
		time.Hour, slog.New(slog.DiscardHandler), nil)
	require.NoError(t, err)
	for name, id := range map[string]string{
		"underwriter": "spiffe://example.org/ns/billing/sa/underwriter",
		"operator":    "spiffe://example.org/ns/ops/sa/operator",
	} {
		pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "client-"+name+".crt"), filepath.Join(dir, "client-"+name+".key"))
		require.NoError(t, err)
		leaf, err := x509.ParseCertificate(pair.Certificate[0])
		require.NoError(t, err)
		_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		require.NoError(t, err, name)
		require.Len(t, leaf.URIs, 1)
		assert.Equal(t, id, leaf.URIs[0].String())

		raw, err := os.ReadFile(filepath.Join(dir, "token-"+name+".jwt"))
		require.NoError(t, err)
		sub, err := verifier.Verify(strings.TrimSpace(string(raw)))
		require.NoError(t, err, name)
		assert.Equal(t, id, sub, "the token's subject is the certificate's SPIFFE ID")
		info, err := os.Stat(filepath.Join(dir, "token-"+name+".jwt"))
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "a token is a credential")
	}

	// Another audience's verifier refuses them: the aud is the one documented.
	other, err := auth.NewJWTVerifier(filepath.Join(dir, "jwks.json"), DefaultIssuer, "someone-else", time.Hour, slog.New(slog.DiscardHandler), nil)
	require.NoError(t, err)
	raw, err := os.ReadFile(filepath.Join(dir, "token-operator.jwt"))
	require.NoError(t, err)
	_, err = other.Verify(strings.TrimSpace(string(raw)))
	assert.Error(t, err)
}

func TestRefusesBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-token-ttl", "0s"},
		{"-jwt-issuer", ""},
		{"-clients", "nobody"},
		{"extra"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			assert.Error(t, run(append([]string{"-dir", t.TempDir()}, args...), io.Discard, io.Discard))
		})
	}
}
