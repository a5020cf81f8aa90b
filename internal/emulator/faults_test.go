package emulator

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// callEndpoint asks for the example user with the default credentials, leaving the
// outcome, transport error included, to the test.
func callEndpoint(t *testing.T, c *http.Client, baseURL string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, baseURL+"/credit/sessions/get",
		strings.NewReader(tokenBody("user-sandbox-example")))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range defaultHeaders() {
		req.Header.Set(k, v)
	}
	return c.Do(req)
}

// outcome is what one call to the endpoint came to, in a word, for comparing sequences.
func outcome(t *testing.T, c *http.Client, baseURL string) string {
	t.Helper()
	resp, err := callEndpoint(t, c, baseURL)
	if err != nil {
		return "transport error"
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	switch {
	case err != nil:
		return "body cut"
	case resp.StatusCode == http.StatusOK && !json.Valid(raw):
		return "garbage"
	case resp.StatusCode == http.StatusOK:
		return "ok"
	default:
		var body struct {
			ErrorCode string `json:"error_code"`
		}
		require.NoError(t, json.Unmarshal(raw, &body), "status %d, body: %s", resp.StatusCode, raw)
		return resp.Status[:3] + " " + body.ErrorCode
	}
}

// startWatched starts an emulator whose handler reports on the returned channel every
// time ServeHTTP returns, so a test can tell that no handler is left running.
func startWatched(t *testing.T, cfg Config) (*Server, <-chan struct{}) {
	t.Helper()
	e := New(cfg)
	returned := make(chan struct{}, 64)
	s, err := start("127.0.0.1:0", e, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { returned <- struct{}{} }()
		e.ServeHTTP(w, r)
	}))
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, s.Close()) })
	return s, returned
}

// handlerReturns fails the test unless a handler returns within a few seconds, far less
// than any stall or delay the tests ask for.
func handlerReturns(t *testing.T, returned <-chan struct{}) {
	t.Helper()
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler is still running")
	}
}

func mustErrorFor(t *testing.T, errorType, errorCode string) ErrorSpec {
	t.Helper()
	s, ok := ErrorFor(errorType, errorCode)
	require.True(t, ok, "%s/%s", errorType, errorCode)
	return s
}

func TestErrorFor(t *testing.T) {
	s, ok := ErrorFor("API_ERROR", "PLANNED_MAINTENANCE")
	require.True(t, ok)
	assert.Equal(t, ErrorSpec{Type: "API_ERROR", Code: "PLANNED_MAINTENANCE", HTTPStatus: 503,
		Message: "the Plaid API is temporarily unavailable due to planned maintenance"}, s)

	for _, pair := range [][2]string{{"API_ERROR", "NOPE"}, {"NOPE", "INTERNAL_SERVER_ERROR"}, {"", ""}} {
		_, ok := ErrorFor(pair[0], pair[1])
		assert.False(t, ok, "%s/%s", pair[0], pair[1])
	}
}

func TestFaultKindString(t *testing.T) {
	assert.Equal(t, "none", FaultNone.String())
	assert.Equal(t, "latency", FaultLatency.String())
	assert.Equal(t, "error", FaultError.String())
	assert.Equal(t, "reset", FaultReset.String())
	assert.Equal(t, "stall", FaultStall.String())
	assert.Equal(t, "garbage", FaultGarbage.String())
	assert.Equal(t, "FaultKind(42)", FaultKind(42).String())
}

