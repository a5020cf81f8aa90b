package webhook_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/creditsessions/creditsessions/internal/webhook"
)

func TestValidWebhooksNotifyTheirUser(t *testing.T) {
	e := newEnv(t, nil)
	const token = "user-sandbox-example#valid"
	for _, tc := range []struct{ typ, code string }{
		{"INCOME", "INCOME_VERIFICATION"},
		{"INCOME", "BANK_INCOME_COMPLETE"},
		{"INCOME", "INCOME_VERIFICATION_RISK_SIGNALS"},
		{"LINK", "SESSION_FINISHED"},
	} {
		t.Run(tc.typ+"/"+tc.code, func(t *testing.T) {
			require.NoError(t, e.emu.FireWebhook(t.Context(), e.url, token, tc.typ, tc.code))
			assert.Equal(t, e.emu.UserID(token), e.nextNotification(t))
		})
	}
	assert.Equal(t, 4.0, e.count(t, webhook.ResultAccepted))
	assert.Equal(t, int64(1), e.emu.WebhookKeyFetches(), "the key is fetched once and cached")
	e.noNotification(t)
}

// The whole loop: Plaid's sandbox call adds a session and sends signed webhooks; the
// handler verifies them and names the user; the next call sees the new session.
func TestFireWebhookControlCallAddsASessionAndWakesTheUser(t *testing.T) {
	e := newEnv(t, nil)
	const token = "user-sandbox-example#loop"
	before, err := e.plaid.CreditSessionsGet(t.Context(), plaidRequest(token))
	require.NoError(t, err)

	body, _ := json.Marshal(map[string]string{
		"client_id": e.emu.ClientID(), "secret": e.emu.Secret(), "user_token": token, "webhook": e.url,
	})
	resp, err := e.http.Post(e.emuURL+"/sandbox/income/fire_webhook", "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "body: %s", raw)
	assert.Contains(t, string(raw), `"request_id"`)

	// SESSION_FINISHED, then BANK_INCOME_COMPLETE.
	assert.Equal(t, e.emu.UserID(token), e.nextNotification(t))
	assert.Equal(t, e.emu.UserID(token), e.nextNotification(t))
	after, err := e.plaid.CreditSessionsGet(t.Context(), plaidRequest(token))
	require.NoError(t, err)
	assert.Len(t, after.GetSessions(), len(before.GetSessions())+1)
}

func TestWrongAlgorithmsAreRefusedWithoutAskingPlaid(t *testing.T) {
	e := newEnv(t, nil)
	kid := e.emu.WebhookKeyID()
	key, err := e.plaid.WebhookVerificationKeyGet(t.Context(), kid)
	require.NoError(t, err)
	x, _ := base64.RawURLEncoding.DecodeString(key.X)
	y, _ := base64.RawURLEncoding.DecodeString(key.Y)
	point := append(append([]byte{4}, x...), y...)
	public, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
	require.NoError(t, err)
	der, err := x509.MarshalPKIXPublicKey(public)
	require.NoError(t, err)
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	jwk, _ := json.Marshal(map[string]string{"kty": "EC", "crv": "P-256", "x": key.X, "y": key.Y})
	fetchesBefore := e.emu.WebhookKeyFetches()

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	hs256 := func(secret []byte) func([]byte) []byte {
		return func(input []byte) []byte {
			m := hmac.New(sha256.New, secret)
			m.Write(input)
			return m.Sum(nil)
		}
	}
	body := incomeBody(e.emu.UserID("user-sandbox-example"))
	now := time.Now()
	for _, tc := range []struct {
		name string
		alg  string
		sign func([]byte) []byte
	}{
		{"none", "none", nil},
		{"none, capitalised", "None", nil},
		{"HS256 keyed with the public key's point", "HS256", hs256(point)},
		{"HS256 keyed with the public key's PEM", "HS256", hs256(pemKey)},
		{"HS256 keyed with the public key's DER", "HS256", hs256(der)},
		{"HS256 keyed with the public key's JWK", "HS256", hs256(jwk)},
		{"RS256", "RS256", func(input []byte) []byte {
			sum := sha256.Sum256(input)
			sig, err := rsa.SignPKCS1v15(rand.Reader, rsaKey, crypto.SHA256, sum[:])
			require.NoError(t, err)
			return sig
		}},
		{"ES384", "ES384", nil},
		{"es256, lower case", "es256", nil},
		{"no alg", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			header := map[string]any{"kid": kid, "typ": "JWT"}
			if tc.alg != "" {
				header["alg"] = tc.alg
			}
			token := forge(header, body, now, tc.sign)
			assert.Equal(t, http.StatusUnauthorized, e.post(t, body, token))
		})
	}
	assert.Equal(t, 10.0, e.count(t, webhook.ResultBadAlg))
	assert.Equal(t, fetchesBefore, e.emu.WebhookKeyFetches(), "a wrong alg is refused before any key is fetched")
	e.noNotification(t)
}

