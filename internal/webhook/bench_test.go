package webhook_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/creditsessions/creditsessions/internal/webhook"
)

// BenchmarkRefuseJunk is what a webhook from outside costs the handler when it is refused:
// before any key (a stale one), and after the allowances are spent (a fresh made-up kid
// each time, from one sender).
func BenchmarkRefuseJunk(b *testing.B) {
	key := jwkOf(fuzzKID, fuzzKey())
	attacker, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	body := []byte(`{"webhook_type":"INCOME","webhook_code":"BANK_INCOME_COMPLETE","user_id":"u"}`)
	for _, tc := range []struct {
		name string
		iat  time.Time
	}{
		{"stale", time.Now().Add(-time.Hour)},
		{"made-up kid, limited", time.Now()},
	} {
		b.Run(tc.name, func(b *testing.B) {
			h, err := webhook.NewHandler(webhook.Options{
				Keys: staticKeys{key: key}, Notifier: webhook.NotifierFunc(func(context.Context, string) {}),
				KeyFetchBurst: 1, KeyFetchEvery: time.Hour, SourceKeyFetchBurst: 1, SourceKeyFetchEvery: time.Hour,
			})
			if err != nil {
				b.Fatal(err)
			}
			tokens := make([]string, 1024)
			for i := range tokens {
				tokens[i] = forge(map[string]any{"alg": "ES256", "kid": fmt.Sprint("junk-", i), "typ": "JWT"}, body, tc.iat, es256(attacker))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				req := httptest.NewRequest(http.MethodPost, webhook.Path, bytes.NewReader(body))
				req.Header.Set("Plaid-Verification", tokens[i%len(tokens)])
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusUnauthorized {
					b.Fatalf("status %d", rec.Code)
				}
			}
		})
	}
}
