package emulator

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"maps"
	"net/http"
	"net/http/httptest"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// memberNames returns the names of the top-level members of the JSON object raw, in order.
func memberNames(t *testing.T, raw []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	require.NoError(t, err)
	require.Equal(t, json.Delim('{'), tok)
	var names []string
	for dec.More() {
		tok, err := dec.Token()
		require.NoError(t, err)
		names = append(names, tok.(string))
		var skip json.RawMessage
		require.NoError(t, dec.Decode(&skip))
	}
	return names
}

// withoutRequestID returns the response body as JSON with its request_id removed.
func withoutRequestID(t *testing.T, resp response) string {
	t.Helper()
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(resp.raw, &m))
	delete(m, "request_id")
	b, err := json.Marshal(m)
	require.NoError(t, err)
	return string(b)
}

func TestFixturesServeTheirFilesUnchanged(t *testing.T) {
	s := startServer(t, Config{})
	c := newClient(t)
	for _, f := range staticFixtures {
		t.Run(f.Token, func(t *testing.T) {
			file, err := fixtureFiles.ReadFile("fixtures/" + f.Token + ".json")
			require.NoError(t, err)
			resp := getSessions(t, c, s.URL, f.Token)
			assert.Equal(t, contentType, resp.header.Get("Content-Type"))
			require.True(t, json.Valid(resp.raw), "body: %s", resp.raw)

			names := memberNames(t, resp.raw)
			require.NotEmpty(t, names)
			assert.Equal(t, "request_id", names[0], "request_id comes first")
			assert.Equal(t, memberNames(t, file), names[1:], "the fixture's members keep their order")
			assert.Regexp(t, requestIDPattern, resp.object(t)["request_id"])

			// The fixture's bytes after its opening brace are served exactly.
			open := bytes.IndexByte(file, '{')
			assert.True(t, bytes.HasSuffix(resp.raw, file[open+1:]), "body: %s", resp.raw)
			assert.JSONEq(t, string(file), withoutRequestID(t, resp))
		})
	}
}

func TestFixturesListsEveryFileAndWorks(t *testing.T) {
	files, err := fs.Glob(fixtureFiles, "fixtures/*")
	require.NoError(t, err)
	var fileTokens []string
	for _, f := range files {
		fileTokens = append(fileTokens, strings.TrimSuffix(path.Base(f), ".json"))
	}
	var listed []string
	for _, f := range staticFixtures {
		listed = append(listed, f.Token)
	}
	assert.ElementsMatch(t, fileTokens, listed, "every fixture file is listed, and every listed fixture has a file")

	s := startServer(t, Config{})
	c := newClient(t)
	all := Fixtures()
	assert.Equal(t, all, Fixtures(), "stable order")
	for _, f := range all {
		assert.NotEmpty(t, f.Description, f.Token)
		getSessions(t, c, s.URL, f.Token) // every listed token succeeds
	}
	all[0].Token = "changed"
	assert.NotEqual(t, "changed", Fixtures()[0].Token, "Fixtures returns a copy")
}

// specExample is example-1 of /credit/sessions/get in Plaid's OpenAPI description.
const specExample = `{
  "request_id": "Aim3b",
  "sessions": [
    {
      "link_session_id": "356dbb28-7f98-44d1-8e6d-0cec580f3171",
      "results": {
        "item_add_results": [{
          "public_token": "public-sandbox-5c224a01-8314-4491-a06f-39e193d5cddc",
          "item_id": "M5eVJqLnv3tbzdngLDp9FL5OlDNxlNhlE55op",
          "institution_id": "ins_56"
        }],
        "bank_income_results": [{
          "status": "APPROVED",
          "item_id": "M5eVJqLnv3tbzdngLDp9FL5OlDNxlNhlE55op",
          "institution_id": "ins_56"
        }]
      },
      "session_start_time": "2022-09-30T23:40:30.946225Z"
    },
    {
      "link_session_id": "f742cae8-31e4-49cc-a621-6cafbdb26fb9",
      "results": {
        "payroll_income_results": [{
          "num_paystubs_retrieved": 2,
          "num_w2s_retrieved": 1,
          "institution_id": "ins_92"
        }]
      },
      "session_start_time": "2022-09-26T23:40:30.946225Z"
    }
  ]
}`

