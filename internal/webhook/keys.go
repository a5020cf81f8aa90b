package webhook

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/creditsessions/creditsessions/internal/plaid"
)

const (
	defaultKeyTTL        = time.Hour
	defaultKeyFetchEvery = 10 * time.Second
	defaultKeyFetchBurst = 5
	// negativeTTL is how long a kid Plaid does not know, or knows as expired, is
	// answered from the cache: an expired key does not come back, and a sender repeating
	// a made-up kid should cost Plaid nothing.
	negativeTTL = 10 * time.Minute
	// retryValidAfter is how soon a valid key whose re-check failed is checked again.
	retryValidAfter = time.Minute
	// fetchTimeout bounds one request to Plaid for a key.
	fetchTimeout = 10 * time.Second
	// maxKeyEntries bounds the cache. Valid keys are the few Plaid has; the rest are
	// kids Plaid refused, of which the oldest go first.
	maxKeyEntries = 1024
)

// keyState is what Plaid said of a kid.
type keyState int

const (
	keyValid keyState = iota
	keyUnknown
	keyExpired
)

type keyEntry struct {
	state   keyState
	key     *ecdsa.PublicKey // for keyValid
	recheck time.Time        // when to ask Plaid again
}

// keyCache holds Plaid's verification keys by kid, and asks Plaid for a kid it has no
// current answer for: once at a time per kid, and, for kids it has never seen valid, no
// more often than its budget allows the sender.
type keyCache struct {
	fetcher KeyFetcher
	now     func() time.Time
	logger  *slog.Logger
	ttl     time.Duration
	budget  *fetchBudget
	flights singleflight.Group

	mu      sync.Mutex
	entries map[string]keyEntry
}

func newKeyCache(f KeyFetcher, now func() time.Time, logger *slog.Logger, ttl time.Duration, budget *fetchBudget) *keyCache {
	if ttl <= 0 {
		ttl = defaultKeyTTL
	}
	return &keyCache{
		fetcher: f, now: now, logger: logger, ttl: ttl, budget: budget,
		entries: make(map[string]keyEntry),
	}
}

// keyAnswer is the outcome of a lookup: a key, or the result naming why there is none.
type keyAnswer struct {
	key    *ecdsa.PublicKey
	result string
	err    error
}

// get returns the valid key named kid, or the result that says why there is none. A
// fetch it causes is charged to from, the sender.
func (c *keyCache) get(ctx context.Context, kid string, from netip.Prefix) (*ecdsa.PublicKey, string, error) {
	c.mu.Lock()
	e, ok := c.entries[kid]
	c.mu.Unlock()
	if ok && c.now().Before(e.recheck) {
		a := e.answer()
		return a.key, a.result, a.err
	}
	ch := c.flights.DoChan(kid, func() (any, error) { return c.fetch(kid, from), nil })
	select {
	case r := <-ch:
		a := r.Val.(keyAnswer)
		return a.key, a.result, a.err
	case <-ctx.Done():
		return nil, ResultKeyUnavailable, ctx.Err()
	}
}

func (e keyEntry) answer() keyAnswer {
	switch e.state {
	case keyValid:
		return keyAnswer{key: e.key}
	case keyExpired:
		return keyAnswer{result: ResultExpiredKey}
	default:
		return keyAnswer{result: ResultUnknownKID}
	}
}

