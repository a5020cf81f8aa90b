package app_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/app"
	"github.com/creditsessions/creditsessions/internal/devcerts"
	"github.com/creditsessions/creditsessions/internal/emulator"
	"github.com/creditsessions/creditsessions/internal/plaid"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

func TestThePolicyIsReloadedAndABrokenOneIsNot(t *testing.T) {
	p := newPKI(t)
	s := start(t, secureConfig(p, false))
	grpcAddr, rest := s.app.GRPCAddr().String(), "https://"+s.app.HTTPAddr().String()
	intruder, _ := p.grpcClient(t, grpcAddr, &p.intruder)
	intruderREST := p.httpClient(t, &p.intruder)
	ctx := context.Background()
	codesNow := func() (codes.Code, int) {
		_, err := intruder.CreditSessionsGet(ctx, example)
		resp, _, herr := restCall(intruderREST, rest, "user-sandbox-example", nil)
		require.NoError(t, herr)
		return status.Code(err), resp.StatusCode
	}
	grpcCode, httpStatus := codesNow()
	require.Equal(t, codes.PermissionDenied, grpcCode)
	require.Equal(t, http.StatusForbidden, httpStatus)

	p.write(t, "policy.json", []byte(`{"name": "open", "allow_rules": [
		{"name": "everyone", "source": {"principals": ["spiffe://example.org/*"]}}]}`))
	require.Eventually(t, func() bool {
		grpcCode, httpStatus := codesNow()
		return grpcCode == codes.OK && httpStatus == http.StatusOK
	}, 10*time.Second, 20*time.Millisecond, "the new policy applies to both paths without a restart")

	p.write(t, "policy.json", []byte(`{"name": "broken", "allow_rules": [`))
	require.Eventually(t, func() bool {
		_, _ = codesNow()
		return s.scrape(t)["creditsessions_file_reload_ok"]["file=authz_policy"] == 0
	}, 10*time.Second, 20*time.Millisecond, "the metric says the file did not load")
	grpcCode, httpStatus = codesNow()
	assert.Equal(t, codes.OK, grpcCode, "the last good policy stays")
	assert.Equal(t, http.StatusOK, httpStatus)
	assert.Equal(t, 1.0, s.scrape(t)["creditsessions_file_reload_errors_total"]["file=authz_policy"], "reported once")
	assert.Contains(t, s.logs.String(), `"msg":"a changed file could not be loaded: keeping the previous one","file":"authz_policy"`)

	p.write(t, "policy.json", []byte(testPolicy))
	require.Eventually(t, func() bool {
		grpcCode, httpStatus := codesNow()
		return grpcCode == codes.PermissionDenied && httpStatus == http.StatusForbidden
	}, 10*time.Second, 20*time.Millisecond)
	assert.Equal(t, 1.0, s.scrape(t)["creditsessions_file_reload_ok"]["file=authz_policy"])
}

// A policy with two rules of one name is read differently by grpc-go (the last rule of
// the name replaces the others) and by a reader that applies every rule: it is refused at
// start and on reload, where the last good policy stays. Applied as written, this one
// would let the intruder in; grpc-go would not.
func TestAPolicyWithDuplicateRuleNamesIsRefused(t *testing.T) {
	const duplicate = `{"name": "ambiguous", "allow_rules": [
		{"name": "same-name", "source": {"principals": ["spiffe://example.org/*"]}},
		{"name": "same-name", "source": {"principals": ["` + operatorID + `"]}}]}`
	p := newPKI(t)

	cfg := secureConfig(p, false)
	cfg.GRPCAddr, cfg.HTTPAddr, cfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Security.PolicyFile = p.write(t, "duplicate.json", []byte(duplicate))
	_, err := app.New(cfg)
	require.ErrorContains(t, err, `"allow_rules" 0 and 1 have the same "name"`, "refused at start")

	s := start(t, secureConfig(p, false))
	grpcAddr, rest := s.app.GRPCAddr().String(), "https://"+s.app.HTTPAddr().String()
	intruder, _ := p.grpcClient(t, grpcAddr, &p.intruder)
	intruderREST := p.httpClient(t, &p.intruder)
	codesNow := func() (codes.Code, int) {
		_, err := intruder.CreditSessionsGet(context.Background(), example)
		resp, _, herr := restCall(intruderREST, rest, "user-sandbox-example", nil)
		require.NoError(t, herr)
		return status.Code(err), resp.StatusCode
	}
	p.write(t, "policy.json", []byte(duplicate))
	require.Eventually(t, func() bool {
		_, _ = codesNow()
		return s.scrape(t)["creditsessions_file_reload_ok"]["file=authz_policy"] == 0
	}, 10*time.Second, 20*time.Millisecond, "the metric says the file did not load")
	grpcCode, httpStatus := codesNow()
	assert.Equal(t, codes.PermissionDenied, grpcCode, "the last good policy stays")
	assert.Equal(t, http.StatusForbidden, httpStatus)
	assert.Contains(t, s.logs.String(), `have the same \"name\"`)
	assert.NotContains(t, s.logs.String(), "same-name", "the log names rules by position, never quotes the file")
}

