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
	"errors"
	"log/slog"
	"time"
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
	// CallerMaxWatches, when above 0, caps the watches (server-streaming calls other
	// than health's) each caller may have open on this replica at once.
	CallerMaxWatches int
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
	// OnRefused, if set, hears why a call is refused before it is served
	// (unauthenticated, permission_denied, quota) and the policy rule that decided, if
	// any, for the call's audit record.
	OnRefused func(ctx context.Context, reason, rule string)

	authenticates bool
	jwt           *JWTVerifier
	policy        *File[*Policy]
	quota         *Quota
	watches       *watchCount
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
	case opts.CallerMaxWatches < 0:
		return nil, errors.New("-caller-max-watches must not be negative")
	case opts.CallerBurst > 0 && opts.CallerRate == 0:
		return nil, errors.New("-caller-burst needs -caller-rate")
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
	if opts.CallerMaxWatches > 0 {
		s.watches = newWatchCount(opts.CallerMaxWatches)
	}
	return s, nil
}

// caller is who makes a call.
type caller struct {
	id    string   // the identity: a certificate's first name, or a token's sub
	names []string // every name policy principals match
	token bool     // proven by a bearer token, not a certificate
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
