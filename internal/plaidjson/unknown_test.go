package plaidjson_test

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/plaidjson"
)

// unknownMembers are members Plaid might add, one of each JSON kind.
var unknownMembers = map[string]any{
	"zz_object": map[string]any{"a": []any{1.0, "x", map[string]any{"b": nil}}, "c": map[string]any{}},
	"zz_array":  []any{[]any{}, []any{true, false}, "s", -1.5e-7},
	"zz_string": "caf\u00e9 \"quoted\" \\ \n",
	"zz_number": 1e300,
	"zz_true":   true,
	"zz_false":  false,
	"zz_null":   nil,
	"zz_deep":   map[string]any{"d": map[string]any{"d": map[string]any{"d": []any{[]any{[]any{}}}}}},
}

// objectPaths lists, in a JSON value parsed by encoding/json, every object below the
// top level, as paths of keys and indexes.
func objectPaths(v any, path []any, out *[][]any) {
	switch v := v.(type) {
	case map[string]any:
		if len(path) > 0 {
			*out = append(*out, slices.Clone(path))
		}
		for k, x := range v {
			objectPaths(x, append(path, k), out)
		}
	case []any:
		for i, x := range v {
			objectPaths(x, append(path, i), out)
		}
	}
}

// pathString writes a path from objectPaths as in a FieldError: sessions[0].results.
func pathString(path []any) string {
	var b strings.Builder
	for _, step := range path {
		switch s := step.(type) {
		case string:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(s)
		case int:
			fmt.Fprintf(&b, "[%d]", s)
		}
	}
	return b.String()
}

// at returns the object at path in v.
func at(v any, path []any) map[string]any {
	for _, step := range path {
		switch s := step.(type) {
		case string:
			v = v.(map[string]any)[s]
		case int:
			v = v.([]any)[s]
		}
	}
	return v.(map[string]any)
}

func TestUnknownMembersBelowTopLevelAreSkipped(t *testing.T) {
	want := fullResponse(t, fillOptions{member: nthMember(0)})
	body := encode(t, want)

	var paths [][]any
	objectPaths(parseJSON(t, body), nil, &paths)
	slices.SortFunc(paths, func(a, b []any) int { return strings.Compare(pathString(a), pathString(b)) })
	// sessions[0], results, five kinds of result and errors[0].
	require.GreaterOrEqual(t, len(paths), 8)

	for _, path := range paths {
		t.Run(pathString(path), func(t *testing.T) {
			doc := parseJSON(t, body)
			obj := at(doc, path)
			for k, v := range unknownMembers {
				obj[k] = v
			}
			withUnknown, err := json.Marshal(doc)
			require.NoError(t, err)

			got := new(creditv1.CreditSessionsGetResponse)
			require.NoError(t, plaidjson.UnmarshalResponse(withUnknown, got), "body: %s", withUnknown)
			requireProtoEqual(t, want, got, "unknown members at %v changed the message", path)
		})
	}
}

