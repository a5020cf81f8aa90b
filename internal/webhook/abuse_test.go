package webhook_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/creditsessions/creditsessions/internal/webhook"
)

// from returns an HTTP client whose connections come from the loopback address ip, so
// that a test can play several senders on one machine.
func from(t *testing.T, ip string) *http.Client {
	t.Helper()
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	transport := &http.Transport{DialContext: dialer.DialContext, DisableKeepAlives: true}
	t.Cleanup(transport.CloseIdleConnections)
	return &http.Client{Transport: transport, Timeout: 30 * time.Second}
}

// postFrom is post, sent by client.
func (e *env) postFrom(t *testing.T, client *http.Client, body []byte, token string) int {
	t.Helper()
	saved := e.http
	defer func() { e.http = saved }()
	e.http = client
	return e.post(t, body, token)
}

// junk is a webhook as an outsider can make one: well formed, bound to its body, fresh,
// naming a kid nobody has, signed by a key of its own.
func junk(t *testing.T, body []byte) string {
	t.Helper()
	attacker, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	point, err := attacker.PublicKey.Bytes()
	require.NoError(t, err)
	kid := fmt.Sprintf("%x-junk", point[1:9])
	return forge(map[string]any{"alg": "ES256", "kid": kid, "typ": "JWT"}, body, time.Now(), es256(attacker))
}

// Plaid rotates its key while outsiders flood the listener with made-up kids: Plaid's
// first webhook with the new kid must still be verified, and so must the ones after it.
func TestJunkKIDsCannotStarvePlaidsNewKey(t *testing.T) {
	for _, tc := range []struct {
		name    string
		sources int // outsiders' addresses, 127.0.0.2 onwards
	}{
		{"one outsider", 1},
		{"many outsiders, after Plaid was heard from", 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			// Plaid's webhooks come from 127.0.0.1 (the emulator's client).
			require.NoError(t, e.emu.FireWebhook(t.Context(), e.url, "user-sandbox-example#before", "INCOME", "BANK_INCOME_COMPLETE"))
			e.nextNotification(t)

			body := incomeBody("someone")
			for i := range 60 {
				client := from(t, fmt.Sprintf("127.0.0.%d", 2+i%tc.sources))
				assert.Equal(t, http.StatusUnauthorized, e.postFrom(t, client, body, junk(t, body)))
			}
			assert.Positive(t, e.count(t, webhook.ResultKeyFetchLimited), "the flood did hit the limits")

			e.emu.RotateWebhookKey()
			const token = "user-sandbox-example#after"
			require.NoError(t, e.emu.FireWebhook(t.Context(), e.url, token, "INCOME", "BANK_INCOME_COMPLETE"))
			assert.Equal(t, e.emu.UserID(token), e.nextNotification(t))
			assert.Equal(t, 2.0, e.count(t, webhook.ResultAccepted))
		})
	}
}

// Junk that fails a check needing no key (stale, not bound to its body, a signature of
// the wrong size) never makes the handler ask Plaid for a key.
func TestJunkIsRefusedBeforeAnyKeyFetch(t *testing.T) {
	e := newEnv(t, nil)
	attacker, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	body := incomeBody("someone")
	header := map[string]any{"alg": "ES256", "kid": "made-up", "typ": "JWT"}
	for _, tc := range []struct {
		name, token, result string
	}{
		{"stale", forge(header, body, time.Now().Add(-time.Hour), es256(attacker)), webhook.ResultIATTooOld},
		{"from the future", forge(header, body, time.Now().Add(time.Hour), es256(attacker)), webhook.ResultIATInFuture},
		{"another body's", forge(header, []byte(`{}`), time.Now(), es256(attacker)), webhook.ResultBodyMismatch},
		{"no signature", forge(header, body, time.Now(), nil), webhook.ResultMalformedSignature},
		{"a short signature", forge(header, body, time.Now(), func([]byte) []byte { return make([]byte, 63) }), webhook.ResultMalformedSignature},
		{"a zero signature", forge(header, body, time.Now(), func([]byte) []byte { return make([]byte, 64) }), webhook.ResultMalformedSignature},
		{"a kid with a newline", forge(map[string]any{"alg": "ES256", "kid": "a\nb"}, body, time.Now(), es256(attacker)), webhook.ResultMalformedSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.count(t, tc.result)
			assert.Equal(t, http.StatusUnauthorized, e.post(t, body, tc.token))
			assert.Equal(t, before+1, e.count(t, tc.result))
		})
	}
	assert.Equal(t, int64(0), e.emu.WebhookKeyFetches())
	e.noNotification(t)
}

// nonCanonical re-spells a base64url segment so that it decodes to the same bytes: the
// unused low bits of its last character set, or padding added. (A line break, which
// Go's decoder skips too, cannot be in an HTTP header: the fuzz seeds have it.)
func nonCanonical(t *testing.T, segment string) []string {
	t.Helper()
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	want, err := base64.RawURLEncoding.DecodeString(segment)
	require.NoError(t, err)
	var out []string
	if unused := map[int]int{2: 4, 3: 2}[len(segment)%4]; unused > 0 {
		last := strings.IndexByte(alphabet, segment[len(segment)-1])
		other := segment[:len(segment)-1] + string(alphabet[last|(1<<unused-1)])
		got, err := base64.RawURLEncoding.DecodeString(other)
		require.NoError(t, err)
		require.Equal(t, want, got)
		out = append(out, other)
	}
	if pad := (4 - len(segment)%4) % 4; pad > 0 {
		out = append(out, segment+strings.Repeat("=", pad))
	}
	return out
}

// A verified webhook re-spelled (base64url with other unused bits, padding, a line break)
// is the same webhook: refused, and never a second notification.
func TestNonCanonicalBase64IsNotANewWebhook(t *testing.T) {
	e := newEnv(t, nil)
	user := e.emu.UserID("user-sandbox-example")
	body := incomeBody(user)
	token, err := e.emu.SignWebhook(body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, e.post(t, body, token))
	require.Equal(t, user, e.nextNotification(t))

	parts := strings.Split(token, ".")
	for i, name := range []string{"header", "payload", "signature"} {
		for j, variant := range nonCanonical(t, parts[i]) {
			t.Run(fmt.Sprintf("%s %d", name, j), func(t *testing.T) {
				respelled := append([]string(nil), parts...)
				respelled[i] = variant
				status := e.post(t, body, strings.Join(respelled, "."))
				assert.Contains(t, []int{http.StatusOK, http.StatusUnauthorized}, status)
				e.noNotification(t)
			})
		}
	}
	assert.Equal(t, 1.0, e.count(t, webhook.ResultAccepted))
}
