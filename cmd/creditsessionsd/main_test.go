package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestPlaidFromEnv(t *testing.T) {
	tests := []struct {
		name     string
		vars     map[string]string
		wantURL  string
		embedded bool
		wantErr  string
	}{
		{name: "nothing set: embedded emulator", vars: nil, embedded: true},
		{name: "sandbox", vars: map[string]string{"PLAID_ENV": "sandbox", "PLAID_CLIENT_ID": "id", "PLAID_SECRET": "s"},
			wantURL: "https://sandbox.plaid.com"},
		{name: "production", vars: map[string]string{"PLAID_ENV": "production", "PLAID_CLIENT_ID": "id", "PLAID_SECRET": "s"},
			wantURL: "https://production.plaid.com"},
		{name: "base URL wins over env", vars: map[string]string{"PLAID_ENV": "sandbox", "PLAID_BASE_URL": "http://127.0.0.1:9999", "PLAID_CLIENT_ID": "id", "PLAID_SECRET": "s"},
			wantURL: "http://127.0.0.1:9999"},
		{name: "unknown env", vars: map[string]string{"PLAID_ENV": "development", "PLAID_CLIENT_ID": "id", "PLAID_SECRET": "s"},
			wantErr: `PLAID_ENV: plaid: unknown environment "development"`},
		{name: "base URL that does not parse", vars: map[string]string{"PLAID_BASE_URL": "http://[::1", "PLAID_CLIENT_ID": "id", "PLAID_SECRET": "s"},
			wantErr: "PLAID_BASE_URL"},
		{name: "base URL without scheme", vars: map[string]string{"PLAID_BASE_URL": "sandbox.plaid.com", "PLAID_CLIENT_ID": "id", "PLAID_SECRET": "s"},
			wantErr: "scheme must be http or https"},
		{name: "secret without client id", vars: map[string]string{"PLAID_ENV": "sandbox", "PLAID_SECRET": "s"},
			wantErr: "half set"},
		{name: "client id without secret", vars: map[string]string{"PLAID_ENV": "sandbox", "PLAID_CLIENT_ID": "id"},
			wantErr: "half set"},
		{name: "credentials without an API", vars: map[string]string{"PLAID_CLIENT_ID": "id", "PLAID_SECRET": "s"},
			wantErr: "set PLAID_ENV or PLAID_BASE_URL"},
		{name: "API without credentials", vars: map[string]string{"PLAID_ENV": "sandbox"},
			wantErr: "PLAID_CLIENT_ID and PLAID_SECRET are required"},
		{name: "credentials from files", vars: map[string]string{"PLAID_ENV": "sandbox", "PLAID_CLIENT_ID_FILE": "/id", "PLAID_SECRET_FILE": "/s"},
			wantURL: "https://sandbox.plaid.com"},
		{name: "client id in the environment, secret in a file", vars: map[string]string{"PLAID_ENV": "sandbox", "PLAID_CLIENT_ID": "id", "PLAID_SECRET_FILE": "/s"},
			wantURL: "https://sandbox.plaid.com"},
		{name: "secret both ways", vars: map[string]string{"PLAID_ENV": "sandbox", "PLAID_CLIENT_ID": "id", "PLAID_SECRET": "s3cr3t", "PLAID_SECRET_FILE": "/s"},
			wantErr: "PLAID_SECRET and PLAID_SECRET_FILE are both set"},
		{name: "client id both ways", vars: map[string]string{"PLAID_ENV": "sandbox", "PLAID_CLIENT_ID": "id", "PLAID_CLIENT_ID_FILE": "/id", "PLAID_SECRET": "s"},
			wantErr: "PLAID_CLIENT_ID and PLAID_CLIENT_ID_FILE are both set"},
		{name: "secret file without client id", vars: map[string]string{"PLAID_ENV": "sandbox", "PLAID_SECRET_FILE": "/s"},
			wantErr: "half set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := plaidFromEnv(env(tt.vars), "service")
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				if s := tt.vars["PLAID_SECRET"]; s != "" {
					assert.NotContains(t, err.Error(), "="+s, "the secret never reaches an error")
				}
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.embedded, cfg.Embedded())
			assert.Equal(t, tt.wantURL, cfg.BaseURL)
		})
	}
}