func TestScriptedAnswers(t *testing.T) {
	s := startServer(t, Config{})
	c := newClient(t)
	rateLimit := mustErrorFor(t, "RATE_LIMIT_EXCEEDED", "RATE_LIMIT")
	internal := mustErrorFor(t, "API_ERROR", "INTERNAL_SERVER_ERROR")
	maintenance := mustErrorFor(t, "API_ERROR", "PLANNED_MAINTENANCE")

	tests := []struct {
		name       string
		fault      Fault
		want       *ErrorSpec // nil: 200
		retryAfter string     // "" means no header
	}{
		{name: "error with Retry-After rounded up", fault: Fault{Kind: FaultError, Error: rateLimit, RetryAfter: 1500 * time.Millisecond}, want: &rateLimit, retryAfter: "2"},
		{name: "Retry-After of whole seconds", fault: Fault{Kind: FaultError, Error: maintenance, RetryAfter: 3 * time.Second}, want: &maintenance, retryAfter: "3"},
		{name: "Retry-After under a second", fault: Fault{Kind: FaultError, Error: rateLimit, RetryAfter: time.Millisecond}, want: &rateLimit, retryAfter: "1"},
		{name: "error without Retry-After", fault: Fault{Kind: FaultError, Error: maintenance}, want: &maintenance},
		{name: "zero error is an internal server error", fault: Fault{Kind: FaultError}, want: &internal},
		{name: "type and code alone", fault: Fault{Kind: FaultError, Error: ErrorSpec{Type: "API_ERROR", Code: "PLANNED_MAINTENANCE"}}, want: &maintenance},
		{name: "an error Plaid might add", fault: Fault{Kind: FaultError, Error: ErrorSpec{Type: "API_ERROR", Code: "GATEWAY_TIMEOUT", HTTPStatus: 504, Message: "upstream timed out"}},
			want: &ErrorSpec{Type: "API_ERROR", Code: "GATEWAY_TIMEOUT", HTTPStatus: 504, Message: "upstream timed out"}},
		{name: "scripted none answers normally", fault: Fault{Kind: FaultNone}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.Emulator.Script(tt.fault)
			resp := send(t, c, s.URL, request{headers: defaultHeaders(), body: tokenBody("user-sandbox-example")})
			if tt.want != nil {
				assertPlaidError(t, resp, *tt.want)
			} else {
				assert.Equal(t, http.StatusOK, resp.status)
				assert.Contains(t, resp.object(t), "sessions")
			}
			assert.Equal(t, tt.retryAfter, resp.header.Get("Retry-After"))

			after := send(t, c, s.URL, request{headers: defaultHeaders(), body: tokenBody("user-sandbox-example")})
			assert.Equal(t, http.StatusOK, after.status, "one scripted fault, one call")
		})
	}
}

func TestScriptedGarbage(t *testing.T) {
	s := startServer(t, Config{})
	c := newClient(t)
	s.Emulator.Script(Fault{Kind: FaultGarbage})

	resp := send(t, c, s.URL, request{headers: defaultHeaders(), body: tokenBody("user-sandbox-example")})
	assert.Equal(t, http.StatusOK, resp.status)
	assert.Equal(t, contentType, resp.header.Get("Content-Type"))
	assert.NotEmpty(t, resp.raw)
	assert.False(t, json.Valid(resp.raw), "body: %s", resp.raw)
}

func TestScriptedReset(t *testing.T) {
	s := startServer(t, Config{})
	c := newClient(t)
	s.Emulator.Script(Fault{Kind: FaultReset})

	resp, err := callEndpoint(t, c, s.URL)
	if resp != nil {
		resp.Body.Close()
	}
	require.Error(t, err, "a reset is no HTTP answer")
	assert.Nil(t, resp)
	assert.ErrorIs(t, err, syscall.ECONNRESET, "SO_LINGER 0 makes the close a reset, not an EOF")

	assert.Equal(t, "ok", outcome(t, c, s.URL), "the next call is answered")
	assert.EqualValues(t, 2, s.Emulator.Calls())
}

