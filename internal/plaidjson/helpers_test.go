package plaidjson_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/testing/protocmp"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/plaidjson"
)

// specExample is the example response of `/credit/sessions/get` in Plaid's OpenAPI
// description (shared/plaid/credit-sessions-openapi.yml), written out as JSON.
const specExample = `{
  "request_id": "Aim3b",
  "sessions": [
    {
      "link_session_id": "356dbb28-7f98-44d1-8e6d-0cec580f3171",
      "results": {
        "item_add_results": [
          {
            "public_token": "public-sandbox-5c224a01-8314-4491-a06f-39e193d5cddc",
            "item_id": "M5eVJqLnv3tbzdngLDp9FL5OlDNxlNhlE55op",
            "institution_id": "ins_56"
          }
        ],
        "bank_income_results": [
          {
            "status": "APPROVED",
            "item_id": "M5eVJqLnv3tbzdngLDp9FL5OlDNxlNhlE55op",
            "institution_id": "ins_56"
          }
        ]
      },
      "session_start_time": "2022-09-30T23:40:30.946225Z"
    },
    {
      "link_session_id": "f742cae8-31e4-49cc-a621-6cafbdb26fb9",
      "results": {
        "payroll_income_results": [
          {
            "num_paystubs_retrieved": 2,
            "num_w2s_retrieved": 1,
            "institution_id": "ins_92"
          }
        ]
      },
      "session_start_time": "2022-09-26T23:40:30.946225Z"
    }
  ]
}`

// decode runs UnmarshalResponse and requires it to succeed.
func decode(t testing.TB, body string) *creditv1.CreditSessionsGetResponse {
	t.Helper()
	m := new(creditv1.CreditSessionsGetResponse)
	require.NoError(t, plaidjson.UnmarshalResponse([]byte(body), m), "body: %s", body)
	return m
}

// encode runs AppendResponse and requires it to succeed with valid JSON.
func encode(t testing.TB, m *creditv1.CreditSessionsGetResponse) []byte {
	t.Helper()
	out, err := plaidjson.AppendResponse(nil, m)
	require.NoError(t, err)
	require.True(t, json.Valid(out), "AppendResponse wrote invalid JSON: %s", out)
	return out
}

// requireProtoEqual fails with a diff (-want +got) when want and got differ.
func requireProtoEqual(t testing.TB, want, got proto.Message, msgAndArgs ...any) {
	t.Helper()
	if proto.Equal(want, got) { // fast path, for the fuzz test: cmp.Diff is slow
		return
	}
	require.Empty(t, cmp.Diff(want, got, protocmp.Transform()), msgAndArgs...)
}

// assertProtoEqual is requireProtoEqual that lets the test go on.
func assertProtoEqual(t testing.TB, want, got proto.Message, msgAndArgs ...any) bool {
	t.Helper()
	if proto.Equal(want, got) {
		return true
	}
	return assert.Empty(t, cmp.Diff(want, got, protocmp.Transform()), msgAndArgs...)
}

// parseJSON decodes body with encoding/json into plain Go values.
func parseJSON(t testing.TB, body []byte) any {
	t.Helper()
	var v any
	require.NoError(t, json.Unmarshal(body, &v), "body: %s", body)
	return v
}

// normalise drops null members and empty arrays from objects, recursively: the only
// differences allowed between a body Plaid sent and the one AppendResponse writes back.
func normalise(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			if x == nil {
				continue
			}
			if a, ok := x.([]any); ok && len(a) == 0 {
				continue
			}
			out[k] = normalise(x)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = normalise(x)
		}
		return out
	default:
		return v
	}
}

// topLevelKeys lists the members of the JSON object in body, in order, duplicates
// included; encoding/json's map decoding would hide a duplicate.
func topLevelKeys(t testing.TB, body []byte) []string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(body)))
	tok, err := dec.Token()
	require.NoError(t, err)
	require.Equal(t, json.Delim('{'), tok)
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		require.NoError(t, err)
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		require.NoError(t, dec.Decode(&skip))
	}
	return keys
}

