package server

import (
	"context"
	"sync"
	"time"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"

	"google.golang.org/grpc/tap"
)

// A watch's message to a reader that has stopped reading blocks: over gRPC once the
// stream's flow-control window is full, over REST once the socket's buffers are. The
// watch then sees neither its maximum duration nor anything else, and keeps its slot,
// goroutine and message until the connection dies. So each message is sent under a
// deadline, set through the context by the transport's own means: the REST mirror sets
// the response's write deadline (WithSendDeadline); a gRPC watch has its stream ended
// at the transport, which is what unblocks grpc-go's Send (WatchTap).

type sendDeadlineKey struct{}

// WithSendDeadline gives a watch's context the function that bounds its next write:
// set(t) makes writes fail from t; the zero time lifts the bound. The REST mirror gives
// its watch stream's.
func WithSendDeadline(ctx context.Context, set func(time.Time)) context.Context {
	return context.WithValue(ctx, sendDeadlineKey{}, set)
}

func sendDeadlineFrom(ctx context.Context) func(time.Time) {
	set, _ := ctx.Value(sendDeadlineKey{}).(func(time.Time))
	return set
}

// WatchTap is a grpc.InTapHandle for the gRPC server: it gives every watch's stream a
// context the watch itself can cancel, the one grpc-go's Send waits on, so that a send
// past its deadline ends the stream instead of blocking. Other methods pass untouched.
func WatchTap(ctx context.Context, info *tap.Info) (context.Context, error) {
	if info.FullMethodName != creditv1.CreditService_WatchCreditSessions_FullMethodName {
		return ctx, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	s := &streamStop{cancel: cancel}
	return WithSendDeadline(ctx, s.set), nil
}

// streamStop cancels a gRPC watch's stream when a send outlives its deadline.
type streamStop struct {
	cancel context.CancelFunc
	mu     sync.Mutex
	timer  *time.Timer
}

func (s *streamStop) set(deadline time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if deadline.IsZero() {
		if s.timer != nil {
			s.timer.Stop()
		}
		return
	}
	if s.timer == nil {
		s.timer = time.AfterFunc(time.Until(deadline), s.cancel)
		return
	}
	s.timer.Reset(time.Until(deadline))
}
