package auth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/creditsessions/creditsessions/internal/devcerts"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/authz"
	"google.golang.org/grpc/authz/audit"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// TestTheEvaluatorDecidesAsGRPCsOwn runs the same policies over real mTLS connections
// through grpc-go's authz interceptor and through Policy.Authorize, for callers with
// URI, DNS and subject-only certificates, methods and metadata, and wants the same
// decision every time.
func TestTheEvaluatorDecidesAsGRPCsOwn(t *testing.T) {
	ca, err := devcerts.NewCA("differential CA", time.Hour)
	require.NoError(t, err)
	serverLeaf, err := ca.Issue(devcerts.Options{IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true})
	require.NoError(t, err)
	serverCert, err := serverLeaf.TLS()
	require.NoError(t, err)

	callers := map[string]devcerts.Options{
		"underwriter": {CommonName: "u", URIs: []string{"spiffe://example.org/ns/billing/sa/underwriter"}},
		"two URIs":    {CommonName: "t", URIs: []string{"spiffe://other.org/x", "spiffe://example.org/ns/ops/sa/operator"}, DNSNames: []string{"ops.svc"}},
		"DNS only":    {CommonName: "d", DNSNames: []string{"batch.billing.svc", "second.svc"}},
		"subject":     {CommonName: "legacy-client"},
		"frontend":    {CommonName: "f", URIs: []string{"spiffe://example.org/ns/web/sa/frontend"}},
	}
	policies := []string{
		`{"name": "p1", "allow_rules": [{"name": "billing", "source": {"principals": ["spiffe://example.org/ns/billing/*"]}}]}`,
		`{"name": "p2",
		  "deny_rules": [{"name": "web", "source": {"principals": ["*frontend"]}}],
		  "allow_rules": [
		    {"name": "any", "source": {"principals": ["*"]}, "request": {"paths": ["/grpc.health.v1.Health/*"]}},
		    {"name": "ops", "source": {"principals": ["spiffe://example.org/ns/ops/sa/operator"]}, "request": {"paths": ["*"]}},
		    {"name": "dns", "source": {"principals": ["*.billing.svc", "second.svc"]}, "request": {"paths": ["/a.B/C"]}},
		    {"name": "subject", "source": {"principals": ["CN=legacy-client"]}, "request": {"paths": ["*/C"]}}]}`,
		`{"name": "p3",
		  "deny_rules": [{"name": "canary", "request": {"headers": [{"key": "x-canary", "values": ["yes", "true*"]}]}}],
		  "allow_rules": [
		    {"name": "team", "request": {"paths": ["/a.B/C", "/a.B/D"], "headers": [{"key": "X-Team", "values": ["red", "*blue"]}]}},
		    {"name": "everyone-D", "source": {"principals": ["*"]}, "request": {"paths": ["/a.B/D"]}}]}`,
	}
	methods := []string{"/a.B/C", "/a.B/D", "/grpc.health.v1.Health/Check", "/x.Y/C"}
	mds := []metadata.MD{nil, metadata.Pairs("x-team", "red"), metadata.Pairs("x-team", "navyblue", "x-canary", "true-ish"),
		metadata.Pairs("x-team", "red", "x-team", "blue"), metadata.Pairs("x-canary", "no")}

	// Policies with two rules of one name: grpc-go keeps the last rule of the name, and
	// this parser refuses them. What grpc-go decides for each is what the policy
	// without the replaced rules decides here; and keeping every rule would decide
	// otherwise, which is why they are refused rather than read either way.
	duplicates := []struct{ theirs, lastKept, allKept string }{
		{
			theirs: `{"name": "d1", "allow_rules": [
			  {"name": "team", "source": {"principals": ["spiffe://example.org/ns/billing/*"]}},
			  {"name": "team", "source": {"principals": ["*frontend", "*.svc"]}, "request": {"paths": ["/a.B/C"]}}]}`,
			lastKept: `{"name": "d1", "allow_rules": [
			  {"name": "team", "source": {"principals": ["*frontend", "*.svc"]}, "request": {"paths": ["/a.B/C"]}}]}`,
			allKept: `{"name": "d1", "allow_rules": [
			  {"name": "team", "source": {"principals": ["spiffe://example.org/ns/billing/*"]}},
			  {"name": "team-2", "source": {"principals": ["*frontend", "*.svc"]}, "request": {"paths": ["/a.B/C"]}}]}`,
		},
		{
			theirs: `{"name": "d2",
			  "deny_rules": [
			    {"name": "block", "source": {"principals": ["*frontend"]}},
			    {"name": "block", "request": {"paths": ["/x.Y/C"]}},
			    {"name": "canary", "request": {"headers": [{"key": "x-canary", "values": ["*"]}]}}],
			  "allow_rules": [{"name": "block", "source": {"principals": ["*"]}}]}`,
			lastKept: `{"name": "d2",
			  "deny_rules": [
			    {"name": "block", "request": {"paths": ["/x.Y/C"]}},
			    {"name": "canary", "request": {"headers": [{"key": "x-canary", "values": ["*"]}]}}],
			  "allow_rules": [{"name": "block", "source": {"principals": ["*"]}}]}`,
			allKept: `{"name": "d2",
			  "deny_rules": [
			    {"name": "block", "source": {"principals": ["*frontend"]}},
			    {"name": "block-2", "request": {"paths": ["/x.Y/C"]}},
			    {"name": "canary", "request": {"headers": [{"key": "x-canary", "values": ["*"]}]}}],
			  "allow_rules": [{"name": "block", "source": {"principals": ["*"]}}]}`,
		},
	}

	type differential struct{ theirs, ours, allKept string }
	var cases []differential
	for _, p := range policies {
		cases = append(cases, differential{theirs: p, ours: p})
	}
	for _, d := range duplicates {
		_, err := ParsePolicy([]byte(d.theirs))
		require.ErrorContains(t, err, `have the same "name"`, "a policy with duplicate rule names is refused")
		cases = append(cases, differential{theirs: d.theirs, ours: d.lastKept, allKept: d.allKept})
	}
	for i, c := range cases {
		t.Run(fmt.Sprintf("policy %d", i+1), func(t *testing.T) {
			ours, err := ParsePolicy([]byte(c.ours))
			require.NoError(t, err)
			var allKept *Policy
			if c.allKept != "" {
				allKept, err = ParsePolicy([]byte(c.allKept))
				require.NoError(t, err)
			}
			theirs, err := authz.NewStatic(c.theirs)
			require.NoError(t, err)
			addr := serveAllowingAll(t, serverCert, ca.Pool(), theirs)
			decisions := map[bool]int{}
			keepingAllDiffers := 0
			for name, o := range callers {
				o.Client = true
				leaf, err := ca.Issue(o)
				require.NoError(t, err)
				cert, err := leaf.TLS()
				require.NoError(t, err)
				conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
					RootCAs: ca.Pool(), Certificates: []tls.Certificate{cert}})))
				require.NoError(t, err)
				t.Cleanup(func() { _ = conn.Close() })
				for _, method := range methods {
					for _, md := range mds {
						got := ours.Authorize(method, CertIdentities(leaf.Cert), md).Allowed
						want := call(t, conn, method, md)
						assert.Equal(t, want, got, "caller %s, method %s, metadata %v", name, method, md)
						decisions[want]++
						if allKept != nil && allKept.Authorize(method, CertIdentities(leaf.Cert), md).Allowed != want {
							keepingAllDiffers++
						}
					}
				}
			}
			assert.NotZero(t, decisions[true], "some calls allowed")
			assert.NotZero(t, decisions[false], "some calls denied")
			if allKept != nil {
				assert.NotZero(t, keepingAllDiffers, "keeping every rule of a name decides some calls otherwise than grpc-go")
			}
		})
	}
}

