package emulator

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// control sends a control API request, with Content-Type application/json.
func control(t *testing.T, c *http.Client, baseURL, method, path, body string) response {
	t.Helper()
	return send(t, c, baseURL, request{method: method, path: path, body: body})
}

func TestControlAPIRoundTrip(t *testing.T) {
	s := startServer(t, Config{})
	c := newClient(t)

	const put = `{"error_rate":0.2,"errors":["API_ERROR/INTERNAL_SERVER_ERROR","API_ERROR/PLANNED_MAINTENANCE"],
		"rate_limit_rate":0.1,"reset_rate":0.01,"stall_rate":0.02,"stall_for":"2s","garbage_rate":0.03,
		"latency":"10ms","retry_after":"1s"}`
	resp := control(t, c, s.URL, http.MethodPut, "/emulator/faults", put)
	require.Equal(t, http.StatusNoContent, resp.status, "body: %s", resp.raw)
	assert.Empty(t, resp.raw)

	want := Faults{
		ErrorRate:     0.2,
		Errors:        []ErrorSpec{mustErrorFor(t, "API_ERROR", "INTERNAL_SERVER_ERROR"), mustErrorFor(t, "API_ERROR", "PLANNED_MAINTENANCE")},
		RateLimitRate: 0.1, ResetRate: 0.01, StallRate: 0.02, StallFor: 2 * time.Second, GarbageRate: 0.03,
		Latency: 10 * time.Millisecond, RetryAfter: time.Second,
	}
	assert.Equal(t, want, s.Emulator.Faults())

	resp = control(t, c, s.URL, http.MethodGet, "/emulator/faults", "")
	require.Equal(t, http.StatusOK, resp.status, "body: %s", resp.raw)
	assert.Equal(t, "application/json", resp.header.Get("Content-Type"))
	assert.JSONEq(t, put, string(resp.raw))

	resp = control(t, c, s.URL, http.MethodDelete, "/emulator/faults", "")
	require.Equal(t, http.StatusNoContent, resp.status, "body: %s", resp.raw)
	assert.Equal(t, Faults{}, s.Emulator.Faults())
	resp = control(t, c, s.URL, http.MethodGet, "/emulator/faults", "")
	assert.JSONEq(t, `{"error_rate":0,"errors":[],"rate_limit_rate":0,"reset_rate":0,"stall_rate":0,
		"stall_for":"0s","garbage_rate":0,"latency":"0s","retry_after":"0s"}`, string(resp.raw))

	assert.Zero(t, s.Emulator.Calls(), "control requests are not calls to the endpoint")
}

func TestControlAPIChangesBehaviour(t *testing.T) {
	s := startServer(t, Config{})
	c := newClient(t)
	put := func(body string) {
		t.Helper()
		resp := control(t, c, s.URL, http.MethodPut, "/emulator/faults", body)
		require.Equal(t, http.StatusNoContent, resp.status, "body: %s", resp.raw)
	}

	assert.Equal(t, "ok", outcome(t, c, s.URL))
	put(`{"error_rate":1,"errors":["API_ERROR/PLANNED_MAINTENANCE"]}`)
	assert.Equal(t, "503 PLANNED_MAINTENANCE", outcome(t, c, s.URL))
	put(`{"garbage_rate":1}`) // a PUT replaces: the error rate is gone
	assert.Equal(t, "garbage", outcome(t, c, s.URL))
	put(`{"rate_limit_rate":1,"retry_after":"3s"}`)
	resp := send(t, c, s.URL, request{headers: defaultHeaders(), body: tokenBody("user-sandbox-example")})
	assertPlaidError(t, resp, mustErrorFor(t, "RATE_LIMIT_EXCEEDED", "RATE_LIMIT"))
	assert.Equal(t, "3", resp.header.Get("Retry-After"))

	s.Emulator.Script(Fault{Kind: FaultError})
	resp = control(t, c, s.URL, http.MethodDelete, "/emulator/faults", "")
	require.Equal(t, http.StatusNoContent, resp.status)
	assert.Equal(t, "ok", outcome(t, c, s.URL), "DELETE clears random faults and the script")

	resp = control(t, c, s.URL, http.MethodGet, "/emulator/stats", "")
	require.Equal(t, http.StatusOK, resp.status)
	assert.JSONEq(t, `{"calls":5}`, string(resp.raw))
}

func TestControlAPIRefusesBadBodies(t *testing.T) {
	s := startServer(t, Config{})
	c := newClient(t)
	before := Faults{ErrorRate: 0.5}
	s.Emulator.SetFaults(before)

	tests := []struct {
		name, body, wantErr string
	}{
		{"empty", "", "JSON object"},
		{"not JSON", "error=0.5", "JSON object"},
		{"null", "null", "JSON object"},
		{"an array", `[{"error_rate":0.1}]`, "JSON object"},
		{"unknown member", `{"error_rate":0.1,"errorrate":0.2}`, `unknown field "errorrate"`},
		{"rate as a string", `{"error_rate":"0.1"}`, "error_rate"},
		{"rate over 1", `{"reset_rate":1.5}`, "between 0 and 1"},
		{"negative rate", `{"stall_rate":-0.1}`, "between 0 and 1"},
		{"rates over 1 together", `{"error_rate":0.6,"garbage_rate":0.6}`, "sum to"},
		{"duration as a number", `{"latency":10}`, "latency"},
		{"duration without unit", `{"latency":"10"}`, "not a duration"},
		{"negative duration", `{"stall_for":"-1s"}`, "negative"},
		{"unknown error", `{"error_rate":0.1,"errors":["API_ERROR/NOPE"]}`, "not a TYPE/CODE pair"},
		{"two objects", `{"error_rate":0.1}{"error_rate":0.2}`, "data after"},
		{"truncated", `{"error_rate":0.1`, "unexpected EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := control(t, c, s.URL, http.MethodPut, "/emulator/faults", tt.body)
			assert.Equal(t, http.StatusBadRequest, resp.status, "body: %s", resp.raw)
			assert.Equal(t, "application/json", resp.header.Get("Content-Type"))
			var body map[string]string
			require.NoError(t, json.Unmarshal(resp.raw, &body), "body: %s", resp.raw)
			assert.Len(t, body, 1)
			assert.Contains(t, body["error"], tt.wantErr)
			assert.Equal(t, before, s.Emulator.Faults(), "a refused PUT changes nothing")
		})
	}
}

