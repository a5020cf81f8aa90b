package app_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/devcerts"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
)

// SPIFFE IDs of the test's callers.
const (
	underwriterID = "spiffe://example.org/ns/billing/sa/underwriter"
	operatorID    = "spiffe://example.org/ns/ops/sa/operator"
	intruderID    = "spiffe://example.org/ns/web/sa/frontend"
	// saUnderwriter is a Kubernetes service account's token subject.
	saUnderwriter = "system:serviceaccount:billing:underwriter"
	saFrontend    = "system:serviceaccount:web:frontend"
	k8sIssuer     = "https://kubernetes.default.svc.cluster.local"
	audience      = "creditsessions"
)

// testPolicy lets the underwriter (by certificate or by token) get credit sessions, and
// the operator use reflection too; the frontend is named only to be denied.
const testPolicy = `{
  "name": "creditsessions",
  "deny_rules": [
    {"name": "no-frontend", "source": {"principals": ["spiffe://example.org/ns/web/*", "system:serviceaccount:web:*"]}}
  ],
  "allow_rules": [
    {"name": "underwriters", "source": {"principals": ["` + underwriterID + `", "` + saUnderwriter + `"]},
     "request": {"paths": ["/plaid.credit.v1.CreditService/CreditSessionsGet"]}},
    {"name": "operators", "source": {"principals": ["` + operatorID + `"]},
     "request": {"paths": ["/plaid.credit.v1.CreditService/*", "/grpc.reflection.v1.ServerReflection/*"]}}
  ]
}`

// pki is a CA, a server certificate for 127.0.0.1, client certificates, and the bad
// ones: expired, and from another CA; plus keys that sign tokens, written where the
// service reads them.
type pki struct {
	dir                             string
	ca                              *devcerts.CA
	server                          *devcerts.Leaf
	underwriter, operator, intruder tls.Certificate
	expired, foreign, dnsOnly       tls.Certificate
	rsaKey                          *rsa.PrivateKey
	ecKey                           *ecdsa.PrivateKey
	certFile, keyFile, caFile       string
	jwksFile, policyFile            string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir()}
	var err error
	p.ca, err = devcerts.NewCA("test CA", time.Hour)
	require.NoError(t, err)
	other, err := devcerts.NewCA("another CA", time.Hour)
	require.NoError(t, err)
	p.server, err = p.ca.Issue(devcerts.Options{CommonName: "creditsessions", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true})
	require.NoError(t, err)
	client := func(ca *devcerts.CA, o devcerts.Options) tls.Certificate {
		o.Client = true
		leaf, err := ca.Issue(o)
		require.NoError(t, err)
		c, err := leaf.TLS()
		require.NoError(t, err)
		return c
	}
	p.underwriter = client(p.ca, devcerts.Options{CommonName: "underwriter", URIs: []string{underwriterID}})
	p.operator = client(p.ca, devcerts.Options{CommonName: "operator", URIs: []string{operatorID}})
	p.intruder = client(p.ca, devcerts.Options{CommonName: "frontend", URIs: []string{intruderID}})
	p.dnsOnly = client(p.ca, devcerts.Options{CommonName: "batch", DNSNames: []string{"batch.billing.svc"}})
	p.expired = client(p.ca, devcerts.Options{CommonName: "underwriter", URIs: []string{underwriterID},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	p.foreign = client(other, devcerts.Options{CommonName: "underwriter", URIs: []string{underwriterID}})

	p.rsaKey, err = rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	p.ecKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: p.rsaKey.Public(), KeyID: "rsa-1", Algorithm: "RS256", Use: "sig"},
		{Key: p.ecKey.Public(), KeyID: "ec-1", Algorithm: "ES256", Use: "sig"},
	}})
	require.NoError(t, err)

	p.certFile, p.keyFile = p.write(t, "tls.crt", p.server.CertPEM), p.write(t, "tls.key", p.server.KeyPEM)
	p.caFile = p.write(t, "ca.crt", p.ca.CertPEM)
	p.jwksFile = p.write(t, "jwks.json", jwks)
	p.policyFile = p.write(t, "policy.json", []byte(testPolicy))
	return p
}