func TestSignatureByAnotherKeyIsRefused(t *testing.T) {
	e := newEnv(t, nil)
	attacker, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	body := incomeBody(e.emu.UserID("user-sandbox-example"))
	token := forge(map[string]any{"alg": "ES256", "kid": e.emu.WebhookKeyID(), "typ": "JWT"}, body, time.Now(), es256(attacker))
	assert.Equal(t, http.StatusUnauthorized, e.post(t, body, token))
	assert.Equal(t, 1.0, e.count(t, webhook.ResultBadSignature))
	e.noNotification(t)
}

func TestUnknownKIDIsFetchedOnce(t *testing.T) {
	t.Run("Plaid's new key", func(t *testing.T) {
		e := newEnv(t, nil)
		// Different users: two identical bodies signed in the same second are one webhook.
		require.NoError(t, e.emu.FireWebhook(t.Context(), e.url, "user-sandbox-example#1", "INCOME", "BANK_INCOME_COMPLETE"))
		require.NoError(t, e.emu.FireWebhook(t.Context(), e.url, "user-sandbox-example#2", "INCOME", "BANK_INCOME_COMPLETE"))
		assert.Equal(t, int64(1), e.emu.WebhookKeyFetches())

		// Plaid rotates: the new kid is unknown to the cache, fetched once, then cached.
		e.emu.RotateWebhookKey()
		for i := range 3 {
			require.NoError(t, e.emu.FireWebhook(t.Context(), e.url, fmt.Sprint("user-sandbox-full#", i), "INCOME", "BANK_INCOME_COMPLETE"))
		}
		assert.Equal(t, int64(2), e.emu.WebhookKeyFetches())
		assert.Equal(t, 5.0, e.count(t, webhook.ResultAccepted))
	})

	t.Run("a kid Plaid does not know", func(t *testing.T) {
		e := newEnv(t, nil)
		attacker, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		body := incomeBody("someone")
		for range 3 {
			token := forge(map[string]any{"alg": "ES256", "kid": "made-up", "typ": "JWT"}, body, time.Now(), es256(attacker))
			assert.Equal(t, http.StatusUnauthorized, e.post(t, body, token))
		}
		assert.Equal(t, int64(1), e.emu.WebhookKeyFetches(), "Plaid's answer is remembered")
		assert.Equal(t, 3.0, e.count(t, webhook.ResultUnknownKID))
	})

	t.Run("random kids, at once", func(t *testing.T) {
		// One sender, allowed more than everyone together: the shared bound holds.
		e := newEnv(t, func(o *webhook.Options) {
			o.KeyFetchBurst, o.KeyFetchEvery, o.SourceKeyFetchBurst = 3, time.Hour, 100
		})
		attacker, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		body := incomeBody("someone")
		var wg sync.WaitGroup
		for i := range 40 {
			wg.Go(func() {
				token := forge(map[string]any{"alg": "ES256", "kid": fmt.Sprintf("random-%d", i), "typ": "JWT"}, body, time.Now(), es256(attacker))
				assert.Equal(t, http.StatusUnauthorized, e.post(t, body, token))
			})
		}
		wg.Wait()
		assert.Equal(t, int64(3), e.emu.WebhookKeyFetches(), "only the burst reaches Plaid")
		assert.Equal(t, 3.0, e.count(t, webhook.ResultUnknownKID))
		assert.Equal(t, 37.0, e.count(t, webhook.ResultKeyFetchLimited))
	})

	t.Run("one kid, many webhooks at once", func(t *testing.T) {
		e := newEnv(t, nil)
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Go(func() {
				assert.NoError(t, e.emu.FireWebhook(t.Context(), e.url, fmt.Sprintf("user-sandbox-example#%d", i), "INCOME", "BANK_INCOME_COMPLETE"))
			})
		}
		wg.Wait()
		assert.Equal(t, int64(1), e.emu.WebhookKeyFetches(), "concurrent misses share one fetch")
		assert.Equal(t, 20.0, e.count(t, webhook.ResultAccepted))
	})
}