// keyDir lays files out as a Kubernetes Secret volume does: name → ..data/name, with
// ..data a symbolic link to a directory of this version, swapped atomically.
type keyDir struct {
	dir     string
	version int
}

func (k *keyDir) publish(t *testing.T, files map[string][]byte) {
	t.Helper()
	k.version++
	v := filepath.Join(k.dir, "..v"+strings.Repeat("i", k.version))
	require.NoError(t, os.Mkdir(v, 0o700))
	for name, data := range files {
		require.NoError(t, os.WriteFile(filepath.Join(v, name), data, 0o600))
		link := filepath.Join(k.dir, name)
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			require.NoError(t, os.Symlink(filepath.Join("..data", name), link))
		}
	}
	tmp := filepath.Join(k.dir, "..data_tmp")
	require.NoError(t, os.Symlink(filepath.Base(v), tmp))
	require.NoError(t, os.Rename(tmp, filepath.Join(k.dir, "..data")))
}

func TestCertificatesRotateWithoutAFailedCall(t *testing.T) {
	p := newPKI(t)
	keys := &keyDir{dir: t.TempDir()}
	keys.publish(t, map[string][]byte{"tls.crt": p.server.CertPEM, "tls.key": p.server.KeyPEM, "ca.crt": p.ca.CertPEM})
	cfg := secureConfig(p, false)
	cfg.Security.TLSCert = filepath.Join(keys.dir, "tls.crt")
	cfg.Security.TLSKey = filepath.Join(keys.dir, "tls.key")
	cfg.Security.ClientCA = filepath.Join(keys.dir, "ca.crt")
	s := start(t, cfg)
	grpcAddr, rest := s.app.GRPCAddr().String(), "https://"+s.app.HTTPAddr().String()

	// Callers open a new connection for every call, so each call sees the certificate
	// served at that moment; they note the serial numbers they saw.
	var seen sync.Map
	clientTLS := func() *tls.Config {
		c := p.clientTLS(&p.underwriter)
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			seen.Store(cs.PeerCertificates[0].SerialNumber.String(), true)
			return nil
		}
		return c
	}
	var calls, failures atomic.Int64
	var firstFailure atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	fail := func(err error) {
		failures.Add(1)
		firstFailure.CompareAndSwap(nil, err.Error())
	}
	wg.Go(func() {
		for i := 0; i < 5000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(clientTLS())))
			if err != nil {
				fail(err)
				continue
			}
			_, err = creditv1.NewCreditServiceClient(conn).CreditSessionsGet(context.Background(), example)
			_ = conn.Close()
			if err != nil {
				fail(err)
			}
			tr := &http.Transport{TLSClientConfig: clientTLS()}
			resp, _, err := restCall(&http.Client{Transport: tr}, rest, "user-sandbox-example", nil)
			tr.CloseIdleConnections()
			if err != nil {
				fail(err)
			} else if resp.StatusCode != http.StatusOK {
				fail(errStatus(resp.StatusCode))
			}
			calls.Add(2)
		}
	})
	t.Cleanup(func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	})
	require.Eventually(t, func() bool { return calls.Load() >= 10 }, 10*time.Second, 5*time.Millisecond)

	// The server certificate and, with it, the CA: a new CA, trusted next to the old one.
	next, err := devcerts.NewCA("next CA", time.Hour)
	require.NoError(t, err)
	rotated, err := p.ca.Issue(devcerts.Options{CommonName: "creditsessions", IPs: p.server.Cert.IPAddresses, Server: true})
	require.NoError(t, err)
	keys.publish(t, map[string][]byte{"tls.crt": rotated.CertPEM, "tls.key": rotated.KeyPEM,
		"ca.crt": append(append([]byte{}, p.ca.CertPEM...), next.CertPEM...)})
	require.Eventually(t, func() bool {
		_, ok := seen.Load(rotated.Cert.SerialNumber.String())
		return ok
	}, 10*time.Second, 5*time.Millisecond, "new connections get the new certificate")
	before := calls.Load()
	require.Eventually(t, func() bool { return calls.Load() >= before+10 }, 10*time.Second, 5*time.Millisecond)
	close(stop)
	wg.Wait()
	assert.Zero(t, failures.Load(), "no call failed across the rotation: %v", firstFailure.Load())

	// A caller with a certificate of the new CA gets in now.
	leaf, err := next.Issue(devcerts.Options{CommonName: "underwriter", URIs: []string{underwriterID}, Client: true})
	require.NoError(t, err)
	cert, err := leaf.TLS()
	require.NoError(t, err)
	c, _ := p.grpcClient(t, grpcAddr, &cert)
	require.Eventually(t, func() bool {
		_, err = c.CreditSessionsGet(context.Background(), example)
		return err == nil
	}, 10*time.Second, 20*time.Millisecond, "the CA bundle is reloaded too: %v", err)
	assert.Equal(t, 1.0, s.scrape(t)["creditsessions_file_reload_ok"]["file=tls_cert"])
	assert.Contains(t, s.logs.String(), `"msg":"reloaded a changed file","file":"tls_cert"`)
	assert.Contains(t, s.logs.String(), `"msg":"reloaded a changed file","file":"client_ca"`)
}