func TestScriptedStall(t *testing.T) {
	t.Run("the body is cut short when Delay passes", func(t *testing.T) {
		s, returned := startWatched(t, Config{})
		c := newClient(t)
		s.Emulator.Script(Fault{Kind: FaultStall, Delay: 50 * time.Millisecond})

		resp, err := callEndpoint(t, c, s.URL)
		require.NoError(t, err, "the headers arrive")
		defer resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, contentType, resp.Header.Get("Content-Type"))
		require.Positive(t, resp.ContentLength, "a Content-Length for the whole body")

		got, err := io.ReadAll(resp.Body)
		assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
		assert.Len(t, got, int(resp.ContentLength/2), "about half the body")
		assert.True(t, strings.HasPrefix(string(got), "{"), "the start of the normal answer: %.40s", got)
		handlerReturns(t, returned)

		assert.Equal(t, "ok", outcome(t, c, s.URL), "the next call is answered")
	})

	t.Run("a client timeout ends a stall without limit", func(t *testing.T) {
		s, returned := startWatched(t, Config{})
		c := newClient(t)
		c.Timeout = 300 * time.Millisecond
		s.Emulator.Script(Fault{Kind: FaultStall}) // no Delay: until the client goes away

		start := time.Now()
		resp, err := callEndpoint(t, c, s.URL)
		require.NoError(t, err, "the headers arrive")
		defer resp.Body.Close()
		_, err = io.ReadAll(resp.Body)
		require.Error(t, err)
		assert.GreaterOrEqual(t, time.Since(start), c.Timeout, "the stall lasted until the client gave up")
		handlerReturns(t, returned)

		closing := time.Now()
		require.NoError(t, s.Close(), "nothing left in flight")
		assert.Less(t, time.Since(closing), shutdownTimeout, "Close did not have to wait out a stalled handler")
	})

	t.Run("Close ends a stall at once", func(t *testing.T) {
		s, returned := startWatched(t, Config{})
		c := newClient(t) // its 30 s timeout is far beyond the test's patience
		s.Emulator.Script(Fault{Kind: FaultStall})

		resp, err := callEndpoint(t, c, s.URL)
		require.NoError(t, err, "the headers arrive")
		defer resp.Body.Close()
		read := make(chan error, 1)
		go func() {
			_, err := io.ReadAll(resp.Body)
			read <- err
		}()

		closing := time.Now()
		require.NoError(t, s.Close(), "the stalled handler ended in time")
		assert.Less(t, time.Since(closing), shutdownTimeout, "Close did not wait out its grace period")
		handlerReturns(t, returned)
		select {
		case err := <-read:
			assert.ErrorIs(t, err, io.ErrUnexpectedEOF, "the client sees the body cut short")
		case <-time.After(5 * time.Second):
			t.Fatal("the client is still reading")
		}
	})
}

func TestScriptedLatency(t *testing.T) {
	t.Run("Delay before the normal answer", func(t *testing.T) {
		s := startServer(t, Config{})
		c := newClient(t)
		const delay = 150 * time.Millisecond
		s.Emulator.Script(Fault{Kind: FaultLatency, Delay: delay})

		start := time.Now()
		resp := send(t, c, s.URL, request{headers: defaultHeaders(), body: tokenBody("user-sandbox-example")})
		assert.GreaterOrEqual(t, time.Since(start), delay)
		assert.Equal(t, http.StatusOK, resp.status)
		assert.Contains(t, resp.object(t), "sessions")
	})

	t.Run("Faults.Latency comes on top of a scripted fault", func(t *testing.T) {
		s := startServer(t, Config{})
		c := newClient(t)
		const latency, delay = 100 * time.Millisecond, 50 * time.Millisecond
		s.Emulator.SetFaults(Faults{Latency: latency})
		s.Emulator.Script(Fault{Kind: FaultLatency, Delay: delay}, Fault{Kind: FaultError})

		start := time.Now()
		assert.Equal(t, "ok", outcome(t, c, s.URL))
		assert.GreaterOrEqual(t, time.Since(start), latency+delay)

		start = time.Now()
		assert.Equal(t, "500 INTERNAL_SERVER_ERROR", outcome(t, c, s.URL))
		assert.GreaterOrEqual(t, time.Since(start), latency)
	})

	t.Run("the wait ends when the client goes away", func(t *testing.T) {
		s, returned := startWatched(t, Config{})
		c := newClient(t)
		c.Timeout = 100 * time.Millisecond
		s.Emulator.Script(Fault{Kind: FaultLatency, Delay: time.Hour})

		resp, err := callEndpoint(t, c, s.URL)
		if resp != nil {
			resp.Body.Close()
		}
		require.Error(t, err)
		handlerReturns(t, returned)
	})
}

