package auth

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fuzzJWKS is the public key the seed tokens in testdata/fuzz/FuzzVerifyJWT are signed
// with (valid until 2100).
const fuzzJWKS = `{"keys":[{"use":"sig","kty":"EC","kid":"fuzz-ec","crv":"P-256","alg":"ES256",` +
	`"x":"gDsPKWjlNzsAPnlUrKkT0MceVXreDz4jmvHnIfnoUJ0","y":"lmPfyEaDm4XbxA-_2w1Y31S1-XNzTVc44KUE4vjObE8"}]}`

// FuzzVerifyJWT: whatever a caller sends as a bearer token, verification ends with a
// subject or an error, never a panic, and its error never quotes the token.
func FuzzVerifyJWT(f *testing.F) {
	keys, err := ParseJWKS([]byte(fuzzJWKS))
	require.NoError(f, err)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, token string) {
		sub, err := verifyJWT(token, keys, "https://issuer.example", "creditsessions", now)
		if err != nil {
			assert.Empty(t, sub)
			if len(token) >= 16 {
				assert.NotContains(t, err.Error(), token)
			}
			return
		}
		assert.NotEmpty(t, sub, "a verified token names its subject")
	})
}

func TestTheSeedTokensMeanWhatTheySay(t *testing.T) {
	keys, err := ParseJWKS([]byte(fuzzJWKS))
	require.NoError(t, err)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for seed, want := range map[string]string{
		"seed-0":    "system:serviceaccount:billing:underwriter", // a service-account token
		"seed-1":    "x",                                         // one audience of two
		"seed-2":    "",                                          // the wrong issuer
		"seed-3":    "",                                          // expired
		"seed-none": "", "seed-hs256": "",
	} {
		sub, _ := verifyJWT(seedString(t, "FuzzVerifyJWT/"+seed), keys, "https://issuer.example", "creditsessions", now)
		assert.Equal(t, want, sub, seed)
	}
}

func TestParseJWKS(t *testing.T) {
	_, err := ParseJWKS([]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQ","alg":"HS256"}]}`))
	assert.ErrorContains(t, err, "symmetric", "a shared secret would let anyone who has it sign")
	_, err = ParseJWKS([]byte(`{"keys":[]}`))
	assert.ErrorContains(t, err, "no signing key")
	_, err = ParseJWKS([]byte(`{"keys": [{"kty": "RSA", "n": "very-secret-looking"`))
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "very-secret-looking", "errors do not quote the file")
	_, err = ParseJWKS([]byte(`not json at all: hunter2`))
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "hunter2")

	// A private key is reduced to its public half.
	var priv jose.JSONWebKey
	require.NoError(t, json.Unmarshal([]byte(`{"use":"sig","kty":"EC","kid":"fuzz-ec","crv":"P-256","alg":"ES256",`+
		`"x":"gDsPKWjlNzsAPnlUrKkT0MceVXreDz4jmvHnIfnoUJ0","y":"lmPfyEaDm4XbxA-_2w1Y31S1-XNzTVc44KUE4vjObE8",`+
		`"d":"g_KT3mkB5klprDjSbuZYD3pahZRsItIX6IIKh1YwBfo"}`), &priv))
	data, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{priv}})
	require.NoError(t, err)
	set, err := ParseJWKS(data)
	require.NoError(t, err)
	assert.True(t, set.Keys[0].IsPublic())
}

func TestOversizedTokensAreRefusedUnread(t *testing.T) {
	keys, err := ParseJWKS([]byte(fuzzJWKS))
	require.NoError(t, err)
	_, err = verifyJWT(strings.Repeat("a", MaxTokenBytes+1), keys, "i", "a", time.Now())
	assert.ErrorContains(t, err, "larger than")
}
