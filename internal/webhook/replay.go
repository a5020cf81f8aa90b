package webhook

import (
	"sync"
	"time"
)

const defaultReplayCacheSize = 1 << 16

// replayCache remembers the verified webhooks of the last MaxAge by replayKeyOf, so a
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