func TestExampleFixtureIsTheSpecExample(t *testing.T) {
	s := startServer(t, Config{})
	resp := getSessions(t, newClient(t), s.URL, "user-sandbox-example")
	want := strings.Replace(specExample, `"request_id": "Aim3b",`, "", 1)
	assert.JSONEq(t, want, withoutRequestID(t, resp))
}

// leaves walks a decoded JSON value and records, for every leaf, its path (array indexes
// left out) and whether its value is non-zero.
func leaves(v any, at string, out map[string][]any) {
	switch v := v.(type) {
	case map[string]any:
		for k, child := range v {
			leaves(child, at+"."+k, out)
		}
	case []any:
		for _, child := range v {
			leaves(child, at+"[]", out)
		}
	default:
		out[at] = append(out[at], v)
	}
}

func isZero(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case string:
		return v == ""
	case json.Number:
		return v.String() == "0"
	case bool:
		return !v
	}
	return false
}

func TestFullFixtureSetsEveryField(t *testing.T) {
	s := startServer(t, Config{})
	body := getSessions(t, newClient(t), s.URL, "user-sandbox-full").object(t)
	values := map[string][]any{}
	leaves(body["sessions"], "sessions", values)

	fields := []string{
		"link_session_id", "session_start_time",
		"results.item_add_results[].public_token", "results.item_add_results[].item_id", "results.item_add_results[].institution_id",
		"results.bank_income_results[].status", "results.bank_income_results[].item_id", "results.bank_income_results[].institution_id",
		"results.bank_employment_results[].status", "results.bank_employment_results[].item_id", "results.bank_employment_results[].institution_id",
		"results.payroll_income_results[].num_paystubs_retrieved", "results.payroll_income_results[].num_w2s_retrieved",
		"results.payroll_income_results[].institution_id", "results.payroll_income_results[].institution_name",
		"results.document_income_results.num_paystubs_uploaded", "results.document_income_results.num_w2s_uploaded",
		"results.document_income_results.num_bank_statements_uploaded", "results.document_income_results.num_1099s_uploaded",
		"errors[].error_type", "errors[].error_code", "errors[].error_message", "errors[].display_message",
	}
	for _, f := range fields {
		got := values["sessions[]."+f]
		require.NotEmpty(t, got, "%s is never set", f)
		if f == "errors[].display_message" {
			assert.Contains(t, got, nil, "one error has a null display_message")
			assert.True(t, slices.ContainsFunc(got, func(v any) bool { s, ok := v.(string); return ok && s != "" }),
				"one error has a string display_message")
			continue
		}
		for _, v := range got {
			assert.False(t, isZero(v), "%s has a zero value", f)
		}
	}
	for _, ts := range values["sessions[].session_start_time"] {
		assert.Regexp(t, `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$`, ts)
		_, err := time.Parse(time.RFC3339Nano, ts.(string))
		assert.NoError(t, err)
	}
	assert.ElementsMatch(t,
		[]any{"APPROVED", "NO_DEPOSITS_FOUND", "USER_REPORTED_NO_INCOME", "STARTED", "INTERNAL_ERROR"},
		values["sessions[].results.bank_income_results[].status"])
	assert.ElementsMatch(t,
		[]any{"APPROVED", "NO_EMPLOYERS_FOUND", "EMPLOYER_NOT_LISTED", "STARTED", "INTERNAL_ERROR"},
		values["sessions[].results.bank_employment_results[].status"])
	assertNewestFirst(t, values["sessions[].session_start_time"])
}

func assertNewestFirst(t *testing.T, times []any) {
	t.Helper()
	var prev time.Time
	for i, v := range times {
		ts, err := time.Parse(time.RFC3339Nano, v.(string))
		require.NoError(t, err)
		if i > 0 {
			assert.True(t, ts.Before(prev), "session %d (%s) is not older than the one before", i, v)
		}
		prev = ts
	}
}

