package plaid_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/creditsessions/creditsessions/internal/emulator"
	"github.com/creditsessions/creditsessions/internal/plaid"
)

func TestWebhookVerificationKeyGet(t *testing.T) {
	emu := startEmulator(t, emulator.Config{ClientID: testClientID, Secret: testSecret})
	// A base URL with a trailing slash reaches the same endpoint.
	client, err := plaid.NewClient(plaid.Config{BaseURL: emu.URL + "/", Credentials: testCredentials})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	defer cancel()

	kid := emu.Emulator.WebhookKeyID()
	key, err := client.WebhookVerificationKeyGet(ctx, kid)
	require.NoError(t, err)
	assert.Equal(t, kid, key.Kid)
	assert.Equal(t, "ES256", key.Alg)
	assert.Equal(t, "P-256", key.Crv)
	assert.Equal(t, "EC", key.Kty)
	assert.Equal(t, "sig", key.Use)
	assert.Len(t, key.X, 43) // 32 bytes, unpadded base64url
	assert.Len(t, key.Y, 43)
	assert.NotZero(t, key.CreatedAt)
	assert.Nil(t, key.ExpiredAt)
	assert.NotEmpty(t, key.RequestID)

	emu.Emulator.RotateWebhookKey()
	key, err = client.WebhookVerificationKeyGet(ctx, kid)
	require.NoError(t, err)
	require.NotNil(t, key.ExpiredAt)

	_, err = client.WebhookVerificationKeyGet(ctx, "no-such-key")
	var pe *plaid.Error
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "INVALID_INPUT", pe.ErrorType)
	assert.Equal(t, "INVALID_WEBHOOK_VERIFICATION_KEY_ID", pe.ErrorCode)
	assert.Equal(t, http.StatusBadRequest, pe.HTTPStatus)

	wrong, err := plaid.NewClient(plaid.Config{BaseURL: emu.URL, Credentials: plaid.Credentials{ClientID: testClientID, Secret: "wrong-secret-1234"}})
	require.NoError(t, err)
	_, err = wrong.WebhookVerificationKeyGet(ctx, kid)
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "INVALID_API_KEYS", pe.ErrorCode)
	assert.NotContains(t, err.Error(), "wrong-secret-1234")
	assert.Equal(t, int64(4), emu.Emulator.WebhookKeyFetches())
}

func TestWebhookVerificationKeyGetProtocolErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		status int
		body   string
	}{
		"not JSON":      {http.StatusOK, "<html>"},
		"no key":        {http.StatusOK, `{"request_id":"r"}`},
		"no request_id": {http.StatusOK, `{"key":{"kid":"k"}}`},
		"HTML error":    {http.StatusBadGateway, "<html>"},
		"redirect":      {http.StatusFound, ""},
	} {
		t.Run(name, func(t *testing.T) {
			url := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/webhook_verification_key/get" {
					http.NotFound(w, r)
					return
				}
				w.Header().Set("Location", "http://example.invalid/")
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			client, err := plaid.NewClient(plaid.Config{BaseURL: url, Credentials: testCredentials})
			require.NoError(t, err)
			_, err = client.WebhookVerificationKeyGet(t.Context(), "k")
			var pe *plaid.ProtocolError
			require.True(t, errors.As(err, &pe), "%v", err)
			assert.Equal(t, tc.status, pe.HTTPStatus)
		})
	}
}