func TestScriptOrder(t *testing.T) {
	t.Run("in order, one per call, then normal answers", func(t *testing.T) {
		s := startServer(t, Config{})
		c := newClient(t)
		s.Emulator.Script(
			Fault{Kind: FaultError, Error: mustErrorFor(t, "API_ERROR", "PLANNED_MAINTENANCE")},
			Fault{Kind: FaultGarbage},
		)
		s.Emulator.Script(Fault{Kind: FaultNone}, Fault{Kind: FaultError}) // appended
		var got []string
		for range 6 {
			got = append(got, outcome(t, c, s.URL))
		}
		assert.Equal(t, []string{"503 PLANNED_MAINTENANCE", "garbage", "ok", "500 INTERNAL_SERVER_ERROR", "ok", "ok"}, got)
		assert.EqualValues(t, 6, s.Emulator.Calls())
	})

	t.Run("the script comes before random faults", func(t *testing.T) {
		s := startServer(t, Config{})
		c := newClient(t)
		s.Emulator.SetFaults(Faults{ErrorRate: 1})
		s.Emulator.Script(Fault{Kind: FaultNone}, Fault{Kind: FaultGarbage})
		var got []string
		for range 4 {
			got = append(got, outcome(t, c, s.URL))
		}
		assert.Equal(t, []string{"ok", "garbage", "500 INTERNAL_SERVER_ERROR", "500 INTERNAL_SERVER_ERROR"}, got)
	})

	t.Run("requests Plaid would not route leave the script alone", func(t *testing.T) {
		s := startServer(t, Config{})
		c := newClient(t)
		s.Emulator.Script(Fault{Kind: FaultError})
		s.Emulator.SetFaults(Faults{ErrorRate: 1, Latency: time.Hour}) // an hour's wait would show

		assertPlaidError(t, send(t, c, s.URL, request{method: http.MethodGet, headers: defaultHeaders()}), *errNotFound)
		assertPlaidError(t, send(t, c, s.URL, request{path: "/credit/sessions/list", headers: defaultHeaders(), body: tokenBody("user-sandbox-example")}), *errNotFound)
		assertPlaidError(t, send(t, c, s.URL, request{path: "/emulator/other", headers: defaultHeaders(), body: "{}"}), *errNotFound)
		assert.EqualValues(t, 1, s.Emulator.Calls(), "the GET to the endpoint is counted, as before")

		s.Emulator.SetFaults(Faults{})
		assert.Equal(t, "500 INTERNAL_SERVER_ERROR", outcome(t, c, s.URL), "the scripted fault is still there")
		assert.Equal(t, "ok", outcome(t, c, s.URL))
	})

	t.Run("ClearFaults empties the script", func(t *testing.T) {
		s := startServer(t, Config{})
		c := newClient(t)
		s.Emulator.SetFaults(Faults{GarbageRate: 1})
		s.Emulator.Script(Fault{Kind: FaultError}, Fault{Kind: FaultError})
		s.Emulator.ClearFaults()
		assert.Equal(t, "ok", outcome(t, c, s.URL))
		assert.Equal(t, Faults{}, s.Emulator.Faults())
	})
}

func TestScriptPanicsOnNonsense(t *testing.T) {
	e := New(Config{})
	assert.Panics(t, func() { e.Script(Fault{Kind: FaultKind(99)}) })
	assert.Panics(t, func() { e.Script(Fault{Kind: FaultLatency, Delay: -time.Second}) })
	assert.Panics(t, func() { e.Script(Fault{Kind: FaultError, RetryAfter: -time.Second}) })
	assert.Empty(t, e.faults.script, "nothing of a refused script is queued")
}