func TestZeroFixture(t *testing.T) {
	s := startServer(t, Config{})
	resp := getSessions(t, newClient(t), s.URL, "user-sandbox-zero")
	var body struct {
		Sessions []map[string]json.RawMessage `json:"sessions"`
	}
	require.NoError(t, json.Unmarshal(resp.raw, &body))
	require.Len(t, body.Sessions, 4)

	var first struct {
		Payroll  []map[string]any `json:"payroll_income_results"`
		Document map[string]any   `json:"document_income_results"`
		ItemAdds []any            `json:"item_add_results"`
	}
	require.NoError(t, json.Unmarshal(body.Sessions[0]["results"], &first))
	assert.Equal(t, map[string]any{
		"num_paystubs_uploaded": 0.0, "num_w2s_uploaded": 0.0, "num_bank_statements_uploaded": 0.0, "num_1099s_uploaded": 0.0,
	}, first.Document)
	require.Len(t, first.Payroll, 1)
	assert.Equal(t, map[string]any{
		"num_paystubs_retrieved": 0.0, "num_w2s_retrieved": 0.0, "institution_id": "ins_115", "institution_name": "",
	}, first.Payroll[0])
	assert.NotNil(t, first.ItemAdds)
	assert.Empty(t, first.ItemAdds)

	assert.JSONEq(t, `{"document_income_results": null}`, string(body.Sessions[1]["results"]))
	assert.JSONEq(t, `[]`, string(body.Sessions[2]["errors"]))
	assert.Equal(t, []string{"link_session_id"}, slices.Collect(maps.Keys(body.Sessions[3])), "a session with only its id")
}

func TestEmptyFixture(t *testing.T) {
	s := startServer(t, Config{})
	resp := getSessions(t, newClient(t), s.URL, "user-sandbox-empty")
	var body map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(resp.raw, &body))
	assert.JSONEq(t, `[]`, string(body["sessions"]), "an empty array, not null or absent")
}

func TestFutureFixture(t *testing.T) {
	s := startServer(t, Config{})
	resp := getSessions(t, newClient(t), s.URL, "user-sandbox-future")
	body := resp.object(t)

	known := map[string]bool{"request_id": true, "sessions": true}
	kinds := map[string]bool{}
	for name, v := range body {
		if known[name] {
			continue
		}
		switch v := v.(type) {
		case map[string]any:
			kinds["object"] = true
		case []any:
			kinds["array"] = true
		case string:
			kinds["string"] = true
		case json.Number:
			if strings.ContainsAny(v.String(), ".eE") {
				kinds["float"] = true
			} else if n, err := v.Int64(); err == nil && n > 1<<53 {
				kinds["large integer"] = true
			} else {
				kinds["integer"] = true
			}
		case bool:
			kinds[map[bool]string{true: "true", false: "false"}[v]] = true
		case nil:
			kinds["null"] = true
		}
	}
	assert.Equal(t, map[string]bool{
		"object": true, "array": true, "string": true, "float": true, "large integer": true,
		"integer": true, "true": true, "false": true, "null": true,
	}, kinds)
	// Served as written: a float64 round trip would have turned it into ...992.
	assert.Contains(t, string(resp.raw), "9007199254740993")
	assert.Contains(t, string(resp.raw), "1.25")

	// Unknown members inside a session, its results, each result object and each error.
	knownFields := map[string][]string{
		"session":                 {"link_session_id", "session_start_time", "results", "errors"},
		"results":                 {"item_add_results", "bank_income_results", "bank_employment_results", "payroll_income_results", "document_income_results"},
		"item_add_results":        {"public_token", "item_id", "institution_id"},
		"bank_income_results":     {"status", "item_id", "institution_id"},
		"bank_employment_results": {"status", "item_id", "institution_id"},
		"payroll_income_results":  {"num_paystubs_retrieved", "num_w2s_retrieved", "institution_id", "institution_name"},
		"document_income_results": {"num_paystubs_uploaded", "num_w2s_uploaded", "num_bank_statements_uploaded", "num_1099s_uploaded"},
		"errors":                  {"error_type", "error_code", "error_message", "display_message"},
	}
	hasUnknown := map[string]bool{}
	check := func(kind string, obj map[string]any) {
		for k := range obj {
			if !slices.Contains(knownFields[kind], k) {
				hasUnknown[kind] = true
			}
		}
	}
	var incomeStatuses, employmentStatuses []any
	for _, sv := range body["sessions"].([]any) {
		session := sv.(map[string]any)
		check("session", session)
		if results, ok := session["results"].(map[string]any); ok {
			check("results", results)
			for kind := range knownFields {
				switch v := results[kind].(type) {
				case map[string]any:
					check(kind, v)
				case []any:
					for _, r := range v {
						check(kind, r.(map[string]any))
						switch kind {
						case "bank_income_results":
							incomeStatuses = append(incomeStatuses, r.(map[string]any)["status"])
						case "bank_employment_results":
							employmentStatuses = append(employmentStatuses, r.(map[string]any)["status"])
						}
					}
				}
			}
		}
		if errs, ok := session["errors"].([]any); ok {
			for _, e := range errs {
				check("errors", e.(map[string]any))
			}
		}
	}
	for kind := range knownFields {
		assert.True(t, hasUnknown[kind], "no unknown member in %s", kind)
	}
	assert.Contains(t, incomeStatuses, "PENDING_REVIEW", "a bank income status not in today's enum")
	assert.Contains(t, employmentStatuses, "PENDING_REVIEW", "a bank employment status not in today's enum")
	assert.Contains(t, incomeStatuses, "APPROVED", "beside today's values")
}