type errStatus int

func (e errStatus) Error() string { return http.StatusText(int(e)) }

func TestASecretFileRotatesWithoutAFailedCall(t *testing.T) {
	const oldSecret, newSecret = "secret-before-rotation-0001", "secret-after-rotation-0002"
	emu, err := emulator.Start("127.0.0.1:0", emulator.Config{Secret: oldSecret})
	require.NoError(t, err)
	t.Cleanup(func() { _ = emu.Close() })
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	write := func(v string) {
		require.NoError(t, os.WriteFile(secretFile+".tmp", []byte(v+"\n"), 0o600))
		require.NoError(t, os.Rename(secretFile+".tmp", secretFile))
	}
	write(oldSecret)
	cfg := app.Config{Plaid: app.PlaidConfig{BaseURL: emu.URL, Credentials: plaid.Credentials{ClientID: emu.Emulator.ClientID()}, SecretFile: secretFile}}
	cfg.Security.ReloadEvery = 10 * time.Millisecond
	s := start(t, cfg)

	var calls, failures atomic.Int64
	var firstFailure atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for i := 0; i < 5000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.grpc.CreditSessionsGet(context.Background(), example); err != nil {
					failures.Add(1)
					firstFailure.CompareAndSwap(nil, err.Error())
				}
				calls.Add(1)
			}
		})
	}
	t.Cleanup(func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	})
	require.Eventually(t, func() bool { return calls.Load() >= 10 }, 10*time.Second, 5*time.Millisecond)

	// Plaid accepts both while the secret rotates; the service picks the new one up.
	emu.Emulator.AcceptSecrets(oldSecret, newSecret)
	write(newSecret)
	require.Eventually(t, func() bool {
		return strings.Contains(s.logs.String(), `"msg":"reloaded a changed file","file":"plaid_secret"`)
	}, 10*time.Second, 5*time.Millisecond)
	before := calls.Load()
	require.Eventually(t, func() bool { return calls.Load() >= before+10 }, 10*time.Second, 5*time.Millisecond)
	close(stop)
	wg.Wait()
	assert.Zero(t, failures.Load(), "no call failed across the rotation: %v", firstFailure.Load())

	// Plaid retires the old secret: calls go on, with the new one.
	emu.Emulator.AcceptSecrets(newSecret)
	_, err = s.grpc.CreditSessionsGet(context.Background(), example)
	require.NoError(t, err)

	// A broken file keeps the secret in use.
	write("")
	require.Eventually(t, func() bool {
		return s.scrape(t)["creditsessions_file_reload_ok"]["file=plaid_secret"] == 0
	}, 10*time.Second, 5*time.Millisecond)
	_, err = s.grpc.CreditSessionsGet(context.Background(), example)
	require.NoError(t, err)

	logs := s.logs.String()
	for _, secret := range []string{oldSecret, newSecret} {
		assert.NotContains(t, logs, secret, "no secret in the logs")
	}
	assert.NotContains(t, s.adminBody(t, "/metrics"), "secret-", "nor in the metrics")
}

func (s *service) adminBody(t *testing.T, path string) string {
	t.Helper()
	_, body := s.admin(t, path)
	return body
}

func TestTheKeySetIsReloaded(t *testing.T) {
	p := newPKI(t)
	s := start(t, secureConfig(p, true))
	c, _ := p.grpcClient(t, s.app.GRPCAddr().String(), nil)
	ctx := context.Background()
	oldToken := token(t, p.rsaKey, "rsa-1", saClaims(saUnderwriter))
	_, err := c.CreditSessionsGet(bearer(ctx, oldToken), example)
	require.NoError(t, err)

	// The issuer rotates to a new key and retires the RSA one.
	next, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: next.Public(), KeyID: "ec-2", Algorithm: "ES256", Use: "sig"}}})
	require.NoError(t, err)
	p.write(t, "jwks.json", jwks)
	newToken := token(t, next, "ec-2", saClaims(saUnderwriter))
	require.Eventually(t, func() bool {
		_, err := c.CreditSessionsGet(bearer(ctx, newToken), example)
		return err == nil
	}, 10*time.Second, 20*time.Millisecond, "a token of the new key gets in")
	_, err = c.CreditSessionsGet(bearer(ctx, oldToken), example)
	assert.Equal(t, codes.Unauthenticated, status.Code(err), "one of the retired key does not")
}