func TestRandomErrorRate(t *testing.T) {
	s := startServer(t, Config{Seed: 42})
	c := newClient(t)
	s.Emulator.SetFaults(Faults{ErrorRate: 0.3})

	const calls = 2000
	errored := 0
	for range calls {
		switch got := outcome(t, c, s.URL); got {
		case "500 INTERNAL_SERVER_ERROR":
			errored++
		case "ok":
		default:
			t.Fatalf("unexpected outcome %q", got)
		}
	}
	assert.InDelta(t, 0.3, float64(errored)/calls, 0.05, "%d errors in %d calls", errored, calls)
	assert.EqualValues(t, calls, s.Emulator.Calls())
}

func TestRandomErrorsAreChosenUniformly(t *testing.T) {
	s := startServer(t, Config{Seed: 7})
	c := newClient(t)
	s.Emulator.SetFaults(Faults{ErrorRate: 1, Errors: []ErrorSpec{
		mustErrorFor(t, "API_ERROR", "INTERNAL_SERVER_ERROR"),
		mustErrorFor(t, "API_ERROR", "PLANNED_MAINTENANCE"),
		mustErrorFor(t, "INVALID_INPUT", "INVALID_API_KEYS"),
	}})
	const calls = 600
	seen := map[string]int{}
	for range calls {
		seen[outcome(t, c, s.URL)]++
	}
	assert.Len(t, seen, 3, "%v", seen)
	for _, key := range []string{"500 INTERNAL_SERVER_ERROR", "503 PLANNED_MAINTENANCE", "400 INVALID_API_KEYS"} {
		assert.InDelta(t, 1.0/3, float64(seen[key])/calls, 0.08, "%s: %v", key, seen)
	}
}

func TestSeedRepeatsARun(t *testing.T) {
	faults := Faults{ErrorRate: 0.2, RateLimitRate: 0.2, GarbageRate: 0.2}
	run := func(seed uint64) []string {
		s := startServer(t, Config{Seed: seed})
		c := newClient(t)
		s.Emulator.SetFaults(faults)
		assert.Equal(t, seed, s.Emulator.Seed())
		got := make([]string, 100)
		for i := range got {
			got[i] = outcome(t, c, s.URL)
		}
		return got
	}
	first := run(1234)
	assert.Equal(t, first, run(1234), "the same seed, the same faults")
	assert.NotEqual(t, first, run(4321), "another seed, other faults")

	assert.NotZero(t, New(Config{}).Seed(), "seed 0 picks a seed, and tells it")
}

func TestRandomRateOfOne(t *testing.T) {
	tests := []struct {
		name   string
		faults Faults
		check  func(t *testing.T, resp *http.Response, err error)
	}{
		{
			name:   "error",
			faults: Faults{ErrorRate: 1, Errors: []ErrorSpec{mustErrorFor(t, "API_ERROR", "PLANNED_MAINTENANCE")}},
			check: func(t *testing.T, resp *http.Response, err error) {
				require.NoError(t, err)
				assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
				assert.Empty(t, resp.Header.Get("Retry-After"))
			},
		},
		{
			name:   "rate limit, with Retry-After",
			faults: Faults{RateLimitRate: 1, RetryAfter: 2 * time.Second},
			check: func(t *testing.T, resp *http.Response, err error) {
				require.NoError(t, err)
				assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
				assert.Equal(t, "2", resp.Header.Get("Retry-After"))
				var body struct {
					ErrorType string `json:"error_type"`
					ErrorCode string `json:"error_code"`
				}
				require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
				assert.Equal(t, "RATE_LIMIT_EXCEEDED", body.ErrorType)
				assert.Equal(t, "RATE_LIMIT", body.ErrorCode)
			},
		},
		{
			name:   "reset",
			faults: Faults{ResetRate: 1},
			check: func(t *testing.T, resp *http.Response, err error) {
				assert.ErrorIs(t, err, syscall.ECONNRESET)
			},
		},
		{
			name:   "stall",
			faults: Faults{StallRate: 1, StallFor: 20 * time.Millisecond},
			check: func(t *testing.T, resp *http.Response, err error) {
				require.NoError(t, err)
				assert.Equal(t, http.StatusOK, resp.StatusCode)
				_, err = io.ReadAll(resp.Body)
				assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
			},
		},
		{
			name:   "garbage",
			faults: Faults{GarbageRate: 1},
			check: func(t *testing.T, resp *http.Response, err error) {
				require.NoError(t, err)
				assert.Equal(t, http.StatusOK, resp.StatusCode)
				raw, err := io.ReadAll(resp.Body)
				require.NoError(t, err)
				assert.False(t, json.Valid(raw), "body: %s", raw)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, Config{})
			c := newClient(t)
			s.Emulator.SetFaults(tt.faults)
			for range 5 {
				resp, err := callEndpoint(t, c, s.URL)
				tt.check(t, resp, err)
				if resp != nil {
					resp.Body.Close()
				}
			}
			s.Emulator.ClearFaults()
			assert.Equal(t, "ok", outcome(t, c, s.URL))
		})
	}
}

