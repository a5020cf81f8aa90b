package plaidjson_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/plaidjson"
)

// requireFieldError decodes body and requires a *FieldError at path.
func requireFieldError(t *testing.T, body, path string) *plaidjson.FieldError {
	t.Helper()
	m := new(creditv1.CreditSessionsGetResponse)
	err := plaidjson.UnmarshalResponse([]byte(body), m)
	require.Error(t, err, "body: %s", body)
	var fe *plaidjson.FieldError
	require.ErrorAs(t, err, &fe, "body: %s", body)
	assert.Equal(t, path, fe.Path, "body: %s", body)
	require.Error(t, fe.Err, "a FieldError says what is wrong")
	assert.True(t, strings.HasPrefix(err.Error(), path+": "), "the message starts with the path: %q", err)
	return fe
}

// requireSyntaxError decodes body and requires a *SyntaxError.
func requireSyntaxError(t *testing.T, body string) *plaidjson.SyntaxError {
	t.Helper()
	m := new(creditv1.CreditSessionsGetResponse)
	err := plaidjson.UnmarshalResponse([]byte(body), m)
	require.Error(t, err, "body: %q", body)
	var se *plaidjson.SyntaxError
	require.ErrorAs(t, err, &se, "body: %q", body)
	assert.GreaterOrEqual(t, se.Offset, int64(0))
	assert.LessOrEqual(t, se.Offset, int64(len(body)))
	return se
}

func TestWrongTypeOfEveryMember(t *testing.T) {
	all := members((&creditv1.CreditSessionsGetResponse{}).ProtoReflect().Descriptor())
	require.GreaterOrEqual(t, len(all), 30)
	for _, m := range all {
		var wrong []string
		switch {
		case m.field.IsList():
			wrong = []string{`{}`, `"x"`, `1`, `true`, `false`}
		case m.field.Message() != nil && m.field.Message().FullName() == "google.protobuf.Timestamp":
			wrong = []string{`1`, `{}`, `[]`, `true`}
		case m.field.Message() != nil:
			wrong = []string{`"x"`, `1`, `[]`, `true`, `[{}]`}
		case m.field.Kind() == protoreflect.StringKind, m.field.Kind() == protoreflect.EnumKind:
			wrong = []string{`1`, `-1`, `true`, `false`, `{}`, `[]`, `["x"]`}
		case m.field.Kind() == protoreflect.Int32Kind:
			wrong = []string{`"1"`, `""`, `true`, `{}`, `[]`, `[1]`}
		default:
			require.Failf(t, "unexpected kind", "%s is %s: add a case", m, m.field.Kind())
		}
		for _, value := range wrong {
			t.Run(m.String()+"="+value, func(t *testing.T) {
				requireFieldError(t, m.bodyWith(value), m.errorPath())
			})
		}
		if m.field.IsList() && m.field.Message() != nil {
			// An element of the wrong type is located by its index.
			for _, value := range []string{`"x"`, `1`, `[]`, `true`, `null`} {
				t.Run(m.String()+"[1]="+value, func(t *testing.T) {
					requireFieldError(t, m.bodyWith(`[{},`+value+`]`), m.errorPath()+"[1]")
				})
			}
		}
	}
}

func TestFieldErrorPathExample(t *testing.T) {
	// The example from the codec's contract, written out by hand.
	body := `{"request_id":"r","sessions":[{},{"results":{"document_income_results":{"num_paystubs_uploaded":1,"num_w2s_uploaded":"2"}}}]}`
	fe := requireFieldError(t, body, "sessions[1].results.document_income_results.num_w2s_uploaded")
	assert.Contains(t, fe.Err.Error(), "string")
}

func TestBadTimestamps(t *testing.T) {
	for _, ts := range []string{
		`""`,
		`"yesterday"`,
		`"2022-09-30"`,
		`"2022-09-30T23:40:30"`,       // no offset
		`"2022-09-30 23:40:30Z"`,      // space for T
		`"2022-13-01T00:00:00Z"`,      // month 13
		`"2022-02-30T00:00:00Z"`,      // 30 February
		`"2022-09-30T24:00:00Z"`,      // hour 24
		`"2022-09-30T23:40:30+25:00"`, // offset out of range
		`"2022-09-30T23:40:30.Z"`,     // a point with no digits
		`"0000-01-01T00:00:00Z"`,      // before timestamppb's range
		`"0001-01-01T00:00:00+00:01"`, // before it once in UTC
		`"9999-12-31T23:59:59-00:01"`, // after it once in UTC
		`"1664581230"`,
	} {
		t.Run(ts, func(t *testing.T) {
			body := `{"request_id":"r","sessions":[{},{"session_start_time":` + ts + `}]}`
			fe := requireFieldError(t, body, "sessions[1].session_start_time")
			assert.NotEmpty(t, fe.Err.Error())
		})
	}
}