// serveAllowingAll serves every method with an empty answer, behind grpc-go's authz.
func serveAllowingAll(t *testing.T, cert tls.Certificate, clientCAs *x509.CertPool, policy *authz.StaticInterceptor) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: clientCAs,
			ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12})),
		grpc.StreamInterceptor(policy.StreamInterceptor),
		grpc.UnknownServiceHandler(func(any, grpc.ServerStream) error { return nil }),
	)
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(s.Stop)
	return ln.Addr().String()
}

// call reports whether grpc-go's authz let a call to method through.
func call(t *testing.T, conn *grpc.ClientConn, method string, md metadata.MD) bool {
	t.Helper()
	ctx := metadata.NewOutgoingContext(context.Background(), md)
	stream, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method)
	require.NoError(t, err)
	_ = stream.CloseSend() // its error, if any, is in RecvMsg's status
	err = stream.RecvMsg(new(struct{}))
	switch status.Code(err) {
	case codes.PermissionDenied:
		return false
	case codes.OK:
		return true
	}
	if err != nil && err.Error() != "EOF" {
		require.Equal(t, codes.OK, status.Code(err), "%v", err)
	}
	return true
}

// recordingBuilder is an A59 audit logger registered in grpc-go's registry, the way an
// operator's own would be: it keeps the events both implementations send it.
type recordingBuilder struct {
	mu     sync.Mutex
	events []audit.Event
}

