package mirror

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/plaid"
	"github.com/creditsessions/creditsessions/internal/plaidjson"
	"github.com/creditsessions/creditsessions/server"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// watchPath is the REST route of WatchCreditSessions. grpc-gateway's in-process handlers
// do not stream, so the mirror serves it itself, through the gRPC server's stream
// interceptor chain, as the gateway runs the unary chain for the other routes.
const watchPath = "/credit/sessions/watch"

var watchInfo = &grpc.StreamServerInfo{
	FullMethod:     creditv1.CreditService_WatchCreditSessions_FullMethodName,
	IsServerStream: true,
}

// serveWatch answers newline-delimited JSON (application/x-ndjson), one line per
// message, `{"reason":"INITIAL","response":{...}}` with the response in Plaid's JSON,
// each flushed as it is sent. Errors before the first line are answered as the mirror's
// other routes answer them: Plaid's error body and HTTP status. After the first line the
// status is sent already, so an error is a last line, `{"error":{...}}` with Plaid's
// error body in it, and the response ends. A watch that reached the server's maximum
// duration simply ends, with no error line: reconnect.
func (h *handler) serveWatch(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		handleRoutingError(r.Context(), h.gateway, nil, w, r, http.StatusMethodNotAllowed)
		return
	}
	data, err := io.ReadAll(r.Body)
	req := &creditv1.WatchCreditSessionsRequest{}
	if err == nil {
		err = plaidjson.UnmarshalWatchRequest(data, req)
	}
	if err != nil {
		requestError(err).write(w)
		return
	}
	ctx := r.Context()
	if h.memory != nil {
		// The first answer is read and encoded under the budget, as for a gRPC watch
		// (server.HoldMemory); the watch gives the hold back once that answer is sent.
		var end func()
		ctx, end = server.HoldAnswerMemory(ctx, h.memory)
		defer end()
	}
	ctx, err = runtime.AnnotateIncomingContext(ctx, h.gateway, r, watchInfo.FullMethod,
		runtime.WithHTTPPathPattern(watchPath))
	if err != nil {
		handleError(ctx, h.gateway, nil, w, r, err)
		return
	}
	// A watch outlives the server's read and write timeouts, which are for calls.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})

	st := &ndjsonStream{w: w, rc: rc, req: req}
	// The watch bounds each line's write itself (see server.WithSendDeadline): a reader
	// that stops reading must not hold the watch for ever.
	ctx = server.WithSendDeadline(ctx, func(t time.Time) { _ = rc.SetWriteDeadline(t) })
	ctx = grpc.NewContextWithServerTransportStream(server.WithTransport(ctx, "rest"), transportStream{st})
	st.ctx = ctx
	handler := func(srv any, ss grpc.ServerStream) error {
		m := new(creditv1.WatchCreditSessionsRequest)
		if err := ss.RecvMsg(m); err != nil {
			return err
		}
		return srv.(creditv1.CreditServiceServer).WatchCreditSessions(m,
			&grpc.GenericServerStream[creditv1.WatchCreditSessionsRequest, creditv1.WatchCreditSessionsResponse]{ServerStream: ss})
	}
	if h.streamInterceptor != nil {
		info := *watchInfo
		err = h.streamInterceptor(h.svc, st, &info, handler)
	} else {
		err = handler(h.svc, st)
	}
	if err == nil {
		return
	}
	if !st.started {
		handleError(ctx, h.gateway, nil, w, r, err)
		return
	}
	st.writeErrorLine(err)
}

// ndjsonStream is the grpc.ServerStream (and ServerTransportStream, for grpc.SetHeader)
// of a watch on the mirror.
type ndjsonStream struct {
	ctx     context.Context
	w       http.ResponseWriter
	rc      *http.ResponseController
	req     *creditv1.WatchCreditSessionsRequest // given once to RecvMsg
	header  metadata.MD
	started bool // the status and the first line are sent
	line    []byte
}

var _ grpc.ServerStream = (*ndjsonStream)(nil)

// transportStream is what grpc.SetHeader finds in a watch's context.
type transportStream struct{ *ndjsonStream }

var _ grpc.ServerTransportStream = transportStream{}

func (transportStream) Method() string               { return watchInfo.FullMethod }
func (transportStream) SetTrailer(metadata.MD) error { return nil }
func (s *ndjsonStream) Context() context.Context     { return s.ctx }

func (s *ndjsonStream) SetHeader(md metadata.MD) error {
	if s.started {
		return errors.New("mirror: headers already sent")
	}
	s.header = metadata.Join(s.header, md)
	return nil
}

func (s *ndjsonStream) SendHeader(md metadata.MD) error {
	if err := s.SetHeader(md); err != nil {
		return err
	}
	s.start(nil)
	return s.rc.Flush()
}

func (s *ndjsonStream) SetTrailer(metadata.MD) {}

// start sends the status and the headers, with first, the first message, if any.
func (s *ndjsonStream) start(first *creditv1.WatchCreditSessionsResponse) {
	if s.started {
		return
	}
	s.started = true
	h := s.w.Header()
	h.Set("Content-Type", "application/x-ndjson")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	if id := first.GetResponse().GetRequestId(); id != "" {
		h.Set("Plaid-Request-Id", id) // the first answer's, as on the other routes
	}
	for k, v := range s.header {
		if name, ok := outgoingHeader(k); ok && len(v) > 0 {
			h.Set(name, v[0])
		}
	}
	s.w.WriteHeader(http.StatusOK)
}

func (s *ndjsonStream) SendMsg(m any) error {
	msg, ok := m.(*creditv1.WatchCreditSessionsResponse)
	if !ok {
		return status.Errorf(codes.Internal, "mirror: unexpected message %T", m)
	}
	line, err := plaidjson.AppendWatchResponse(s.line[:0], msg)
	if err != nil {
		return status.Errorf(codes.Internal, "mirror: encoding a watch message: %v", err)
	}
	s.line = line
	if cap(s.line) > 64<<10 {
		s.line = nil // keep no large buffer for an idle watch
	}
	s.start(msg)
	if _, err := s.w.Write(line); err != nil {
		return status.FromContextError(context.Canceled).Err() // the client went away
	}
	if err := s.rc.Flush(); err != nil {
		return status.FromContextError(context.Canceled).Err()
	}
	return nil
}

func (s *ndjsonStream) RecvMsg(m any) error {
	if s.req == nil {
		return io.EOF
	}
	proto.Merge(m.(proto.Message), s.req)
	s.req = nil
	return nil
}

// writeErrorLine ends a response already under way with `{"error":{...}}`: Plaid's own
// error body when Plaid answered with one, else the error in Plaid's shape as the
// mirror answers it before the first line.
func (s *ndjsonStream) writeErrorLine(err error) {
	var body []byte
	var pe *plaid.Error
	var compact bytes.Buffer
	if errors.As(err, &pe) && len(pe.Body) > 0 && json.Compact(&compact, pe.Body) == nil {
		body = compact.Bytes() // one line, whatever Plaid's layout
	} else {
		e := fromStatus(status.Convert(err))
		if e.body.RequestID == "" {
			e.body.RequestID = server.NewRequestID()
		}
		body, _ = json.Marshal(e.body)
	}
	line := make([]byte, 0, len(body)+12)
	line = append(append(append(line, `{"error":`...), body...), "}\n"...)
	_ = s.rc.SetWriteDeadline(time.Now().Add(errorLineTimeout))
	_, _ = s.w.Write(line)
	_ = s.rc.Flush()
}

// errorLineTimeout bounds writing a watch's last line, its error: a few hundred bytes.
const errorLineTimeout = 10 * time.Second
