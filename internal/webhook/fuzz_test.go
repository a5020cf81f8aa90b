package webhook_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/creditsessions/creditsessions/internal/plaid"
	"github.com/creditsessions/creditsessions/internal/webhook"
)

// The fuzz target's key and clock are fixed, so the signed seeds under
// testdata/fuzz/FuzzHandler stay valid: fuzzKID's key signed them at fuzzIAT.
const (
	fuzzKID    = "fuzz-key-1"
	fuzzScalar = "4357ac595bed7913b2400efd35c4cac89d27aa4d2ead82df9fb726c3c2b6eeb5"
	fuzzIAT    = 1764547200 // 2025-12-01T00:00:00Z
)

func fuzzKey() *ecdsa.PrivateKey {
	d, _ := hex.DecodeString(fuzzScalar)
	key, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d)
	if err != nil {
		panic(err)
	}
	return key
}

// staticKeys serves one key, as Plaid would, and knows no other kid. fetches, if set,
// counts the requests.
type staticKeys struct {
	key     *plaid.WebhookVerificationKey
	fetches *int
}

func (s staticKeys) WebhookVerificationKeyGet(_ context.Context, kid string) (*plaid.WebhookVerificationKey, error) {
	if s.fetches != nil {
		*s.fetches++
	}
	if kid != s.key.Kid {
		return nil, &plaid.Error{HTTPStatus: 400, ErrorType: "INVALID_INPUT", ErrorCode: "INVALID_WEBHOOK_VERIFICATION_KEY_ID"}
	}
	k := *s.key
	return &k, nil
}

func jwkOf(kid string, key *ecdsa.PrivateKey) *plaid.WebhookVerificationKey {
	point, err := key.PublicKey.Bytes()
	if err != nil {
		panic(err)
	}
	return &plaid.WebhookVerificationKey{
		Alg: "ES256", Crv: "P-256", Kid: kid, Kty: "EC", Use: "sig",
		X: base64.RawURLEncoding.EncodeToString(point[1:33]), Y: base64.RawURLEncoding.EncodeToString(point[33:]),
		CreatedAt: fuzzIAT - 86400,
	}
}

// canonicalJWS reports whether token is three segments of canonical base64url (no
// padding, no line breaks, unused bits zero) with a 64-byte signature: what a token must
// be before the handler may spend a key fetch on it, or accept it.
func canonicalJWS(token string) bool {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return false
	}
	for i, p := range parts {
		b, err := base64.RawURLEncoding.DecodeString(p)
		if err != nil || base64.RawURLEncoding.EncodeToString(b) != p || (i == 2 && len(b) != 64) {
			return false
		}
	}
	return true
}

// FuzzHandler sends the handler any body and Plaid-Verification header. Whatever they
// are, it answers with one of its statuses, never panics, and notifies only for a
// webhook it accepted with 200. Plaid is asked for a key, and a webhook accepted, only
// for a canonically spelled token (the seeds re-spell a valid one: other unused bits,
// padding, a line break), so a re-spelled webhook is never new; and junk kids with a
// signature that cannot verify (zero) or a kid no sender of Plaid's would use cost no
// fetch.
func FuzzHandler(f *testing.F) {
	key := jwkOf(fuzzKID, fuzzKey())
	f.Add([]byte(`{"webhook_type":"INCOME","webhook_code":"BANK_INCOME_COMPLETE","user_id":"u","result":"SUCCESS","environment":"sandbox"}`), "")
	f.Fuzz(func(t *testing.T, body []byte, token string) {
		notified, fetches := 0, 0
		h, err := webhook.NewHandler(webhook.Options{
			Keys:          staticKeys{key, &fetches},
			Notifier:      webhook.NotifierFunc(func(context.Context, string) { notified++ }),
			Now:           func() time.Time { return time.Unix(fuzzIAT+10, 0) },
			MaxBodyBytes:  4096,
			KeyFetchBurst: 1,
		})
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodPost, webhook.Path, bytes.NewReader(body))
		req.Header.Set("Plaid-Verification", token)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusUnauthorized, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("status %d", rec.Code)
		}
		if notified > 1 || (notified == 1 && rec.Code != http.StatusOK) {
			t.Fatalf("notified %d times, answered %d", notified, rec.Code)
		}
		if (fetches > 0 || notified > 0) && !canonicalJWS(token) {
			t.Fatalf("a token not canonically spelled cost %d fetches and %d notifications", fetches, notified)
		}
	})
}
