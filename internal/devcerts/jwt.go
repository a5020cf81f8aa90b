package devcerts

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Issuer signs bearer JWTs for the -jwt-jwks path, as an identity provider or a
// Kubernetes API server would, so that path can be tried with no identity provider.
type Issuer struct {
	KeyID    string
	Issuer   string // the iss of its tokens
	Audience string // the aud of its tokens
	key      *ecdsa.PrivateKey
}

// NewIssuer makes an ES256 signing key for tokens with the given iss and aud.
func NewIssuer(issuer, audience string) (*Issuer, error) {
	if issuer == "" || audience == "" {
		return nil, errors.New("devcerts: a token issuer needs an issuer and an audience")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return &Issuer{KeyID: serial().Text(36), Issuer: issuer, Audience: audience, key: key}, nil
}

// JWKS is the public key set that verifies the issuer's tokens: what -jwt-jwks reads.
func (i *Issuer) JWKS() ([]byte, error) {
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key: &i.key.PublicKey, KeyID: i.KeyID, Algorithm: string(jose.ES256), Use: "sig",
	}}}
	b, err := json.MarshalIndent(set, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Token is a signed JWT whose sub is subject, valid from now for ttl.
func (i *Issuer) Token(subject string, ttl time.Duration) (string, error) {
	if subject == "" || ttl <= 0 {
		return "", errors.New("devcerts: a token needs a subject and a positive lifetime")
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: i.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), i.KeyID))
	if err != nil {
		return "", err
	}
	now := time.Now()
	return jwt.Signed(signer).Claims(jwt.Claims{
		Issuer:    i.Issuer,
		Subject:   subject,
		Audience:  jwt.Audience{i.Audience},
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)),
		Expiry:    jwt.NewNumericDate(now.Add(ttl)),
	}).Serialize()
}
