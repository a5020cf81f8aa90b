package plaidjson_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/plaidjson"
)

// FuzzUnmarshalResponse checks that no body makes the decoder panic, that the decoder
// accepts exactly what encoding/json calls valid JSON (less what the depth limit
// refuses), and that whatever it accepts the encoder writes back to the same message.
func FuzzUnmarshalResponse(f *testing.F) {
	f.Add([]byte(specExample))
	f.Add([]byte(validBody))
	f.Add([]byte(`{"request_id":"r"}`))
	f.Add([]byte(`{"request_id":"r","sessions":[{"results":{"document_income_results":{}}}],"x":[1.25,1e300,null,{"a":"\ud83d\ude00"}]}`))
	f.Add([]byte(`{"sessions":[{"results":{"bank_employment_results":[{"status":"NEW","item_id":null}]},"errors":[{}]}]}`))
	for member := range 2 {
		for variant := range 5 {
			f.Add(encode(f, fullResponse(f, fillOptions{member: nthMember(member), variant: variant, extras: true})))
		}
	}

	f.Fuzz(func(t *testing.T, body []byte) {
		m := new(creditv1.CreditSessionsGetResponse)
		err := plaidjson.UnmarshalResponse(body, m)
		if err != nil {
			return
		}
		require.True(t, json.Valid(body), "the decoder accepted a body that is not JSON: %q", body)

		out, err := plaidjson.AppendResponse(nil, m)
		require.NoError(t, err, "decoded from %q", body)
		require.True(t, json.Valid(out), "invalid JSON written: %q", out)

		back := new(creditv1.CreditSessionsGetResponse)
		require.NoError(t, plaidjson.UnmarshalResponse(out, back), "written: %q", out)
		requireProtoEqual(t, m, back, "read %q, wrote %q", body, out)

		again, err := plaidjson.AppendResponse(nil, back)
		require.NoError(t, err)
		require.True(t, bytes.Equal(out, again), "encoding is not stable: %q then %q", out, again)
	})
}
