package audit

import (
	"context"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ServicePrefix is the service whose calls hand out users' data: every call to it is
// recorded, whatever its outcome. Calls to other services (health, reflection) are
// recorded only when refused.
const ServicePrefix = "/plaid.credit.v1.CreditService/"

// TransportOf names the transport a call came over ("grpc" or "rest"); the security
// layer, which tells them apart by the credentials' context, provides it.
type TransportOf func(context.Context) string

// errUnavailable is what a caller gets when its call's record cannot be kept. It names
// no detail of the sink: that is for the operator's logs.
var errUnavailable = status.Error(codes.Unavailable, "the audit trail cannot record this call; try again later")

// Unary is the interceptor that records unary calls. It must run outside the security
// interceptor, to see its refusals. With Options.Required, an answer whose record
// cannot be kept is not given: the caller gets Unavailable instead.
func (l *Log) Unary(transport TransportOf) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		e := entry{method: info.FullMethod, start: time.Now()}
		ctx = context.WithValue(ctx, noteKey{}, &e.note)
		var resp any
		var err error
		if l.opts.Required && !l.Healthy() && strings.HasPrefix(info.FullMethod, ServicePrefix) {
			e.note.refusal = RefusedAuditUnavailable
			err = errUnavailable
			l.opts.Metrics.refuse()
		} else {
			resp, err = handler(ctx, req)
		}
		if e.note.refusal == "" && !strings.HasPrefix(info.FullMethod, ServicePrefix) {
			return resp, err
		}
		e.transport, e.code, e.end = transport(ctx), status.Code(err), time.Now()
		if !l.addCall(&e) && l.opts.Required && err == nil {
			l.opts.Metrics.refuse()
			return nil, errUnavailable
		}
		return resp, err
	}
}

// addCall queues a unary call's records: one, or for a batch that read users, one per
// user, each with that user's outcome. False when any cannot be kept.
func (l *Log) addCall(e *entry) bool {
	if len(e.note.batch) == 0 || e.code != codes.OK {
		return l.add(e)
	}
	kept := true
	for _, u := range e.note.batch {
		one := *e
		one.note, one.code = e.note.forUser(u), u.Code
		kept = l.add(&one) && kept
	}
	return kept
}

// Stream is Unary's counterpart for streams: one record when the stream ends, with
// when it started and how many messages it sent. With Options.Required, a stream stops
// (Unavailable) at its next message once the sink fails.
func (l *Log) Stream(transport TransportOf) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		e := entry{method: info.FullMethod, start: time.Now(), watch: true}
		ctx := context.WithValue(ss.Context(), noteKey{}, &e.note)
		audited := strings.HasPrefix(info.FullMethod, ServicePrefix)
		var err error
		if l.opts.Required && !l.Healthy() && audited {
			e.note.refusal = RefusedAuditUnavailable
			err = errUnavailable
			l.opts.Metrics.refuse()
		} else {
			err = handler(srv, &stream{ServerStream: ss, ctx: ctx, l: l, e: &e, audited: audited})
		}
		if e.note.refusal == "" && !audited {
			return err
		}
		e.transport, e.code, e.end = transport(ctx), status.Code(err), time.Now()
		l.add(&e) // the messages are sent: a record that cannot be kept is counted lost
		return err
	}
}

type stream struct {
	grpc.ServerStream
	ctx     context.Context
	l       *Log
	e       *entry
	audited bool
}

func (s *stream) Context() context.Context { return s.ctx }

func (s *stream) SendMsg(m any) error {
	if s.audited && s.l.opts.Required && !s.l.Healthy() {
		s.l.opts.Metrics.refuse()
		return errUnavailable
	}
	if err := s.ServerStream.SendMsg(m); err != nil {
		return err
	}
	s.e.messages++
	return nil
}
