package webhook

import (
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// token is a Plaid-Verification header taken apart, before any key is needed: its three
// segments decoded, the header's alg and kid, and the claims as the token states them
// (not yet verified).
type token struct {
	header, payload, sig []byte
	alg, kid             string
	claims               claims
}

// claims are the two Plaid signs; the rest are ignored.
type claims struct {
	IssuedAt *jwt.NumericDate `json:"iat"`
	BodySHA  *string          `json:"request_body_sha256"`
}

// decodeSegment decodes one segment of a compact JWS, refusing every spelling but the
// canonical one: no padding, no line breaks (which Go's decoder skips), and unused low
// bits of the last character zero. go-jose accepts other spellings of the payload and
// verifies the signature over the payload re-encoded, so a webhook re-spelled would
// verify and, keyed by its text, look new.
func decodeSegment(s string) ([]byte, error) {
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, err
	}
	if base64.RawURLEncoding.EncodeToString(b) != s {
		return nil, errors.New("not canonical base64url")
	}
	return b, nil
}

// parseToken checks everything about raw that needs no key, cheapest first, and returns
// the result naming the first check that failed. A webhook from Plaid passes all of
// them; a sender of junk must get all of them right before the handler spends any of
// its allowance of key fetches on it.
func parseToken(raw string, body []byte, now time.Time) (t token, result string, err error) {
	if raw == "" {
		return t, ResultMissingSignature, nil
	}
	if len(raw) > maxTokenBytes {
		return t, ResultMalformedSignature, fmt.Errorf("a %d-byte header", len(raw))
	}
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return t, ResultMalformedSignature, errors.New("not a compact JWS")
	}
	if t.header, err = decodeSegment(parts[0]); err != nil {
		return t, ResultMalformedSignature, fmt.Errorf("header: %w", err)
	}
	var header struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(t.header, &header); err != nil {
		return t, ResultMalformedSignature, fmt.Errorf("header: %w", err)
	}
	t.alg, t.kid = header.Alg, header.Kid
	if t.alg != string(jose.ES256) {
		return t, ResultBadAlg, fmt.Errorf("alg %q", clip(t.alg))
	}
	if t.kid == "" {
		return t, ResultMissingKID, nil
	}
	if len(t.kid) > maxKeyIDBytes || !printableASCII(t.kid) {
		t.kid = "" // not logged: it is not one Plaid would send
		return t, ResultMalformedSignature, errors.New("a kid over 128 bytes or not printable ASCII")
	}
	if t.payload, err = decodeSegment(parts[1]); err != nil {
		return t, ResultMalformedSignature, fmt.Errorf("payload: %w", err)
	}
	if t.sig, err = decodeSegment(parts[2]); err != nil {
		return t, ResultMalformedSignature, fmt.Errorf("signature: %w", err)
	}
	if err := checkSignatureShape(t.sig); err != nil {
		return t, ResultMalformedSignature, err
	}
	if err := json.Unmarshal(t.payload, &t.claims); err != nil {
		return t, ResultBadClaims, err
	}
	if result, err := t.claims.check(body, now); result != "" {
		return t, result, err
	}
	return t, "", nil
}

// checkSignatureShape refuses an ES256 signature that cannot verify with any key: not 64
// bytes, or r or s outside [1, n-1].
func checkSignatureShape(sig []byte) error {
	if len(sig) != 64 {
		return fmt.Errorf("a %d-byte signature, not 64", len(sig))
	}
	n := elliptic.P256().Params().N
	for _, half := range [][]byte{sig[:32], sig[32:]} {
		if v := new(big.Int).SetBytes(half); v.Sign() == 0 || v.Cmp(n) >= 0 {
			return errors.New("signature: r or s out of range")
		}
	}
	return nil
}

// check holds the claims to Plaid's rules: iat within MaxAge (and MaxClockSkew ahead), and
// request_body_sha256 the body's.
func (c claims) check(body []byte, now time.Time) (string, error) {
	if c.IssuedAt == nil || c.BodySHA == nil {
		return ResultBadClaims, errors.New("iat or request_body_sha256 missing")
	}
	iat := c.iat()
	switch {
	case now.Sub(iat) > MaxAge:
		return ResultIATTooOld, fmt.Errorf("issued %s ago", now.Sub(iat).Round(time.Second))
	case iat.Sub(now) > MaxClockSkew:
		return ResultIATInFuture, fmt.Errorf("issued %s from now", iat.Sub(now).Round(time.Second))
	}
	claimed, err := hex.DecodeString(*c.BodySHA)
	if err != nil || len(claimed) != sha256.Size {
		return ResultBadClaims, errors.New("request_body_sha256 is not a hex SHA-256")
	}
	sum := sha256.Sum256(body)
	if subtle.ConstantTimeCompare(claimed, sum[:]) != 1 {
		return ResultBodyMismatch, nil
	}
	return "", nil
}

// iat is when the claims say the webhook was signed; check has accepted them.
func (c claims) iat() time.Time { return c.IssuedAt.Time() }

// replayKey is what the replay caches remember of a verified token: the SHA-256 of its
// decoded header, payload and signature, with the signature's s in its low form. An
// ECDSA signature (r, s) has a twin (r, n-s) that verifies too, so keyed by the signature
// as sent a replay could pass as new; and keyed by the text, a re-spelling could (though
// parseToken refuses those). Plaid signing the same body again (a retry, with a new
// signature) is a new delivery.
func (t token) replayKey() [32]byte {
	sig := append([]byte(nil), t.sig...)
	n := elliptic.P256().Params().N
	s := new(big.Int).SetBytes(sig[32:])
	if twin := new(big.Int).Sub(n, s); twin.Cmp(s) < 0 {
		twin.FillBytes(sig[32:])
	}
	h := sha256.New()
	for _, part := range [][]byte{t.header, t.payload, sig} {
		var size [8]byte
		for i, v := 0, len(part); i < 8; i, v = i+1, v>>8 {
			size[i] = byte(v)
		}
		h.Write(size[:])
		h.Write(part)
	}
	var key [32]byte
	h.Sum(key[:0])
	return key
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