func TestGeneratedSessions(t *testing.T) {
	s := startServer(t, Config{})
	c := newClient(t)
	for _, n := range []int{0, 1, 2, 3, 10, 1000, 20000} {
		token := generatedTokenPrefix + strconv.Itoa(n)
		t.Run(token, func(t *testing.T) {
			resp := getSessions(t, c, s.URL, token)
			var body struct {
				RequestID string `json:"request_id"`
				Sessions  []struct {
					LinkSessionID    string                     `json:"link_session_id"`
					SessionStartTime string                     `json:"session_start_time"`
					Results          map[string]json.RawMessage `json:"results"`
				} `json:"sessions"`
			}
			require.NoError(t, json.Unmarshal(resp.raw, &body))
			assert.Regexp(t, requestIDPattern, body.RequestID)
			require.Len(t, body.Sessions, n)
			require.NotNil(t, body.Sessions, "sessions is [] for 0, not null")

			var times []any
			ids := map[string]bool{}
			shapes := map[string]bool{}
			for _, session := range body.Sessions {
				assert.NotEmpty(t, session.LinkSessionID)
				assert.False(t, ids[session.LinkSessionID], "link_session_id repeated")
				ids[session.LinkSessionID] = true
				times = append(times, session.SessionStartTime)
				for k := range session.Results {
					shapes[k] = true
				}
			}
			assertNewestFirst(t, times)
			if n >= 3 {
				for _, shape := range []string{"item_add_results", "bank_income_results", "payroll_income_results", "document_income_results"} {
					assert.True(t, shapes[shape], "no session has %s", shape)
				}
			}
			if n >= 1000 {
				perSession := len(resp.raw) / n
				assert.InDelta(t, 300, perSession, 100, "bytes per session")
			}

			again := getSessions(t, c, s.URL, token)
			assert.Equal(t, withoutRequestID(t, resp), withoutRequestID(t, again), "deterministic")
		})
	}
}

func TestGeneratedSessionsArePrefixes(t *testing.T) {
	s := startServer(t, Config{})
	c := newClient(t)
	var small, large map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(getSessions(t, c, s.URL, "user-sandbox-sessions-5").raw, &small))
	require.NoError(t, json.Unmarshal(getSessions(t, c, s.URL, "user-sandbox-sessions-50").raw, &large))
	var a, b []json.RawMessage
	require.NoError(t, json.Unmarshal(small["sessions"], &a))
	require.NoError(t, json.Unmarshal(large["sessions"], &b))
	assert.Equal(t, a, b[:5], "the user with N sessions sees the same N newest sessions as any bigger one")
}

func TestNewFixtureBodyRejectsBadFixtures(t *testing.T) {
	for _, raw := range []string{``, `[]`, `null`, `"x"`, `{`, `{"request_id":"x"}`} {
		_, err := newFixtureBody([]byte(raw))
		assert.Error(t, err, "%q", raw)
	}
}

func TestEmptyObjectFixture(t *testing.T) {
	// A fixture with no members still gets a well-formed body.
	body, err := newFixtureBody([]byte(` {} `))
	require.NoError(t, err)
	rec := httptest.NewRecorder()
	body.write(rec, "Abc12")
	assert.Equal(t, ` {"request_id":"Abc12"} `, rec.Body.String())
	assert.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, strconv.Itoa(rec.Body.Len()), rec.Header().Get("Content-Length"))
}

func TestAnotherUserGetsTheSameAnswer(t *testing.T) {
	s := startServer(t, Config{})
	c := newClient(t)
	for _, token := range []string{"user-sandbox-example", generatedTokenPrefix + "3"} {
		t.Run(token, func(t *testing.T) {
			want := withoutRequestID(t, getSessions(t, c, s.URL, token))
			for _, id := range []string{"1", "2", "a-longer-id", ""} {
				assert.JSONEq(t, want, withoutRequestID(t, getSessions(t, c, s.URL, token+UserSeparator+id)), "user %q", id)
			}
		})
	}
}
