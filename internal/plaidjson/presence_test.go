package plaidjson_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/reflect/protoreflect"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
)

// optionalScalars lists every proto3 `optional` scalar of the response, from the
// descriptors, so that a new one is covered without editing this file.
func optionalScalars(t testing.TB) []member {
	t.Helper()
	var out []member
	for _, m := range members((&creditv1.CreditSessionsGetResponse{}).ProtoReflect().Descriptor()) {
		if m.field.HasOptionalKeyword() && m.field.Message() == nil {
			out = append(out, m)
		}
	}
	// 1 in a session, 3 in an item add, 2 in each bank result, 4 in payroll, 4 in
	// document income, 4 in an error: a walker that found fewer is broken.
	require.GreaterOrEqual(t, len(out), 20)
	return out
}

func TestPresenceOfOptionalScalars(t *testing.T) {
	for _, m := range optionalScalars(t) {
		var zero, nonZero string
		var zeroValue protoreflect.Value
		switch m.field.Kind() {
		case protoreflect.StringKind:
			zero, nonZero, zeroValue = `""`, `"x"`, protoreflect.ValueOfString("")
		case protoreflect.Int32Kind:
			zero, nonZero, zeroValue = `0`, `7`, protoreflect.ValueOfInt32(0)
		default:
			require.Failf(t, "unexpected kind", "%s is %s: add a case", m, m.field.Kind())
		}
		name := jsonName(m.field)

		tests := []struct {
			name        string
			body        string
			wantPresent bool
			wantValue   any // the JSON value written back, when present
		}{
			{name: "zero", body: m.bodyWith(zero), wantPresent: true, wantValue: parseJSON(t, []byte(zero))},
			{name: "non_zero", body: m.bodyWith(nonZero), wantPresent: true, wantValue: parseJSON(t, []byte(nonZero))},
			{name: "null", body: m.bodyWith(`null`), wantPresent: false},
			{name: "absent", body: absentBody(m), wantPresent: false},
		}
		for _, tt := range tests {
			t.Run(m.String()+"/"+tt.name, func(t *testing.T) {
				got := decode(t, tt.body)
				holder, ok := m.holder(got.ProtoReflect())
				require.True(t, ok, "the messages on the way to %s were not kept: %v", m, got)
				assert.Equal(t, tt.wantPresent, holder.Has(m.field), "presence of %s", m)
				if tt.wantPresent && tt.name == "zero" {
					assert.Equal(t, zeroValue.Interface(), holder.Get(m.field).Interface())
				}

				out := parseJSON(t, encode(t, got))
				obj, ok := m.jsonHolder(out)
				require.True(t, ok, "the objects on the way to %s were not written back: %v", m, out)
				v, written := obj[name]
				assert.Equal(t, tt.wantPresent, written, "whether %s was written back: %v", name, obj)
				if tt.wantPresent {
					assert.Equal(t, tt.wantValue, v)
				}
			})
		}
	}
}

// absentBody is bodyWith for a holder object that lacks the member.
func absentBody(m member) string {
	body := m.bodyWith(`null`)
	// Drop `"name":null` from the innermost object, the only place the name was put
	// together with a null.
	needle := `{"` + jsonName(m.field) + `":null}`
	for i := 0; i+len(needle) <= len(body); i++ {
		if body[i:i+len(needle)] == needle {
			return body[:i] + `{}` + body[i+len(needle):]
		}
	}
	panic("bodyWith changed shape")
}