// A member is one JSON member of Plaid's schema, reached from the top of the response
// through path: the message-typed fields (one element deep for lists) that lead to the
// message holding field.
type member struct {
	path  []protoreflect.FieldDescriptor
	field protoreflect.FieldDescriptor
}

// jsonName is the member's name in Plaid's JSON. It is the proto name, except for the
// unrecognized_ half of a status oneof, which Plaid calls by the other half's name.
func jsonName(fd protoreflect.FieldDescriptor) string {
	return strings.TrimPrefix(string(fd.Name()), "unrecognized_")
}

// isWellKnown reports a message type the codec writes as a JSON scalar or as free JSON,
// not as an object of its fields.
func isWellKnown(md protoreflect.MessageDescriptor) bool {
	return md.FullName().Parent() == "google.protobuf"
}

// members lists every JSON member of the response schema below md, depth first,
// following the proto descriptors. Fields that share a JSON name (the two halves of a
// status oneof) are listed once, and additional_properties, which is not a member, is
// left out.
func members(md protoreflect.MessageDescriptor) []member {
	var out []member
	var walk func(md protoreflect.MessageDescriptor, path []protoreflect.FieldDescriptor)
	walk = func(md protoreflect.MessageDescriptor, path []protoreflect.FieldDescriptor) {
		seen := map[string]bool{}
		fields := md.Fields()
		for i := range fields.Len() {
			fd := fields.Get(i)
			if fd.IsMap() {
				continue
			}
			if name := jsonName(fd); !seen[name] {
				seen[name] = true
				out = append(out, member{path: path, field: fd})
			}
			if fd.Message() != nil && !isWellKnown(fd.Message()) {
				walk(fd.Message(), append(append([]protoreflect.FieldDescriptor(nil), path...), fd))
			}
		}
	}
	walk(md, nil)
	return out
}

// bodyWith writes a response body that reaches m through its path and gives it the
// JSON value value. Each list on the way has an empty first element, so the member
// sits at index 1, and paths in errors show that the index is counted.
func (m member) bodyWith(value string) string {
	body := `{"` + jsonName(m.field) + `":` + value + `}`
	for i := len(m.path) - 1; i >= 0; i-- {
		fd := m.path[i]
		if fd.IsList() {
			body = `{"` + jsonName(fd) + `":[{},` + body + `]}`
		} else {
			body = `{"` + jsonName(fd) + `":` + body + `}`
		}
	}
	return body
}

// errorPath is the path a FieldError about the member's own value should carry in a
// body written by bodyWith.
func (m member) errorPath() string {
	var b strings.Builder
	for _, fd := range m.path {
		b.WriteString(jsonName(fd))
		if fd.IsList() {
			b.WriteString("[1]")
		}
		b.WriteByte('.')
	}
	b.WriteString(jsonName(m.field))
	return b.String()
}

// holder finds, in a response decoded from a bodyWith body, the message that holds
// the member, or reports that it is missing.
func (m member) holder(root protoreflect.Message) (protoreflect.Message, bool) {
	cur := root
	for _, fd := range m.path {
		if !cur.Has(fd) {
			return nil, false
		}
		if fd.IsList() {
			list := cur.Get(fd).List()
			cur = list.Get(list.Len() - 1).Message()
		} else {
			cur = cur.Get(fd).Message()
		}
	}
	return cur, true
}

// jsonHolder is holder for the same body parsed by encoding/json.
func (m member) jsonHolder(v any) (map[string]any, bool) {
	cur, ok := v.(map[string]any)
	for _, fd := range m.path {
		if !ok {
			return nil, false
		}
		next := cur[jsonName(fd)]
		if fd.IsList() {
			list, isList := next.([]any)
			if !isList || len(list) == 0 {
				return nil, false
			}
			next = list[len(list)-1]
		}
		cur, ok = next.(map[string]any)
	}
	return cur, ok
}

func (m member) String() string { return m.errorPath() }
