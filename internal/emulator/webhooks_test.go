package emulator

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func keyRequest(keyID string) string {
	b, _ := json.Marshal(map[string]string{"key_id": keyID})
	return string(b)
}

func TestWebhookVerificationKeyGet(t *testing.T) {
	s := startServer(t, Config{})
	c := newClient(t)
	kid := s.Emulator.WebhookKeyID()

	resp := send(t, c, s.URL, request{path: webhookKeyPath, headers: defaultHeaders(), body: keyRequest(kid)})
	require.Equal(t, http.StatusOK, resp.status, "body: %s", resp.raw)
	assert.Equal(t, contentType, resp.header.Get("Content-Type"))
	var got struct {
		Key       map[string]any `json:"key"`
		RequestID string         `json:"request_id"`
	}
	require.NoError(t, json.Unmarshal(resp.raw, &got))
	assert.Regexp(t, requestIDPattern, got.RequestID)
	keys := make([]string, 0, len(got.Key))
	for k := range got.Key {
		keys = append(keys, k)
	}
	assert.ElementsMatch(t, []string{"alg", "crv", "kid", "kty", "use", "x", "y", "created_at", "expired_at"}, keys)
	assert.Equal(t, "ES256", got.Key["alg"])
	assert.Equal(t, "P-256", got.Key["crv"])
	assert.Equal(t, kid, got.Key["kid"])
	assert.Equal(t, "EC", got.Key["kty"])
	assert.Equal(t, "sig", got.Key["use"])
	assert.Nil(t, got.Key["expired_at"])
	assert.NotZero(t, got.Key["created_at"])

	// The key verifies what the emulator signs.
	x, err := base64.RawURLEncoding.DecodeString(got.Key["x"].(string))
	require.NoError(t, err)
	y, err := base64.RawURLEncoding.DecodeString(got.Key["y"].(string))
	require.NoError(t, err)
	public, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
	require.NoError(t, err)
	token, err := s.Emulator.SignWebhook([]byte(`{"a":1}`))
	require.NoError(t, err)
	parsed, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	require.NoError(t, err)
	assert.Equal(t, kid, parsed.Headers[0].KeyID)
	var claims map[string]any
	require.NoError(t, parsed.Claims(public, &claims))
	assert.Equal(t, "015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862", claims["request_body_sha256"])
	assert.NotZero(t, claims["iat"])

	// Rotated: the old key is still served, with expired_at.
	old, fresh := s.Emulator.RotateWebhookKey()
	assert.Equal(t, kid, old)
	assert.NotEqual(t, old, fresh)
	resp = send(t, c, s.URL, request{path: webhookKeyPath, headers: defaultHeaders(), body: keyRequest(old)})
	require.Equal(t, http.StatusOK, resp.status)
	require.NoError(t, json.Unmarshal(resp.raw, &got))
	assert.NotNil(t, got.Key["expired_at"])
	assert.Equal(t, int64(2), s.Emulator.WebhookKeyFetches())
}

func TestWebhookVerificationKeyGetErrors(t *testing.T) {
	s := startServer(t, Config{})
	c := newClient(t)
	assertPlaidError(t, send(t, c, s.URL, request{path: webhookKeyPath, headers: defaultHeaders(), body: keyRequest("nope")}), *errInvalidKeyID)
	assertPlaidError(t, send(t, c, s.URL, request{path: webhookKeyPath, body: keyRequest(s.Emulator.WebhookKeyID())}),
		*errMissingFields.withMessage("the following required fields are missing: client_id, secret"))
	assertPlaidError(t, send(t, c, s.URL, request{path: webhookKeyPath,
		headers: map[string]string{"PLAID-CLIENT-ID": DefaultClientID, "PLAID-SECRET": "wrong"}, body: keyRequest("x")}), *errInvalidAPIKeys)
	assertPlaidError(t, send(t, c, s.URL, request{path: webhookKeyPath, headers: defaultHeaders(), body: `{}`}),
		*errMissingFields.withMessage("the following required fields are missing: key_id"))
	assertPlaidError(t, send(t, c, s.URL, request{path: webhookKeyPath, headers: defaultHeaders(), body: `{"key_id":"x","y":1}`}),
		*errUnknownFields.withMessage("the following fields are not recognized by this endpoint: y"))
	assertPlaidError(t, send(t, c, s.URL, request{path: webhookKeyPath, headers: defaultHeaders(), body: `{"key_id":7}`}),
		*errInvalidField.withMessage("key_id must be a properly formatted, non-empty string"))
	assertPlaidError(t, send(t, c, s.URL, request{method: http.MethodGet, path: webhookKeyPath, headers: defaultHeaders()}), *errNotFound)
	assert.Equal(t, int64(0), s.Emulator.Calls(), "these are not /credit/sessions/get calls")
}

