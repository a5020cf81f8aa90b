package mirror

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/creditsessions/creditsessions/gen/openapi"
)

// openAPIDocument returns the generated OpenAPI document corrected to describe the JSON
// the mirror really sends, which follows Plaid rather than protojson:
//   - enum values are Plaid's spellings, without the proto prefix or _UNSPECIFIED;
//   - unrecognized_status is never sent under that name (it goes out as status);
//   - CreditSessionsGetResponse is open: additional_properties go out inline.
func openAPIDocument() ([]byte, error) {
	var doc map[string]any
	if err := json.Unmarshal(openapi.CreditSessions, &doc); err != nil {
		return nil, fmt.Errorf("mirror: generated OpenAPI document: %w", err)
	}
	doc["info"] = map[string]any{
		"title":       "Credit sessions",
		"version":     "v1",
		"description": "Plaid's /credit/sessions/get, served by the credit sessions service in Plaid's own JSON.",
	}
	defs, _ := doc["definitions"].(map[string]any)
	for _, d := range defs {
		def, _ := d.(map[string]any)
		if values, ok := def["enum"].([]any); ok {
			fixEnum(def, values)
		}
		if props, ok := def["properties"].(map[string]any); ok {
			delete(props, "unrecognized_status")
			if _, open := props["additional_properties"]; open {
				delete(props, "additional_properties")
				def["additionalProperties"] = true
			}
		}
	}
	addPlaidErrors(doc, defs)
	describeBatch(defs)
	describeWatch(doc)
	dropUnreferenced(doc, defs)
	return json.MarshalIndent(doc, "", "  ")
}

// addPlaidErrors documents the error answer of every operation: Plaid's error body, as
// the mirror sends it (see errors.go), in place of grpc-gateway's google.rpc.Status.
func addPlaidErrors(doc, defs map[string]any) {
	str := func(desc string) map[string]any { return map[string]any{"type": "string", "description": desc} }
	nullable := func(desc string) map[string]any {
		return map[string]any{"type": "string", "x-nullable": true, "description": desc}
	}
	defs["PlaidError"] = map[string]any{
		"type":                 "object",
		"additionalProperties": true,
		"description": "An error, in Plaid's shape. Errors Plaid answered with come back as Plaid sent them, " +
			"with Plaid's HTTP status; errors that start in this service use a code a Plaid client already understands.",
		"properties": map[string]any{
			"error_type":        str("A broad categorization of the error, such as INVALID_INPUT."),
			"error_code":        str("The particular error code, such as INVALID_USER_TOKEN. Branch on this."),
			"error_message":     str("A developer-friendly representation of the error; its wording may change."),
			"display_message":   nullable("A user-friendly representation of the error, or null."),
			"request_id":        str("Plaid's request id; for errors that start in this service, one of its own, prefixed creditsessions-."),
			"error_code_reason": nullable("The specific reason for the error code, or null."),
			"documentation_url": str("A Plaid documentation page about the error."),
			"suggested_action":  nullable("Suggested steps for resolving the error, or null."),
		},
		"required": []any{"error_type", "error_code", "error_message", "display_message", "request_id"},
	}
	paths, _ := doc["paths"].(map[string]any)
	for _, p := range paths {
		ops, _ := p.(map[string]any)
		for _, o := range ops {
			op, _ := o.(map[string]any)
			if responses, ok := op["responses"].(map[string]any); ok {
				responses["default"] = map[string]any{
					"description": "An error, in Plaid's shape.",
					"schema":      map[string]any{"$ref": "#/definitions/PlaidError"},
				}
			}
		}
	}
}

// describeWatch replaces grpc-gateway's description of the watch's stream (lines
// wrapping each message in "result") with what the mirror sends: each line is one message
// as it is, or a last `{"error": ...}` in Plaid's shape (see watch.go).
func describeWatch(doc map[string]any) {
	paths, _ := doc["paths"].(map[string]any)
	path, _ := paths[watchPath].(map[string]any)
	op, _ := path["post"].(map[string]any)
	responses, _ := op["responses"].(map[string]any)
	if responses == nil {
		return
	}
	op["produces"] = []any{"application/x-ndjson"}
	ref := func(name string) map[string]any { return map[string]any{"$ref": "#/definitions/" + name} }
	responses["200"] = map[string]any{
		"description": "Newline-delimited JSON, one line per message, each flushed as it is sent: reason and " +
			"response; or, after the first line, a last line with only error, Plaid's error body. " +
			"A watch that ran its course ends with the response, without an error line: reconnect.",
		"schema": map[string]any{
			"type":  "object",
			"title": "One line of the stream",
			"properties": map[string]any{
				"reason":   ref("v1WatchCreditSessionsReason"),
				"response": ref("v1CreditSessionsGetResponse"),
				"error":    ref("PlaidError"),
			},
		},
	}
	delete(doc, "x-stream-definitions")
}

// dropUnreferenced removes definitions that nothing refers to any more, such as the
// types of the fields removed above.
func dropUnreferenced(doc, defs map[string]any) {
	for {
		text, _ := json.Marshal(doc)
		removed := false
		for name := range defs {
			if !bytes.Contains(text, []byte(`"#/definitions/`+name+`"`)) {
				delete(defs, name)
				removed = true
			}
		}
		if !removed {
			return
		}
	}
}

// fixEnum strips the prefix that the _UNSPECIFIED value reveals from every value.
func fixEnum(def map[string]any, values []any) {
	prefix := ""
	for _, v := range values {
		if s, _ := v.(string); strings.HasSuffix(s, "_UNSPECIFIED") {
			prefix = strings.TrimSuffix(s, "UNSPECIFIED")
		}
	}
	if prefix == "" {
		return
	}
	var plaid []any
	for _, v := range values {
		if s, _ := v.(string); !strings.HasSuffix(s, "_UNSPECIFIED") {
			plaid = append(plaid, strings.TrimPrefix(s, prefix))
		}
	}
	def["enum"] = plaid
	delete(def, "default")
	if desc, ok := def["description"].(string); ok {
		// protoc-gen-openapiv2 lists the values as " - NAME: comment" entries.
		entries := strings.Split(strings.ReplaceAll(desc, prefix, ""), "\n - ")
		kept := entries[:1]
		for _, entry := range entries[1:] {
			name, comment, _ := strings.Cut(entry, ": ")
			if name == "UNSPECIFIED" {
				continue
			}
			// The proto comment starts by naming the value again.
			kept = append(kept, name+": "+strings.TrimPrefix(comment, name+": "))
		}
		def["description"] = strings.Join(kept, "\n - ")
	}
}

func serveDocument(w http.ResponseWriter, doc []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(doc)))
	_, _ = w.Write(doc)
}

// describeBatch documents a batch result as the mirror writes it (see appendBatch):
// the error in Plaid's shape with the HTTP status a single call would have had, and the
// age as a JSON number.
func describeBatch(defs map[string]any) {
	def, _ := defs["v1BatchGetCreditSessionsResult"].(map[string]any)
	props, _ := def["properties"].(map[string]any)
	if props == nil {
		return
	}
	props["error"] = map[string]any{
		"description": "The error a CreditSessionsGet for the token would have answered, in Plaid's shape, " +
			"with status, the HTTP status that call would have had.",
		"allOf": []any{
			map[string]any{"$ref": "#/definitions/PlaidError"},
			map[string]any{"type": "object", "properties": map[string]any{"status": map[string]any{"type": "integer"}}},
		},
	}
	props["age"] = map[string]any{"type": "integer",
		"description": "For an answer served from the cache, how many seconds old it is; absent for an answer fetched from Plaid by this call."}
}
