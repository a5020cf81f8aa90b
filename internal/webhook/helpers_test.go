package webhook_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/creditsessions/creditsessions/internal/emulator"
	"github.com/creditsessions/creditsessions/internal/plaid"
	"github.com/creditsessions/creditsessions/internal/webhook"
)

// env is a webhook Handler on a real listener, verifying with keys the real Plaid client
// fetches from a real emulator.
type env struct {
	emu      *emulator.Emulator
	emuURL   string
	plaid    *plaid.Client
	url      string // the webhook URL: base + /webhooks/plaid
	base     string
	notified chan string
	registry *prometheus.Registry
	logs     *syncBuffer
	offset   atomic.Int64 // added to the handler's clock, in nanoseconds
	http     *http.Client
}

// newEnv starts an emulator and a Handler; change adjusts the Handler's options.
func newEnv(t *testing.T, change func(*webhook.Options)) *env {
	t.Helper()
	srv, err := emulator.Start("127.0.0.1:0", emulator.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, srv.Close()) })
	client, err := plaid.NewClient(plaid.Config{
		BaseURL:     srv.URL,
		Credentials: plaid.Credentials{ClientID: srv.Emulator.ClientID(), Secret: srv.Emulator.Secret()},
	})
	require.NoError(t, err)

	e := &env{emu: srv.Emulator, emuURL: srv.URL, plaid: client}
	e.serve(t, change)
	return e
}

// replica is another Handler, as on another replica: the same emulator (Plaid), its own
// caches, metrics and notifications.
func (e *env) replica(t *testing.T, change func(*webhook.Options)) *env {
	t.Helper()
	r := &env{emu: e.emu, emuURL: e.emuURL, plaid: e.plaid}
	r.serve(t, change)
	return r
}

// serve starts e's Handler on a real listener.
func (e *env) serve(t *testing.T, change func(*webhook.Options)) {
	t.Helper()
	e.notified = make(chan string, 100)
	e.registry = prometheus.NewRegistry()
	e.logs = &syncBuffer{}
	opts := webhook.Options{
		Keys: e.plaid,
		Notifier: webhook.NotifierFunc(func(ctx context.Context, userID string) {
			select {
			case e.notified <- userID:
			default:
				t.Error("more notifications than the test expects")
			}
		}),
		Logger:  slog.New(slog.NewJSONHandler(e.logs, nil)),
		Metrics: e.registry,
		Now:     func() time.Time { return time.Now().Add(time.Duration(e.offset.Load())) },
	}
	if change != nil {
		change(&opts)
	}
	h, err := webhook.NewHandler(opts)
	require.NoError(t, err)
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	e.base = ts.URL
	e.url = ts.URL + webhook.Path
	e.http = ts.Client()
	e.http.Timeout = 30 * time.Second
}

// post sends body with the Plaid-Verification header token ("" sends none) and returns
// the status.
func (e *env) post(t *testing.T, body []byte, token string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, e.url, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Plaid-Verification", token)
	}
	resp, err := e.http.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// gauge is the value of the unlabelled counter or gauge name, as the registry exports it.
func (e *env) gauge(t *testing.T, name string) float64 {
	t.Helper()
	families, err := e.registry.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			m := f.GetMetric()[0]
			return m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no %s", name)
	return 0
}

// count is creditsessions_webhooks_total{result}, as the registry exports it.
func (e *env) count(t *testing.T, result string) float64 {
	t.Helper()
	families, err := e.registry.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != "creditsessions_webhooks_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no creditsessions_webhooks_total{result=%q}", result)
	return 0
}

// noNotification fails if anything was notified.
func (e *env) noNotification(t *testing.T) {
	t.Helper()
	select {
	case id := <-e.notified:
		t.Fatalf("notified of %s", id)
	default:
	}
}

// nextNotification waits for one notification.
func (e *env) nextNotification(t *testing.T) string {
	t.Helper()
	select {
	case id := <-e.notified:
		return id
	case <-time.After(10 * time.Second):
		t.Fatal("no notification")
		return ""
	}
}

// incomeBody is a BANK_INCOME_COMPLETE webhook about userID.
func incomeBody(userID string) []byte {
	b, _ := json.Marshal(map[string]string{"webhook_type": "INCOME", "webhook_code": "BANK_INCOME_COMPLETE",
		"user_id": userID, "result": "SUCCESS", "environment": "sandbox"})
	return b
}

// forge builds a compact JWS with the given header members and claims for body, signed
// by sign (nil: an empty signature).
func forge(header map[string]any, body []byte, iat time.Time, sign func(input []byte) []byte) string {
	h, _ := json.Marshal(header)
	sum := sha256.Sum256(body)
	c, _ := json.Marshal(map[string]any{"iat": iat.Unix(), "request_body_sha256": hex.EncodeToString(sum[:])})
	input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	var sig []byte
	if sign != nil {
		sig = sign([]byte(input))
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// syncBuffer is a bytes.Buffer safe for the handler's goroutines and the test's.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func plaidRequest(token string) plaid.Request { return plaid.Request{UserToken: token} }