func TestExpiredKeyIsRefused(t *testing.T) {
	t.Run("fetched after it expired", func(t *testing.T) {
		e := newEnv(t, nil)
		body := incomeBody(e.emu.UserID("user-sandbox-example"))
		token, err := e.emu.SignWebhook(body)
		require.NoError(t, err)
		e.emu.RotateWebhookKey()
		assert.Equal(t, http.StatusUnauthorized, e.post(t, body, token))
		assert.Equal(t, 1.0, e.count(t, webhook.ResultExpiredKey))
		e.noNotification(t)
	})

	t.Run("cached, then expired", func(t *testing.T) {
		e := newEnv(t, func(o *webhook.Options) { o.KeyTTL = time.Minute })
		user := e.emu.UserID("user-sandbox-example")
		first, second := incomeBody(user), incomeBody(user+"x")
		firstToken, err := e.emu.SignWebhook(first)
		require.NoError(t, err)
		secondToken, err := e.emu.SignWebhook(second)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, e.post(t, first, firstToken))
		assert.Equal(t, user, e.nextNotification(t))

		e.emu.RotateWebhookKey()
		e.offset.Store(int64(2 * time.Minute)) // past KeyTTL, within MaxAge
		assert.Equal(t, http.StatusUnauthorized, e.post(t, second, secondToken))
		assert.Equal(t, 1.0, e.count(t, webhook.ResultExpiredKey))
		assert.Equal(t, int64(2), e.emu.WebhookKeyFetches(), "re-checked once past KeyTTL")
		e.noNotification(t)
	})
}

func TestIssuedAtWindow(t *testing.T) {
	for _, tc := range []struct {
		name   string
		clock  time.Duration // the handler's clock, against the signer's
		status int
		result string
	}{
		{"just issued", 0, http.StatusOK, webhook.ResultAccepted},
		{"four minutes old", 4 * time.Minute, http.StatusOK, webhook.ResultAccepted},
		{"over five minutes old", webhook.MaxAge + 2*time.Second, http.StatusUnauthorized, webhook.ResultIATTooOld},
		{"an hour old", time.Hour, http.StatusUnauthorized, webhook.ResultIATTooOld},
		{"from the near future", -30 * time.Second, http.StatusOK, webhook.ResultAccepted},
		{"from the future", -webhook.MaxClockSkew - 2*time.Second, http.StatusUnauthorized, webhook.ResultIATInFuture},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.offset.Store(int64(tc.clock))
			body := incomeBody(e.emu.UserID("user-sandbox-example"))
			token, err := e.emu.SignWebhook(body)
			require.NoError(t, err)
			assert.Equal(t, tc.status, e.post(t, body, token))
			assert.Equal(t, 1.0, e.count(t, tc.result))
		})
	}
}

func TestBodyChangedAfterSigningIsRefused(t *testing.T) {
	e := newEnv(t, nil)
	user := e.emu.UserID("user-sandbox-example")
	body := incomeBody(user)
	token, err := e.emu.SignWebhook(body)
	require.NoError(t, err)

	var m map[string]any
	require.NoError(t, json.Unmarshal(body, &m))
	indented, _ := json.MarshalIndent(m, "", " ") // the same JSON, other bytes
	for name, changed := range map[string][]byte{
		"another user":        bytes.Replace(body, []byte(user), []byte(e.emu.UserID("user-sandbox-full")), 1),
		"re-serialised":       indented,
		"a trailing newline":  append(append([]byte(nil), body...), '\n'),
		"empty":               {},
		"one byte truncated":  body[:len(body)-1],
		"a member added last": append(append([]byte(nil), body[:len(body)-1]...), []byte(`,"x":1}`)...),
	} {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, http.StatusUnauthorized, e.post(t, changed, token))
		})
	}
	assert.Equal(t, 6.0, e.count(t, webhook.ResultBodyMismatch))
	e.noNotification(t)
	// The untouched webhook still passes: nothing above was remembered as seen.
	assert.Equal(t, http.StatusOK, e.post(t, body, token))
	assert.Equal(t, user, e.nextNotification(t))
}