func TestCountRange(t *testing.T) {
	tests := []struct {
		count   string
		want    int32
		wantErr bool
	}{
		{count: `0`, want: 0},
		{count: `-0`, want: 0},
		{count: `2147483647`, want: math.MaxInt32},
		{count: `-2147483648`, want: math.MinInt32},
		{count: `2147483648`, wantErr: true},
		{count: `-2147483649`, wantErr: true},
		{count: `9223372036854775808`, wantErr: true},
		{count: `1e10`, wantErr: true},
		{count: `1e400`, wantErr: true},
		{count: `1.5`, wantErr: true},
		{count: `2.000001`, wantErr: true},
		{count: `0.5`, wantErr: true},
		{count: `1e-1`, wantErr: true},
		// Counts are integers in Plaid's schema: as encoding/json does for an integer,
		// a fraction or an exponent is refused, even where its value is whole, and an
		// exponent that underflows to 0 (1e-400) is not read as 0.
		{count: `2.0`, wantErr: true},
		{count: `2e0`, wantErr: true},
		{count: `1E2`, wantErr: true},
		{count: `1e-400`, wantErr: true},
		{count: `-0.0`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.count, func(t *testing.T) {
			body := `{"request_id":"r","sessions":[{"results":{"payroll_income_results":[{},{"num_w2s_retrieved":` + tt.count + `}]}}]}`
			if tt.wantErr {
				fe := requireFieldError(t, body, "sessions[0].results.payroll_income_results[1].num_w2s_retrieved")
				assert.Contains(t, fe.Err.Error(), tt.count)
				return
			}
			got := decode(t, body)
			assert.Equal(t, tt.want, got.GetSessions()[0].GetResults().GetPayrollIncomeResults()[1].GetNumW2SRetrieved())
		})
	}
}

func TestUnknownTopLevelNumberOutOfRange(t *testing.T) {
	// A float64 cannot hold it, so it cannot be kept; that is an error about the member.
	requireFieldError(t, `{"request_id":"r","big":1e400}`, "big")
	requireFieldError(t, `{"request_id":"r","big":[1,{"x":-1e999}]}`, "big")
}

// validBody is a body that exercises every kind of JSON value the codec reads, used to
// make truncated bodies.
const validBody = `{"request_id":"r\u00e9q","sessions":[{"link_session_id":"a\"b","session_start_time":"2022-09-30T23:40:30.946225Z",` +
	`"results":{"item_add_results":[{"public_token":"p","item_id":"i","institution_id":null}],` +
	`"bank_income_results":[{"status":"APPROVED"}],"bank_employment_results":[{"status":"NEW_ONE","x":[true,false,null,-1.5e3]}],` +
	`"payroll_income_results":[{"num_paystubs_retrieved":-0,"num_w2s_retrieved":12}],` +
	`"document_income_results":{"num_paystubs_uploaded":1,"num_w2s_uploaded":0,"num_bank_statements_uploaded":3,"num_1099s_uploaded":4}},` +
	`"errors":[{"error_type":"ITEM_ERROR","display_message":null}]}],` +
	`"extra":{"k":[1,2.5e-3,"s",true,false,null,{}]},"flag":false,"nothing":null,"n":-12}`

func TestTruncatedBodiesAreSyntaxErrors(t *testing.T) {
	decode(t, validBody) // the whole body is fine
	for i := range len(validBody) {
		// Every proper prefix of an object is malformed.
		requireSyntaxError(t, validBody[:i])
	}
	// And the same with white space everywhere it may go.
	var indented bytes.Buffer
	require.NoError(t, json.Indent(&indented, []byte(validBody), " \r", "\t"))
	spaced := " \n" + indented.String() + "\n"
	decode(t, spaced)
	for i := range strings.LastIndexByte(spaced, '}') + 1 {
		requireSyntaxError(t, spaced[:i])
	}
}

