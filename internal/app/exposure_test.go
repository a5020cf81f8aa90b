package app_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/app"
	"github.com/creditsessions/creditsessions/internal/emulator"
	"github.com/creditsessions/creditsessions/internal/plaid"
	"github.com/creditsessions/creditsessions/server"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
)

// What an error answer must never hold: addresses, host names, Go error chains, and
// bytes of the upstream's answer (the markers below are planted in them).
var (
	exposingPatterns = []*regexp.Regexp{
		regexp.MustCompile(`\b\d{1,3}(\.\d{1,3}){3}\b`),                       // an IPv4 address
		regexp.MustCompile(`(?i)\b(localhost|[a-z0-9-]+(\.[a-z0-9-]+)+):\d+`), // host:port
		regexp.MustCompile(`\[[0-9a-fA-F:]+\]`),                               // an IPv6 address
	}
	exposingWords = []string{
		"dial tcp", ": EOF", "connection refused", "connection reset", "broken pipe", "x509", "certificate",
		"tls:", "lookup", "no such host", ".invalid", "Post:", "credit sessions get", "upstream answered",
		"invalid JSON at offset", "malformed", "context deadline", "i/o timeout",
		"LEAKED", "<html", "Bad Gateway", "text/html", "emulator",
	}
)

// requireNothingExposed checks one error answer, everything in it as text.
func requireNothingExposed(t *testing.T, what, text string) {
	t.Helper()
	for _, re := range exposingPatterns {
		assert.False(t, re.MatchString(text), "%s shows %q: %s", what, re.FindString(text), text)
	}
	for _, w := range exposingWords {
		assert.NotContains(t, text, w, "%s", what)
	}
}

// exposureCall makes one failing call each way, checks both answers for anything
// exposing, and checks that the log line of each names the request id the caller got
// and, for an error that started here, the upstream detail the caller did not get.
func exposureCall(t *testing.T, s *service, deadline time.Duration, before func()) {
	t.Helper()
	token := "user-sandbox-example"

	before()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	_, err := s.grpc.CreditSessionsGet(ctx, &creditv1.CreditSessionsGetRequest{UserToken: token})
	cancel()
	require.Error(t, err)
	st := status.Convert(err)
	whole, merr := protojson.Marshal(st.Proto()) // the message and every detail
	require.NoError(t, merr)
	requireNothingExposed(t, "gRPC status", string(whole))
	var grpcID string
	var ours bool
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			grpcID, ours = info.GetMetadata()[server.MetaRequestID], info.GetDomain() == server.ServiceDomain
		}
	}
	require.NotEmpty(t, grpcID, "the caller gets a request id: %s", whole)
	if ours {
		assert.True(t, strings.HasPrefix(grpcID, server.RequestIDPrefix), grpcID)
		requireLogged(t, s, grpcID)
	}

	before()
	req, rerr := http.NewRequest(http.MethodPost, s.rest+"/credit/sessions/get", strings.NewReader(`{"user_token":"`+token+`"}`))
	require.NoError(t, rerr)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Grpc-Timeout", strconv.FormatInt(deadline.Milliseconds(), 10)+"m")
	resp, rerr := http.DefaultClient.Do(req)
	require.NoError(t, rerr)
	body, rerr := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, rerr)
	require.GreaterOrEqual(t, resp.StatusCode, 400)
	var headers strings.Builder
	for k, v := range resp.Header {
		headers.WriteString(k + ": " + strings.Join(v, ", ") + "\n")
	}
	requireNothingExposed(t, "REST headers", headers.String())
	requireNothingExposed(t, "REST body", string(body))
	var answer struct {
		RequestID string `json:"request_id"`
	}
	require.NoError(t, json.Unmarshal(body, &answer), "%s", body)
	if strings.HasPrefix(answer.RequestID, server.RequestIDPrefix) {
		requireLogged(t, s, answer.RequestID)
		assert.Empty(t, resp.Header.Get("Plaid-Request-Id"), "our own id is not Plaid's")
	}
}

// requireLogged finds the log line of the call that answered with request id id, and
// checks that it holds the detail.
func requireLogged(t *testing.T, s *service, id string) {
	t.Helper()
	var line map[string]any
	require.Eventually(t, func() bool { // the line is written as the call returns
		for raw := range strings.SplitSeq(s.logs.String(), "\n") {
			if strings.Contains(raw, id) {
				return json.Unmarshal([]byte(raw), &line) == nil
			}
		}
		return false
	}, 5*time.Second, 5*time.Millisecond, "no log line names request id %s", id)
	assert.Equal(t, id, line["request_id"])
	assert.NotEmpty(t, line["upstream_error"], "the detail the caller did not get: %v", line)
}

