// Package server implements plaid.credit.v1.CreditService by calling Plaid's REST API,
// and owns the one mapping from upstream errors to gRPC status.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"unicode/utf8"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/audit"
	"github.com/creditsessions/creditsessions/internal/cache"
	"github.com/creditsessions/creditsessions/internal/plaid"
	"github.com/creditsessions/creditsessions/internal/watch"

	"golang.org/x/net/http/httpguts"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
)

// Upstream is what the service needs of Plaid; *plaid.Client is one.
type Upstream interface {
	CreditSessionsGet(ctx context.Context, r plaid.Request) (*creditv1.CreditSessionsGetResponse, error)
}

// Credential modes: whose Plaid keys a call is made with.
const (
	// ServiceKeys: the service's own keys. Keys a caller sends are ignored: never
	// forwarded, never logged.
	ServiceKeys = "service"
	// CallerKeys: the caller's keys, from the request's client_id and secret or the
	// plaid-client-id and plaid-secret metadata (the REST mirror passes the
	// PLAID-CLIENT-ID and PLAID-SECRET headers as those), so one deployment can serve
	// several Plaid accounts.
	CallerKeys = "caller"
)

// Metadata keys the service reads and writes.
const (
	// RequestIDHeader carries Plaid's request id back on every call that reached Plaid,
	// success or failure, so an operator can quote it to Plaid.
	RequestIDHeader = "plaid-request-id"
	clientIDKey     = "plaid-client-id"
	secretKey       = "plaid-secret"
)

// Service is the CreditService implementation.
type Service struct {
	creditv1.UnimplementedCreditServiceServer
	upstream   Upstream
	callerKeys bool
	watch      *watch.Hub

	cache        *cache.Cache
	serviceScope func() string
}

var _ creditv1.CreditServiceServer = (*Service)(nil)

// New returns a Service that fulfils calls from upstream. credentials is ServiceKeys
// (or "") or CallerKeys.
func New(upstream Upstream, credentials string) (*Service, error) {
	switch credentials {
	case "", ServiceKeys:
		return &Service{upstream: upstream}, nil
	case CallerKeys:
		return &Service{upstream: upstream, callerKeys: true}, nil
	default:
		return nil, fmt.Errorf("credentials mode %q: want %q or %q", credentials, ServiceKeys, CallerKeys)
	}
}

// CreditSessionsGet checks the request, then fetches the user's sessions from Plaid. The
// caller's deadline and cancellation travel with ctx to the upstream request.
func (s *Service) CreditSessionsGet(ctx context.Context, req *creditv1.CreditSessionsGetRequest) (*creditv1.CreditSessionsGetResponse, error) {
	call, err := s.plaidRequest(ctx, req.GetUserToken(), req.GetClientId(), req.GetSecret())
	if err != nil {
		return nil, err
	}
	if s.cache != nil {
		if cr := cacheRequestOf(ctx); cr.uses() {
			return s.cachedGet(ctx, call, cr)
		}
	}
	return s.fetch(ctx, call)
}

// plaidRequest checks a call's user token and, in caller-keys mode, its keys, and notes
// them for the call's log line.
func (s *Service) plaidRequest(ctx context.Context, userToken, clientID, secret string) (plaid.Request, error) {
	call := plaid.Request{UserToken: userToken}
	var missing []string
	if call.UserToken == "" {
		missing = append(missing, "user_token")
	}
	if s.callerKeys {
		call.Credentials = callerCredentials(ctx, clientID, secret)
		if call.Credentials.ClientID == "" {
			missing = append(missing, "client_id")
		}
		if call.Credentials.Secret == "" {
			missing = append(missing, "secret")
		}
	}
	if len(missing) > 0 {
		return call, missingFields(codes.InvalidArgument, missing...)
	}
	if !validUserToken(call.UserToken) {
		// Plaid would refuse it too; refused here, it never leaves the service.
		return call, invalidField(codes.InvalidArgument, "user_token")
	}
	if s.callerKeys && (!httpguts.ValidHeaderFieldValue(call.Credentials.ClientID) ||
		!httpguts.ValidHeaderFieldValue(call.Credentials.Secret)) {
		// They travel to Plaid as header fields, where a CR or LF would start fields of
		// the caller's choosing. No real key holds one: answered as Plaid answers wrong keys.
		return call, serviceError(codes.Unauthenticated, "INVALID_INPUT", "INVALID_API_KEYS", 400, 0,
			"invalid client_id or secret provided").Err()
	}
	if ci := callInfoFrom(ctx); ci != nil {
		ci.tokenHash = TokenHash(call.UserToken)
		ci.clientID = call.Credentials.ClientID
	}
	audit.NoteFrom(ctx).SetUser(call.UserToken, call.Credentials.ClientID)
	return call, nil
}

// fetch calls Plaid through the resilience layer and maps its errors to gRPC status.
func (s *Service) fetch(ctx context.Context, call plaid.Request) (*creditv1.CreditSessionsGetResponse, error) {
	ci := callInfoFrom(ctx)
	resp, err := s.upstream.CreditSessionsGet(ctx, call)
	if err != nil {
		if ci != nil {
			ci.upstreamError = err.Error()
		}
		err = upstreamStatus(ctx, err, s.callerKeys)
		var ue *UpstreamError
		if errors.As(err, &ue) && ue.Plaid.RequestID != "" {
			s.noteRequestID(ctx, ci, ue.Plaid.RequestID)
		}
		return nil, err
	}
	s.noteRequestID(ctx, ci, resp.GetRequestId())
	audit.NoteFrom(ctx).AddSessions(len(resp.GetSessions()))
	return resp, nil
}