func TestMalformedBodies(t *testing.T) {
	deep := func(depth int, inner string) string {
		return strings.Repeat("[", depth) + inner + strings.Repeat("]", depth)
	}
	deepObj := func(depth int) string {
		return strings.Repeat(`{"a":`, depth) + "1" + strings.Repeat("}", depth)
	}
	tests := []struct {
		name string
		body string
	}{
		{name: "empty", body: ``},
		{name: "white_space", body: " \n\t\r"},
		{name: "trailing_garbage", body: `{"request_id":"r"}x`},
		{name: "trailing_object", body: `{"request_id":"r"}{}`},
		{name: "trailing_comma_object", body: `{"request_id":"r",}`},
		{name: "trailing_comma_array", body: `{"request_id":"r","sessions":[{},]}`},
		{name: "missing_comma", body: `{"request_id":"r" "sessions":[]}`},
		{name: "missing_colon", body: `{"request_id" "r"}`},
		{name: "single_quotes", body: `{'request_id':'r'}`},
		{name: "unquoted_key", body: `{request_id:"r"}`},
		{name: "number_key", body: `{1:"r"}`},
		{name: "number_key_nested", body: `{"sessions":[{1:2}]}`},
		{name: "bad_escape", body: `{"request_id":"\x41"}`},
		{name: "bad_escape_nested", body: `{"sessions":[{"link_session_id":"\q"}]}`},
		{name: "bad_escape_in_key", body: `{"\a":1}`},
		{name: "short_unicode_escape", body: `{"request_id":"\u12"}`},
		{name: "non_hex_unicode_escape", body: `{"request_id":"\u12G4"}`},
		{name: "escape_at_end", body: `{"request_id":"\`},
		{name: "control_character", body: "{\"request_id\":\"a\x01b\"}"},
		{name: "raw_newline_in_string", body: "{\"request_id\":\"a\nb\"}"},
		{name: "raw_tab_in_unknown", body: "{\"x\":\"a\tb\"}"},
		{name: "control_character_after_escape", body: "{\"request_id\":\"\\n\x1f\"}"},
		{name: "nul_byte", body: "{\"request_id\":\"r\"}\x00"},
		{name: "lone_minus", body: `{"x":-}`},
		{name: "lone_minus_count", body: `{"sessions":[{"results":{"payroll_income_results":[{"num_w2s_retrieved":-}]}}]}`},
		{name: "minus_letter", body: `{"x":-a}`},
		{name: "plus_sign", body: `{"x":+1}`},
		{name: "leading_zero", body: `{"x":01}`},
		{name: "point_no_digits", body: `{"x":1.}`},
		{name: "leading_point", body: `{"x":.5}`},
		{name: "exponent_no_digits", body: `{"x":1e}`},
		{name: "exponent_sign_no_digits", body: `{"x":1e+}`},
		{name: "hex_number", body: `{"x":0x10}`},
		{name: "nan", body: `{"x":NaN}`},
		{name: "infinity", body: `{"x":Infinity}`},
		{name: "misspelt_true", body: `{"x":tru}`},
		{name: "misspelt_null_for_string", body: `{"request_id":nul}`},
		{name: "misspelt_false_for_count", body: `{"sessions":[{"results":{"document_income_results":{"num_w2s_uploaded":fals}}}]}`},
		{name: "capital_null", body: `{"request_id":Null}`},
		{name: "unclosed_array", body: `{"sessions":[}`},
		{name: "mismatched_brackets", body: `{"sessions":[{]}`},
		{name: "comment", body: `{"request_id":"r"/* no */}`},
		{name: "deep_unknown_top_level", body: `{"x":` + deep(100_000, "") + `}`},
		{name: "deep_unknown_top_level_objects", body: `{"x":` + deepObj(100_000) + `}`},
		{name: "deep_unknown_in_session", body: `{"sessions":[{"x":` + deep(100_000, "1") + `}]}`},
		{name: "deep_unknown_in_result", body: `{"sessions":[{"results":{"item_add_results":[{"x":` + deepObj(5000) + `}]}}]}`},
		{name: "deep_unknown_request_level", body: `{"x":` + deep(1_000_000, "") + `}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			requireSyntaxError(t, tt.body)
		})
	}
}

func TestModeratelyDeepUnknownValuesAreFine(t *testing.T) {
	// The depth limit guards the stack; ordinary nesting is far below it.
	value := strings.Repeat(`[{"a":`, 100) + "1" + strings.Repeat("}]", 100)
	m := decode(t, `{"request_id":"r","x":`+value+`,"sessions":[{"y":`+value+`}]}`)
	out := encode(t, m)
	assert.Equal(t, parseJSON(t, []byte(`{"request_id":"r","sessions":[{}],"x":`+value+`}`)), parseJSON(t, out))
}

func TestTopLevelMustBeAnObject(t *testing.T) {
	for _, body := range []string{`[]`, `[{"request_id":"r"}]`, `"r"`, `1`, `true`, `null`} {
		t.Run(body, func(t *testing.T) {
			m := &creditv1.CreditSessionsGetResponse{RequestId: "stale"}
			err := plaidjson.UnmarshalResponse([]byte(body), m)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "object")
			assert.Empty(t, m.GetRequestId(), "m is reset before decoding")
		})
	}
}

func TestDecodeResetsTheMessage(t *testing.T) {
	m := fullResponse(t, fillOptions{member: nthMember(0), extras: true})
	require.NoError(t, plaidjson.UnmarshalResponse([]byte(`{"request_id":"r"}`), m))
	requireProtoEqual(t, &creditv1.CreditSessionsGetResponse{RequestId: "r"}, m)
}