func TestParseFaults(t *testing.T) {
	internal := mustErrorFor(t, "API_ERROR", "INTERNAL_SERVER_ERROR")
	maintenance := mustErrorFor(t, "API_ERROR", "PLANNED_MAINTENANCE")
	good := []struct {
		spec string
		want Faults
	}{
		{"", Faults{}},
		{"none", Faults{}},
		{"  ", Faults{}},
		{
			"error=0.2,ratelimit=0.05,reset=0.01,stall=0.01,garbage=0.01,latency=20ms,retry-after=1s,errors=API_ERROR/INTERNAL_SERVER_ERROR+API_ERROR/PLANNED_MAINTENANCE",
			Faults{ErrorRate: 0.2, RateLimitRate: 0.05, ResetRate: 0.01, StallRate: 0.01, GarbageRate: 0.01,
				Latency: 20 * time.Millisecond, RetryAfter: time.Second, Errors: []ErrorSpec{internal, maintenance}},
		},
		{"error=1", Faults{ErrorRate: 1}},
		{"stall=0.5,stall-for=2s", Faults{StallRate: 0.5, StallFor: 2 * time.Second}},
		{" error = 0.25 , latency = 1m ", Faults{ErrorRate: 0.25, Latency: time.Minute}},
		{"error=0.1,ratelimit=0.2,reset=0.7", Faults{ErrorRate: 0.1, RateLimitRate: 0.2, ResetRate: 0.7}}, // sums to 1.0000000000000002
		{"error=0,latency=0s", Faults{}},
		{"errors=API_ERROR/PLANNED_MAINTENANCE", Faults{Errors: []ErrorSpec{maintenance}}},
	}
	for _, tt := range good {
		t.Run("good "+tt.spec, func(t *testing.T) {
			got, err := ParseFaults(tt.spec)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)

			again, err := ParseFaults(got.String())
			require.NoError(t, err, "String gives ParseFaults syntax: %s", got.String())
			assert.Equal(t, got, again)
		})
	}

	bad := []struct {
		spec, wantErr string
	}{
		{"error", "not key=value"},
		{"=0.1", "not key=value"},
		{"error=0.1,", "not key=value"},
		{"error=lots", "not a number"},
		{"error=1.5", "between 0 and 1"},
		{"error=-0.1", "between 0 and 1"},
		{"error=NaN", "between 0 and 1"},
		{"error=0.6,reset=0.6", "sum to"},
		{"latency=fast", "not a duration"},
		{"latency=-1s", "negative"},
		{"retry-after=1", "not a duration"},
		{"errors=NOPE/NOPE", "not a TYPE/CODE pair"},
		{"errors=API_ERROR", "not a TYPE/CODE pair"},
		{"errors=API_ERROR/INTERNAL_SERVER_ERROR+", "not a TYPE/CODE pair"},
		{"bogus=1", `unknown key "bogus"`},
		{"error=0.1,error=0.2", "given twice"},
	}
	for _, tt := range bad {
		t.Run("bad "+tt.spec, func(t *testing.T) {
			got, err := ParseFaults(tt.spec)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
			assert.Equal(t, Faults{}, got)
		})
	}
}

