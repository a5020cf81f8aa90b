package plaidjson_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/plaidjson"
)

func TestUnmarshalRequest(t *testing.T) {
	tests := []struct {
		name string
		body string
		want *creditv1.CreditSessionsGetRequest
	}{
		{
			name: "user_token_only",
			body: `{"user_token":"user-sandbox-b0e2c4ee"}`,
			want: &creditv1.CreditSessionsGetRequest{UserToken: "user-sandbox-b0e2c4ee"},
		},
		{
			name: "with_credentials",
			body: ` { "client_id" : "cid", "secret":"s3cr3t", "user_token":"u" } `,
			want: &creditv1.CreditSessionsGetRequest{UserToken: "u", ClientId: proto.String("cid"), Secret: proto.String("s3cr3t")},
		},
		{
			name: "empty_credentials_are_kept",
			body: `{"user_token":"u","client_id":"","secret":""}`,
			want: &creditv1.CreditSessionsGetRequest{UserToken: "u", ClientId: proto.String(""), Secret: proto.String("")},
		},
		{
			name: "null_credentials_are_absent",
			body: `{"user_token":"u","client_id":null,"secret":null}`,
			want: &creditv1.CreditSessionsGetRequest{UserToken: "u"},
		},
		{
			name: "null_user_token",
			body: `{"user_token":null}`,
			want: &creditv1.CreditSessionsGetRequest{},
		},
		{
			name: "empty_object",
			body: `{}`,
			want: &creditv1.CreditSessionsGetRequest{},
		},
		{
			name: "escaped_token",
			body: `{"user_token":"u\u002d\ud83d\ude00"}`,
			want: &creditv1.CreditSessionsGetRequest{UserToken: "u-😀"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := &creditv1.CreditSessionsGetRequest{UserToken: "stale", Secret: proto.String("stale")}
			require.NoError(t, plaidjson.UnmarshalRequest([]byte(tt.body), got))
			requireProtoEqual(t, tt.want, got)
		})
	}
}

func TestUnmarshalRequestUnknownFields(t *testing.T) {
	tests := []struct {
		name string
		body string
		want []string
	}{
		{name: "one", body: `{"user_token":"u","user_id":"x"}`, want: []string{"user_id"}},
		{name: "all_in_order", body: `{"zeta":1,"user_token":"u","alpha":{"nested":[1,{"deep":null}]},"options":null,"count":[]}`,
			want: []string{"zeta", "alpha", "options", "count"}},
		{name: "only_unknown", body: `{"access_token":"a"}`, want: []string{"access_token"}},
		{name: "case_matters", body: `{"User_Token":"u"}`, want: []string{"User_Token"}},
		{name: "escaped_name", body: `{"caf\u00e9":true}`, want: []string{"café"}},
		// Plaid reports unknown members before wrongly typed ones.
		{name: "before_wrong_type", body: `{"user_token":2,"extra":1,"secret":[]}`, want: []string{"extra"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := plaidjson.UnmarshalRequest([]byte(tt.body), new(creditv1.CreditSessionsGetRequest))
			var ue *plaidjson.UnknownFieldsError
			require.ErrorAs(t, err, &ue)
			assert.Equal(t, tt.want, ue.Fields)
		})
	}
}