func TestUnknownTopLevelMembersAreKept(t *testing.T) {
	tests := []struct {
		name string
		json string
		want *structpb.Value
	}{
		{name: "object", json: `{"a":{"b":[1,"x"]},"c":{}}`, want: structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
			"a": structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
				"b": structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{structpb.NewNumberValue(1), structpb.NewStringValue("x")}}),
			}}),
			"c": structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{}}),
		}})},
		{name: "empty_object", json: `{}`, want: structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{}})},
		{name: "array", json: `[1,"two",true,null,[]]`, want: structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{
			structpb.NewNumberValue(1), structpb.NewStringValue("two"), structpb.NewBoolValue(true), structpb.NewNullValue(),
			structpb.NewListValue(&structpb.ListValue{}),
		}})},
		{name: "empty_array", json: `[]`, want: structpb.NewListValue(&structpb.ListValue{})},
		{name: "string", json: `"caf\u00e9\n"`, want: structpb.NewStringValue("café\n")},
		{name: "empty_string", json: `""`, want: structpb.NewStringValue("")},
		{name: "integer", json: `42`, want: structpb.NewNumberValue(42)},
		{name: "zero", json: `0`, want: structpb.NewNumberValue(0)},
		{name: "negative", json: `-17`, want: structpb.NewNumberValue(-17)},
		{name: "fraction", json: `1.25`, want: structpb.NewNumberValue(1.25)},
		{name: "huge", json: `1e300`, want: structpb.NewNumberValue(1e300)},
		{name: "tiny", json: `-2.5E-300`, want: structpb.NewNumberValue(-2.5e-300)},
		{name: "max_float", json: `1.7976931348623157e308`, want: structpb.NewNumberValue(math.MaxFloat64)},
		{name: "true", json: `true`, want: structpb.NewBoolValue(true)},
		{name: "false", json: `false`, want: structpb.NewBoolValue(false)},
		{name: "null", json: `null`, want: structpb.NewNullValue()},
		{name: "nested", json: `{"l":[{"m":[[{"n":null}]]}]}`, want: mustValue(t, map[string]any{
			"l": []any{map[string]any{"m": []any{[]any{map[string]any{"n": nil}}}}},
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := `{"request_id":"r","new_member":` + tt.json + `,"sessions":[{"link_session_id":"s"}]}`
			got := decode(t, body)
			assert.Equal(t, "r", got.GetRequestId())
			assert.Len(t, got.GetSessions(), 1)
			require.Contains(t, got.GetAdditionalProperties(), "new_member")
			assert.Len(t, got.GetAdditionalProperties(), 1)
			assertProtoEqual(t, tt.want, got.GetAdditionalProperties()["new_member"])

			out := encode(t, got)
			assert.Equal(t, []string{"request_id", "sessions", "new_member"}, topLevelKeys(t, out),
				"additional properties are written inline, after the known members: %s", out)
			assert.Equal(t, parseJSON(t, []byte(body)), parseJSON(t, out))
			requireProtoEqual(t, got, decode(t, string(out)))
		})
	}
}

func mustValue(t testing.TB, v any) *structpb.Value {
	t.Helper()
	pv, err := structpb.NewValue(v)
	require.NoError(t, err)
	return pv
}

func TestUnknownTopLevelNumbersAreWrittenAsJSONNumbers(t *testing.T) {
	// Numbers are kept as float64, like protojson and JavaScript; written back they must
	// be JSON numbers that mean the same float64, in the short forms encoding/json uses.
	tests := []struct {
		in, want string
	}{
		{in: `42`, want: `42`},
		{in: `42.0`, want: `42`},
		{in: `1.25`, want: `1.25`},
		{in: `-0.5`, want: `-0.5`},
		{in: `1e300`, want: `1e+300`},
		{in: `1e21`, want: `1e+21`},
		{in: `1e20`, want: `100000000000000000000`},
		{in: `0.000001`, want: `0.000001`},
		{in: `1e-7`, want: `1e-7`},
		{in: `1.5e-10`, want: `1.5e-10`},
		{in: `-1e-300`, want: `-1e-300`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			out := encode(t, decode(t, `{"request_id":"r","n":`+tt.in+`}`))
			assert.Equal(t, `{"request_id":"r","sessions":[],"n":`+tt.want+`}`, string(out))
			std, err := json.Marshal(parseJSON(t, []byte(tt.in)))
			require.NoError(t, err)
			assert.Equal(t, string(std), tt.want, "encoding/json writes this number the same way")
		})
	}
}

func TestUnknownTopLevelMembersOrderAndDeterminism(t *testing.T) {
	body := `{"zeta":1,"request_id":"r","alpha":{"y":1,"x":2},"sessions":[],"mid":[3]}`
	m := decode(t, body)
	assert.Len(t, m.GetAdditionalProperties(), 3)
	first := encode(t, m)
	keys := topLevelKeys(t, first)
	require.Len(t, keys, 5)
	assert.Equal(t, []string{"request_id", "sessions"}, keys[:2], "known members come first")
	assert.ElementsMatch(t, []string{"zeta", "alpha", "mid"}, keys[2:])
	for range 20 {
		// Maps iterate in random order; the output must not.
		require.Equal(t, string(first), string(encode(t, m)))
	}
}

