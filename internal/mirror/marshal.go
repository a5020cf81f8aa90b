package mirror

import (
	"context"
	"io"
	"net/http"
	"sync"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/plaidjson"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// plaidMarshaler reads and writes the service's messages as Plaid's JSON (see
// internal/plaidjson); anything else falls back to protojson with proto names.
type plaidMarshaler struct{}

var fallback = &runtime.JSONPb{
	MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true},
	UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
}

func (plaidMarshaler) ContentType(any) string { return "application/json; charset=utf-8" }

func (plaidMarshaler) Marshal(v any) ([]byte, error) {
	switch m := v.(type) {
	case *creditv1.CreditSessionsGetResponse:
		return plaidjson.AppendResponse(make([]byte, 0, 512), m)
	case *creditv1.BatchGetCreditSessionsResponse:
		return appendBatch(make([]byte, 0, 4096), m)
	case streamed:
		return nil, nil // written already, by streamLargeAnswer
	}
	return fallback.Marshal(v)
}

func (plaidMarshaler) Unmarshal(data []byte, v any) error {
	if m, ok := v.(*creditv1.CreditSessionsGetRequest); ok {
		return plaidjson.UnmarshalRequest(data, m)
	}
	return fallback.Unmarshal(data, v)
}

// NewDecoder reads the whole body, then decodes it. The decoding error is also left on
// the body, when it is the mirror's, for the error handler to classify.
func (m plaidMarshaler) NewDecoder(r io.Reader) runtime.Decoder {
	return runtime.DecoderFunc(func(v any) error {
		data, err := io.ReadAll(r)
		if err == nil {
			err = m.Unmarshal(data, v)
		}
		if rb, ok := r.(*requestBody); ok {
			rb.err = err
		}
		return err
	})
}

func (m plaidMarshaler) NewEncoder(w io.Writer) runtime.Encoder {
	return runtime.EncoderFunc(func(v any) error {
		data, err := m.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(data)
		return err
	})
}

// requestBody is a request body that remembers why decoding it failed.
type requestBody struct {
	io.ReadCloser
	err    error
	peeked []byte // read by startsWithObject, not yet returned by Read
}

func (b *requestBody) Read(p []byte) (int, error) {
	if len(b.peeked) > 0 {
		n := copy(p, b.peeked)
		b.peeked = b.peeked[n:]
		return n, nil
	}
	return b.ReadCloser.Read(p)
}

// startsWithObject reports whether the body's first byte other than white space is
// "{", reading no further than that.
func (b *requestBody) startsWithObject() bool {
	var one [1]byte
	for {
		n, err := b.ReadCloser.Read(one[:])
		if n == 1 {
			b.peeked = append(b.peeked, one[0])
			switch one[0] {
			case ' ', '\t', '\r', '\n':
				continue
			}
			return one[0] == '{'
		}
		if err != nil {
			return false
		}
	}
}

// A large answer is written as it is encoded, 256 KiB at a time, rather than encoded whole
// and then written: a 10,000-session answer is about 3 MB of JSON, which would otherwise
// be held, beside the message, for as long as the client takes to read it. Small answers
// are encoded whole, which costs less than writing them piecemeal.
const (
	streamFromSessions = 128 // about 50 KiB of JSON
	streamChunk        = 256 << 10
)

// answerKey holds the *answer of a call that came through the mirror's front handler.
type answerKey struct{}

type answer struct{ streamed bool }

// streamed stands for an answer written already; the marshaler writes nothing for it.
type streamed struct{}

var chunkBuffers = sync.Pool{New: func() any { b := make([]byte, 0, streamChunk+8<<10); return &b }}

// streamLargeAnswer is a forward-response option: it runs after the answer's headers are
// set and before the gateway marshals the answer. It writes a large answer itself.
func streamLargeAnswer(ctx context.Context, w http.ResponseWriter, msg proto.Message) error {
	m, ok := msg.(*creditv1.CreditSessionsGetResponse)
	a, _ := ctx.Value(answerKey{}).(*answer)
	if !ok || a == nil || len(m.GetSessions()) < streamFromSessions {
		return nil
	}
	written, err := writeLargeAnswer(w, m)
	switch {
	case err == nil:
		a.streamed = true
		return nil
	case written == 0:
		return err // nothing sent yet: the gateway answers with an error instead
	default:
		// Half an answer has gone out with a 200: the only honest end is to cut the
		// connection, so that the client sees a broken response, not a short one.
		panic(http.ErrAbortHandler)
	}
}

// writeLargeAnswer writes m as it is encoded, a chunk at a time, returning how much it
// wrote.
func writeLargeAnswer(w http.ResponseWriter, m *creditv1.CreditSessionsGetResponse) (int64, error) {
	buf := chunkBuffers.Get().(*[]byte)
	var written int64
	var err error
	*buf, written, err = plaidjson.WriteResponse(w, m, *buf, streamChunk)
	if cap(*buf) <= 2*streamChunk { // not one grown by a giant session
		chunkBuffers.Put(buf)
	}
	return written, err
}

// skipStreamedAnswer is the forward-response rewriter: an answer streamLargeAnswer wrote
// becomes streamed, which the marshaler turns into nothing.
func skipStreamedAnswer(ctx context.Context, msg proto.Message) (any, error) {
	if a, _ := ctx.Value(answerKey{}).(*answer); a != nil && a.streamed {
		return streamed{}, nil
	}
	return msg, nil
}
