package watch_test

import (
	"context"
	"testing"
	"time"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/redistest"
	"github.com/creditsessions/creditsessions/internal/watch"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// replica is a hub with a RedisFleet, as one replica has.
func replica(t *testing.T, addr string, cfg watch.Config) (*watch.Hub, *watch.RedisFleet) {
	t.Helper()
	f, err := watch.NewRedisFleet(addr, "", nil)
	require.NoError(t, err)
	cfg.Fleet = f
	h := watch.New(cfg)
	f.Attach(h)
	t.Cleanup(func() { h.Close(); _ = f.Close() })
	return h, f
}

// Two pollers of one user: replica A's fetch started first and answers last, after the
// lease passed to replica B, whose newer answer the watch on B has sent. A's answer
// reaches B through Redis, and the watch does not step back to it.
func TestTwoPollersDeliveringOutOfOrderThroughRedis(t *testing.T) {
	r := redistest.Start(t)
	key, marker := watch.Key{21}, watch.Key{22}
	b, _ := replica(t, r.Addr(), watch.Config{PollInterval: time.Hour})
	_, a := replica(t, r.Addr(), watch.Config{PollInterval: time.Hour})
	require.Eventually(t, func() bool { return a.Up() }, 10*time.Second, 10*time.Millisecond)

	// The watch on B starts and sends its first message.
	w, err := b.Watch(key, "user-21", func(context.Context) (*creditv1.CreditSessionsGetResponse, error) {
		return answer("B", "s1", "s2"), nil
	})
	require.NoError(t, err)
	defer w.Close()
	w.Sent(watch.Hash(answer("initial", "s1")), w.Stamp(t.Context()))
	m, err := b.Watch(marker, "", nil)
	require.NoError(t, err)
	defer m.Close()

	// Replica A's poll starts (driven by hand, so that the test decides when its answer
	// arrives): it takes the lease, and a stamp. Then its lease is handed over, and a
	// webhook makes B poll.
	aLead, aStamp := a.Lead(t.Context(), key, time.Hour)
	require.True(t, aLead)
	require.NotZero(t, aStamp)
	a.Release(key)
	b.Wake(watch.UserKey("user-21"))
	select {
	case <-w.C():
	case <-time.After(10 * time.Second):
		t.Fatal("B's poll never reached the watch")
	}
	snap, err := w.Next()
	require.NoError(t, err)
	require.NotNil(t, snap)
	require.Equal(t, "B", snap.Response.GetRequestId())

	// A's late answer, then, from A too, something for another user watched on B: once
	// that arrives, B has handled A's late answer (Redis delivers one publisher's
	// messages in order).
	old := answer("A, late", "s1")
	a.PublishResult(key, &watch.Snapshot{Response: old, Hash: watch.Hash(old), Version: watch.Version{Fleet: aStamp}}, nil)
	mark := answer("marker", "m1")
	a.PublishResult(marker, &watch.Snapshot{Response: mark, Hash: watch.Hash(mark), Version: watch.Version{Fleet: aStamp}}, nil)
	select {
	case <-m.C():
	case <-time.After(10 * time.Second):
		t.Fatal("A's messages never reached B")
	}
	snap, err = w.Next()
	require.NoError(t, err)
	assert.Nil(t, snap, "the watch stepped back to A's older answer")
}

// Stamps from two replicas are one sequence, and stay above every earlier one after
// Redis restarts without its data.
func TestStampsIncreaseAcrossReplicasAndRedisRestarts(t *testing.T) {
	r := redistest.Start(t)
	_, a := replica(t, r.Addr(), watch.Config{PollInterval: time.Hour})
	_, b := replica(t, r.Addr(), watch.Config{PollInterval: time.Hour})
	key := watch.Key{23}
	up := func() {
		require.Eventually(t, func() bool { return a.Up() && b.Up() }, 10*time.Second, 10*time.Millisecond)
	}
	up()
	var last uint64
	for i := range 10 {
		f := a
		if i%2 == 1 {
			f = b
		}
		s := f.Stamp(t.Context(), key)
		require.Greater(t, s, last)
		last = s
	}
	r.Stop()
	require.Eventually(t, func() bool { return !a.Up() && !b.Up() }, 10*time.Second, 10*time.Millisecond)
	assert.Zero(t, a.Stamp(t.Context(), key), "no stamp while Redis is down: the hub stamps locally")
	r.Restart()
	up()
	s := b.Stamp(t.Context(), key)
	assert.Greater(t, s, last, "a counter lost with Redis's data starts above its old numbers")
}
