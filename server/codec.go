package server

import (
	"errors"
	"unicode/utf8"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
)

// requestCodec is grpc-go's proto codec, except for a CreditSessionsGetRequest whose
// strings are not valid UTF-8. Protobuf refuses to decode such a message, and grpc-go
// answers that with Internal, which says the service is broken (and pages someone) when
// it is the caller's request that is: this codec decodes the strings' bytes as they are,
// so that the service's own check answers InvalidArgument / INVALID_FIELD naming the
// field. Nothing is passed on to Plaid that way: the check runs before any call.
type requestCodec struct{ encoding.CodecV2 }

// RequestCodec is the server option that installs requestCodec.
func RequestCodec() grpc.ServerOption {
	return grpc.ForceServerCodecV2(requestCodec{encoding.GetCodecV2(proto.Name)})
}

func (c requestCodec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.CodecV2.Unmarshal(data, v)
	if req, ok := v.(*creditv1.CreditSessionsGetRequest); ok && err != nil {
		if rawErr := unmarshalRawRequest(data.Materialize(), req); rawErr == nil {
			return nil
		}
	}
	return err
}

// unmarshalRawRequest decodes the wire form of a CreditSessionsGetRequest without
// checking that its strings are UTF-8. It succeeds only for a message that is well
// formed but for that; fields it does not know are skipped.
func unmarshalRawRequest(b []byte, req *creditv1.CreditSessionsGetRequest) error {
	req.Reset()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if num < 1 || num > 3 {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		if typ != protowire.BytesType {
			return errors.New("a string field of another wire type")
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		s := string(v)
		switch num {
		case 1:
			req.UserToken = s
		case 2:
			req.ClientId = &s
		case 3:
			req.Secret = &s
		}
	}
	if utf8.ValidString(req.GetUserToken()) && utf8.ValidString(req.GetClientId()) && utf8.ValidString(req.GetSecret()) {
		return errors.New("not a UTF-8 problem") // so the proto codec's error stands
	}
	return nil
}