func TestNewStatusValuesRoundTrip(t *testing.T) {
	for _, list := range []string{"bank_income_results", "bank_employment_results"} {
		for _, status := range []string{"PENDING_REVIEW", "approved", "CREDIT_SESSION_BANK_INCOME_STATUS_APPROVED", "UNSPECIFIED", "STATUS_UNSPECIFIED", "é 😀"} {
			t.Run(list+"/"+status, func(t *testing.T) {
				elem := `{"status":` + quoteJSON(t, status) + `,"item_id":"i"}`
				body := `{"request_id":"r","sessions":[{"results":{"` + list + `":[` + elem + `]}}]}`
				got := decode(t, body)
				results := got.GetSessions()[0].GetResults()
				switch list {
				case "bank_income_results":
					r := results.GetBankIncomeResults()[0]
					assert.Equal(t, status, r.GetUnrecognizedStatus())
					assert.IsType(t, &creditv1.CreditSessionBankIncomeResult_UnrecognizedStatus{}, r.GetStatusValue())
				case "bank_employment_results":
					r := results.GetBankEmploymentResults()[0]
					assert.Equal(t, status, r.GetUnrecognizedStatus())
					assert.IsType(t, &creditv1.CreditSessionBankEmploymentResult_UnrecognizedStatus{}, r.GetStatusValue())
				}
				out := encode(t, got)
				assert.Equal(t, parseJSON(t, []byte(body)), parseJSON(t, out))
				assert.NotContains(t, string(out), "unrecognized", "the status goes back under its Plaid name")
			})
		}
	}
}

func TestEveryNamedStatusRoundTrips(t *testing.T) {
	// Both enums' values, from the generated tables: a value added to the proto must
	// decode from its Plaid spelling without more code.
	for prefix, values := range map[string]map[string]int32{
		"CREDIT_SESSION_BANK_INCOME_STATUS_":     creditv1.CreditSessionBankIncomeStatus_value,
		"CREDIT_SESSION_BANK_EMPLOYMENT_STATUS_": creditv1.CreditSessionBankEmploymentStatus_value,
	} {
		for name, number := range values {
			if number == 0 {
				continue
			}
			t.Run(name, func(t *testing.T) {
				spelling := strings.TrimPrefix(name, prefix)
				list := "bank_income_results"
				if strings.Contains(prefix, "EMPLOYMENT") {
					list = "bank_employment_results"
				}
				body := `{"request_id":"r","sessions":[{"results":{"` + list + `":[{"status":"` + spelling + `"}]}}]}`
				got := decode(t, body)
				results := got.GetSessions()[0].GetResults()
				if list == "bank_income_results" {
					assert.Equal(t, number, int32(results.GetBankIncomeResults()[0].GetStatus()))
				} else {
					assert.Equal(t, number, int32(results.GetBankEmploymentResults()[0].GetStatus()))
				}
				assert.JSONEq(t, body, string(encode(t, got)))
			})
		}
	}
}

func TestAdditionalPropertiesNeverShadowKnownMembers(t *testing.T) {
	m := &creditv1.CreditSessionsGetResponse{
		RequestId: "real",
		Sessions:  []*creditv1.CreditSession{{LinkSessionId: proto.String("s")}},
		AdditionalProperties: map[string]*structpb.Value{
			"request_id": structpb.NewStringValue("shadow"),
			"sessions":   structpb.NewListValue(&structpb.ListValue{}),
			"other":      structpb.NewNumberValue(1),
		},
	}
	out := encode(t, m)
	assert.Equal(t, []string{"request_id", "sessions", "other"}, topLevelKeys(t, out), "body: %s", out)
	assert.JSONEq(t, `{"request_id":"real","sessions":[{"link_session_id":"s"}],"other":1}`, string(out))

	// Without sessions, the additional "sessions" still does not appear: the known
	// member is written as [].
	m.Sessions = nil
	out = encode(t, m)
	assert.Equal(t, []string{"request_id", "sessions", "other"}, topLevelKeys(t, out), "body: %s", out)
	assert.JSONEq(t, `{"request_id":"real","sessions":[],"other":1}`, string(out))
}

func TestDuplicateTopLevelMembersLastWins(t *testing.T) {
	// encoding/json and protojson differ here (protojson rejects duplicates); Plaid
	// does not send them. What matters is that the codec neither fails oddly nor
	// writes both back.
	m := decode(t, `{"request_id":"a","x":1,"request_id":"b","x":2}`)
	assert.Equal(t, "b", m.GetRequestId())
	assert.Equal(t, []string{"request_id", "sessions", "x"}, topLevelKeys(t, encode(t, m)))
}

func quoteJSON(t testing.TB, s string) string {
	t.Helper()
	b, err := json.Marshal(s)
	require.NoError(t, err)
	return string(b)
}