func TestErrorsDoNotExposeTheNetwork(t *testing.T) {
	t.Run("the emulator's faults", func(t *testing.T) {
		// The attempt's bound, not the caller's deadline, ends a slow answer: past its
		// deadline, a gRPC caller's own library answers before the service can.
		res := mappingOnly
		res.AttemptTimeout = 200 * time.Millisecond
		s := start(t, app.Config{Resilience: res})
		emu := s.app.Emulator()
		faults := map[string]emulator.Fault{
			"reset":                     {Kind: emulator.FaultReset},
			"stall":                     {Kind: emulator.FaultStall, Delay: 50 * time.Millisecond},
			"garbage":                   {Kind: emulator.FaultGarbage},
			"latency past the deadline": {Kind: emulator.FaultLatency, Delay: 5 * time.Second},
		}
		for _, spec := range emulator.Errors() {
			faults["Plaid's "+spec.Type+"/"+spec.Code] = emulator.Fault{Kind: emulator.FaultError, Error: spec, RetryAfter: time.Second}
		}
		for name, fault := range faults {
			t.Run(name, func(t *testing.T) {
				exposureCall(t, s, 3*time.Second, func() { emu.Script(fault) })
			})
		}
	})

	dead := listen(t)
	deadURL := "http://" + dead.Addr().String()
	require.NoError(t, dead.Close())
	upstreams := []struct {
		name     string
		upstream func(t *testing.T) string
		cfg      func(*app.Config)
	}{
		{name: "unreachable", upstream: func(*testing.T) string { return deadURL }},
		{name: "a host name that does not resolve", upstream: func(*testing.T) string { return "http://plaid-upstream.invalid:8443" }},
		{name: "HTML error page", upstream: func(t *testing.T) string {
			return startUpstream(t, &plaidCompatible{status: 502, contentType: "text/html", answer: "<html>LEAKED 10.9.8.7:3128</html>"})
		}},
		{name: "success that is not a response", upstream: func(t *testing.T) string {
			return startUpstream(t, &plaidCompatible{answer: `{"request_id":"r","sessions":"LEAKED public-sandbox-0000"}`})
		}},
		{name: "error body that is not Plaid's", upstream: func(t *testing.T) string {
			return startUpstream(t, &plaidCompatible{status: 500, answer: `{"message":"LEAKED upstream proxy.internal:3128"}`})
		}},
		{name: "oversized", upstream: func(t *testing.T) string {
			return startUpstream(t, &plaidCompatible{answer: `{"request_id":"LEAKED","sessions":[],"x":"` + strings.Repeat("LEAKED ", 1000) + `"}`})
		}, cfg: func(c *app.Config) { c.MaxResponseBytes = 1024 }},
		{name: "redirect", upstream: func(t *testing.T) string {
			return startUpstream(t, &plaidCompatible{status: 307, location: "http://10.1.2.3:8443/LEAKED"})
		}},
		{name: "TLS with a certificate nobody signed", upstream: func(t *testing.T) string {
			srv := httptest.NewTLSServer(&plaidCompatible{answer: `{"request_id":"r"}`})
			t.Cleanup(srv.Close)
			return srv.URL
		}},
		{name: "a response head that is not HTTP", upstream: func(t *testing.T) string {
			return rawUpstream(t, "HTTP/1.1 2OO LEAKED 10.9.8.7\r\n\r\n")
		}},
		{name: "an attempt that times out", upstream: func(t *testing.T) string {
			return startUpstream(t, &plaidCompatible{block: true, canceled: make(chan struct{})})
		}, cfg: func(c *app.Config) { c.Resilience.AttemptTimeout = 100 * time.Millisecond }},
	}
	for _, u := range upstreams {
		t.Run(u.name, func(t *testing.T) {
			cfg := app.Config{Resilience: mappingOnly, Plaid: app.PlaidConfig{
				BaseURL: u.upstream(t), Credentials: plaid.Credentials{ClientID: "id", Secret: "top-secret"},
			}}
			if u.cfg != nil {
				u.cfg(&cfg)
			}
			s := start(t, cfg)
			exposureCall(t, s, 3*time.Second, func() {})
		})
	}
}

// rawUpstream answers every connection with answer, whatever it was sent, and closes it.
func rawUpstream(t *testing.T, answer string) string {
	t.Helper()
	ln := listen(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				buf := make([]byte, 4096)
				_, _ = c.Read(buf)
				_, _ = io.WriteString(c, answer)
			}(c)
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); <-done })
	return "http://" + ln.Addr().String()
}