func TestFaultsString(t *testing.T) {
	assert.Equal(t, "none", Faults{}.String())
	assert.Equal(t, "error=0.2,errors=API_ERROR/PLANNED_MAINTENANCE,ratelimit=0.05,stall=0.1,stall-for=2s,latency=20ms,retry-after=1s",
		Faults{ErrorRate: 0.2, Errors: []ErrorSpec{mustErrorFor(t, "API_ERROR", "PLANNED_MAINTENANCE")}, RateLimitRate: 0.05,
			StallRate: 0.1, StallFor: 2 * time.Second, Latency: 20 * time.Millisecond, RetryAfter: time.Second}.String())
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		faults Faults
		ok     bool
	}{
		{"zero", Faults{}, true},
		{"every rate at once, summing to 1", Faults{ErrorRate: 0.2, RateLimitRate: 0.2, ResetRate: 0.2, StallRate: 0.2, GarbageRate: 0.2}, true},
		{"a custom error", Faults{ErrorRate: 1, Errors: []ErrorSpec{{Type: "API_ERROR", Code: "X", HTTPStatus: 502}}}, true},
		{"rate over 1", Faults{GarbageRate: 1.01}, false},
		{"negative rate", Faults{StallRate: -0.5}, false},
		{"rates over 1 together", Faults{ResetRate: 0.5, GarbageRate: 0.51}, false},
		{"negative latency", Faults{Latency: -time.Millisecond}, false},
		{"negative stall", Faults{StallFor: -time.Millisecond}, false},
		{"error without status", Faults{Errors: []ErrorSpec{{Type: "API_ERROR", Code: "X"}}}, false},
		{"error with a success status", Faults{Errors: []ErrorSpec{{Type: "API_ERROR", Code: "X", HTTPStatus: 200}}}, false},
		{"error without code", Faults{Errors: []ErrorSpec{{Type: "API_ERROR", HTTPStatus: 500}}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.faults.Validate()
			e := New(Config{})
			if tt.ok {
				assert.NoError(t, err)
				assert.NotPanics(t, func() { e.SetFaults(tt.faults) })
			} else {
				assert.Error(t, err)
				assert.Panics(t, func() { e.SetFaults(tt.faults) })
				assert.Equal(t, Faults{}, e.Faults(), "a refused Faults is not set")
			}
		})
	}
}

func TestFaultsAreCopied(t *testing.T) {
	e := New(Config{})
	errs := []ErrorSpec{mustErrorFor(t, "API_ERROR", "PLANNED_MAINTENANCE")}
	e.SetFaults(Faults{ErrorRate: 1, Errors: errs})
	errs[0].Code = "CHANGED"
	got := e.Faults()
	assert.Equal(t, "PLANNED_MAINTENANCE", got.Errors[0].Code, "SetFaults keeps its own copy")
	got.Errors[0].Code = "CHANGED"
	assert.Equal(t, "PLANNED_MAINTENANCE", e.Faults().Errors[0].Code, "Faults returns a copy")
}

func TestFaultsAreLogged(t *testing.T) {
	var logs syncBuffer
	s, returned := startWatched(t, Config{Logger: newTextLogger(&logs)})
	c := newClient(t)
	s.Emulator.Script(Fault{Kind: FaultError}, Fault{Kind: FaultReset})
	assert.Equal(t, "500 INTERNAL_SERVER_ERROR", outcome(t, c, s.URL))
	assert.Equal(t, "transport error", outcome(t, c, s.URL))
	assert.Equal(t, "ok", outcome(t, c, s.URL))
	for range 3 {
		// A reset reaches the client before its handler logs: wait for every handler.
		handlerReturns(t, returned)
	}

	out := logs.String()
	assert.Equal(t, 3, strings.Count(out, "plaid emulator request"), out)
	assert.Contains(t, out, "status=500")
	assert.Contains(t, out, "fault=error")
	assert.Contains(t, out, "status=0")
	assert.Contains(t, out, "fault=reset")
	assert.Equal(t, 2, strings.Count(out, "fault="), "a normal answer has no fault: %s", out)
}

