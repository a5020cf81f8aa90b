// Package server implements plaid.credit.v1.CreditService by calling Plaid's REST API,
// and owns the one mapping from upstream errors to gRPC status.
package server

import (
	"context"
	"log/slog"

	creditv1 "creditsessions/gen/plaid/credit/v1"
	"creditsessions/internal/plaid"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
)

// Upstream is what the service needs of Plaid; *plaid.Client is one.
type Upstream interface {
	CreditSessionsGet(ctx context.Context, r plaid.Request) (*creditv1.CreditSessionsGetResponse, error)
}

// Service is the CreditService implementation.
type Service struct {
	creditv1.UnimplementedCreditServiceServer
	upstream Upstream
}

var _ creditv1.CreditServiceServer = (*Service)(nil)

// New returns a Service that fulfils calls from upstream.
func New(upstream Upstream) *Service {
	return &Service{upstream: upstream}
}

// CreditSessionsGet checks the request, then fetches the user's sessions from Plaid. The
// caller's deadline and cancellation travel with ctx to the upstream request.
func (s *Service) CreditSessionsGet(ctx context.Context, req *creditv1.CreditSessionsGetRequest) (*creditv1.CreditSessionsGetResponse, error) {
	if req.GetUserToken() == "" {
		return nil, status.Error(codes.InvalidArgument, "user_token is required")
	}
	resp, err := s.upstream.CreditSessionsGet(ctx, plaid.Request{UserToken: req.GetUserToken()})
	if err != nil {
		return nil, Status(ctx, err).Err()
	}
	return resp, nil
}

// Options configure NewGRPCServer.
type Options struct {
	// Logger receives one line per call; nil means slog.Default().
	Logger *slog.Logger
	// Interceptors run after the service's own (recovery, logging), in order, on gRPC
	// and REST calls alike.
	Interceptors []grpc.UnaryServerInterceptor
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
	chain := append([]grpc.UnaryServerInterceptor{recoverPanics(logger), logCalls(logger)}, opts.Interceptors...)
	g := &GRPC{
		Server:      grpc.NewServer(append(opts.ServerOptions, grpc.ChainUnaryInterceptor(chain...))...),
		Health:      health.NewServer(),
		Interceptor: ChainUnary(chain...),
		svc:         svc,
	}
	creditv1.RegisterCreditServiceServer(g.Server, svc)
	healthpb.RegisterHealthServer(g.Server, g.Health)
	reflection.Register(g.Server)
	g.Health.SetServingStatus(creditv1.CreditService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	return g
}
