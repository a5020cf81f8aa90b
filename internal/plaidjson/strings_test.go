package plaidjson_test

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
)

// stringCases are JSON string literals (without the quotes) and the Go string each
// means. For every one, encoding/json must agree, which the test checks too.
var stringCases = []struct {
	name, literal, want string
}{
	{name: "plain", literal: `abc`, want: "abc"},
	{name: "empty", literal: ``, want: ""},
	{name: "newline", literal: `a\nb`, want: "a\nb"},
	{name: "quote", literal: `say \"hi\"`, want: `say "hi"`},
	{name: "backslash", literal: `a\\b`, want: `a\b`},
	{name: "solidus", literal: `a\/b`, want: "a/b"},
	{name: "short_escapes", literal: `\b\f\n\r\t`, want: "\b\f\n\r\t"},
	{name: "u_escape", literal: `caf\u00e9`, want: "café"},
	{name: "u_escape_upper_hex", literal: `caf\u00E9`, want: "café"},
	{name: "u_escape_nul", literal: `a\u0000b`, want: "a\x00b"},
	{name: "u_escape_ascii", literal: `\u0041\u0062`, want: "Ab"},
	{name: "surrogate_pair", literal: `\ud83d\ude00`, want: "😀"},
	{name: "surrogate_pair_upper", literal: `\uD83D\uDE00!`, want: "😀!"},
	{name: "lone_high_surrogate", literal: `a\ud83db`, want: "a\uFFFDb"},
	{name: "lone_high_surrogate_at_end", literal: `\ud83d`, want: "\uFFFD"},
	{name: "lone_low_surrogate", literal: `\ude00`, want: "\uFFFD"},
	{name: "reversed_pair", literal: `\ude00\ud83d`, want: "\uFFFD\uFFFD"},
	{name: "high_then_ascii_escape", literal: `\ud83d\u0041`, want: "\uFFFDA"},
	{name: "high_then_high_then_low", literal: `\ud83d\ud83d\ude00`, want: "\uFFFD😀"},
	{name: "high_then_short_escape", literal: `\ud83d\n`, want: "\uFFFD\n"},
	{name: "u2028", literal: `\u2028\u2029`, want: "\u2028\u2029"},
	{name: "raw_utf8", literal: "café 日本 😀", want: "café 日本 😀"},
	{name: "raw_utf8_with_escape", literal: "café\\n😀", want: "café\n😀"},
	{name: "raw_del", literal: "a\x7fb", want: "a\x7fb"},
	{name: "invalid_byte", literal: "a\xffb", want: "a\uFFFDb"},
	{name: "invalid_bytes_run", literal: "a\xff\xfeb", want: "a\uFFFD\uFFFDb"},
	{name: "invalid_bytes_run_with_escape", literal: "a\xff\xfe\\nb", want: "a\uFFFD\uFFFD\nb"},
	{name: "truncated_sequence", literal: "a\xe6\x97b", want: "a\uFFFD\uFFFDb"},
	{name: "encoded_surrogate", literal: "\xed\xa0\x80", want: "\uFFFD\uFFFD\uFFFD"},
	{name: "overlong_slash", literal: "\xc0\xaf", want: "\uFFFD\uFFFD"},
	{name: "lone_continuation", literal: "\x80", want: "\uFFFD"},
}

