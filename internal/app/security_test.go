package app_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/app"
	"github.com/creditsessions/creditsessions/internal/auth"
	"github.com/creditsessions/creditsessions/internal/devcerts"

	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
)

// secureConfig serves TLS with the test PKI, requires client certificates, and, with
// tokens, accepts bearer JWTs as the other way in. Files are looked at every 10ms.
func secureConfig(p *pki, tokens bool) app.Config {
	sec := auth.Options{
		TLSCert: p.certFile, TLSKey: p.keyFile, ClientCA: p.caFile, PolicyFile: p.policyFile,
		ReloadEvery: 10 * time.Millisecond,
	}
	if tokens {
		sec.JWKS, sec.JWTIssuer, sec.JWTAudience = p.jwksFile, k8sIssuer, audience
	}
	return app.Config{Security: sec}
}

var example = &creditv1.CreditSessionsGetRequest{UserToken: "user-sandbox-example"}

// plaidError decodes a REST error body.
func plaidError(t *testing.T, body []byte) (errorType, errorCode, message string) {
	t.Helper()
	var e struct{ ErrorType, ErrorCode, ErrorMessage string }
	var raw map[string]any
	require.NoError(t, json.Unmarshal(body, &raw), "a Plaid error body: %s", body)
	e.ErrorType, _ = raw["error_type"].(string)
	e.ErrorCode, _ = raw["error_code"].(string)
	e.ErrorMessage, _ = raw["error_message"].(string)
	assert.Contains(t, raw, "request_id")
	assert.Contains(t, raw, "display_message")
	return e.ErrorType, e.ErrorCode, e.ErrorMessage
}