func TestReplayTriggersNothingTwice(t *testing.T) {
	e := newEnv(t, nil)
	user := e.emu.UserID("user-sandbox-example")
	body := incomeBody(user)
	token, err := e.emu.SignWebhook(body)
	require.NoError(t, err)

	require.Equal(t, http.StatusOK, e.post(t, body, token))
	assert.Equal(t, user, e.nextNotification(t))
	assert.Equal(t, http.StatusOK, e.post(t, body, token), "a replay is acknowledged, as Plaid resends")
	e.noNotification(t)

	// ECDSA's twin signature (r, n-s) verifies too: still the same webhook.
	assert.Equal(t, http.StatusOK, e.post(t, body, twinSignature(t, token)))
	e.noNotification(t)

	// The same body signed again (Plaid retrying a delivery) is a new delivery.
	again, err := e.emu.SignWebhook(body)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, e.post(t, body, again))
	assert.Equal(t, user, e.nextNotification(t))

	// Many copies at once: one wins.
	fresh := incomeBody(user + "-2")
	freshToken, err := e.emu.SignWebhook(fresh)
	require.NoError(t, err)
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() { assert.Equal(t, http.StatusOK, e.post(t, fresh, freshToken)) })
	}
	wg.Wait()
	assert.Equal(t, user+"-2", e.nextNotification(t))
	e.noNotification(t)
	assert.Equal(t, 3.0, e.count(t, webhook.ResultAccepted))
	assert.Equal(t, 11.0, e.count(t, webhook.ResultReplayed))
}

func TestReplayCacheFullFailsClosed(t *testing.T) {
	e := newEnv(t, func(o *webhook.Options) { o.ReplayCacheSize = 2 })
	for i := range 2 {
		body := incomeBody(fmt.Sprint("user-", i))
		token, err := e.emu.SignWebhook(body)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, e.post(t, body, token))
		e.nextNotification(t)
	}
	body := incomeBody("user-3")
	token, err := e.emu.SignWebhook(body)
	require.NoError(t, err)
	assert.Equal(t, http.StatusServiceUnavailable, e.post(t, body, token))
	e.noNotification(t)

	assert.Equal(t, 1.0, e.count(t, webhook.ResultReplayCacheFull))
}

func TestIgnoredWebhooksAreAcknowledged(t *testing.T) {
	e := newEnv(t, nil)
	const token = "user-sandbox-example"
	for _, tc := range []struct{ typ, code string }{
		{"TRANSACTIONS", "SYNC_UPDATES_AVAILABLE"},
		{"LINK", "EVENTS"},
		{"INCOME", "SOMETHING_NEW"},
		{"ITEM", "ERROR"},
	} {
		require.NoError(t, e.emu.FireWebhook(t.Context(), e.url, token, tc.typ, tc.code), "%s/%s", tc.typ, tc.code)
	}
	// A webhook that concerns sessions but names no user wakes no one.
	body := []byte(`{"webhook_type":"LINK","webhook_code":"SESSION_FINISHED","status":"SUCCESS","link_session_id":"x","link_token":"link-sandbox-x","environment":"sandbox"}`)
	signature, err := e.emu.SignWebhook(body)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, e.post(t, body, signature))

	assert.Equal(t, 5.0, e.count(t, webhook.ResultIgnored))
	assert.Equal(t, 0.0, e.count(t, webhook.ResultAccepted))
	e.noNotification(t)
}

func TestVerifiedBodyThatIsNotAWebhook(t *testing.T) {
	e := newEnv(t, nil)
	for _, body := range []string{`not json`, `[]`, `{"user_id":"x"}`, `{"webhook_type":1}`} {
		signature, err := e.emu.SignWebhook([]byte(body))
		require.NoError(t, err)
		assert.Equal(t, http.StatusBadRequest, e.post(t, []byte(body), signature), body)
	}
	assert.Equal(t, 4.0, e.count(t, webhook.ResultBadBody))
	e.noNotification(t)
}

func TestMalformedSignatures(t *testing.T) {
	e := newEnv(t, nil)
	body := incomeBody("x")
	for name, tc := range map[string]struct {
		token, result string
	}{
		"missing":          {"", webhook.ResultMissingSignature},
		"one part":         {"abc", webhook.ResultMalformedSignature},
		"four parts":       {"a.b.c.d", webhook.ResultMalformedSignature},
		"header not JSON":  {"bm90IGpzb24.e30.", webhook.ResultMalformedSignature},
		"oversized":        {strings.Repeat("a", 5000), webhook.ResultMalformedSignature},
		"no kid":           {forge(map[string]any{"alg": "ES256"}, body, time.Now(), nil), webhook.ResultMissingKID},
		"JSON serialising": {`{"payload":"e30","signatures":[]}`, webhook.ResultMalformedSignature},
		"oversized kid":    {forge(map[string]any{"alg": "ES256", "kid": strings.Repeat("k", 200)}, body, time.Now(), nil), webhook.ResultMalformedSignature},
	} {
		t.Run(name, func(t *testing.T) {
			before := e.count(t, tc.result)
			assert.Equal(t, http.StatusUnauthorized, e.post(t, body, tc.token))
			assert.Equal(t, before+1, e.count(t, tc.result))
		})
	}
	assert.Equal(t, int64(0), e.emu.WebhookKeyFetches())
	e.noNotification(t)
}