// TestFaultsUnderConcurrency is for -race: calls in many goroutines while faults change.
func TestFaultsUnderConcurrency(t *testing.T) {
	s := startServer(t, Config{})
	c := newClient(t)
	settings := []Faults{
		{ErrorRate: 0.3, RateLimitRate: 0.2, GarbageRate: 0.2, RetryAfter: time.Second},
		{ResetRate: 0.3, StallRate: 0.2, StallFor: time.Millisecond, Latency: time.Millisecond},
		{ErrorRate: 0.5, Errors: []ErrorSpec{mustErrorFor(t, "API_ERROR", "PLANNED_MAINTENANCE")}},
		{},
	}

	const workers, callsEach = 16, 25
	var (
		mu       sync.Mutex
		outcomes = map[string]int{}
		wg       sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			for range callsEach {
				got := outcome(t, c, s.URL)
				mu.Lock()
				outcomes[got]++
				mu.Unlock()
			}
		})
	}
	done := make(chan struct{})
	changer := make(chan struct{})
	go func() {
		defer close(changer)
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			s.Emulator.SetFaults(settings[i%len(settings)])
			s.Emulator.Script(Fault{Kind: FaultError}, Fault{Kind: FaultGarbage})
			_ = s.Emulator.Faults()
			if i%7 == 0 {
				s.Emulator.ClearFaults()
			}
		}
	}()
	wg.Wait()
	close(done)
	<-changer

	assert.EqualValues(t, workers*callsEach, s.Emulator.Calls())
	known := map[string]bool{
		"ok": true, "garbage": true, "transport error": true, "body cut": true,
		"500 INTERNAL_SERVER_ERROR": true, "503 PLANNED_MAINTENANCE": true, "429 RATE_LIMIT": true,
	}
	total := 0
	for got, n := range outcomes {
		assert.True(t, known[got], "unexpected outcome %q", got)
		total += n
	}
	assert.Equal(t, workers*callsEach, total)
	assert.Greater(t, len(outcomes), 2, "the faults did change: %v", outcomes)
}

// postToken asks for token with the default credentials.
func postToken(t *testing.T, baseURL, token string) (*http.Response, []byte, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, baseURL+"/credit/sessions/get",
		strings.NewReader(tokenBody(token)))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range defaultHeaders() {
		req.Header.Set(k, v)
	}
	c := &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp, raw, err
}

// One user's every call meets its fault; everybody else is served.
func TestUserFaultTokens(t *testing.T) {
	srv, err := Start("127.0.0.1:0", Config{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Close() })

	resp, raw, err := postToken(t, srv.URL, "user-sandbox-fault-garbage#1")
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.False(t, json.Valid(raw))

	resp, _, err = postToken(t, srv.URL, "user-sandbox-fault-html-502")
	require.NoError(t, err)
	assert.Equal(t, http.StatusBadGateway, resp.StatusCode)
	assert.Equal(t, "text/html", resp.Header.Get("Content-Type"))

	srv.Emulator.SetFaults(Faults{StallFor: 10 * time.Millisecond})
	_, _, err = postToken(t, srv.URL, "user-sandbox-fault-stall")
	require.Error(t, err, "the body is cut short")

	resp, _, err = postToken(t, srv.URL, "user-sandbox-example")
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode, "other users are served")
	assert.Equal(t, "html-502", FaultHTML502.String())
}

// The chunked variant of a user is the same answer without a Content-Length.
func TestChunkedTokens(t *testing.T) {
	srv, err := Start("127.0.0.1:0", Config{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Close() })
	plain, plainRaw, err := postToken(t, srv.URL, "user-sandbox-sessions-1000")
	require.NoError(t, err)
	chunked, chunkedRaw, err := postToken(t, srv.URL, ChunkedTokenPrefix+"sessions-1000#7")
	require.NoError(t, err)
	assert.EqualValues(t, len(plainRaw), plain.ContentLength)
	assert.EqualValues(t, -1, chunked.ContentLength)
	assert.Equal(t, []string{"chunked"}, chunked.TransferEncoding)
	assert.InDelta(t, len(plainRaw), len(chunkedRaw), 10, "the same answer, but for its request_id")
}