func TestAddSession(t *testing.T) {
	s := startServer(t, Config{})
	c := newClient(t)
	sessions := func(token string) []any {
		var body struct{ Sessions []any }
		require.NoError(t, json.Unmarshal(getSessions(t, c, s.URL, token).raw, &body))
		return body.Sessions
	}
	before := sessions("user-sandbox-example")
	for _, token := range []string{"user-sandbox-example#7", "user-sandbox-empty", "user-sandbox-sessions-3#a", "user-sandbox-future"} {
		t.Run(token, func(t *testing.T) {
			n := len(sessions(token))
			userID, err := s.Emulator.AddSession(token)
			require.NoError(t, err)
			assert.Equal(t, s.Emulator.UserID(token), userID)
			got := sessions(token)
			require.Len(t, got, n+1)
			first := got[0].(map[string]any)
			assert.NotEmpty(t, first["link_session_id"])
			assert.NotEmpty(t, first["session_start_time"])
		})
	}
	assert.Equal(t, before, sessions("user-sandbox-example"), "user-sandbox-example#7 is another user")
	// Unknown members of the future fixture survive the merge.
	assert.Contains(t, string(getSessions(t, c, s.URL, "user-sandbox-future").raw), "request_id")

	for _, token := range []string{"nobody", ErrorToken("API_ERROR", "INTERNAL_SERVER_ERROR")} {
		_, err := s.Emulator.AddSession(token)
		assert.Error(t, err, token)
	}
}

func TestUserIDIsStablePerToken(t *testing.T) {
	a, b := New(Config{}), New(Config{})
	assert.Equal(t, a.UserID("user-sandbox-example"), b.UserID("user-sandbox-example"))
	assert.NotEqual(t, a.UserID("user-sandbox-example"), a.UserID("user-sandbox-example#1"))
	assert.Regexp(t, `^[0-9a-f]{64}$`, a.UserID("user-sandbox-example"))
	assert.NotContains(t, a.UserID("user-sandbox-example"), "sandbox")
}

// received is a webhook a test server got.
type received struct {
	signature string
	body      map[string]any
}

