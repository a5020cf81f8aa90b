package app_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/creditsessions/creditsessions/internal/app"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// schemaChecker checks JSON values against the served Swagger 2.0 definitions.
type schemaChecker struct {
	t    *testing.T
	defs map[string]any
}

func (c schemaChecker) resolve(schema map[string]any) map[string]any {
	if ref, ok := schema["$ref"].(string); ok {
		def, ok := c.defs[strings.TrimPrefix(ref, "#/definitions/")].(map[string]any)
		require.True(c.t, ok, "dangling $ref %s", ref)
		return def
	}
	return schema
}

// check reports every member of v the schema does not describe, every value of the
// wrong JSON type, and every enum value the schema does not list.
func (c schemaChecker) check(path string, v any, schema map[string]any) {
	schema = c.resolve(schema)
	switch v := v.(type) {
	case map[string]any:
		assert.Equal(c.t, "object", schema["type"], "%s: schema type", path)
		props, _ := schema["properties"].(map[string]any)
		for k, x := range v {
			sub, ok := props[k].(map[string]any)
			if !ok {
				assert.Equal(c.t, true, schema["additionalProperties"], "%s.%s is not in the OpenAPI document", path, k)
				continue
			}
			c.check(path+"."+k, x, sub)
		}
		required, _ := schema["required"].([]any)
		for _, r := range required {
			if p, _ := props[r.(string)].(map[string]any); p["x-nullable"] == true {
				continue // a null the caller dropped
			}
			assert.Contains(c.t, v, r, "%s: required member missing", path)
		}
	case []any:
		assert.Equal(c.t, "array", schema["type"], "%s", path)
		items, _ := schema["items"].(map[string]any)
		for _, x := range v {
			c.check(path+"[]", x, items)
		}
	case string:
		assert.Equal(c.t, "string", schema["type"], "%s", path)
		if enum, ok := schema["enum"].([]any); ok {
			assert.Contains(c.t, enum, v, "%s: value not in the documented enum", path)
		}
	case float64:
		assert.Equal(c.t, "integer", schema["type"], "%s", path)
	}
}

func TestOpenAPIDocumentDescribesWhatTheMirrorSends(t *testing.T) {
	s := start(t, app.Config{})
	resp, err := http.Get(s.rest + "/openapi.json")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var doc map[string]any
	require.NoError(t, json.Unmarshal(raw, &doc))

	op := doc["paths"].(map[string]any)["/credit/sessions/get"].(map[string]any)["post"].(map[string]any)
	okSchema := op["responses"].(map[string]any)["200"].(map[string]any)["schema"].(map[string]any)
	c := schemaChecker{t: t, defs: doc["definitions"].(map[string]any)}
	assert.Equal(t, true, c.resolve(okSchema)["additionalProperties"], "the response is declared open, as Plaid declares it")
	assert.NotContains(t, string(raw), "UNSPECIFIED", "enum values are Plaid's spellings")
	for name, def := range c.defs {
		props, _ := def.(map[string]any)["properties"].(map[string]any)
		assert.NotContains(t, props, "unrecognized_status", "%s: the mirror never sends that name", name)
		assert.NotContains(t, props, "additional_properties", "%s: the mirror sends those inline", name)
	}
	assert.NotContains(t, c.defs, "protobufNullValue", "no definition is left that nothing uses")

	// The full fixture uses every field and every status the contract names.
	for _, token := range []string{"user-sandbox-example", "user-sandbox-full", "user-sandbox-zero"} {
		resp, body := s.post(t, "/credit/sessions/get", `{"user_token":"`+token+`"}`)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		var v map[string]any
		require.NoError(t, json.Unmarshal(body, &v))
		c.check(token, v, okSchema)
	}

	errSchema := op["responses"].(map[string]any)["default"].(map[string]any)["schema"].(map[string]any)
	for _, body := range []string{`{"user_token":"nobody"}`, `{}`, `{"user_token":"x","extra":1}`} {
		resp, data := s.post(t, "/credit/sessions/get", body)
		require.Equal(t, http.StatusBadRequest, resp.StatusCode)
		var v map[string]any
		require.NoError(t, json.Unmarshal(data, &v))
		for k, x := range v { // display_message and friends may be null
			if x == nil {
				delete(v, k)
			}
		}
		c.check("error "+body, v, errSchema)
	}

	// The watch: each line as the mirror sends it.
	watchOp := doc["paths"].(map[string]any)["/credit/sessions/watch"].(map[string]any)["post"].(map[string]any)
	assert.Equal(t, []any{"application/x-ndjson"}, watchOp["produces"])
	lineSchema := watchOp["responses"].(map[string]any)["200"].(map[string]any)["schema"].(map[string]any)
	w, _ := watchREST(t, s, `{"user_token":"user-sandbox-full"}`)
	require.Equal(t, "INITIAL", w.next(t).reason)
	wresp, wbody := s.post(t, "/credit/sessions/watch", `{"user_token":"nobody"}`)
	require.Equal(t, http.StatusBadRequest, wresp.StatusCode)
	var werr map[string]any
	require.NoError(t, json.Unmarshal(wbody, &werr))
	assert.Equal(t, "INVALID_USER_TOKEN", werr["error_code"])
	c.check("watch line", map[string]any{"reason": "INITIAL", "response": map[string]any{"request_id": "x", "sessions": []any{}}}, lineSchema)
	assert.Equal(t, []any{"INITIAL", "WEBHOOK", "POLL"}, c.defs["v1WatchCreditSessionsReason"].(map[string]any)["enum"])
	assert.NotContains(t, doc, "x-stream-definitions")

	reqSchema := c.resolve(op["parameters"].([]any)[0].(map[string]any)["schema"].(map[string]any))
	assert.Equal(t, []any{"user_token"}, reqSchema["required"])
	assert.ElementsMatch(t, []string{"user_token", "client_id", "secret"}, keys(reqSchema["properties"].(map[string]any)))
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
