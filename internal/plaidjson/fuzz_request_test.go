package plaidjson_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/plaidjson"
)

// FuzzUnmarshalRequest feeds the REST mirror's request decoder what a caller could send.
// Whatever the body: no panic; an error is one of the package's three types (which the
// mirror turns into Plaid's INVALID_BODY, UNKNOWN_FIELDS or INVALID_FIELD), or, for a
// body that is not an object at all, the error the mirror answers INVALID_BODY; an accepted
// body is valid JSON, its strings are valid UTF-8, and the encoder writes the same
// request back.
func FuzzUnmarshalRequest(f *testing.F) {
	for _, seed := range []string{
		`{"user_token":"user-sandbox-example"}`,
		` { "client_id" : "cid", "secret":"s3cr3t", "user_token":"u" } `,
		`{"user_token":null,"client_id":null}`,
		`{"user_token":"u\u002d\ud83d\ude00"}`,
		`{"user_token":"\ud800"}`,
		"{\"user_token\":\"\xff\xfe\"}",
		`{"user_token":1,"extra":[[[{"a":{}}]]]}`,
		`{"user_token":"u","user_token":"v"}`,
		`[]`, `"x"`, ``, `{`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var m creditv1.CreditSessionsGetRequest
		err := plaidjson.UnmarshalRequest(body, &m)
		if err != nil {
			var syntax *plaidjson.SyntaxError
			var unknown *plaidjson.UnknownFieldsError
			var field *plaidjson.FieldError
			notObject := !bytes.HasPrefix(bytes.TrimLeft(body, " \t\r\n"), []byte("{"))
			require.True(t, errors.As(err, &syntax) || errors.As(err, &unknown) || errors.As(err, &field) || notObject,
				"untyped error %T %v for %q", err, err, body)
			if errors.As(err, &unknown) {
				require.NotEmpty(t, unknown.Fields)
			}
			return
		}
		require.True(t, json.Valid(body), "accepted a body that is not JSON: %q", body)
		for _, s := range []string{m.GetUserToken(), m.GetClientId(), m.GetSecret()} {
			require.True(t, utf8.ValidString(s), "accepted invalid UTF-8 from %q", body)
			require.NotContains(t, s, string(utf8.RuneError), "accepted a replaced byte from %q", body)
		}
		out := plaidjson.AppendRequest(nil, &m)
		require.True(t, json.Valid(out), "wrote invalid JSON %q", out)
		var back creditv1.CreditSessionsGetRequest
		require.NoError(t, plaidjson.UnmarshalRequest(out, &back), "read back %q", out)
		requireProtoEqual(t, &m, &back, "read %q, wrote %q", body, out)
	})
}
