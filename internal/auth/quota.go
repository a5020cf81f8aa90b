package auth

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// maxLimiters bounds the callers tracked at once. Callers are authenticated, so there
// are as many as the deployments allowed in; past the bound, idle callers are dropped,
// and if none is idle, the newcomers share one limiter.
const maxLimiters = 10000

// Quota is a token bucket per caller: rate calls a second, bursts of burst.
type Quota struct {
	limit rate.Limit
	burst int

	mu       sync.Mutex
	limiters map[string]*rate.Limiter
	overflow *rate.Limiter
}

// NewQuota returns per-caller buckets; burst below 1 means 1.
func NewQuota(perSecond float64, burst int) *Quota {
	if burst < 1 {
		burst = 1
	}
	return &Quota{
		limit:    rate.Limit(perSecond),
		burst:    burst,
		limiters: make(map[string]*rate.Limiter),
		overflow: rate.NewLimiter(rate.Limit(perSecond), burst),
	}
}

// Take spends one call of caller's allowance. When there is none left it spends
// nothing and returns how long until a call will be admitted.
func (q *Quota) Take(caller string, now time.Time) (ok bool, wait time.Duration) {
	return q.TakeN(caller, now, 1)
}

// TakeN spends n calls of caller's allowance at once (a batch), or nothing. A cost
// above the burst can never be admitted: it is refused with the time a whole burst takes
// to refill, and the caller must send smaller batches.
func (q *Quota) TakeN(caller string, now time.Time, n int) (ok bool, wait time.Duration) {
	l := q.limiter(caller, now)
	r := l.ReserveN(now, n)
	if !r.OK() {
		return false, max(time.Second, time.Duration(float64(q.burst)/float64(q.limit)*float64(time.Second)))
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

func (q *Quota) limiter(caller string, now time.Time) *rate.Limiter {
	q.mu.Lock()
	defer q.mu.Unlock()
	if l, ok := q.limiters[caller]; ok {
		return l
	}
	if len(q.limiters) >= maxLimiters {
		q.evictIdle(now)
		if len(q.limiters) >= maxLimiters {
			return q.overflow
		}
	}
	l := rate.NewLimiter(q.limit, q.burst)
	q.limiters[caller] = l
	return l
}

// evictIdle drops the limiters whose buckets are full again: a new one would be in
// the same state, so dropping them changes no caller's allowance.
func (q *Quota) evictIdle(now time.Time) {
	for k, l := range q.limiters {
		if l.TokensAt(now) >= float64(q.burst) {
			delete(q.limiters, k)
		}
	}
}

// Len is the number of callers tracked.
func (q *Quota) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.limiters)
}
