package server_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/creditsessions/creditsessions/server"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"
)

func TestPushbackValues(t *testing.T) {
	retry := func(code codes.Code, d time.Duration) *status.Status {
		st, err := status.New(code, "m").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(d)})
		require.NoError(t, err)
		return st
	}
	for _, tt := range []struct {
		name string
		st   *status.Status
		want string
		ok   bool
	}{
		{"ok", status.New(codes.OK, ""), "", false},
		{"retry info", retry(codes.Unavailable, 1500*time.Millisecond), "1500", true},
		{"retry info on a quota", retry(codes.ResourceExhausted, 2*time.Second), "2000", true},
		{"zero delay", retry(codes.Unavailable, 0), "0", true},
		{"quota without one", status.New(codes.ResourceExhausted, "m"), "-1", true},
		{"internal", status.New(codes.Internal, "m"), "-1", true},
		{"unknown", status.New(codes.Unknown, "m"), "-1", true},
		{"caller's error", status.New(codes.InvalidArgument, "m"), "", false},
		{"not found", status.New(codes.NotFound, "m"), "", false},
		{"deadline", status.New(codes.DeadlineExceeded, "m"), "", false},
		{"unavailable from elsewhere", status.New(codes.Unavailable, "m"), "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := server.Pushback(tt.st)
			assert.Equal(t, tt.ok, ok)
			assert.Equal(t, tt.want, got)
		})
	}
}

// streamService is a server-streaming method on the service's own gRPC server (its
// interceptor chain), for the pushback on streams: it sets a header, optionally sends
// one message, then fails with a RetryInfo of 200ms.
type streamService struct {
	mu       sync.Mutex
	attempts []time.Time
}

func (s *streamService) handler(sendFirst bool) grpc.StreamHandler {
	return func(_ any, ss grpc.ServerStream) error {
		s.mu.Lock()
		s.attempts = append(s.attempts, time.Now())
		s.mu.Unlock()
		if err := ss.RecvMsg(&emptypb.Empty{}); err != nil {
			return err
		}
		if err := grpc.SetHeader(ss.Context(), metadata.Pairs(server.RequestIDHeader, "req-1")); err != nil {
			return err
		}
		if sendFirst {
			if err := ss.SendMsg(&emptypb.Empty{}); err != nil {
				return err
			}
		}
		st, _ := status.New(codes.Unavailable, "try later").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(200 * time.Millisecond)})
		return st.Err()
	}
}

func (s *streamService) times() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.attempts...)
}

func TestPushbackOnStreams(t *testing.T) {
	svc := &streamService{}
	g := server.NewGRPCServer(&server.Service{}, server.Options{})
	g.RegisterService(&grpc.ServiceDesc{
		ServiceName: "test.Streams",
		HandlerType: (*any)(nil),
		Streams: []grpc.StreamDesc{
			{StreamName: "FailAtOnce", ServerStreams: true, ClientStreams: false, Handler: svc.handler(false)},
			{StreamName: "FailAfterAMessage", ServerStreams: true, Handler: svc.handler(true)},
		},
	}, struct{}{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(g.Stop)

	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"methodConfig":[{"name":[{"service":"test.Streams"}],
			"retryPolicy":{"maxAttempts":2,"initialBackoff":"0.01s","maxBackoff":"0.01s","backoffMultiplier":1,
			"retryableStatusCodes":["UNAVAILABLE"]}}]}`))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })

	call := func(method string) (header, trailer metadata.MD, received int, err error) {
		stream, err := conn.NewStream(context.Background(), &grpc.StreamDesc{ServerStreams: true}, "/test.Streams/"+method)
		require.NoError(t, err)
		require.NoError(t, stream.SendMsg(&emptypb.Empty{}))
		require.NoError(t, stream.CloseSend())
		for {
			if err = stream.RecvMsg(&emptypb.Empty{}); err != nil {
				break
			}
			received++
		}
		header, _ = stream.Header()
		return header, stream.Trailer(), received, err
	}

	header, trailer, received, err := call("FailAtOnce")
	require.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
	assert.Zero(t, received)
	assert.Empty(t, header, "a stream that fails before sending is trailers-only")
	assert.Equal(t, []string{"200"}, trailer.Get(server.PushbackTrailer))
	assert.Equal(t, []string{"req-1"}, trailer.Get(server.RequestIDHeader), "the header it set, in the trailer")
	times := svc.times()
	require.Len(t, times, 2, "the client retried the stream")
	assert.GreaterOrEqual(t, times[1].Sub(times[0]), 200*time.Millisecond, "after the pushback, not its 10ms backoff")

	header, trailer, received, err = call("FailAfterAMessage")
	require.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
	require.False(t, errors.Is(err, io.EOF))
	assert.Equal(t, 1, received)
	assert.Equal(t, []string{"req-1"}, header.Get(server.RequestIDHeader), "a committed stream keeps its header")
	assert.Empty(t, trailer.Get(server.PushbackTrailer), "a committed stream is never retried: no pushback")
	assert.Len(t, svc.times(), 3, "and was not retried")
}
