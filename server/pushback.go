package server

import (
	"context"
	"strconv"
	"sync"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// PushbackTrailer is the trailer of gRFC A6 (client retries) in which a server tells a
// client with a retry policy how long to wait before its next attempt, in milliseconds,
// or, with a negative value, not to retry at all.
const PushbackTrailer = "grpc-retry-pushback-ms"

// noRetry is the pushback that tells a client not to retry.
const noRetry = "-1"

// Pushback returns the grpc-retry-pushback-ms value for a failed call's status, and
// whether the status should carry one at all:
//
//   - A status with a RetryInfo carries its delay, so a stock gRPC client with a retry
//     policy waits exactly as long as the service asks, not its own backoff.
//   - ResourceExhausted, Internal, Unknown and DataLoss without a RetryInfo carry -1:
//     a retry is harmful there. Without a RetryInfo, ResourceExhausted is a quota that
//     will not come back in seconds (CREDITS_EXHAUSTED) and a retry spends more of it;
//     the others are this service's bug or configuration (a redirect, a body over the
//     limit, keys Plaid refused), where a retry comes back the same and adds load on
//     Plaid. These are codes a caller may well list in its retryableStatusCodes.
//   - Any other status carries none: the caller's own errors (InvalidArgument, NotFound,
//     FailedPrecondition, ...) are in no sane retry policy, and Canceled and
//     DeadlineExceeded are the caller's own doing. Unavailable always carries a
//     RetryInfo when this service produces it; one produced by the transport (a server
//     going away) is left to the client's backoff.
func Pushback(st *status.Status) (string, bool) {
	if st.Code() == codes.OK {
		return "", false
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
			delay := ri.GetRetryDelay().AsDuration()
			if delay < 0 {
				return noRetry, true
			}
			return strconv.FormatInt(delay.Milliseconds(), 10), true
		}
	}
	switch st.Code() {
	case codes.ResourceExhausted, codes.Internal, codes.Unknown, codes.DataLoss:
		return noRetry, true
	}
	return "", false
}

// pushbackUnary sets the pushback trailer on failed calls, and sends the response
// header metadata the handler set (plaid-request-id) as trailer metadata instead when
// the call fails. A client that received response headers has committed the call and
// never retries it (gRFC A6), so a failure with headers would defeat any retry policy
// and the pushback with it: a failed call's answer must be trailers-only. It is the
// outermost interceptor, so that it sees the status every other one produced.
func pushbackUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	outer := grpc.ServerTransportStreamFromContext(ctx)
	if outer == nil {
		return handler(ctx, req)
	}
	held := &heldHeader{ServerTransportStream: outer}
	resp, err := handler(grpc.NewContextWithServerTransportStream(ctx, held), req)
	held.finish(err)
	return resp, err
}

// pushbackStream is pushbackUnary for streams. Once a stream has sent a message or its
// header, it is committed anyway and keeps its header where it is.
func pushbackStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	outer := grpc.ServerTransportStreamFromContext(ss.Context())
	held := &heldStream{ServerStream: ss, header: heldHeader{ServerTransportStream: outer, stream: ss}}
	if outer != nil {
		held.ctx = grpc.NewContextWithServerTransportStream(ss.Context(), &held.header)
	} else {
		held.ctx = ss.Context()
	}
	err := handler(srv, held)
	held.header.finish(err)
	return err
}

// heldHeader keeps the header metadata a handler sets until the call's outcome is
// known: on success it goes out as header metadata, as it would have; on failure as
// trailer metadata, with the pushback.
type heldHeader struct {
	grpc.ServerTransportStream
	stream grpc.ServerStream // for streams, where the header is set on the stream

	mu     sync.Mutex
	header metadata.MD
	sent   bool // a message or the header went out: the call is committed
}

func (h *heldHeader) SetHeader(md metadata.MD) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.sent {
		return h.setHeader(md)
	}
	if h.header == nil {
		// The first header is kept as given, not copied: grpc-go copies it when it is
		// finally set, and a call sets one header (its Plaid request id) on the common
		// path, where a copy here was two allocations more per call.
		h.header = md
		return nil
	}
	h.header = metadata.Join(h.header, md)
	return nil
}

func (h *heldHeader) SendHeader(md metadata.MD) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.flushLocked(md)
}

// flushLocked sends what is held along with md, as the call commits.
func (h *heldHeader) flushLocked(md metadata.MD) error {
	all := metadata.Join(h.header, md)
	h.header, h.sent = nil, true
	if h.stream != nil {
		return h.stream.SendHeader(all)
	}
	return h.ServerTransportStream.SendHeader(all)
}

func (h *heldHeader) setHeader(md metadata.MD) error {
	if h.stream != nil {
		return h.stream.SetHeader(md)
	}
	return h.ServerTransportStream.SetHeader(md)
}

func (h *heldHeader) setTrailer(md metadata.MD) {
	if h.stream != nil {
		h.stream.SetTrailer(md)
		return
	}
	// Fails only when the call has ended already, when nothing can be sent.
	_ = h.ServerTransportStream.SetTrailer(md)
}

// finish places the held header metadata and the pushback once the handler returned.
func (h *heldHeader) finish(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil {
		if len(h.header) > 0 && !h.sent {
			// Goes out with the response, as grpc.SetHeader would have sent it.
			_ = h.setHeader(h.header)
		}
		return
	}
	trailer := h.header
	h.header = nil
	if h.sent {
		trailer = nil // a committed call is not retried; the header went out already
	} else if v, ok := Pushback(status.Convert(err)); ok {
		trailer = metadata.Join(trailer, metadata.MD{PushbackTrailer: {v}})
	}
	if len(trailer) > 0 {
		h.setTrailer(trailer)
	}
}

// heldStream routes a stream handler's header metadata through heldHeader.
type heldStream struct {
	grpc.ServerStream
	ctx    context.Context
	header heldHeader
}

func (s *heldStream) Context() context.Context { return s.ctx }

func (s *heldStream) SetHeader(md metadata.MD) error { return s.header.SetHeader(md) }

func (s *heldStream) SendHeader(md metadata.MD) error { return s.header.SendHeader(md) }

func (s *heldStream) SendMsg(m any) error {
	s.header.mu.Lock()
	if !s.header.sent {
		held := s.header.header
		s.header.header, s.header.sent = nil, true
		if len(held) > 0 {
			if err := s.ServerStream.SetHeader(held); err != nil {
				s.header.mu.Unlock()
				return err
			}
		}
	}
	s.header.mu.Unlock()
	return s.ServerStream.SendMsg(m)
}