func webhookSink(t *testing.T, status int) (string, <-chan received) {
	t.Helper()
	ch := make(chan received, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var m map[string]any
		_ = json.Unmarshal(raw, &m)
		ch <- received{signature: r.Header.Get("Plaid-Verification"), body: m}
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/hook", ch
}

func TestFireWebhookControlCall(t *testing.T) {
	s := startServer(t, Config{})
	c := newClient(t)
	url, got := webhookSink(t, http.StatusOK)
	const token = "user-sandbox-example#fire"
	fire := func(extra map[string]string) response {
		m := map[string]string{"user_token": token, "webhook": url}
		for k, v := range extra {
			m[k] = v
		}
		b, _ := json.Marshal(m)
		return send(t, c, s.URL, request{path: fireWebhookPath, headers: defaultHeaders(), body: string(b)})
	}

	resp := fire(nil)
	require.Equal(t, http.StatusOK, resp.status, "body: %s", resp.raw)
	var answer map[string]any
	require.NoError(t, json.Unmarshal(resp.raw, &answer))
	assert.Equal(t, s.Emulator.UserID(token), answer["user_id"], "the answer names the user a watch needs")
	assert.NotEmpty(t, answer["request_id"])
	finished, complete := <-got, <-got
	assert.Equal(t, "LINK", finished.body["webhook_type"])
	assert.Equal(t, "SESSION_FINISHED", finished.body["webhook_code"])
	assert.Equal(t, "INCOME", complete.body["webhook_type"])
	assert.Equal(t, "BANK_INCOME_COMPLETE", complete.body["webhook_code"])
	for _, w := range []received{finished, complete} {
		assert.Equal(t, s.Emulator.UserID(token), w.body["user_id"])
		assert.Equal(t, "sandbox", w.body["environment"])
		assert.NotEmpty(t, w.signature)
	}
	// SESSION_FINISHED names the session added, as /credit/sessions/get reports it.
	var sessions struct {
		Sessions []struct {
			LinkSessionID string `json:"link_session_id"`
		}
	}
	require.NoError(t, json.Unmarshal(getSessions(t, c, s.URL, token).raw, &sessions))
	require.Len(t, sessions.Sessions, 3)
	assert.Equal(t, sessions.Sessions[0].LinkSessionID, finished.body["link_session_id"])

	resp = fire(map[string]string{"webhook_code": "INCOME_VERIFICATION", "user_id": s.Emulator.UserID(token)})
	require.Equal(t, http.StatusOK, resp.status, "body: %s", resp.raw)
	verification := <-got
	assert.Equal(t, "INCOME_VERIFICATION", verification.body["webhook_code"])
	assert.Equal(t, "VERIFICATION_STATUS_PROCESSING_COMPLETE", verification.body["verification_status"])
	assert.NotEmpty(t, verification.body["item_id"])

	assertPlaidError(t, fire(map[string]string{"webhook_code": "TRANSACTIONS"}), ErrorSpec{Type: "INVALID_REQUEST", Code: "INVALID_FIELD", HTTPStatus: 400})
	assertPlaidError(t, fire(map[string]string{"webhook": "not a url"}), ErrorSpec{Type: "INVALID_REQUEST", Code: "INVALID_FIELD", HTTPStatus: 400})
	assertPlaidError(t, fire(map[string]string{"user_id": "someone-else"}), ErrorSpec{Type: "INVALID_REQUEST", Code: "INVALID_FIELD", HTTPStatus: 400})
	assertPlaidError(t, fire(map[string]string{"user_token": "nobody"}), *errInvalidToken)

	refusing, refused := webhookSink(t, http.StatusUnauthorized)
	assertPlaidError(t, fire(map[string]string{"webhook": refusing}), ErrorSpec{Type: "API_ERROR", Code: "INTERNAL_SERVER_ERROR", HTTPStatus: 500})
	<-refused
}

func TestWebhookStateIsSafeForConcurrentUse(t *testing.T) {
	s := startServer(t, Config{})
	c := newClient(t)
	url, got := webhookSink(t, http.StatusOK)
	var wg sync.WaitGroup
	for i := range 8 {
		token := fmt.Sprintf("user-sandbox-example#c%d", i%2)
		wg.Go(func() {
			_, err := s.Emulator.AddSession(token)
			assert.NoError(t, err)
			assert.NoError(t, s.Emulator.FireWebhook(t.Context(), url, token, "LINK", "SESSION_FINISHED"))
			<-got
			getSessions(t, c, s.URL, token)
			if i == 0 {
				s.Emulator.RotateWebhookKey()
			}
		})
	}
	wg.Wait()
	var body struct{ Sessions []any }
	require.NoError(t, json.Unmarshal(getSessions(t, c, s.URL, "user-sandbox-example#c0").raw, &body))
	assert.Len(t, body.Sessions, 2+4)
}