func TestOnlyPostWebhooksPlaidIsServed(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{http.MethodGet, webhook.Path, http.StatusMethodNotAllowed},
		{http.MethodPut, webhook.Path, http.StatusMethodNotAllowed},
		{http.MethodHead, webhook.Path, http.StatusMethodNotAllowed},
		{http.MethodPost, "/", http.StatusNotFound},
		{http.MethodPost, webhook.Path + "/", http.StatusNotFound},
		{http.MethodPost, "/webhooks", http.StatusNotFound},
		{http.MethodGet, "/metrics", http.StatusNotFound},
		{http.MethodGet, "/debug/pprof/", http.StatusNotFound},
		{http.MethodPost, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", http.StatusNotFound},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), tc.method, e.base+tc.path, strings.NewReader("{}"))
			require.NoError(t, err)
			resp, err := e.http.Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			assert.Equal(t, tc.status, resp.StatusCode)
			if tc.status == http.StatusMethodNotAllowed {
				assert.Equal(t, http.MethodPost, resp.Header.Get("Allow"))
			}
		})
	}
}

func TestOversizedBodyIsRefused(t *testing.T) {
	e := newEnv(t, func(o *webhook.Options) { o.MaxBodyBytes = 1024 })
	body := []byte(`{"webhook_type":"INCOME","pad":"` + strings.Repeat("a", 1024) + `"}`)
	token, err := e.emu.SignWebhook(body) // validly signed, and still too large
	require.NoError(t, err)
	assert.Equal(t, http.StatusRequestEntityTooLarge, e.post(t, body, token))
	assert.Equal(t, 1.0, e.count(t, webhook.ResultBodyTooLarge))
	assert.Equal(t, int64(0), e.emu.WebhookKeyFetches())
	e.noNotification(t)
}

func TestLogsHoldNoTokensOrBodies(t *testing.T) {
	e := newEnv(t, nil)
	body := []byte(`{"webhook_type":"LINK","webhook_code":"SESSION_FINISHED","status":"SUCCESS","link_session_id":"s",` +
		`"link_token":"link-sandbox-secret-link-token","public_tokens":["public-sandbox-secret-public-token"],"user_id":"u1","environment":"sandbox"}`)
	token, err := e.emu.SignWebhook(body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, e.post(t, body, token))
	require.Equal(t, http.StatusUnauthorized, e.post(t, body[1:], token))
	e.nextNotification(t)
	logs := e.logs.String()
	assert.Contains(t, logs, `"result":"accepted"`)
	assert.Contains(t, logs, `"result":"body_mismatch"`)
	for _, secret := range []string{"secret-link-token", "secret-public-token", token, strings.Split(token, ".")[2], e.emu.Secret()} {
		assert.NotContains(t, logs, secret)
	}
}

func TestNewHandlerNeedsKeysAndNotifier(t *testing.T) {
	_, err := webhook.NewHandler(webhook.Options{Notifier: webhook.NotifierFunc(nil)})
	assert.ErrorContains(t, err, "Keys")
	e := newEnv(t, nil)
	_, err = webhook.NewHandler(webhook.Options{Keys: e.plaid})
	assert.ErrorContains(t, err, "Notifier")
	// A second handler on the same registry shares the counter rather than failing.
	_, err = webhook.NewHandler(webhook.Options{Keys: e.plaid, Notifier: webhook.NotifierFunc(nil), Metrics: e.registry})
	assert.NoError(t, err)
}

// es256 signs as ES256 does: r || s, 32 bytes each.
func es256(key *ecdsa.PrivateKey) func([]byte) []byte {
	return func(input []byte) []byte {
		sum := sha256.Sum256(input)
		r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
		if err != nil {
			panic(err)
		}
		sig := make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
		return sig
	}
}

// twinSignature returns token with its ES256 signature (r, s) replaced by (r, n-s),
// which verifies just the same.
func twinSignature(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	require.NoError(t, err)
	require.Len(t, sig, 64)
	s := new(big.Int).SetBytes(sig[32:])
	s.Sub(elliptic.P256().Params().N, s)
	twin := append([]byte(nil), sig...)
	s.FillBytes(twin[32:])
	return parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(twin)
}