func TestDecodeStrings(t *testing.T) {
	for _, tt := range stringCases {
		t.Run(tt.name, func(t *testing.T) {
			var std string
			require.NoError(t, json.Unmarshal([]byte(`"`+tt.literal+`"`), &std))
			require.Equal(t, tt.want, std, "encoding/json reads the literal so; the table is wrong")

			// The same literal as a value in each place the codec reads strings:
			// top level, deep inside, a status, an additional property, and a key.
			q := `"` + tt.literal + `"`
			body := `{"request_id":` + q + `,"sessions":[{"link_session_id":` + q + `,` +
				`"results":{"bank_income_results":[{"status":` + q + `}],` +
				`"payroll_income_results":[{"institution_name":` + q + `}]},` +
				`"errors":[{"display_message":` + q + `}]}],` +
				`"extra":[` + q + `],` + q + `:1}`
			m := decode(t, body)
			assert.Equal(t, tt.want, m.GetRequestId())
			s := m.GetSessions()[0]
			assert.Equal(t, tt.want, s.GetLinkSessionId())
			assert.Equal(t, tt.want, s.GetResults().GetBankIncomeResults()[0].GetUnrecognizedStatus())
			assert.Equal(t, tt.want, s.GetResults().GetPayrollIncomeResults()[0].GetInstitutionName())
			assert.Equal(t, tt.want, s.GetErrors()[0].GetDisplayMessage())
			assert.Equal(t, tt.want, m.GetAdditionalProperties()["extra"].GetListValue().GetValues()[0].GetStringValue())
			assert.Contains(t, m.GetAdditionalProperties(), tt.want, "a key is read like any string")
			// Every string in a proto message must be valid UTF-8, or proto.Marshal fails.
			_, err := proto.Marshal(m)
			assert.NoError(t, err)
		})
	}
}

// encodeStrings are Go strings the encoder must write as JSON that reads back the same.
var encodeStrings = []string{
	"",
	"plain",
	`"quoted" \ back\slash /`,
	"\x00\x01\x02\x03\x04\x05\x06\x07\x08\t\n\x0b\x0c\r\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f\x7f",
	"<script>&amp;</script>",
	"café 日本 😀 \u2028\u2029 \uFFFD \U0010FFFF",
	"\u00e9\u0301", // combining accent
}

func TestEncodeStrings(t *testing.T) {
	cases := append([]string(nil), encodeStrings...)
	// And every single byte, and random strings, valid UTF-8 or not.
	for b := range 256 {
		cases = append(cases, string([]byte{byte(b)}))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		b := make([]byte, rng.IntN(12))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		cases = append(cases, string(b))
		r := make([]rune, rng.IntN(6))
		for i := range r {
			r[i] = rune(rng.IntN(utf8.MaxRune + 1))
		}
		cases = append(cases, string(r))
	}

	for _, s := range cases {
		m := &creditv1.CreditSessionsGetResponse{
			RequestId: s,
			Sessions: []*creditv1.CreditSession{{
				LinkSessionId: proto.String(s),
				Errors:        []*creditv1.CreditSessionError{{ErrorMessage: proto.String(s)}},
			}},
		}
		out := encode(t, m) // requires valid JSON

		// What a JSON reader must get back: s itself when it is valid UTF-8, else s
		// with each invalid byte replaced, which is what encoding/json makes of it.
		want := s
		if !utf8.ValidString(s) {
			std, err := json.Marshal(s)
			require.NoError(t, err)
			require.NoError(t, json.Unmarshal(std, &want))
		}
		var got struct {
			RequestID string `json:"request_id"`
			Sessions  []struct {
				LinkSessionID string `json:"link_session_id"`
				Errors        []struct {
					ErrorMessage string `json:"error_message"`
				} `json:"errors"`
			} `json:"sessions"`
		}
		require.NoError(t, json.Unmarshal(out, &got), "%q", out)
		assert.Equal(t, want, got.RequestID, "%q written as %q", s, out)
		require.Len(t, got.Sessions, 1)
		assert.Equal(t, want, got.Sessions[0].LinkSessionID)
		require.Len(t, got.Sessions[0].Errors, 1)
		assert.Equal(t, want, got.Sessions[0].Errors[0].ErrorMessage)

		// And our own decoder agrees with encoding/json.
		back := decode(t, string(out))
		assert.Equal(t, want, back.GetRequestId())
	}
}

func TestEncodeEscapesOnlyWhatItMust(t *testing.T) {
	// Plaid's identifiers and most text pass through as they are; control characters,
	// quotes and backslashes are escaped, and U+2028/U+2029 for JavaScript's sake.
	out := encode(t, &creditv1.CreditSessionsGetResponse{RequestId: "café/<>&\"\\\n\x01\u2028"})
	assert.Equal(t, `{"request_id":"café/<>&\"\\\n\u0001\u2028","sessions":[]}`, string(out))
	assert.True(t, strings.HasPrefix(string(out), `{"request_id":"café`), "non-ASCII is written raw")
}