// write replaces a file as Kubernetes and cert-manager do: a new file renamed over the
// old, so a reader sees the old or the new, never half of one.
func (p *pki) write(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	tmp := path + ".tmp"
	require.NoError(t, os.WriteFile(tmp, data, 0o600))
	require.NoError(t, os.Rename(tmp, path))
	return path
}

// clientTLS trusts the test CA and presents cert, if any.
func (p *pki) clientTLS(cert *tls.Certificate) *tls.Config {
	c := &tls.Config{RootCAs: p.ca.Pool(), MinVersion: tls.VersionTLS12}
	if cert != nil {
		c.Certificates = []tls.Certificate{*cert}
	}
	return c
}

// grpcClient dials addr over TLS with cert (nil: none).
func (p *pki) grpcClient(t *testing.T, addr string, cert *tls.Certificate) (creditv1.CreditServiceClient, *grpc.ClientConn) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(p.clientTLS(cert))))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return creditv1.NewCreditServiceClient(conn), conn
}

// httpClient calls over TLS with cert (nil: none), one connection per client.
func (p *pki) httpClient(t *testing.T, cert *tls.Certificate) *http.Client {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: p.clientTLS(cert), ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// restCall posts a credit sessions request; err is a transport error (a refused
// handshake).
func restCall(c *http.Client, baseURL, token string, header http.Header) (*http.Response, []byte, error) {
	req, err := http.NewRequest(http.MethodPost, baseURL+"/credit/sessions/get",
		strings.NewReader(`{"user_token":"`+token+`"}`))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

// claims of a Kubernetes projected service-account token, as the API server writes them.
type k8sClaims struct {
	jwt.Claims
	Kubernetes map[string]any `json:"kubernetes.io"`
}

// token signs claims with key (the RSA or EC key of the JWKS), under kid.
func token(t *testing.T, key crypto.Signer, kid string, c jwt.Claims) string {
	t.Helper()
	alg := jose.RS256
	if _, ok := key.(*ecdsa.PrivateKey); ok {
		alg = jose.ES256
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), kid))
	require.NoError(t, err)
	ns := strings.Split(strings.TrimPrefix(c.Subject, "system:serviceaccount:"), ":")[0]
	s, err := jwt.Signed(signer).Claims(k8sClaims{Claims: c, Kubernetes: map[string]any{
		"namespace": ns, "serviceaccount": map[string]any{"name": "x", "uid": "0b8b2b1e-0000-4000-8000-000000000000"},
	}}).Serialize()
	require.NoError(t, err)
	return s
}

// saClaims are a projected service-account token's claims for sub, valid now.
func saClaims(sub string) jwt.Claims {
	now := time.Now()
	return jwt.Claims{
		Issuer: k8sIssuer, Subject: sub, Audience: jwt.Audience{audience},
		Expiry: jwt.NewNumericDate(now.Add(time.Hour)), NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)),
		IssuedAt: jwt.NewNumericDate(now.Add(-time.Minute)),
	}
}

// unsignedToken is a token with alg "none".
func unsignedToken(t *testing.T, c jwt.Claims) string {
	t.Helper()
	payload, err := json.Marshal(c)
	require.NoError(t, err)
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc(payload) + "."
}

// hmacWithPublicKey is the algorithm-confusion attack: HS256 keyed with the bytes of the
// public RSA key, which anyone can have.
func hmacWithPublicKey(t *testing.T, pub crypto.PublicKey, c jwt.Claims) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	require.NoError(t, err)
	key := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), "rsa-1"))
	require.NoError(t, err)
	s, err := jwt.Signed(signer).Claims(c).Serialize()
	require.NoError(t, err)
	return s
}

func bearer(ctx context.Context, tok string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}
