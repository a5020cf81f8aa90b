package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWritesACAAndCertificatesThatChainToIt(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	var out bytes.Buffer
	require.NoError(t, run([]string{"-dir", dir, "-clients", "a=spiffe://example.org/ns/a/sa/a"}, &out, &out))
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(caPEM))

	server, err := tls.LoadX509KeyPair(filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"))
	require.NoError(t, err)
	_, err = server.Leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "127.0.0.1"})
	assert.NoError(t, err, "the server certificate is good for 127.0.0.1")

	client, err := tls.LoadX509KeyPair(filepath.Join(dir, "client-a.crt"), filepath.Join(dir, "client-a.key"))
	require.NoError(t, err)
	_, err = client.Leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	require.NoError(t, err)
	assert.Equal(t, "spiffe://example.org/ns/a/sa/a", client.Leaf.URIs[0].String())

	info, err := os.Stat(filepath.Join(dir, "client-a.key"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "keys are their owner's only")

	assert.Error(t, run([]string{"-dir", dir, "-clients", "../x=spiffe://a"}, &out, &out))
}