func TestControlAPIMethods(t *testing.T) {
	s := startServer(t, Config{})
	c := newClient(t)
	tests := []struct {
		method, path, allow string
	}{
		{http.MethodPost, "/emulator/faults", "GET, PUT, DELETE"},
		{http.MethodPatch, "/emulator/faults", "GET, PUT, DELETE"},
		{http.MethodPost, "/emulator/stats", "GET"},
		{http.MethodDelete, "/emulator/stats", "GET"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			resp := control(t, c, s.URL, tt.method, tt.path, "{}")
			assert.Equal(t, http.StatusMethodNotAllowed, resp.status)
			assert.Equal(t, tt.allow, resp.header.Get("Allow"))
			var body map[string]string
			require.NoError(t, json.Unmarshal(resp.raw, &body), "body: %s", resp.raw)
			assert.NotEmpty(t, body["error"])
		})
	}
}

func TestControlAPILeavesPlaidRoutingAlone(t *testing.T) {
	s := startServer(t, Config{})
	c := newClient(t)
	s.Emulator.SetFaults(Faults{ErrorRate: 1})

	for _, path := range []string{"/emulator", "/emulator/", "/emulator/fault", "/emulator/faults/x", "/emulator/stats/", "/credit/emulator/faults"} {
		t.Run(path, func(t *testing.T) {
			resp := send(t, c, s.URL, request{path: path, headers: defaultHeaders(), body: tokenBody("user-sandbox-example")})
			assertPlaidError(t, resp, *errNotFound)
		})
	}

	resp := control(t, c, s.URL, http.MethodGet, "//emulator//stats", "")
	assert.Equal(t, http.StatusOK, resp.status, "doubled slashes, as for Plaid's route")
	assert.Equal(t, "500 INTERNAL_SERVER_ERROR", outcome(t, c, s.URL), "the endpoint still routes, faults and all")
	assert.EqualValues(t, 1, s.Emulator.Calls())
}

func TestFaultsJSON(t *testing.T) {
	f := Faults{
		ErrorRate: 0.25, Errors: []ErrorSpec{mustErrorFor(t, "RATE_LIMIT_EXCEEDED", "CREDITS_EXHAUSTED")},
		ResetRate: 0.5, Latency: 1500 * time.Millisecond, StallFor: time.Minute,
	}
	raw, err := json.Marshal(f)
	require.NoError(t, err)
	assert.JSONEq(t, `{"error_rate":0.25,"errors":["RATE_LIMIT_EXCEEDED/CREDITS_EXHAUSTED"],"rate_limit_rate":0,
		"reset_rate":0.5,"stall_rate":0,"stall_for":"1m0s","garbage_rate":0,"latency":"1.5s","retry_after":"0s"}`, string(raw))

	var back Faults
	require.NoError(t, json.Unmarshal(raw, &back))
	assert.Equal(t, f, back)

	var partial Faults
	require.NoError(t, json.Unmarshal([]byte(`{"latency":"","garbage_rate":0.1}`), &partial))
	assert.Equal(t, Faults{GarbageRate: 0.1}, partial, "members left out or empty are zero")

	kept := Faults{ErrorRate: 0.1}
	require.Error(t, json.Unmarshal([]byte(`{"error_rate":2}`), &kept))
	assert.Equal(t, Faults{ErrorRate: 0.1}, kept, "a refused value leaves the target alone")
}

// TestControlUserNamesTheUserID: someone trying the webhook loop from a shell learns the
// user_id a watch needs, the one the emulator's webhooks about the user carry.
func TestControlUserNamesTheUserID(t *testing.T) {
	s := startServer(t, Config{})
	c := newClient(t)

	for _, token := range []string{"user-sandbox-example", "user-sandbox-example#1", "user-sandbox-sessions-3"} {
		resp := control(t, c, s.URL, http.MethodPost, "/emulator/user", `{"user_token":"`+token+`"}`)
		require.Equal(t, http.StatusOK, resp.status, "body: %s", resp.raw)
		assert.JSONEq(t, `{"user_id":"`+s.Emulator.UserID(token)+`"}`, string(resp.raw))
	}

	tests := []struct {
		name, method, body, wantErr string
		wantStatus                  int
	}{
		{"unknown token", http.MethodPost, `{"user_token":"nobody"}`, "INVALID_USER_TOKEN", http.StatusBadRequest},
		{"no token", http.MethodPost, `{}`, "user_token is required", http.StatusBadRequest},
		{"not JSON", http.MethodPost, `user_token=x`, "JSON object", http.StatusBadRequest},
		{"unknown member", http.MethodPost, `{"user_token":"user-sandbox-example","x":1}`, "unknown field", http.StatusBadRequest},
		{"trailing data", http.MethodPost, `{"user_token":"user-sandbox-example"}{}`, "data after", http.StatusBadRequest},
		{"GET", http.MethodGet, ``, "use POST", http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := control(t, c, s.URL, tt.method, "/emulator/user", tt.body)
			assert.Equal(t, tt.wantStatus, resp.status)
			assert.Contains(t, string(resp.raw), tt.wantErr)
		})
	}
}