// lockedBuffer is a bytes.Buffer that run's logger and the test can share. It closes
// ready once a write contains readyMark.
type lockedBuffer struct {
	mu        sync.Mutex
	b         bytes.Buffer
	readyMark string
	ready     chan struct{}
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ready != nil && bytes.Contains(p, []byte(l.readyMark)) {
		close(l.ready)
		l.ready = nil
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestRunOnTheEmbeddedEmulatorSaysSoAndStopsCleanly(t *testing.T) {
	ready := make(chan struct{})
	out := lockedBuffer{readyMark: `"msg":"serving"`, ready: ready}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-grpc-addr", "127.0.0.1:0", "-http-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0", "-log-format", "json"}, env(nil), &out)
	}()
	// The banner is printed before serving starts; wait for the "serving" record.
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("run ended before serving: %v\n%s", err, out.String())
	}
	cancel()
	require.NoError(t, <-done)

	logs := out.String()
	first := strings.SplitN(logs, "\n", 2)[0]
	assert.Contains(t, first, "embedded Plaid emulator", "the first log line says where calls go")
	assert.Regexp(t, regexp.MustCompile(`grpcurl -plaintext -d '\{"user_token":"user-sandbox-example"\}' 127\.0\.0\.1:\d+ plaid\.credit\.v1\.CreditService/CreditSessionsGet`), logs)
	assert.Regexp(t, regexp.MustCompile(`curl -s -H 'Content-Type: application/json' -d '\{"user_token":"user-sandbox-example"\}' http://127\.0\.0\.1:\d+/credit/sessions/get`), logs)
	assert.Contains(t, logs, `"msg":"stopped"`)
}

func TestRunRefusesToBeExposedByAccident(t *testing.T) {
	for _, addrs := range [][]string{
		{"-grpc-addr", "0.0.0.0:0", "-http-addr", "127.0.0.1:0"},
		{"-grpc-addr", "127.0.0.1:0", "-http-addr", ":0"},
		{"-grpc-addr", "example.internal:0", "-http-addr", "127.0.0.1:0"},
	} {
		t.Run(strings.Join(addrs, " "), func(t *testing.T) {
			var out lockedBuffer
			err := run(context.Background(), append(addrs, "-admin-addr", "127.0.0.1:0"), env(nil), &out)
			require.Error(t, err)
			for _, flag := range []string{"-tls-cert", "-tls-key", "-client-ca", "-jwt-jwks", "-allow-insecure"} {
				assert.Contains(t, err.Error(), flag, "the refusal names the flags that fix it")
			}
		})
	}
}

func TestRunRejectsBadInvocations(t *testing.T) {
	for name, args := range map[string][]string{
		"positional argument": {"PLAID_SECRET=oops"},
		"unknown flag":        {"-nope"},
		"bad log format":      {"-log-format", "xml"},
		"no attempts":         {"-retry-max-attempts", "0"},
		"too many attempts":   {"-retry-max-attempts", "64"},
		"no isolation":        {"-isolate-for", "0s"},
		"a proxy not a CIDR":  {"-webhook-trusted-proxies", "10.0.0.0/8,ingress"},
	} {
		t.Run(name, func(t *testing.T) {
			var out lockedBuffer
			err := run(context.Background(), args, env(nil), &out)
			require.Error(t, err)
			assert.NotContains(t, err.Error(), "oops", "argv content is not echoed back")
		})
	}
}

func TestWebhookTrustedProxiesTakesCIDRsAndAddresses(t *testing.T) {
	var p prefixList
	require.NoError(t, p.Set(" 10.0.0.0/8, 192.168.1.7 ,fd00::1/64,"))
	assert.Equal(t, "10.0.0.0/8,192.168.1.7/32,fd00::/64", p.String())
	require.NoError(t, p.Set(""))
	assert.Empty(t, p)
}