func TestEncodeRefusesWhatJSONCannotCarry(t *testing.T) {
	deepValue := structpb.NewNullValue()
	for range 2000 {
		deepValue = structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{deepValue}})
	}
	withBankIncome := func(r *creditv1.CreditSessionBankIncomeResult) *creditv1.CreditSessionsGetResponse {
		return &creditv1.CreditSessionsGetResponse{Sessions: []*creditv1.CreditSession{{
			Results: &creditv1.CreditSessionResults{BankIncomeResults: []*creditv1.CreditSessionBankIncomeResult{r}},
		}}}
	}
	tests := []struct {
		name string
		m    *creditv1.CreditSessionsGetResponse
	}{
		{name: "unspecified_bank_income_status", m: withBankIncome(&creditv1.CreditSessionBankIncomeResult{
			StatusValue: &creditv1.CreditSessionBankIncomeResult_Status{},
		})},
		{name: "unknown_bank_income_status_number", m: withBankIncome(&creditv1.CreditSessionBankIncomeResult{
			StatusValue: &creditv1.CreditSessionBankIncomeResult_Status{Status: 99},
		})},
		{name: "negative_bank_employment_status_number", m: &creditv1.CreditSessionsGetResponse{Sessions: []*creditv1.CreditSession{{
			Results: &creditv1.CreditSessionResults{BankEmploymentResults: []*creditv1.CreditSessionBankEmploymentResult{{
				StatusValue: &creditv1.CreditSessionBankEmploymentResult_Status{Status: -1},
			}}},
		}}}},
		{name: "timestamp_nanos_out_of_range", m: &creditv1.CreditSessionsGetResponse{Sessions: []*creditv1.CreditSession{{
			SessionStartTime: &timestamppb.Timestamp{Seconds: 1, Nanos: 1e9},
		}}}},
		{name: "timestamp_year_10000", m: &creditv1.CreditSessionsGetResponse{Sessions: []*creditv1.CreditSession{{
			SessionStartTime: &timestamppb.Timestamp{Seconds: 253402300800},
		}}}},
		{name: "nan", m: &creditv1.CreditSessionsGetResponse{AdditionalProperties: map[string]*structpb.Value{"x": structpb.NewNumberValue(math.NaN())}}},
		{name: "infinity", m: &creditv1.CreditSessionsGetResponse{AdditionalProperties: map[string]*structpb.Value{
			"x": structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{structpb.NewNumberValue(math.Inf(-1))}}),
		}}},
		{name: "too_deep", m: &creditv1.CreditSessionsGetResponse{AdditionalProperties: map[string]*structpb.Value{"x": deepValue}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := plaidjson.AppendResponse(nil, tt.m)
			assert.Error(t, err)
		})
	}
}

func TestEncodeNilElementsAsEmptyObjects(t *testing.T) {
	// proto.Marshal and protojson take a nil element of a repeated field for an empty
	// message; the REST mirror must not panic where gRPC would not.
	m := &creditv1.CreditSessionsGetResponse{RequestId: "r", Sessions: []*creditv1.CreditSession{nil, {
		Results: &creditv1.CreditSessionResults{
			ItemAddResults:        []*creditv1.CreditSessionItemAddResult{nil},
			BankIncomeResults:     []*creditv1.CreditSessionBankIncomeResult{nil},
			BankEmploymentResults: []*creditv1.CreditSessionBankEmploymentResult{nil},
			PayrollIncomeResults:  []*creditv1.CreditSessionPayrollIncomeResult{nil},
		},
		Errors: []*creditv1.CreditSessionError{nil},
	}}}
	out := encode(t, m)
	pj, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	require.NoError(t, err)
	assert.Equal(t, parseJSON(t, pj), parseJSON(t, out))
}

func TestAppendResponseAppends(t *testing.T) {
	prefix := []byte("prefix:")
	out, err := plaidjson.AppendResponse(prefix, &creditv1.CreditSessionsGetResponse{RequestId: "r"})
	require.NoError(t, err)
	assert.Equal(t, `prefix:{"request_id":"r","sessions":[]}`, string(out))
}

func TestErrorTypes(t *testing.T) {
	inner := errors.New("boom")
	fe := &plaidjson.FieldError{Path: "sessions[0].results", Err: inner}
	assert.Equal(t, "sessions[0].results: boom", fe.Error())
	assert.ErrorIs(t, fe, inner)

	se := requireSyntaxError(t, `{"request_id":"r"}x`)
	assert.Equal(t, int64(18), se.Offset)
	assert.Contains(t, se.Error(), "offset 18")

	ue := &plaidjson.UnknownFieldsError{Fields: []string{"a", "b"}}
	assert.Equal(t, "unknown fields: a, b", ue.Error())
}