func TestMTLSLetsInOnlyThePolicysCallersOnBothPaths(t *testing.T) {
	p := newPKI(t)
	s := start(t, secureConfig(p, false))
	grpcAddr, rest := s.app.GRPCAddr().String(), "https://"+s.app.HTTPAddr().String()
	ctx := context.Background()

	t.Run("allowed", func(t *testing.T) {
		c, _ := p.grpcClient(t, grpcAddr, &p.underwriter)
		resp, err := c.CreditSessionsGet(ctx, example)
		require.NoError(t, err)
		assert.Len(t, resp.GetSessions(), 2)
		httpResp, body, err := restCall(p.httpClient(t, &p.underwriter), rest, "user-sandbox-example", nil)
		require.NoError(t, err)
		assert.Equal(t, http.StatusOK, httpResp.StatusCode, "%s", body)
	})
	for name, cert := range map[string]*tls.Certificate{"denied by a deny rule": &p.intruder, "matched by no allow rule": &p.dnsOnly} {
		t.Run(name, func(t *testing.T) {
			c, _ := p.grpcClient(t, grpcAddr, cert)
			_, err := c.CreditSessionsGet(ctx, example)
			assert.Equal(t, codes.PermissionDenied, status.Code(err))
			assert.NotContains(t, status.Convert(err).Message(), "rule", "the answer does not say which rule")
			httpResp, body, err := restCall(p.httpClient(t, cert), rest, "user-sandbox-example", nil)
			require.NoError(t, err)
			assert.Equal(t, http.StatusForbidden, httpResp.StatusCode)
			typ, code, _ := plaidError(t, body)
			assert.Equal(t, []string{"INVALID_INPUT", "UNAUTHORIZED_ROUTE_ACCESS"}, []string{typ, code})
		})
	}
	for name, cert := range map[string]*tls.Certificate{"no certificate": nil, "expired": &p.expired, "another CA's": &p.foreign} {
		t.Run(name+": refused at the handshake", func(t *testing.T) {
			c, _ := p.grpcClient(t, grpcAddr, cert)
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			_, err := c.CreditSessionsGet(ctx, example)
			assert.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
			_, _, err = restCall(p.httpClient(t, cert), rest, "user-sandbox-example", nil)
			assert.Error(t, err)
		})
	}
	t.Run("TLS 1.1 is refused", func(t *testing.T) {
		old := p.clientTLS(&p.underwriter)
		old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
		_, _, err := restCall(&http.Client{Transport: &http.Transport{TLSClientConfig: old}}, rest, "user-sandbox-example", nil)
		assert.ErrorContains(t, err, "protocol version")
	})
	t.Run("health is open to every authenticated caller", func(t *testing.T) {
		_, conn := p.grpcClient(t, grpcAddr, &p.intruder)
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		require.NoError(t, err)
		assert.Equal(t, healthpb.HealthCheckResponse_SERVING, resp.GetStatus())
	})
	t.Run("reflection is a method like any other", func(t *testing.T) {
		list := func(cert *tls.Certificate) (*reflectionpb.ServerReflectionResponse, error) {
			_, conn := p.grpcClient(t, grpcAddr, cert)
			stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
			require.NoError(t, err)
			// A stream the server ended already fails Send with io.EOF; Recv has the status.
			_ = stream.Send(&reflectionpb.ServerReflectionRequest{
				MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
			return stream.Recv()
		}
		resp, err := list(&p.operator)
		require.NoError(t, err)
		assert.NotEmpty(t, resp.GetListServicesResponse().GetService())
		_, err = list(&p.underwriter)
		assert.Equal(t, codes.PermissionDenied, status.Code(err), "the stream chain runs the policy too")
	})

	logs := s.logs.String()
	assert.Contains(t, logs, `"caller_identity":"`+underwriterID+`"`, "the call's log line names its caller")
	assert.Contains(t, logs, `"why":"matched deny_rules/no-frontend"`, "the log says why a call was refused")
	assert.Contains(t, logs, `"why":"no allow rule matched"`)
	assert.NotContains(t, logs, string(p.server.KeyPEM[40:80]), "no key material in the logs")

	m := s.scrape(t)
	const method = "method=/plaid.credit.v1.CreditService/CreditSessionsGet"
	assert.Equal(t, 1.0, m["creditsessions_calls_total"]["caller="+underwriterID+",code=OK,"+method+",transport=grpc"])
	assert.Equal(t, 1.0, m["creditsessions_calls_total"]["caller="+underwriterID+",code=OK,"+method+",transport=rest"])
	assert.Equal(t, 1.0, m["creditsessions_calls_total"]["caller=spiffe://example.org/ns/web/*,code=PermissionDenied,"+method+",transport=rest"],
		"a caller is labelled by the policy's principal it matches")
	assert.Equal(t, 1.0, m["creditsessions_calls_total"]["caller=other,code=PermissionDenied,"+method+",transport=grpc"],
		"a caller the policy does not name is other")
	assert.Equal(t, 5.0, m["creditsessions_auth_failures_total"]["reason=permission_denied"])
	assert.Equal(t, 1.0, m["creditsessions_file_reload_ok"]["file=tls_cert"])
	assert.Equal(t, 1.0, m["creditsessions_file_reload_ok"]["file=client_ca"])
	assert.Equal(t, 1.0, m["creditsessions_file_reload_ok"]["file=authz_policy"])
	assert.Equal(t, 0.0, m["creditsessions_insecure"][""])
}

func TestTokensAndCertificatesMeetTheSamePolicy(t *testing.T) {
	p := newPKI(t)
	s := start(t, secureConfig(p, true))
	grpcAddr, rest := s.app.GRPCAddr().String(), "https://"+s.app.HTTPAddr().String()
	ctx := context.Background()
	anonymous, _ := p.grpcClient(t, grpcAddr, nil)
	anonymousREST := p.httpClient(t, nil)

	rsaToken := token(t, p.rsaKey, "rsa-1", saClaims(saUnderwriter))
	for name, tok := range map[string]string{
		"a Kubernetes service-account token (RS256)": rsaToken,
		"an ES256 token":        token(t, p.ecKey, "ec-1", saClaims(saUnderwriter)),
		"a token without a kid": token(t, p.ecKey, "", saClaims(saUnderwriter)),
	} {
		t.Run(name, func(t *testing.T) {
			resp, err := anonymous.CreditSessionsGet(bearer(ctx, tok), example)
			require.NoError(t, err)
			assert.Len(t, resp.GetSessions(), 2)
			httpResp, body, err := restCall(anonymousREST, rest, "user-sandbox-example", http.Header{"Authorization": {"Bearer " + tok}})
			require.NoError(t, err)
			assert.Equal(t, http.StatusOK, httpResp.StatusCode, "%s", body)
		})
	}
	t.Run("a certificate still gets in", func(t *testing.T) {
		c, _ := p.grpcClient(t, grpcAddr, &p.underwriter)
		_, err := c.CreditSessionsGet(ctx, example)
		require.NoError(t, err)
	})
	t.Run("a token whose sub the policy denies", func(t *testing.T) {
		tok := token(t, p.rsaKey, "rsa-1", saClaims(saFrontend))
		_, err := anonymous.CreditSessionsGet(bearer(ctx, tok), example)
		assert.Equal(t, codes.PermissionDenied, status.Code(err))
		httpResp, body, err := restCall(anonymousREST, rest, "user-sandbox-example", http.Header{"Authorization": {"Bearer " + tok}})
		require.NoError(t, err)
		assert.Equal(t, http.StatusForbidden, httpResp.StatusCode, "%s", body)
	})

	stranger, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	claims := func(edit func(*jwt.Claims)) jwt.Claims {
		c := saClaims(saUnderwriter)
		edit(&c)
		return c
	}
	bad := map[string]string{
		"alg none":                        unsignedToken(t, saClaims(saUnderwriter)),
		"HS256 keyed with the public key": hmacWithPublicKey(t, p.rsaKey.Public(), saClaims(saUnderwriter)),
		"signed by a key not in the set":  token(t, stranger, "rsa-1", saClaims(saUnderwriter)),
		"an unknown key id":               token(t, p.rsaKey, "rsa-9", saClaims(saUnderwriter)),
		"the wrong issuer":                token(t, p.rsaKey, "rsa-1", claims(func(c *jwt.Claims) { c.Issuer = "https://elsewhere" })),
		"the wrong audience":              token(t, p.rsaKey, "rsa-1", claims(func(c *jwt.Claims) { c.Audience = jwt.Audience{"vault"} })),
		"expired":                         token(t, p.rsaKey, "rsa-1", claims(func(c *jwt.Claims) { c.Expiry = jwt.NewNumericDate(time.Now().Add(-time.Hour)) })),
		"not valid yet":                   token(t, p.rsaKey, "rsa-1", claims(func(c *jwt.Claims) { c.NotBefore = jwt.NewNumericDate(time.Now().Add(time.Hour)) })),
		"without exp":                     token(t, p.rsaKey, "rsa-1", claims(func(c *jwt.Claims) { c.Expiry = nil })),
		"without sub":                     token(t, p.ecKey, "ec-1", claims(func(c *jwt.Claims) { c.Subject = "" })),
		"not a JWT":                       "not-a-token",
	}
	for name, tok := range bad {
		t.Run("refused: "+name, func(t *testing.T) {
			_, err := anonymous.CreditSessionsGet(bearer(ctx, tok), example)
			assert.Equal(t, codes.Unauthenticated, status.Code(err))
			assert.Equal(t, "a valid client certificate or bearer token is required", status.Convert(err).Message(), "no hint for an attacker")
			httpResp, body, err := restCall(anonymousREST, rest, "user-sandbox-example", http.Header{"Authorization": {"Bearer " + tok}})
			require.NoError(t, err)
			assert.Equal(t, http.StatusUnauthorized, httpResp.StatusCode)
			typ, code, _ := plaidError(t, body)
			assert.Equal(t, []string{"INVALID_INPUT", "INVALID_API_KEYS"}, []string{typ, code})
		})
	}
	t.Run("no credential at all", func(t *testing.T) {
		_, err := anonymous.CreditSessionsGet(ctx, example)
		assert.Equal(t, codes.Unauthenticated, status.Code(err))
		httpResp, _, err := restCall(anonymousREST, rest, "user-sandbox-example", nil)
		require.NoError(t, err)
		assert.Equal(t, http.StatusUnauthorized, httpResp.StatusCode)
	})

	logs := s.logs.String()
	assert.Contains(t, logs, `"caller_identity":"`+saUnderwriter+`"`)
	assert.Contains(t, logs, "token is expired")
	for _, tok := range append([]string{rsaToken}, values(bad)...) {
		if len(tok) > 20 {
			assert.NotContains(t, logs, tok[len(tok)-20:], "no token in the logs")
		}
	}
	m := s.scrape(t)
	assert.Equal(t, float64(2*len(bad)+2), m["creditsessions_auth_failures_total"]["reason=unauthenticated"])
	assert.Equal(t, 1.0, m["creditsessions_file_reload_ok"]["file=jwt_jwks"])
}

func values(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// Nothing a caller sends as a header or as metadata stands for who it is, where it
// calls from, or which way it came in.
func TestForgedIdentityIsIgnored(t *testing.T) {
	p := newPKI(t)
	s := start(t, secureConfig(p, true))
	grpcAddr, rest := s.app.GRPCAddr().String(), "https://"+s.app.HTTPAddr().String()
	ctx := context.Background()
	good := token(t, p.rsaKey, "rsa-1", saClaims(saUnderwriter))

	t.Run("rest: a token as Grpc-Metadata-Authorization is not a credential", func(t *testing.T) {
		resp, _, err := restCall(p.httpClient(t, nil), rest, "user-sandbox-example",
			http.Header{"Grpc-Metadata-Authorization": {"Bearer " + good}})
		require.NoError(t, err)
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
		resp, _, err = restCall(p.httpClient(t, &p.intruder), rest, "user-sandbox-example",
			http.Header{"Grpc-Metadata-Authorization": {"Bearer " + good}})
		require.NoError(t, err)
		assert.Equal(t, http.StatusForbidden, resp.StatusCode, "the intruder stays the intruder")
	})
	t.Run("rest: forwarded addresses and the gateway's own metadata", func(t *testing.T) {
		resp, body, err := restCall(p.httpClient(t, &p.underwriter), rest, "user-sandbox-example#rest-forged", http.Header{
			"X-Forwarded-For":                       {"203.0.113.7"},
			"Forwarded":                             {"for=203.0.113.7"},
			"Grpc-Metadata-X-Forwarded-For":         {"203.0.113.8"},
			"Grpc-Metadata-Grpcgateway-User-Agent":  {"forged-agent-1"},
			"Grpc-Metadata-Grpcgateway-Remote-Addr": {"203.0.113.9"},
		})
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	})
	t.Run("grpc: metadata that imitates the mirror's", func(t *testing.T) {
		c, _ := p.grpcClient(t, grpcAddr, &p.underwriter)
		md := metadata.Pairs("x-forwarded-for", "198.51.100.7", "grpcgateway-user-agent", "forged-agent-2",
			"x-forwarded-host", "evil.example")
		_, err := c.CreditSessionsGet(metadata.NewOutgoingContext(ctx, md), &creditv1.CreditSessionsGetRequest{UserToken: "user-sandbox-example#grpc-forged"})
		require.NoError(t, err)
		anonymous, _ := p.grpcClient(t, grpcAddr, nil)
		md = metadata.Pairs("grpcgateway-authorization", "Bearer "+good, "x-forwarded-client-cert", "URI="+underwriterID)
		_, err = anonymous.CreditSessionsGet(metadata.NewOutgoingContext(ctx, md), example)
		assert.Equal(t, codes.Unauthenticated, status.Code(err))
	})

	logs := s.logs.String()
	for _, forged := range []string{"203.0.113.", "198.51.100.7", "forged-agent", "evil.example"} {
		assert.NotContains(t, logs, forged)
	}
	var lines int
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, `"msg":"call"`) && strings.Contains(line, `"caller_identity":"`) &&
			strings.Contains(line, `"code":"OK"`) {
			lines++
			assert.Contains(t, line, `"caller":"127.0.0.1"`, "the logged address is the connection's")
		}
	}
	assert.Equal(t, 2, lines)
	assert.Contains(t, logs, `"transport":"rest"`)
}

func TestAQuotaLimitsOneCallerNotTheOthers(t *testing.T) {
	p := newPKI(t)
	cfg := secureConfig(p, false)
	cfg.Security.CallerRate, cfg.Security.CallerBurst = 0.01, 2 // a call each 100s after the first two
	s := start(t, cfg)
	grpcAddr, rest := s.app.GRPCAddr().String(), "https://"+s.app.HTTPAddr().String()
	ctx := context.Background()
	underwriter, _ := p.grpcClient(t, grpcAddr, &p.underwriter)
	underwriterREST := p.httpClient(t, &p.underwriter)

	_, err := underwriter.CreditSessionsGet(ctx, example)
	require.NoError(t, err)
	resp, _, err := restCall(underwriterREST, rest, "user-sandbox-example", nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)

	_, err = underwriter.CreditSessionsGet(ctx, example)
	require.Equal(t, codes.ResourceExhausted, status.Code(err))
	var retry *errdetails.RetryInfo
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			retry = ri
		}
	}
	require.NotNil(t, retry, "the caller is told when to come back")
	assert.InDelta(t, 100, retry.GetRetryDelay().AsDuration().Seconds(), 5)

	resp, body, err := restCall(underwriterREST, rest, "user-sandbox-example", nil)
	require.NoError(t, err)
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	typ, code, _ := plaidError(t, body)
	assert.Equal(t, []string{"RATE_LIMIT_EXCEEDED", "RATE_LIMIT"}, []string{typ, code})
	assert.Regexp(t, `^(9[5-9]|100)$`, resp.Header.Get("Retry-After"))

	// The operator has its own allowance, on both paths.
	operator, _ := p.grpcClient(t, grpcAddr, &p.operator)
	_, err = operator.CreditSessionsGet(ctx, example)
	require.NoError(t, err)
	resp, _, err = restCall(p.httpClient(t, &p.operator), rest, "user-sandbox-example", nil)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	m := s.scrape(t)
	assert.Equal(t, 2.0, m["creditsessions_caller_quota_rejections_total"]["caller="+underwriterID])
	assert.Zero(t, m["creditsessions_caller_quota_rejections_total"]["caller="+operatorID])
}

