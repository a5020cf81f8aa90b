package server

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"time"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/audit"
	"github.com/creditsessions/creditsessions/internal/plaid"
	"github.com/creditsessions/creditsessions/internal/watch"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// EnableWatch serves WatchCreditSessions from hub; without it the method is Unimplemented.
// Call it before serving.
func (s *Service) EnableWatch(hub *watch.Hub) { s.watch = hub }

// WatchKey names the watched user of call without its token or keys: the polls of one
// user with one set of keys are shared; in caller-keys mode, callers with other keys get
// polls of their own, made with their own keys.
func WatchKey(call plaid.Request) watch.Key {
	h := sha256.New()
	for _, part := range []string{"creditsessions watch v1", call.Credentials.ClientID, call.Credentials.Secret, call.UserToken} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	var k watch.Key
	h.Sum(k[:0])
	return k
}

// WatchCreditSessions sends the user's sessions at once, then each time they differ from
// the last message sent. See the proto for how the stream ends.
func (s *Service) WatchCreditSessions(req *creditv1.WatchCreditSessionsRequest, stream grpc.ServerStreamingServer[creditv1.WatchCreditSessionsResponse]) error {
	if s.watch == nil {
		return status.Error(codes.Unimplemented, "watching is not enabled on this server")
	}
	// The first fetch and send run deep (the HTTP client, decoding, encoding) and grow
	// the stack of the goroutine they run on, which keeps its size for a long while
	// after. Run on a goroutine of their own, that ends with them, they leave the
	// handler's goroutine, which idles for the watch's whole life, on a small stack.
	type begun struct {
		w     *watch.Watcher
		end   time.Time
		err   error
		panic any
	}
	ch := make(chan begun, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				// Raised again on the handler's goroutine, where the server's recovery
				// logs it and answers Internal; with this goroutine's stack in it.
				ch <- begun{panic: fmt.Sprintf("%v\n%s", p, debug.Stack())}
			}
		}()
		w, end, err := s.startWatch(req, stream)
		ch <- begun{w: w, end: end, err: err}
	}()
	b := <-ch
	if b.panic != nil {
		panic(b.panic)
	}
	w, end, err := b.w, b.end, b.err
	if err != nil {
		return err
	}
	defer w.Close()
	ctx := stream.Context()
	for {
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-w.C():
			snap, err := w.Next()
			switch {
			case watch.IsMaxDuration(err):
				return nil // OK: reconnect, as after a Kubernetes watch's timeout
			case err != nil:
				return err
			case snap != nil:
				if err := s.sendWatch(stream, snap.Reason, snap.Response, end); err != nil {
					return err
				}
			}
		}
	}
}

// startWatch registers the watch and sends its first message.
func (s *Service) startWatch(req *creditv1.WatchCreditSessionsRequest, stream grpc.ServerStreamingServer[creditv1.WatchCreditSessionsResponse]) (_ *watch.Watcher, end time.Time, _ error) {
	ctx := stream.Context()
	call, err := s.plaidRequest(ctx, req.GetUserToken(), req.GetClientId(), req.GetSecret())
	if err != nil {
		return nil, end, err
	}
	// Polls run on the hub's schedule, outside any one call: they carry no caller's
	// context (deadline, metadata, trace), only the request they repeat.
	poll := func(ctx context.Context) (*creditv1.CreditSessionsGetResponse, error) {
		started := time.Now()
		resp, err := s.upstream.CreditSessionsGet(ctx, call)
		if err != nil {
			return nil, upstreamStatus(ctx, err, s.callerKeys)
		}
		s.remember(call, req.GetUserId(), resp, started)
		return resp, nil
	}
	// Registered before the first fetch, so that a change found meanwhile is not missed.
	w, err := s.watch.Watch(WatchKey(call), req.GetUserId(), poll)
	if err != nil {
		return nil, end, err
	}
	ok := false
	defer func() {
		if !ok {
			w.Close()
		}
	}()

	version := w.Stamp(ctx)
	// Whatever its reader does, the watch ends by its maximum duration: each message's
	// send is bounded by it as well as by the write timeout.
	end = time.Now().Add(s.watch.Config().MaxDuration)
	started := time.Now()
	first, err := s.upstream.CreditSessionsGet(ctx, call)
	ci := callInfoFrom(ctx)
	if err != nil {
		err = upstreamStatus(ctx, err, s.callerKeys)
		var ue *UpstreamError
		if errors.As(err, &ue) {
			if ci != nil {
				ci.requestID = ue.Plaid.RequestID
			}
			audit.NoteFrom(ctx).SetRequestID(ue.Plaid.RequestID)
		}
		return nil, end, err
	}
	s.remember(call, req.GetUserId(), first, started)
	// Plaid's request id is in every message; it is not sent as header metadata too,
	// which a watch would hold for its whole life. The log line keeps a copy: as a
	// substring of the decoded answer, it would keep all of the answer's strings alive.
	if ci != nil {
		ci.requestID = strings.Clone(first.GetRequestId())
	}
	audit.NoteFrom(ctx).SetRequestID(strings.Clone(first.GetRequestId()))
	if err := s.sendWatch(stream, creditv1.WatchCreditSessionsReason_WATCH_CREDIT_SESSIONS_REASON_INITIAL, first, end); err != nil {
		return nil, end, err
	}
	w.Sent(watch.Hash(first), version)
	// The first answer is encoded and on its way: a long watch must not keep it counted
	// against the answer memory budget (see HoldMemory) for its whole life.
	if release, _ := ctx.Value(holdEndKey{}).(func()); release != nil {
		release()
	}
	ok = true
	return w, end, nil
}

// errSlowReader ends a watch whose reader did not take a message in time. The reader
// is not reading, so it is unlikely to see it; the log line and the metrics do.
var errSlowReader = status.Error(codes.DeadlineExceeded, "the watch's reader did not keep up; reconnect and read promptly")

// sendWatch sends one message, within the hub's write timeout and before end.
func (s *Service) sendWatch(stream grpc.ServerStreamingServer[creditv1.WatchCreditSessionsResponse], reason creditv1.WatchCreditSessionsReason, resp *creditv1.CreditSessionsGetResponse, end time.Time) error {
	deadline := time.Now().Add(s.watch.Config().WriteTimeout)
	if end.Before(deadline) {
		deadline = end
	}
	set := sendDeadlineFrom(stream.Context())
	if set != nil {
		set(deadline)
	}
	err := stream.Send(&creditv1.WatchCreditSessionsResponse{Reason: reason, Response: resp})
	if set != nil {
		set(time.Time{})
	}
	if err != nil {
		if set != nil && !time.Now().Before(deadline) {
			s.watch.CountSlowReader()
			return errSlowReader
		}
		return err
	}
	s.watch.CountMessage(reason)
	audit.NoteFrom(stream.Context()).AddSessions(len(resp.GetSessions()))
	return nil
}
