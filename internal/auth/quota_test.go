package auth

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestQuotaIsPerCaller(t *testing.T) {
	q := NewQuota(1, 2)
	now := time.Now()
	for range 2 {
		ok, _ := q.Take("a", now)
		assert.True(t, ok)
	}
	ok, wait := q.Take("a", now)
	assert.False(t, ok)
	assert.InDelta(t, time.Second.Seconds(), wait.Seconds(), 0.01, "one call a second: the next in a second")
	ok, _ = q.Take("b", now)
	assert.True(t, ok, "another caller is not slowed")
	ok, _ = q.Take("a", now.Add(time.Second))
	assert.True(t, ok, "admitted once the wait is over")
}

func TestQuotaForgetsIdleCallersOnly(t *testing.T) {
	q := NewQuota(1, 1)
	now := time.Now()
	for i := range maxLimiters {
		q.Take("caller-"+strconv.Itoa(i), now)
	}
	assert.Equal(t, maxLimiters, q.Len())
	// All are spent: nobody can be forgotten without giving them a fresh allowance.
	ok, _ := q.Take("newcomer", now)
	assert.True(t, ok, "the newcomer shares the overflow limiter")
	ok, _ = q.Take("caller-0", now)
	assert.False(t, ok, "a spent caller stays spent")
	assert.Equal(t, maxLimiters, q.Len(), "the map does not grow past its bound")

	later := now.Add(10 * time.Second) // every bucket full again
	ok, _ = q.Take("newcomer-2", later)
	assert.True(t, ok)
	assert.Equal(t, 1, q.Len(), "idle callers, whose buckets are full, were dropped")
}