func TestUnmarshalRequestErrors(t *testing.T) {
	tests := []struct {
		name       string
		body       string
		wantPath   string // a *FieldError at this path
		wantSyntax bool   // a *SyntaxError
	}{
		{name: "user_token_number", body: `{"user_token":1}`, wantPath: "user_token"},
		{name: "user_token_bool", body: `{"user_token":true}`, wantPath: "user_token"},
		{name: "user_token_object", body: `{"user_token":{}}`, wantPath: "user_token"},
		{name: "user_token_array", body: `{"user_token":["u"]}`, wantPath: "user_token"},
		{name: "client_id_number", body: `{"user_token":"u","client_id":5}`, wantPath: "client_id"},
		{name: "secret_object", body: `{"user_token":"u","secret":{"a":1}}`, wantPath: "secret"},
		{name: "user_token_invalid_utf8", body: "{\"user_token\":\"u\xff\"}", wantPath: "user_token"},
		{name: "user_token_lone_surrogate", body: `{"user_token":"u\ud800"}`, wantPath: "user_token"},
		{name: "secret_invalid_utf8", body: "{\"user_token\":\"u\",\"secret\":\"\xc3\"}", wantPath: "secret"},
		{name: "first_wrong_type_reported", body: `{"client_id":1,"user_token":2}`, wantPath: "client_id"},
		{name: "syntax_error_after_wrong_type", body: `{"user_token":{"a":-}}`, wantSyntax: true},
		{name: "empty", body: ``, wantSyntax: true},
		{name: "truncated", body: `{"user_token":"u"`, wantSyntax: true},
		{name: "trailing_garbage", body: `{"user_token":"u"} x`, wantSyntax: true},
		{name: "bad_unknown_value", body: `{"user_token":"u","x":-}`, wantSyntax: true},
		{name: "deep_unknown_value", body: `{"x":` + deepArray(100_000) + `}`, wantSyntax: true},
		{name: "bad_escape", body: `{"user_token":"\x"}`, wantSyntax: true},
		{name: "syntax_error_wins_over_unknown", body: `{"extra":1,"user_token":"u",}`, wantSyntax: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := plaidjson.UnmarshalRequest([]byte(tt.body), new(creditv1.CreditSessionsGetRequest))
			require.Error(t, err)
			if tt.wantSyntax {
				var se *plaidjson.SyntaxError
				assert.ErrorAs(t, err, &se)
				return
			}
			var fe *plaidjson.FieldError
			require.ErrorAs(t, err, &fe)
			assert.Equal(t, tt.wantPath, fe.Path)
		})
	}
}

func TestUnmarshalRequestNotAnObject(t *testing.T) {
	for _, body := range []string{`[]`, `"user_token"`, `null`, `42`, `true`} {
		t.Run(body, func(t *testing.T) {
			err := plaidjson.UnmarshalRequest([]byte(body), new(creditv1.CreditSessionsGetRequest))
			require.Error(t, err)
			assert.Contains(t, err.Error(), "object")
		})
	}
}

func deepArray(depth int) string {
	b := make([]byte, 0, 2*depth)
	for range depth {
		b = append(b, '[')
	}
	for range depth {
		b = append(b, ']')
	}
	return string(b)
}

func TestAppendRequest(t *testing.T) {
	tests := []struct {
		name string
		in   *creditv1.CreditSessionsGetRequest
		want string
	}{
		{name: "user_token_only", in: &creditv1.CreditSessionsGetRequest{UserToken: "u"}, want: `{"user_token":"u"}`},
		{name: "empty", in: &creditv1.CreditSessionsGetRequest{}, want: `{"user_token":""}`},
		{name: "credentials", in: &creditv1.CreditSessionsGetRequest{UserToken: "u", ClientId: proto.String("c"), Secret: proto.String("s")},
			want: `{"user_token":"u","client_id":"c","secret":"s"}`},
		{name: "empty_credentials", in: &creditv1.CreditSessionsGetRequest{UserToken: "u", ClientId: proto.String(""), Secret: proto.String("")},
			want: `{"user_token":"u","client_id":"","secret":""}`},
		{name: "escapes", in: &creditv1.CreditSessionsGetRequest{UserToken: "a\"b\\c\nd\x00é"}, want: `{"user_token":"a\"b\\c\nd\u0000é"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := plaidjson.AppendRequest(nil, tt.in)
			assert.Equal(t, tt.want, string(out))

			back := new(creditv1.CreditSessionsGetRequest)
			require.NoError(t, plaidjson.UnmarshalRequest(out, back))
			requireProtoEqual(t, tt.in, back)
		})
	}
}

func TestAppendRequestAppends(t *testing.T) {
	buf := make([]byte, 0, 64)
	buf = append(buf, "x"...)
	out := plaidjson.AppendRequest(buf, &creditv1.CreditSessionsGetRequest{UserToken: "u"})
	assert.Equal(t, `x{"user_token":"u"}`, string(out))
}
