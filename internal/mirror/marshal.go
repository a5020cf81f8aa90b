package mirror

import (
	"io"

	creditv1 "creditsessions/gen/plaid/credit/v1"
	"creditsessions/internal/plaidjson"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/encoding/protojson"
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
	if m, ok := v.(*creditv1.CreditSessionsGetResponse); ok {
		return plaidjson.AppendResponse(make([]byte, 0, 512), m)
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
