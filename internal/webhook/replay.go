package webhook

import (
	"context"
	"encoding/hex"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

const defaultReplayCacheSize = 1 << 16

// replayCache remembers the verified webhooks of the last MaxAge by token.replayKey, so a
// webhook sent again within the window (when it would still pass the
// iat check) triggers nothing twice. Only verified webhooks enter it, so only Plaid can
// fill it.
type replayCache struct {
	mu      sync.Mutex
	max     int
	expires map[[32]byte]time.Time
	adds    int
}

func newReplayCache(max int) *replayCache {
	if max <= 0 {
		max = defaultReplayCacheSize
	}
	return &replayCache{max: max, expires: make(map[[32]byte]time.Time)}
}

// outcome of add.
type replayOutcome int

const (
	replayFresh replayOutcome = iota
	replaySeen
	replayFull
)

// add records key until expires and says whether it is new, seen already, or could not
// be recorded because the cache is full of unexpired entries.
func (c *replayCache) add(key [32]byte, expires, now time.Time) replayOutcome {
	c.mu.Lock()
	defer c.mu.Unlock()
	if exp, ok := c.expires[key]; ok && now.Before(exp) {
		return replaySeen
	}
	c.adds++
	// Sweep now and then, and whenever full: the sweep is linear, its cost spread
	// over the adds between sweeps.
	if len(c.expires) >= c.max || c.adds%1024 == 0 {
		for k, exp := range c.expires {
			if !now.Before(exp) {
				delete(c.expires, k)
			}
		}
	}
	if len(c.expires) >= c.max {
		return replayFull
	}
	c.expires[key] = expires
	return replayFresh
}

// ReplayStore remembers verified webhooks for the whole fleet.
type ReplayStore interface {
	// Remember records key until ttl from now and reports whether it was new. An error
	// means the store could not tell.
	Remember(ctx context.Context, key [32]byte, ttl time.Duration) (fresh bool, err error)
}

// replayPrefix names the replay keys in Redis; the rest of a name is the hex of a
// replayKey, a hash: no token, body or signature is stored.
const replayPrefix = "creditsessions:webhook:seen:"

// sharedTimeout bounds the question to the fleet's store: a webhook must be answered
// within Plaid's 10 seconds, and a store that slow counts as gone.
const sharedTimeout = time.Second

// RedisReplays is a ReplayStore in Redis: SET NX with the iat window as its expiry, so a
// webhook is remembered exactly as long as it could pass the iat check again.
type RedisReplays struct {
	Client redis.Cmdable
}

// Remember implements ReplayStore.
func (r RedisReplays) Remember(ctx context.Context, key [32]byte, ttl time.Duration) (bool, error) {
	if ttl < time.Millisecond {
		ttl = time.Millisecond
	}
	return r.Client.SetNX(ctx, replayPrefix+hex.EncodeToString(key[:]), 1, ttl).Result()
}

// seen asks this replica's cache, then the fleet's store, whether the verified webhook
// key was seen before expires.
//
// When the store cannot answer (Redis down), the replica's own cache decides: a replay
// sent to the replica that accepted the webhook is still caught, one sent to another
// replica is not. That was chosen over refusing every webhook while Redis is down
// because a webhook's only effect is polling its user sooner (a replay costs at most one
// more poll per replica within the iat window), the watches themselves fall back to
// local polling the same way, and refusing would delay every genuine wake-up until
// Plaid's retries. Each such webhook is counted in
// creditsessions_webhook_replay_store_failures_total and logged.
func (h *Handler) seen(ctx context.Context, key [32]byte, expires time.Time) replayOutcome {
	now := h.now()
	if out := h.replays.add(key, expires, now); out != replayFresh || h.shared == nil {
		return out
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sharedTimeout)
	defer cancel()
	fresh, err := h.shared.Remember(ctx, key, expires.Sub(now))
	if err != nil {
		h.sharedFailures.Inc()
		h.logger.Warn("plaid webhook: the fleet's replay store did not answer; this replica's memory decided", "error", clip(err.Error()))
		return replayFresh
	}
	if !fresh {
		return replaySeen
	}
	return replayFresh
}
