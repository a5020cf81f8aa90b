package resilience

import (
	"strconv"
	"testing"
	"time"

	"github.com/creditsessions/creditsessions/internal/plaid"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// BackoffBase<<(attempt-1) overflows time.Duration past 63 doublings, and wrapped to
// zero or below: retries without any wait. The wait is capped instead.
func TestBackoffNeverWrapsForManyAttempts(t *testing.T) {
	g := New(nil, Config{BackoffBase: 100 * time.Millisecond, BackoffMax: 2 * time.Second})
	for n := 1; n <= 200; n++ {
		d := g.backoff(n)
		require.Positive(t, d, "attempt %d", n)
		require.LessOrEqual(t, d, 2*time.Second, "attempt %d", n)
	}
	assert.Equal(t, 100*time.Millisecond, g.backoff(1))
	assert.Equal(t, 200*time.Millisecond, g.backoff(2))
	assert.Equal(t, 2*time.Second, g.backoff(64))
}

// The failure memory holds at most MaxRememberedUsers users, however many fail, and
// keeps no user token: only a hash.
func TestFailureMemoryIsBounded(t *testing.T) {
	g := New(nil, Config{MaxRememberedUsers: 100})
	failure := &plaid.Error{HTTPStatus: 500, ErrorType: "API_ERROR", ErrorCode: "INTERNAL_SERVER_ERROR"}
	now := time.Now()
	for i := range 1000 {
		u := keyOf(plaid.Request{UserToken: "user-" + strconv.Itoa(i)})
		for range 3 {
			g.users.callEnded(u, failure, KindPlaidError, now)
		}
	}
	assert.Len(t, g.users.users, 100)
	assert.Equal(t, 100, g.users.isolated(now))
}
