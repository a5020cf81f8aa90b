// Package auth is the service's security at its edges: TLS on both listeners with
// certificates re-read as they rotate, caller identity from a client certificate or a
// bearer JWT, one authorization policy (grpc-go's authz JSON) for gRPC and REST alike,
// per-caller quotas, and files of secrets that rotate under a running process.
//
// It runs as a gRPC interceptor in both the unary and the stream chains. The REST
// mirror calls the service in-process through the same unary chain, so a REST call is
// authorized as the gRPC method it mirrors, with the REST caller's own credentials,
// which the mirror's HTTP handler hands over through the request's context (HTTP).
// Nothing a caller sends as a header or metadata can stand for those credentials.
package auth

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Options select the controls; the zero value is none of them (loopback development).
type Options struct {
	// TLSCert and TLSKey are PEM files the listeners serve TLS with.
	TLSCert, TLSKey string
	// ClientCA is a PEM bundle client certificates must chain to.
	ClientCA string
	// JWKS is a JSON Web Key Set file; bearer JWTs signed by its keys, from JWTIssuer
	// and for JWTAudience, get in.
	JWKS, JWTIssuer, JWTAudience string
	// PolicyFile is an authorization policy in grpc-go's authz JSON format.
	PolicyFile string
	// CallerRate, when above 0, is each caller's allowance in calls a second, with
	// bursts of CallerBurst.
	CallerRate  float64
	CallerBurst int
	// ReloadEvery is how often files in use are looked at again; 0 means
	// DefaultReloadEvery.
	ReloadEvery time.Duration
}

// Authenticates reports whether callers must prove who they are.
func (o Options) Authenticates() bool { return o.ClientCA != "" || o.JWKS != "" }

// Secure reports whether the listeners may face a network: TLS, and callers proving
// who they are.
func (o Options) Secure() bool { return o.TLSCert != "" && o.Authenticates() }

// Security enforces Options on every call.
type Security struct {
	// TLS is nil when the listeners serve plaintext.
	TLS *ServerTLS
	// OnCaller, if set, hears each authenticated caller's identity as soon as it is
	// known, for the call's log line.
	OnCaller func(ctx context.Context, identity string)

	authenticates bool
	jwt           *JWTVerifier
	policy        *File[*Policy]
	quota         *Quota
	metrics       *Metrics
	logger        *slog.Logger
	now           func() time.Time
	every         time.Duration
	files         []interface{ Refresh() }
}

// Track adds a file for Watch to look at.
func (s *Security) Track(f interface{ Refresh() }) { s.files = append(s.files, f) }

// Watch looks at every file in use each interval until ctx is done, so that a change,
// and a change that does not load, shows in the log and the metrics even while no call
// uses the file. (Calls look too, so a change applies from the next call after the
// interval whether or not Watch runs.)
func (s *Security) Watch(ctx context.Context) {
	if len(s.files) == 0 {
		return
	}
	tick := time.NewTicker(s.every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			for _, f := range s.files {
				f.Refresh()
			}
		}
	}
}

// New loads every file opts names; any that cannot be loaded stops start-up.
func New(opts Options, logger *slog.Logger, metrics *Metrics) (*Security, error) {
	if logger == nil {
		logger = slog.Default()
	}
	s := &Security{authenticates: opts.Authenticates(), metrics: metrics, logger: logger, now: time.Now, every: opts.ReloadEvery}
	if s.every <= 0 {
		s.every = DefaultReloadEvery
	}
	var obs Observer
	if metrics != nil {
		obs = metrics
	}
	switch {
	case (opts.TLSCert == "") != (opts.TLSKey == ""):
		return nil, errors.New("-tls-cert and -tls-key go together")
	case opts.ClientCA != "" && opts.TLSCert == "":
		return nil, errors.New("-client-ca needs -tls-cert and -tls-key")
	case opts.JWKS != "" && opts.TLSCert == "":
		return nil, errors.New("-jwt-jwks needs -tls-cert and -tls-key: bearer tokens must not cross the network in plaintext")
	case opts.JWKS == "" && (opts.JWTIssuer != "" || opts.JWTAudience != ""):
		return nil, errors.New("-jwt-issuer and -jwt-audience need -jwt-jwks")
	case opts.PolicyFile != "" && !opts.Authenticates():
		return nil, errors.New("-authz-policy needs -client-ca or -jwt-jwks: a policy names callers, who must prove who they are")
	case opts.CallerRate < 0 || opts.CallerBurst < 0:
		return nil, errors.New("-caller-rate and -caller-burst must not be negative")
	}
	var err error
	if opts.TLSCert != "" {
		if s.TLS, err = NewServerTLS(opts.TLSCert, opts.TLSKey, opts.ClientCA, opts.JWKS != "", opts.ReloadEvery, logger, obs); err != nil {
			return nil, err
		}
		s.Track(s.TLS.cert)
		if s.TLS.clientCA != nil {
			s.Track(s.TLS.clientCA)
		}
	}
	if opts.JWKS != "" {
		if s.jwt, err = NewJWTVerifier(opts.JWKS, opts.JWTIssuer, opts.JWTAudience, opts.ReloadEvery, logger, obs); err != nil {
			return nil, err
		}
		s.Track(s.jwt.keys)
	}
	if opts.PolicyFile != "" {
		s.policy, err = WatchFile(FileAuthzPolicy, []string{opts.PolicyFile}, opts.ReloadEvery, logger, obs,
			func(c [][]byte) (*Policy, error) { return ParsePolicy(c[0]) })
		if err != nil {
			return nil, err
		}
		s.Track(s.policy)
	}
	if opts.CallerRate > 0 {
		burst := opts.CallerBurst
		if burst == 0 {
			burst = max(1, int(opts.CallerRate))
		}
		s.quota = NewQuota(opts.CallerRate, burst)
	}
	return s, nil
}