func (b *recordingBuilder) Name() string { return "recording_logger" }
func (b *recordingBuilder) ParseLoggerConfig(config json.RawMessage) (audit.LoggerConfig, error) {
	if !json.Valid(config) {
		return nil, fmt.Errorf("not JSON: %q", config)
	}
	return nil, nil
}
func (b *recordingBuilder) Build(audit.LoggerConfig) audit.Logger { return b }
func (b *recordingBuilder) Log(e *audit.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.events = append(b.events, *e)
}

// take returns the events logged since the last take.
func (b *recordingBuilder) take() []audit.Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.events
	b.events = nil
	return e
}

var recorder = &recordingBuilder{}

func init() { audit.RegisterLoggerBuilder(recorder) }

// TestTheAuditEventsAreGRPCsOwn runs policies with each audit condition over real mTLS
// connections through grpc-go's authz interceptor and through this package's evaluator
// and audit, for callers whose certificates have one SPIFFE ID, two URIs, or DNS names
// only, and wants the same A59 events for every call. (The policies' rules never both
// match one call: grpc-go picks among several that do in map order.)
func TestTheAuditEventsAreGRPCsOwn(t *testing.T) {
	ca, err := devcerts.NewCA("audit differential CA", time.Hour)
	require.NoError(t, err)
	serverLeaf, err := ca.Issue(devcerts.Options{IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true})
	require.NoError(t, err)
	serverCert, err := serverLeaf.TLS()
	require.NoError(t, err)
	callers := map[string]devcerts.Options{
		"underwriter": {CommonName: "u", URIs: []string{"spiffe://example.org/ns/billing/sa/underwriter"}},
		"frontend":    {CommonName: "f", URIs: []string{"spiffe://example.org/ns/web/sa/frontend"}},
		"two URIs":    {CommonName: "t", URIs: []string{"spiffe://example.org/ns/billing/sa/a", "spiffe://example.org/ns/billing/sa/b"}},
		"DNS only":    {CommonName: "d", DNSNames: []string{"batch.billing.svc"}},
	}
	loggers := `"audit_loggers": [{"name": "recording_logger", "config": {"to": "x"}}, {"name": "not_registered", "is_optional": true}]`
	var policies []string
	for _, cond := range []string{"", "NONE", "ON_DENY", "ON_ALLOW", "ON_DENY_AND_ALLOW"} {
		policies = append(policies, `{"name": "withdeny",
		  "deny_rules": [{"name": "web", "source": {"principals": ["*frontend"]}}],
		  "allow_rules": [
		    {"name": "billing", "source": {"principals": ["spiffe://example.org/ns/billing/*"]}, "request": {"paths": ["/a.B/C"]}},
		    {"name": "dns", "source": {"principals": ["*.billing.svc"]}, "request": {"paths": ["/a.B/D"]}}],
		  "audit_logging_options": {"audit_condition": "`+cond+`", `+loggers+`}}`,
			`{"name": "allowonly",
		  "allow_rules": [{"name": "billing", "source": {"principals": ["spiffe://example.org/ns/billing/*"]}, "request": {"paths": ["/a.B/C"]}}],
		  "audit_logging_options": {"audit_condition": "`+cond+`", `+loggers+`}}`)
	}
	methods := []string{"/a.B/C", "/a.B/D"}
	seen := 0
	t.Cleanup(func() { assert.Greater(t, seen, 20, "events compared") })
	for i, policy := range policies {
		t.Run(fmt.Sprintf("policy %d", i+1), func(t *testing.T) {
			ours, err := ParsePolicy([]byte(policy))
			require.NoError(t, err)
			theirs, err := authz.NewStatic(policy)
			require.NoError(t, err)
			addr := serveAllowingAll(t, serverCert, ca.Pool(), theirs)
			for name, o := range callers {
				o.Client = true
				leaf, err := ca.Issue(o)
				require.NoError(t, err)
				cert, err := leaf.TLS()
				require.NoError(t, err)
				conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
					RootCAs: ca.Pool(), Certificates: []tls.Certificate{cert}})))
				require.NoError(t, err)
				t.Cleanup(func() { _ = conn.Close() })
				state := &tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf.Cert}}
				for _, method := range methods {
					recorder.take()
					call(t, conn, method, nil)
					want := recorder.take()
					d := ours.Authorize(method, CertIdentities(leaf.Cert), nil)
					if ours.audits() {
						ours.audit(method, a59Principal(state, &caller{}), d)
					}
					got := recorder.take()
					seen += len(want)
					assert.Equal(t, want, got, "caller %s, method %s", name, method)
				}
			}
		})
	}
}
