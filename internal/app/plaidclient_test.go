package app_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/creditsessions/creditsessions/internal/app"
	"github.com/creditsessions/creditsessions/internal/emulator"

	"github.com/plaid/plaid-go/v20/plaid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// stockClient is Plaid's own Go client, unchanged but for its base URL.
func stockClient(baseURL, clientID, secret string) *plaid.APIClient {
	cfg := plaid.NewConfiguration()
	cfg.UseEnvironment(plaid.Environment(baseURL))
	cfg.AddDefaultHeader("PLAID-CLIENT-ID", clientID)
	cfg.AddDefaultHeader("PLAID-SECRET", secret)
	return plaid.NewAPIClient(cfg)
}

func creditSessionsGet(c *plaid.APIClient, token string) (plaid.CreditSessionsGetResponse, *http.Response, error) {
	return c.PlaidApi.CreditSessionsGet(context.Background()).
		CreditSessionsGetRequest(*plaid.NewCreditSessionsGetRequest(token)).Execute()
}

func meaning(t *testing.T, v any) any {
	t.Helper()
	data, err := json.Marshal(v)
	require.NoError(t, err)
	var out any
	require.NoError(t, json.Unmarshal(data, &out))
	return prune(t, out, nil)
}

// TestPlaidsGoClientWorksAgainstTheMirror points plaid-go at the mirror and at the
// emulator (Plaid) and checks it sees the same thing from both.
func TestPlaidsGoClientWorksAgainstTheMirror(t *testing.T) {
	s := start(t, app.Config{})
	id, secret := s.app.Emulator().ClientID(), s.app.Emulator().Secret()
	viaMirror := stockClient(s.rest, id, secret)
	viaPlaid := stockClient(s.app.EmulatorURL(), id, secret)

	for _, token := range []string{"user-sandbox-example", "user-sandbox-full", "user-sandbox-zero", "user-sandbox-empty"} {
		t.Run(token, func(t *testing.T) {
			got, httpResp, err := creditSessionsGet(viaMirror, token)
			require.NoError(t, err)
			assert.Equal(t, http.StatusOK, httpResp.StatusCode)
			want, _, err := creditSessionsGet(viaPlaid, token)
			require.NoError(t, err)

			assert.NotEmpty(t, got.GetRequestId())
			got.SetRequestId("")
			want.SetRequestId("")
			// Equal in meaning: plaid-go re-encodes null and [] as it read them, and the
			// contract, like Plaid's schema, does not tell them from absent.
			assert.Equal(t, meaning(t, want), meaning(t, got), "plaid-go decodes the same response from the mirror as from Plaid")
		})
	}

	for _, token := range []string{
		"user-nobody",
		emulator.ErrorToken("RATE_LIMIT_EXCEEDED", "CREDITS_EXHAUSTED"),
		emulator.ErrorToken("USER_ERROR", "USER_NOT_FOUND"),
		emulator.ErrorToken("API_ERROR", "PLANNED_MAINTENANCE"),
	} {
		t.Run(token, func(t *testing.T) {
			_, gotResp, gotErr := creditSessionsGet(viaMirror, token)
			require.Error(t, gotErr)
			_, wantResp, wantErr := creditSessionsGet(viaPlaid, token)
			require.Error(t, wantErr)
			assert.Equal(t, wantResp.StatusCode, gotResp.StatusCode)

			got, err := plaid.ToPlaidError(gotErr)
			require.NoError(t, err, "plaid-go reads the mirror's error as a PlaidError")
			want, err := plaid.ToPlaidError(wantErr)
			require.NoError(t, err)
			assert.NotEmpty(t, got.GetRequestId())
			got.RequestId, want.RequestId = nil, nil
			assert.Equal(t, want, got)
		})
	}
}

// TestPlaidsGoClientWorksOverTLS gives plaid-go a client certificate, or a bearer
// token, through its http.Client and default headers: nothing else changes for it.
func TestPlaidsGoClientWorksOverTLS(t *testing.T) {
	p := newPKI(t)
	s := start(t, secureConfig(p, true))
	rest := "https://" + s.app.HTTPAddr().String()
	id, secret := s.app.Emulator().ClientID(), s.app.Emulator().Secret()
	client := func(cert *tls.Certificate, headers map[string]string) *plaid.APIClient {
		cfg := plaid.NewConfiguration()
		cfg.UseEnvironment(plaid.Environment(rest))
		cfg.AddDefaultHeader("PLAID-CLIENT-ID", id)
		cfg.AddDefaultHeader("PLAID-SECRET", secret)
		for k, v := range headers {
			cfg.AddDefaultHeader(k, v)
		}
		cfg.HTTPClient = p.httpClient(t, cert)
		return plaid.NewAPIClient(cfg)
	}

	for name, c := range map[string]*plaid.APIClient{
		"client certificate": client(&p.underwriter, nil),
		"bearer token":       client(nil, map[string]string{"Authorization": "Bearer " + token(t, p.rsaKey, "rsa-1", saClaims(saUnderwriter))}),
	} {
		t.Run(name, func(t *testing.T) {
			got, httpResp, err := creditSessionsGet(c, "user-sandbox-example")
			require.NoError(t, err)
			assert.Equal(t, http.StatusOK, httpResp.StatusCode)
			assert.Len(t, got.GetSessions(), 2)
		})
	}
	t.Run("denied", func(t *testing.T) {
		_, httpResp, err := creditSessionsGet(client(&p.intruder, nil), "user-sandbox-example")
		require.Error(t, err)
		assert.Equal(t, http.StatusForbidden, httpResp.StatusCode)
		pe, err := plaid.ToPlaidError(err)
		require.NoError(t, err, "plaid-go reads the refusal as a PlaidError")
		assert.Equal(t, "UNAUTHORIZED_ROUTE_ACCESS", pe.GetErrorCode())
	})
	t.Run("unauthenticated", func(t *testing.T) {
		_, httpResp, err := creditSessionsGet(client(nil, nil), "user-sandbox-example")
		require.Error(t, err)
		assert.Equal(t, http.StatusUnauthorized, httpResp.StatusCode)
		pe, err := plaid.ToPlaidError(err)
		require.NoError(t, err)
		assert.Equal(t, "INVALID_API_KEYS", pe.GetErrorCode())
	})
}
