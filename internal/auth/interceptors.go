package auth

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Unary is the unary interceptor: authentication, authorization, quota, metrics.
func (s *Security) Unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, label, transport, _, err := s.admit(ctx, info.FullMethod, quotaCost(req))
		var resp any
		if err == nil {
			resp, err = handler(ctx, req)
		}
		s.count(info.FullMethod, transport, label, err)
		return resp, err
	}
}

// Stream is the stream interceptor, the same checks as Unary's, and for watches the
// caller's cap on watches open at once.
func (s *Security) Stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, label, transport, key, err := s.admit(ss.Context(), info.FullMethod, 1)
		if err == nil && s.watches != nil && isWatch(info) {
			if s.watches.acquire(key) {
				defer s.watches.release(key)
			} else {
				if s.metrics != nil {
					s.metrics.watchRejections.WithLabelValues(label).Inc()
				}
				if s.OnRefused != nil {
					s.OnRefused(ctx, "quota", "")
				}
				err = tooManyWatches()
			}
		}
		if err == nil {
			err = handler(srv, &stream{ServerStream: ss, ctx: ctx})
		}
		s.count(info.FullMethod, transport, label, err)
		return err
	}
}

// isWatch reports whether a stream is a watch: the server sends for as long as the
// call lasts. Health's Watch is left out, as health is from every other check: probes
// must not depend on a caller's other watches.
func isWatch(info *grpc.StreamServerInfo) bool {
	return info.IsServerStream && !info.IsClientStream && !strings.HasPrefix(info.FullMethod, healthPrefix)
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

// quotaCost is what a call costs against its caller's quota: one per user it reads, so
// that a batch of a hundred users costs what a hundred calls would.
func quotaCost(req any) int {
	if b, ok := req.(interface{ GetUserTokens() []string }); ok {
		return max(len(b.GetUserTokens()), 1)
	}
	return 1
}

// healthPrefix is the standard health service, always open to authenticated callers:
// probes must not depend on a policy getting it right.
const healthPrefix = "/grpc.health.v1.Health/"

// admit runs the checks for a call to method, returning the context that carries the
// caller, the caller's metric label, and the key its quota and watches are counted
// under.
func (s *Security) admit(ctx context.Context, method string, cost int) (_ context.Context, label, transport, key string, _ error) {
	transport = "grpc"
	var state *tls.ConnectionState
	var authorization string
	var addr func() string // only a quota for anonymous callers needs it
	if hc, ok := ctx.Value(httpCallKey{}).(*httpCall); ok {
		transport, state, authorization = "rest", hc.tls, hc.authorization
		addr = func() string { return hc.remoteAddr }
	} else if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			state = &ti.State
		}
		if p.Addr != nil {
			addr = p.Addr.String
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
			if s.OnRefused != nil {
				s.OnRefused(ctx, "unauthenticated", "")
			}
			return ctx, "other", transport, "", unauthenticated()
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
		var md metadata.MD
		if policy.headerRules {
			md = incoming(ctx) // a copy of the metadata: only when a rule needs it
		}
		d := policy.Authorize(method, names, md)
		if policy.audits() {
			policy.audit(method, a59Principal(state, c), d)
		}
		if !d.Allowed {
			reason := "no allow rule matched"
			if d.Rule != "" {
				reason = "matched " + d.Rule
			}
			s.refuse(ctx, "permission_denied", method, transport, c.id, reason)
			if s.OnRefused != nil {
				s.OnRefused(ctx, "permission_denied", d.Rule)
			}
			return ctx, label, transport, "", permissionDenied()
		}
	}
	if (s.quota != nil || s.watches != nil) && !health {
		switch { // anonymous callers (without authentication) by address
		case c != nil:
			key = "id:" + c.id
		case addr != nil:
			key = "addr:" + hostOf(addr())
		}
	}
	if s.quota != nil && !health {
		if ok, wait := s.quota.TakeN(key, s.now(), cost); !ok {
			if s.metrics != nil {
				s.metrics.quotaRejections.WithLabelValues(label).Inc()
			}
			if s.OnRefused != nil {
				s.OnRefused(ctx, "quota", "")
			}
			return ctx, label, transport, key, quotaExceeded(wait)
		}
	}
	return ctx, label, transport, key, nil
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
		return &caller{id: sub, names: []string{sub}, token: true}, nil
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