func TestListenersFacingANetworkNeedSecurityOrSayingSo(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0", "192.0.2.1:0"} {
		_, err := app.New(app.Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: addr, AdminAddr: "127.0.0.1:0"})
		require.Error(t, err, addr)
		assert.Contains(t, err.Error(), "-tls-cert")
		assert.Contains(t, err.Error(), "-allow-insecure")
	}
	p := newPKI(t)
	_, err := app.New(app.Config{GRPCAddr: "0.0.0.0:0", HTTPAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		Security: auth.Options{TLSCert: p.certFile, TLSKey: p.keyFile}})
	require.Error(t, err, "TLS alone is not enough: callers must prove who they are")

	s := start(t, app.Config{AllowInsecure: true})
	require.Eventually(t, func() bool { return strings.Contains(s.logs.String(), `"level":"WARN","msg":"-allow-insecure`) },
		5*time.Second, 5*time.Millisecond, "a warning at start")
	assert.Equal(t, 1.0, s.scrape(t)["creditsessions_insecure"][""])
}

func TestBadSecurityConfigurationStopsStartUp(t *testing.T) {
	p := newPKI(t)
	other, err := p.ca.Issue(devcerts.Options{CommonName: "other", Server: true})
	require.NoError(t, err)
	broken := p.write(t, "broken.json", []byte(`{"name": "x", "allow_rules": [{"name": ""}]}`))
	for name, sec := range map[string]auth.Options{
		"key without cert":               {TLSKey: p.keyFile},
		"a burst without a rate":         {CallerBurst: 5},
		"client CA without TLS":          {ClientCA: p.caFile},
		"tokens without TLS":             {JWKS: p.jwksFile, JWTIssuer: k8sIssuer, JWTAudience: audience},
		"tokens without issuer":          {TLSCert: p.certFile, TLSKey: p.keyFile, JWKS: p.jwksFile, JWTAudience: audience},
		"policy without callers":         {TLSCert: p.certFile, TLSKey: p.keyFile, PolicyFile: p.policyFile},
		"a policy that is invalid":       {TLSCert: p.certFile, TLSKey: p.keyFile, ClientCA: p.caFile, PolicyFile: broken},
		"a certificate file missing":     {TLSCert: p.dir + "/nope.crt", TLSKey: p.keyFile, ClientCA: p.caFile},
		"the key of another certificate": {TLSCert: p.certFile, TLSKey: p.write(t, "other.key", other.KeyPEM), ClientCA: p.caFile},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := app.New(app.Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Security: sec})
			require.Error(t, err)
			assert.NotContains(t, err.Error(), "PRIVATE KEY")
		})
	}
}