// MaxUserTokenBytes bounds a user token. Plaid's are about 50 bytes
// ("user-sandbox-" and a UUID); the bound leaves room for other formats, and keeps a
// caller from sending Plaid, and the logs' hash, a megabyte.
const MaxUserTokenBytes = 1 << 10

// validUserToken reports whether token could be a user token: at most
// MaxUserTokenBytes of valid UTF-8, without U+FFFD (what the REST mirror's JSON decoding
// makes of bytes that are not UTF-8; no token holds one).
func validUserToken(token string) bool {
	return len(token) <= MaxUserTokenBytes && utf8.ValidString(token) && !strings.ContainsRune(token, utf8.RuneError)
}

// noteRequestID sends Plaid's request id back as response metadata and keeps it for the
// call's log line.
func (s *Service) noteRequestID(ctx context.Context, ci *callInfo, id string) {
	if ci != nil {
		ci.requestID = id
	}
	audit.NoteFrom(ctx).SetRequestID(id)
	setRequestID(ctx, id)
}

// callerCredentials takes the caller's keys from the request, or else from metadata.
func callerCredentials(ctx context.Context, clientID, secret string) plaid.Credentials {
	creds := plaid.Credentials{ClientID: clientID, Secret: secret}
	if creds.ClientID == "" {
		creds.ClientID = first(metadata.ValueFromIncomingContext(ctx, clientIDKey))
	}
	if creds.Secret == "" {
		creds.Secret = first(metadata.ValueFromIncomingContext(ctx, secretKey))
	}
	return creds
}

func first(values []string) string {
	if len(values) > 0 {
		return values[0]
	}
	return ""
}

// setRequestID sends Plaid's request id as response header metadata. A failure only
// means the call ended already; the id is in the body or the error details anyway.
func setRequestID(ctx context.Context, id string) {
	if id != "" {
		// A literal, not metadata.Pairs: the key is lower case already, and this runs
		// on every call.
		_ = grpc.SetHeader(ctx, metadata.MD{RequestIDHeader: {id}})
	}
}

// StreamWorkers is the number of goroutines the gRPC server keeps for running calls: as
// many as the upstream calls the service allows in flight by default.
const StreamWorkers = 64

// Options configure NewGRPCServer.
type Options struct {
	// Logger receives one line per call; nil means slog.Default().
	Logger *slog.Logger
	// Interceptors run after the service's own (recovery, logging), in order, on gRPC
	// and REST calls alike.
	Interceptors []grpc.UnaryServerInterceptor
	// StreamInterceptors are Interceptors' counterparts for streaming calls (reflection,
	// watches), in the same order, on gRPC and REST streams alike.
	StreamInterceptors []grpc.StreamServerInterceptor
	// ServerOptions are passed to grpc.NewServer.
	ServerOptions []grpc.ServerOption
}

// GRPC is a gRPC server carrying the service, the standard health service and server
// reflection, and the interceptor chain the REST mirror must also run.
type GRPC struct {
	*grpc.Server
	// Health is the health service; the service's name and "" are SERVING once built.
	Health *health.Server
	// Interceptor is the whole unary chain, for callers that reach the service without
	// going through the gRPC server (the REST mirror).
	Interceptor grpc.UnaryServerInterceptor
	// StreamInterceptor is the whole stream chain, the unary chain's counterpart, for
	// the REST mirror's streaming routes.
	StreamInterceptor grpc.StreamServerInterceptor

	svc creditv1.CreditServiceServer
}

// Service is the CreditService the server carries.
func (g *GRPC) Service() creditv1.CreditServiceServer { return g.svc }

// NewGRPCServer builds the gRPC server for svc.
func NewGRPCServer(svc creditv1.CreditServiceServer, opts Options) *GRPC {
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	// pushback outermost, so that it sees the status every other one produced.
	chain := append([]grpc.UnaryServerInterceptor{pushbackUnary, recoverPanics(logger), logCalls(logger)}, opts.Interceptors...)
	streamChain := append([]grpc.StreamServerInterceptor{pushbackStream, recoverStreamPanics(logger), logStreams(logger)}, opts.StreamInterceptors...)
	serverOptions := append([]grpc.ServerOption{
		// Calls run on long-lived goroutines whose stacks have already grown to what a
		// call needs, instead of a fresh goroutine per call growing its stack by copying
		// (about a tenth of a small call's CPU in a profile). When every worker is busy,
		// grpc-go starts a goroutine as it would without them.
		grpc.NumStreamWorkers(StreamWorkers),
		RequestCodec(),
	}, opts.ServerOptions...)
	g := &GRPC{
		Server: grpc.NewServer(append(serverOptions,
			grpc.ChainUnaryInterceptor(chain...), grpc.ChainStreamInterceptor(streamChain...))...),
		Health:            health.NewServer(),
		Interceptor:       ChainUnary(chain...),
		StreamInterceptor: ChainStream(streamChain...),
		svc:               svc,
	}
	creditv1.RegisterCreditServiceServer(g.Server, svc)
	healthpb.RegisterHealthServer(g.Server, g.Health)
	reflection.Register(g.Server)
	g.Health.SetServingStatus(creditv1.CreditService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	return g
}
