package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// SignatureAlgorithms are the JWT algorithms accepted: asymmetric ones only. "none"
// would accept anyone's token, and HS* would let anyone holding the public key (it is
// public) sign one: the classic algorithm confusion.
var SignatureAlgorithms = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512,
	jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512,
	jose.EdDSA,
}

// MaxTokenBytes bounds a bearer token. A Kubernetes service-account token is about a
// kilobyte.
const MaxTokenBytes = 16 << 10

// clockSkew is the leeway on exp, nbf and iat, as go-jose's DefaultLeeway.
const clockSkew = jwt.DefaultLeeway

// JWTVerifier checks bearer tokens: signature by a key of a JWKS file (re-read when it
// changes), exp, nbf, iat, iss and aud.
type JWTVerifier struct {
	keys     *File[*jose.JSONWebKeySet]
	issuer   string
	audience string
	now      func() time.Time
}

// NewJWTVerifier loads the key set in jwksFile. issuer and audience are required: a
// token of another issuer, or for another service, must not get in.
func NewJWTVerifier(jwksFile, issuer, audience string, every time.Duration, logger *slog.Logger, obs Observer) (*JWTVerifier, error) {
	if issuer == "" || audience == "" {
		return nil, errors.New("-jwt-jwks needs -jwt-issuer and -jwt-audience")
	}
	keys, err := WatchFile(FileJWKS, []string{jwksFile}, every, logger, obs, func(c [][]byte) (*jose.JSONWebKeySet, error) {
		return ParseJWKS(c[0])
	})
	if err != nil {
		return nil, err
	}
	return &JWTVerifier{keys: keys, issuer: issuer, audience: audience, now: time.Now}, nil
}

// ParseJWKS reads a JSON Web Key Set and keeps its public signing keys. Symmetric keys
// are refused (see SignatureAlgorithms); private keys are reduced to their public part.
func ParseJWKS(data []byte) (*jose.JSONWebKeySet, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("JWKS: %w", scrub(err))
	}
	out := &jose.JSONWebKeySet{}
	for i, k := range set.Keys {
		if _, symmetric := k.Key.([]byte); symmetric {
			return nil, fmt.Errorf("JWKS: key %d is symmetric; only public keys verify tokens", i)
		}
		if !k.Valid() {
			return nil, fmt.Errorf("JWKS: key %d is not valid", i)
		}
		if k.Use != "" && k.Use != "sig" {
			continue // an encryption key
		}
		if !k.IsPublic() {
			k = k.Public()
		}
		out.Keys = append(out.Keys, k)
	}
	if len(out.Keys) == 0 {
		return nil, errors.New("JWKS: no signing key")
	}
	return out, nil
}

// scrub drops the text of a JSON syntax error's offending input, keeping its kind.
func scrub(err error) error {
	var syntax *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Errorf("invalid JSON at offset %d", syntax.Offset)
	case errors.As(err, &typeErr):
		return fmt.Errorf("JSON value of the wrong type at offset %d", typeErr.Offset)
	}
	return errors.New("invalid JSON")
}

// Verify checks token and returns its subject. Its error says why, for the log; it never
// holds the token or its claims.
func (v *JWTVerifier) Verify(token string) (string, error) {
	return verifyJWT(token, v.keys.Get(), v.issuer, v.audience, v.now())
}

func verifyJWT(token string, keys *jose.JSONWebKeySet, issuer, audience string, now time.Time) (string, error) {
	if len(token) > MaxTokenBytes {
		return "", errors.New("jwt: token larger than 16 KiB")
	}
	tok, err := jwt.ParseSigned(token, SignatureAlgorithms)
	if err != nil {
		return "", fmt.Errorf("jwt: %w", err)
	}
	if len(tok.Headers) != 1 {
		return "", errors.New("jwt: not exactly one signature")
	}
	h := tok.Headers[0]
	candidates := keys.Keys
	if h.KeyID != "" {
		candidates = keys.Key(h.KeyID)
		if len(candidates) == 0 {
			return "", errors.New("jwt: no key with the token's key id")
		}
	}
	var claims jwt.Claims
	verified := false
	for _, k := range candidates {
		if k.Algorithm != "" && k.Algorithm != h.Algorithm {
			continue
		}
		if err = tok.Claims(k.Key, &claims); err == nil {
			verified = true
			break
		}
	}
	if !verified {
		return "", errors.New("jwt: signature verified by no key of the set")
	}
	switch {
	case claims.Expiry == nil:
		return "", errors.New("jwt: no exp")
	case claims.Subject == "":
		return "", errors.New("jwt: no sub")
	}
	if err := claims.ValidateWithLeeway(jwt.Expected{
		Issuer: issuer, AnyAudience: jwt.Audience{audience}, Time: now,
	}, clockSkew); err != nil {
		return "", err // go-jose's validation errors name the claim, not its value
	}
	return claims.Subject, nil
}