// fetch asks Plaid for kid and records the answer. One runs at a time per kid.
func (c *keyCache) fetch(kid string, from netip.Prefix) keyAnswer {
	now := c.now()
	c.mu.Lock()
	old, known := c.entries[kid]
	c.mu.Unlock()
	if known && now.Before(old.recheck) { // another flight answered just now
		return old.answer()
	}
	wasValid := known && old.state == keyValid
	// A kid never seen valid may be anyone's invention: those fetches are charged to
	// their sender (see fetchBudget). Re-checking a key Plaid gave us is bounded by the
	// few keys Plaid has.
	if !wasValid && !c.budget.allow(from, now) {
		return keyAnswer{result: ResultKeyFetchLimited, err: errors.New("fetches of unknown kids are rate-limited")}
	}
	ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
	defer cancel()
	got, err := c.fetcher.WebhookVerificationKeyGet(ctx, kid)
	if err != nil {
		if pe, ok := errors.AsType[*plaid.Error](err); ok && pe.ErrorCode == "INVALID_WEBHOOK_VERIFICATION_KEY_ID" {
			c.store(kid, keyEntry{state: keyUnknown, recheck: now.Add(negativeTTL)})
			return keyAnswer{result: ResultUnknownKID}
		}
		if wasValid {
			// Plaid is unreachable or failing: keep the key it gave us, which it had not
			// expired an hour ago, rather than refuse every webhook; ask again soon.
			c.logger.Warn("plaid webhook key re-check failed; still using the cached key", "kid", kid, "error", err)
			c.store(kid, keyEntry{state: keyValid, key: old.key, recheck: now.Add(retryValidAfter)})
			return keyAnswer{key: old.key}
		}
		return keyAnswer{result: ResultKeyUnavailable, err: err}
	}
	if got.Kid != kid {
		return keyAnswer{result: ResultKeyUnavailable, err: fmt.Errorf("asked for kid %q, Plaid answered %q", kid, clip(got.Kid))}
	}
	if got.ExpiredAt != nil {
		c.store(kid, keyEntry{state: keyExpired, recheck: now.Add(negativeTTL)})
		return keyAnswer{result: ResultExpiredKey}
	}
	key, err := publicKey(got)
	if err != nil {
		return keyAnswer{result: ResultKeyUnavailable, err: err}
	}
	c.store(kid, keyEntry{state: keyValid, key: key, recheck: now.Add(c.ttl)})
	return keyAnswer{key: key}
}

// store records e for kid, making room by dropping refused kids first, then the entry
// due for re-checking soonest.
func (c *keyCache) store(kid string, e keyEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[kid]; !ok && len(c.entries) >= maxKeyEntries {
		victim, found := "", false
		var worst keyEntry
		for k, v := range c.entries {
			if !found || evictFirst(v, worst) {
				victim, worst, found = k, v, true
			}
		}
		delete(c.entries, victim)
	}
	c.entries[kid] = e
}

// evictFirst reports whether a should leave the cache before b: refused kids before
// valid keys, then the one due for re-checking soonest.
func evictFirst(a, b keyEntry) bool {
	if aRefused, bRefused := a.state != keyValid, b.state != keyValid; aRefused != bRefused {
		return aRefused
	}
	return a.recheck.Before(b.recheck)
}

// publicKey turns Plaid's JWK into an ECDSA P-256 key, refusing anything else.
func publicKey(k *plaid.WebhookVerificationKey) (*ecdsa.PublicKey, error) {
	if k.Alg != "ES256" || k.Kty != "EC" || k.Crv != "P-256" || (k.Use != "" && k.Use != "sig") {
		return nil, fmt.Errorf("key %q is not an ES256 signing key (alg %q, kty %q, crv %q, use %q)",
			clip(k.Kid), clip(k.Alg), clip(k.Kty), clip(k.Crv), clip(k.Use))
	}
	x, errX := base64.RawURLEncoding.DecodeString(strings.TrimRight(k.X, "="))
	y, errY := base64.RawURLEncoding.DecodeString(strings.TrimRight(k.Y, "="))
	if err := errors.Join(errX, errY); err != nil || len(x) != 32 || len(y) != 32 {
		return nil, fmt.Errorf("key %q: x and y are not 32-byte base64url coordinates: %v", clip(k.Kid), err)
	}
	point := append(append([]byte{4}, x...), y...)
	key, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
	if err != nil {
		return nil, fmt.Errorf("key %q: %w", clip(k.Kid), err)
	}
	return key, nil
}