// With tokens as the only way in, the server asks for no certificate, and one a client
// presents anyway proves nothing.
func TestTokensAloneWithoutClientCertificates(t *testing.T) {
	p := newPKI(t)
	cfg := secureConfig(p, true)
	cfg.Security.ClientCA = ""
	s := start(t, cfg)
	grpcAddr, rest := s.app.GRPCAddr().String(), "https://"+s.app.HTTPAddr().String()
	ctx := context.Background()
	tok := token(t, p.rsaKey, "rsa-1", saClaims(saUnderwriter))

	anonymous, _ := p.grpcClient(t, grpcAddr, nil)
	_, err := anonymous.CreditSessionsGet(bearer(ctx, tok), example)
	require.NoError(t, err)
	resp, _, err := restCall(p.httpClient(t, nil), rest, "user-sandbox-example", http.Header{"Authorization": {"Bearer " + tok}})
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	withCert, _ := p.grpcClient(t, grpcAddr, &p.underwriter)
	_, err = withCert.CreditSessionsGet(ctx, example)
	assert.Equal(t, codes.Unauthenticated, status.Code(err))
	resp, _, err = restCall(p.httpClient(t, &p.underwriter), rest, "user-sandbox-example", nil)
	require.NoError(t, err)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
}

// The redaction tests, extended to what this package reads: bearer tokens, private keys,
// and the contents of every file it watches, broken ones included. None reaches a log
// line, a metric or an answer.
func TestSecurityInputsNeverReachLogsMetricsOrAnswers(t *testing.T) {
	p := newPKI(t)
	s := start(t, secureConfig(p, true))
	grpcAddr, rest := s.app.GRPCAddr().String(), "https://"+s.app.HTTPAddr().String()
	ctx := context.Background()
	anonymous, _ := p.grpcClient(t, grpcAddr, nil)
	expired := token(t, p.rsaKey, "rsa-1", func() jwt.Claims {
		c := saClaims(saUnderwriter)
		c.Expiry = jwt.NewNumericDate(time.Now().Add(-time.Hour))
		return c
	}())
	good := token(t, p.rsaKey, "rsa-1", saClaims(saFrontend))
	var answers []string
	for _, tok := range []string{expired, good, "garbage-token-with-a-secret-hunter2"} {
		_, err := anonymous.CreditSessionsGet(bearer(ctx, tok), example)
		require.Error(t, err)
		answers = append(answers, err.Error())
		_, body, err := restCall(p.httpClient(t, nil), rest, "user-sandbox-example", http.Header{"Authorization": {"Bearer " + tok}})
		require.NoError(t, err)
		answers = append(answers, string(body))
	}
	// Broken files whose contents look like secrets.
	p.write(t, "jwks.json", []byte(`{"keys": [{"kty": "oct", "k": "c3VwZXItc2VjcmV0LWhtYWMta2V5"}]} hunter2-jwks`))
	p.write(t, "policy.json", []byte(`{"name": "hunter2-policy", "allow_rules": [`))
	p.write(t, "tls.key", []byte("-----BEGIN PRIVATE KEY-----\nhunter2-key\n-----END PRIVATE KEY-----\n"))
	require.Eventually(t, func() bool {
		m := s.scrape(t)["creditsessions_file_reload_ok"]
		return m["file=jwt_jwks"] == 0 && m["file=authz_policy"] == 0 && m["file=tls_cert"] == 0
	}, 10*time.Second, 10*time.Millisecond)

	logs, metrics := s.logs.String(), s.adminBody(t, "/metrics")
	secrets := []string{"hunter2", "c3VwZXItc2VjcmV0LWhtYWMta2V5", string(p.server.KeyPEM[30:90])}
	for _, tok := range []string{expired, good} {
		secrets = append(secrets, tok[strings.LastIndex(tok, ".")+1:]) // the signature
		secrets = append(secrets, tok[:strings.Index(tok, ".")+10])    // the header and the start of the claims
	}
	for _, secret := range secrets {
		assert.NotContains(t, logs, secret)
		assert.NotContains(t, metrics, secret)
		for _, a := range answers {
			assert.NotContains(t, a, secret)
		}
	}
	assert.NotContains(t, metrics, saFrontend, "identities the policy does not name stay out of labels")
	assert.Contains(t, logs, `"file":"jwt_jwks"`, "the log says which file did not load")
}

// Without authentication, a quota applies per client address, on both paths alike.
func TestAQuotaWithoutAuthenticationIsPerAddress(t *testing.T) {
	cfg := app.Config{}
	cfg.Security.CallerRate, cfg.Security.CallerBurst = 0.01, 1
	s := start(t, cfg)
	ctx := context.Background()
	_, err := s.grpc.CreditSessionsGet(ctx, example)
	require.NoError(t, err)
	_, err = s.grpc.CreditSessionsGet(ctx, example)
	assert.Equal(t, codes.ResourceExhausted, status.Code(err))
	resp, _ := s.post(t, "/credit/sessions/get", `{"user_token":"user-sandbox-example"}`)
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "127.0.0.1 has spent its allowance over gRPC")
	assert.NotEmpty(t, resp.Header.Get("Retry-After"))
}
