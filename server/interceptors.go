package server

import (
	"context"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/creditsessions/creditsessions/internal/membudget"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

// ChainUnary folds interceptors into one, the first outermost, as
// grpc.ChainUnaryInterceptor does inside a server.
func ChainUnary(interceptors ...grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		next := handler
		for i := len(interceptors) - 1; i >= 0; i-- {
			icpt, inner := interceptors[i], next
			next = func(ctx context.Context, req any) (any, error) { return icpt(ctx, req, info, inner) }
		}
		return next(ctx, req)
	}
}

// recoverPanics turns a panic in a handler into Internal, so one bad call cannot take the
// process down. The stack goes to the log, not to the caller.
func recoverPanics(logger *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if p := recover(); p != nil {
				logger.ErrorContext(ctx, "panic in handler", "method", info.FullMethod, "panic", p, "stack", string(debug.Stack()))
				resp, err = nil, status.Error(codes.Internal, "internal error")
			}
		}()
		return handler(ctx, req)
	}
}

// recoverStreamPanics is recoverPanics for streaming calls.
func recoverStreamPanics(logger *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		defer func() {
			if p := recover(); p != nil {
				logger.ErrorContext(ss.Context(), "panic in handler", "method", info.FullMethod, "panic", p, "stack", string(debug.Stack()))
				err = status.Error(codes.Internal, "internal error")
			}
		}()
		return handler(srv, ss)
	}
}

// logCalls writes one line per call: method, transport, code, latency, Plaid's request
// id, the caller's address, identity (once authenticated) and user agent, and a short
// hash of the user token. Requests,
// responses and metadata are never logged: they carry user tokens and secrets.
func logCalls(logger *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		ctx, ci := withCallInfo(ctx)
		resp, err := handler(ctx, req)
		logCall(ctx, logger, info.FullMethod, start, ci, err)
		return resp, err
	}
}

func logCall(ctx context.Context, logger *slog.Logger, method string, start time.Time, ci *callInfo, err error) {
	st := status.Convert(err)
	level := slog.LevelInfo
	if st.Code() == codes.Internal || st.Code() == codes.Unknown || st.Code() == codes.DataLoss {
		level = slog.LevelError
	}
	if !logger.Enabled(ctx, level) {
		return // nothing below is worth computing for a line nobody writes
	}
	addr, userAgent := callerOf(ctx)
	attrs := make([]slog.Attr, 0, 10)
	attrs = append(attrs,
		slog.String("method", method),
		slog.String("transport", transportOf(ctx)),
		slog.String("code", st.Code().String()),
		slog.Duration("latency", time.Since(start)),
		slog.String("plaid_request_id", ci.requestID),
		slog.String("caller", addr),
		slog.String("user_agent", userAgent),
		slog.String("user_token_sha256", ci.tokenHash),
	)
	if ci.caller != "" {
		attrs = append(attrs, slog.String("caller_identity", ci.caller))
	}
	if ci.clientID != "" {
		attrs = append(attrs, slog.String("plaid_client_id", ci.clientID))
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", st.Message()))
		if id := serviceRequestID(st); id != "" {
			attrs = append(attrs, slog.String("request_id", id))
		}
		if ci.upstreamError != "" {
			attrs = append(attrs, slog.String("upstream_error", ci.upstreamError))
		}
	}
	logger.LogAttrs(ctx, level, "call", attrs...)
}

// serviceRequestID is the request id of an error that started in this service, the one
// its caller was given; "" for other errors.
func serviceRequestID(st *status.Status) string {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == ServiceDomain {
			return info.GetMetadata()[MetaRequestID]
		}
	}
	return ""
}

// HoldMemory is a gRPC stats handler that gives every call a hold on b, under which the
// Plaid client reserves a large answer's bytes before reading them (see package
// membudget), from the call's start until its answer has been encoded and handed to the
// transport: an interceptor's hold would end before grpc-go encodes the answer, while
// the message is still held, and a slow client would leave many such calls outside the
// budget.
func HoldMemory(b *membudget.Budget) stats.Handler { return memoryHolder{b} }

type memoryHolder struct{ b *membudget.Budget }

type holdEndKey struct{}

func (m memoryHolder) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	ctx, _ = HoldAnswerMemory(ctx, m.b)
	return ctx
}

// HoldAnswerMemory is HoldMemory's hold for a call that does not arrive over gRPC: the
// REST mirror's watch, which streams outside grpc-gateway and so outside the mirror's
// per-call hold. A watch ends the hold itself once its first answer is sent, as over
// gRPC; end gives back whatever is still held when the call ends.
func HoldAnswerMemory(ctx context.Context, b *membudget.Budget) (_ context.Context, end func()) {
	ctx, end = b.Hold(ctx)
	return context.WithValue(ctx, holdEndKey{}, end), end
}

func (memoryHolder) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if _, ok := s.(*stats.End); ok {
		if end, _ := ctx.Value(holdEndKey{}).(func()); end != nil {
			end()
		}
	}
}

func (memoryHolder) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (memoryHolder) HandleConn(context.Context, stats.ConnStats)                       {}

// ChainStream folds stream interceptors into one, the first outermost, as
// grpc.ChainStreamInterceptor does inside a server.
func ChainStream(interceptors ...grpc.StreamServerInterceptor) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		next := handler
		for i := len(interceptors) - 1; i >= 0; i-- {
			icpt, inner := interceptors[i], next
			next = func(srv any, ss grpc.ServerStream) error { return icpt(srv, ss, info, inner) }
		}
		return next(srv, ss)
	}
}

// contextStream is a ServerStream with a context of the interceptor's making.
type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s contextStream) Context() context.Context { return s.ctx }

// logStreams is logCalls for streams: one line when the stream ends, with the same
// fields, the first answer's Plaid request id, and how long the stream lasted.
func logStreams(logger *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		ctx, ci := withCallInfo(ss.Context())
		err := handler(srv, contextStream{ServerStream: ss, ctx: ctx})
		logCall(ctx, logger, info.FullMethod, start, ci, err)
		return err
	}
}