// caller is who makes a call.
type caller struct {
	id    string   // the identity: a certificate's first name, or a token's sub
	names []string // every name policy principals match
}

type callerKey struct{}

// CallerFrom returns the identity of the call's caller: a client certificate's URI SAN
// (a SPIFFE ID), else its DNS SAN, else its subject; or a bearer token's sub. It is
// false when callers are not authenticated.
func CallerFrom(ctx context.Context) (string, bool) {
	c, ok := ctx.Value(callerKey{}).(*caller)
	if !ok {
		return "", false
	}
	return c.id, true
}

// httpCall is what the mirror's HTTP handler learned of a REST call's connection and
// credential, for the interceptor.
type httpCall struct {
	tls           *tls.ConnectionState
	authorization string
	remoteAddr    string
}

type httpCallKey struct{}

// HTTP wraps the REST mirror's handler. It hands the request's TLS state and
// Authorization header to the interceptor through the context (the Authorization
// header is then removed, so the token never becomes metadata), and removes the headers
// a caller could use to impersonate what grpc-gateway itself adds: X-Forwarded-For and
// X-Forwarded-Host (the logged caller address is the connection's), and Grpc-Metadata-
// headers naming those or the credential.
func (s *Security) HTTP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hc := &httpCall{tls: r.TLS, authorization: r.Header.Get("Authorization"), remoteAddr: r.RemoteAddr}
		stripForgeable(r.Header)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), httpCallKey{}, hc)))
	})
}

// stripForgeable deletes the headers that would reach the service as metadata only
// grpc-gateway or the connection may set.
func stripForgeable(h http.Header) {
	for k := range h {
		lk := strings.ToLower(k)
		if md, ok := strings.CutPrefix(lk, "grpc-metadata-"); ok {
			lk = md
		}
		switch {
		case lk == "authorization", lk == "forwarded", strings.HasPrefix(lk, "x-forwarded-"),
			strings.HasPrefix(lk, "grpcgateway-"):
			delete(h, k)
		}
	}
}

// Unary is the unary interceptor: authentication, authorization, quota, metrics.
func (s *Security) Unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, label, transport, err := s.admit(ctx, info.FullMethod)
		var resp any
		if err == nil {
			resp, err = handler(ctx, req)
		}
		s.count(info.FullMethod, transport, label, err)
		return resp, err
	}
}

// Stream is the stream interceptor, the same checks as Unary's.
func (s *Security) Stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, label, transport, err := s.admit(ss.Context(), info.FullMethod)
		if err == nil {
			err = handler(srv, &stream{ServerStream: ss, ctx: ctx})
		}
		s.count(info.FullMethod, transport, label, err)
		return err
	}
}

type stream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *stream) Context() context.Context { return s.ctx }

func (s *Security) count(method, transport, label string, err error) {
	if s.metrics != nil {
		s.metrics.calls.WithLabelValues(method, transport, label, status.Code(err).String()).Inc()
	}
}

// healthPrefix is the standard health service, always open to authenticated callers:
// probes must not depend on a policy getting it right.
const healthPrefix = "/grpc.health.v1.Health/"