func TestPresenceOfNestedObjects(t *testing.T) {
	doc := func(v string) string {
		return `{"request_id":"r","sessions":[{"results":{"document_income_results":` + v + `}}]}`
	}
	tests := []struct {
		name        string
		body        string
		wantResults bool
		wantDoc     bool
		wantOut     string // the session as written back
	}{
		{name: "document_income_results_empty_object", body: doc(`{}`), wantResults: true, wantDoc: true,
			wantOut: `{"results":{"document_income_results":{}}}`},
		{name: "document_income_results_zero_counts", body: doc(`{"num_paystubs_uploaded":0,"num_w2s_uploaded":0,"num_bank_statements_uploaded":0,"num_1099s_uploaded":0}`),
			wantResults: true, wantDoc: true,
			wantOut: `{"results":{"document_income_results":{"num_paystubs_uploaded":0,"num_w2s_uploaded":0,"num_bank_statements_uploaded":0,"num_1099s_uploaded":0}}}`},
		{name: "document_income_results_null", body: doc(`null`), wantResults: true, wantDoc: false,
			wantOut: `{"results":{}}`},
		{name: "document_income_results_absent", body: `{"request_id":"r","sessions":[{"results":{}}]}`, wantResults: true, wantDoc: false,
			wantOut: `{"results":{}}`},
		{name: "results_null", body: `{"request_id":"r","sessions":[{"results":null}]}`, wantResults: false,
			wantOut: `{}`},
		{name: "results_absent", body: `{"request_id":"r","sessions":[{}]}`, wantResults: false,
			wantOut: `{}`},
		{name: "session_start_time_null", body: `{"request_id":"r","sessions":[{"session_start_time":null}]}`, wantResults: false,
			wantOut: `{}`},
		{name: "empty_lists", body: `{"request_id":"r","sessions":[{"errors":[],"results":{"item_add_results":[],"bank_income_results":null}}]}`, wantResults: true,
			wantOut: `{"results":{}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := decode(t, tt.body)
			require.Len(t, got.GetSessions(), 1)
			s := got.GetSessions()[0]
			assert.Equal(t, tt.wantResults, s.Results != nil, "results present")
			assert.Equal(t, tt.wantDoc, s.GetResults().GetDocumentIncomeResults() != nil, "document_income_results present")
			assert.Nil(t, s.SessionStartTime)
			assert.Nil(t, s.LinkSessionId)

			out := encode(t, got)
			assert.JSONEq(t, `{"request_id":"r","sessions":[`+tt.wantOut+`]}`, string(out))
		})
	}
}

func TestPresenceOfStatus(t *testing.T) {
	for _, list := range []string{"bank_income_results", "bank_employment_results"} {
		tests := []struct {
			name    string
			element string
			want    string // the element as written back
		}{
			{name: "absent", element: `{"item_id":"i"}`, want: `{"item_id":"i"}`},
			{name: "null", element: `{"status":null,"item_id":"i"}`, want: `{"item_id":"i"}`},
			{name: "empty_string", element: `{"status":""}`, want: `{"status":""}`},
			{name: "named", element: `{"status":"STARTED"}`, want: `{"status":"STARTED"}`},
		}
		for _, tt := range tests {
			t.Run(list+"/"+tt.name, func(t *testing.T) {
				body := `{"request_id":"r","sessions":[{"results":{"` + list + `":[` + tt.element + `]}}]}`
				got := decode(t, body)
				holder := got.GetSessions()[0].GetResults().ProtoReflect()
				elem := holder.Get(holder.Descriptor().Fields().ByName(protoreflect.Name(list))).List().Get(0).Message()
				status := elem.Descriptor().Oneofs().ByName("status_value")
				if tt.name == "absent" || tt.name == "null" {
					assert.Nil(t, elem.WhichOneof(status), "no status was sent")
				} else {
					assert.NotNil(t, elem.WhichOneof(status), "a status was sent")
				}
				assert.JSONEq(t, `{"request_id":"r","sessions":[{"results":{"`+list+`":[`+tt.want+`]}}]}`, string(encode(t, got)))
			})
		}
	}
}

func TestEncodeWritesRequestIDAlways(t *testing.T) {
	// request_id is required by Plaid's schema, so even an empty one is written; and
	// sessions is always written, [] when there are none, as Plaid sends it.
	out := encode(t, &creditv1.CreditSessionsGetResponse{})
	assert.JSONEq(t, `{"request_id":"","sessions":[]}`, string(out))
}