// admit runs the checks for a call to method, returning the context that carries the
// caller and the caller's metric label.
func (s *Security) admit(ctx context.Context, method string) (_ context.Context, label, transport string, _ error) {
	transport = "grpc"
	var state *tls.ConnectionState
	var authorization, addr string
	if hc, ok := ctx.Value(httpCallKey{}).(*httpCall); ok {
		transport, state, authorization, addr = "rest", hc.tls, hc.authorization, hc.remoteAddr
	} else if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			state = &ti.State
		}
		if p.Addr != nil {
			addr = p.Addr.String()
		}
		if s.jwt != nil {
			authorization = first(metadata.ValueFromIncomingContext(ctx, "authorization"))
		}
	}
	var policy *Policy
	if s.policy != nil {
		policy = s.policy.Get()
	}

	var c *caller
	if s.authenticates {
		var err error
		if c, err = s.authenticate(state, authorization); err != nil {
			s.refuse(ctx, "unauthenticated", method, transport, "", err.Error())
			return ctx, "other", transport, unauthenticated()
		}
		ctx = context.WithValue(ctx, callerKey{}, c)
		if s.OnCaller != nil {
			s.OnCaller(ctx, c.id)
		}
	}
	var names []string
	if c != nil {
		names = c.names
	}
	label = policy.Label(names)
	health := strings.HasPrefix(method, healthPrefix)
	if policy != nil && !health {
		if d := policy.Authorize(method, names, incoming(ctx)); !d.Allowed {
			reason := "no allow rule matched"
			if d.Rule != "" {
				reason = "matched " + d.Rule
			}
			s.refuse(ctx, "permission_denied", method, transport, c.id, reason)
			return ctx, label, transport, permissionDenied()
		}
	}
	if s.quota != nil && !health {
		key := "addr:" + hostOf(addr)
		if c != nil {
			key = "id:" + c.id
		}
		if ok, wait := s.quota.Take(key, s.now()); !ok {
			if s.metrics != nil {
				s.metrics.quotaRejections.WithLabelValues(label).Inc()
			}
			return ctx, label, transport, quotaExceeded(wait)
		}
	}
	return ctx, label, transport, nil
}

// authenticate proves the caller: by bearer token when one is sent and tokens are
// accepted, else by client certificate.
func (s *Security) authenticate(state *tls.ConnectionState, authorization string) (*caller, error) {
	if s.jwt != nil && authorization != "" {
		scheme, token, _ := strings.Cut(authorization, " ")
		if !strings.EqualFold(scheme, "Bearer") || token == "" {
			return nil, errors.New("authorization is not a bearer token")
		}
		sub, err := s.jwt.Verify(strings.TrimSpace(token))
		if err != nil {
			return nil, err
		}
		return &caller{id: sub, names: []string{sub}}, nil
	}
	if state != nil && len(state.VerifiedChains) > 0 && len(state.VerifiedChains[0]) > 0 {
		names := CertIdentities(state.VerifiedChains[0][0])
		return &caller{id: names[0], names: names}, nil
	}
	if s.jwt != nil {
		return nil, errors.New("no client certificate and no bearer token")
	}
	return nil, errors.New("no verified client certificate")
}

// incoming is the metadata a policy's header rules match. On REST it is what
// grpc-gateway made of the request's Grpc-Metadata- headers.
func incoming(ctx context.Context) metadata.MD {
	md, _ := metadata.FromIncomingContext(ctx)
	return md
}

func (s *Security) refuse(ctx context.Context, reason, method, transport, identity, why string) {
	if s.metrics != nil {
		s.metrics.authFailures.WithLabelValues(reason).Inc()
	}
	attrs := []slog.Attr{
		slog.String("reason", reason), slog.String("method", method), slog.String("transport", transport),
		slog.String("why", why),
	}
	if identity != "" {
		attrs = append(attrs, slog.String("caller_identity", identity))
	}
	s.logger.LogAttrs(ctx, slog.LevelWarn, "call refused", attrs...)
}

func first(v []string) string {
	if len(v) > 0 {
		return v[0]
	}
	return ""
}

func hostOf(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// errorDomain is server.ServiceDomain: the errors below started in this service, and
// name the Plaid error a Plaid client understands, so the REST mirror answers in
// Plaid's shape (see package mirror).
const errorDomain = "creditsessions"

func plaidStatus(code codes.Code, msg, errorType, errorCode string, httpStatus string, retry time.Duration) error {
	st := status.New(code, msg)
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{
		Reason: errorCode, Domain: errorDomain,
		Metadata: map[string]string{"errorType": errorType, "httpStatus": httpStatus},
	}}
	if retry > 0 {
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(retry)})
	}
	if withDetails, err := st.WithDetails(details...); err == nil {
		st = withDetails
	}
	return st.Err()
}

// The messages say nothing an attacker could use; the log line says why.
func unauthenticated() error {
	return plaidStatus(codes.Unauthenticated, "a valid client certificate or bearer token is required",
		"INVALID_INPUT", "INVALID_API_KEYS", "401", 0)
}

func permissionDenied() error {
	return plaidStatus(codes.PermissionDenied, "the caller may not call this method",
		"INVALID_INPUT", "UNAUTHORIZED_ROUTE_ACCESS", "403", 0)
}

func quotaExceeded(wait time.Duration) error {
	// Rounded up to whole milliseconds, so a client that waits as told is admitted.
	wait = (wait + time.Millisecond - 1).Truncate(time.Millisecond)
	return plaidStatus(codes.ResourceExhausted, "this caller's call rate is over its quota",
		"RATE_LIMIT_EXCEEDED", "RATE_LIMIT", "429", wait)
}
