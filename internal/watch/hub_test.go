package watch_test

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/watch"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

func answer(requestID string, sessionIDs ...string) *creditv1.CreditSessionsGetResponse {
	r := &creditv1.CreditSessionsGetResponse{RequestId: requestID}
	for _, id := range sessionIDs {
		r.Sessions = append(r.Sessions, &creditv1.CreditSession{LinkSessionId: proto.String(id)})
	}
	return r
}

func newHub(t *testing.T, cfg watch.Config) *watch.Hub {
	t.Helper()
	h := watch.New(cfg)
	t.Cleanup(h.Close)
	return h
}

func TestHashIgnoresTheRequestIDOnly(t *testing.T) {
	assert.Equal(t, watch.Hash(answer("a", "s1")), watch.Hash(answer("b", "s1")))
	assert.NotEqual(t, watch.Hash(answer("a", "s1")), watch.Hash(answer("a", "s1", "s2")))
	assert.NotEqual(t, watch.Hash(answer("a")), watch.Hash(answer("a", "")))
}

func TestOnePollPerUserNoGoroutinePerWatch(t *testing.T) {
	var calls atomic.Int64
	fetch := func(context.Context) (*creditv1.CreditSessionsGetResponse, error) {
		calls.Add(1)
		return answer("r", "s1"), nil
	}
	h := newHub(t, watch.Config{PollInterval: 20 * time.Millisecond})
	key := watch.Key{1}
	before := runtime.NumGoroutine()
	var watchers []*watch.Watcher
	for range 1000 {
		w, err := h.Watch(key, "", fetch)
		require.NoError(t, err)
		watchers = append(watchers, w)
	}
	// The scheduler and at most one poll in flight: nothing per watch.
	assert.LessOrEqual(t, runtime.NumGoroutine()-before, 2)
	start, from := time.Now(), calls.Load()
	require.Eventually(t, func() bool { return calls.Load() >= from+5 }, 5*time.Second, time.Millisecond)
	assert.GreaterOrEqual(t, time.Since(start), 4*20*time.Millisecond, "one poll per interval for 1,000 watches")
	assert.Equal(t, 1, h.Users())
	assert.Equal(t, 1000, h.Watches())
	for _, w := range watchers {
		w.Close()
	}
	assert.Equal(t, 0, h.Users())
	n := calls.Load()
	require.Never(t, func() bool { return calls.Load() > n+1 }, 100*time.Millisecond, 10*time.Millisecond,
		"no poll once the last watch left")
}

func TestAWatchIsSentOnlyTheNewestStateAndOnlyChanges(t *testing.T) {
	h := newHub(t, watch.Config{PollInterval: time.Hour})
	key := watch.Key{2}
	w, err := h.Watch(key, "", nil)
	require.NoError(t, err)
	defer w.Close()
	first := answer("r0", "s1")
	w.Sent(watch.Hash(first), watch.Version{Fleet: 1})

	deliver := func(r *creditv1.CreditSessionsGetResponse, version uint64) {
		h.Deliver(key, &watch.Snapshot{Response: r, Hash: watch.Hash(r), Version: watch.Version{Fleet: version}}, nil)
	}
	deliver(answer("r1", "s1"), 2) // same sessions: nothing
	snap, err := w.Next()
	require.NoError(t, err)
	assert.Nil(t, snap)

	// A slow reader: three changes arrive before it reads; it gets the newest.
	deliver(answer("r2", "s1", "s2"), 3)
	deliver(answer("r3", "s1", "s2", "s3"), 4)
	<-w.C()
	snap, err = w.Next()
	require.NoError(t, err)
	require.NotNil(t, snap)
	assert.Equal(t, "r3", snap.Response.GetRequestId())

	// Back and forth before it reads: back to what it has means nothing to send.
	deliver(answer("r4", "s1"), 5)
	deliver(answer("r5", "s1", "s2", "s3"), 6)
	snap, err = w.Next()
	require.NoError(t, err)
	assert.Nil(t, snap)

	// A snapshot older than what the watch started with is ignored.
	w2, err := h.Watch(key, "", nil)
	require.NoError(t, err)
	defer w2.Close()
	w2.Sent(watch.Hash(answer("x", "s1", "s2", "s3")), watch.Version{Fleet: 100})
	deliver(answer("r6", "old"), 50)
	snap, err = w2.Next()
	require.NoError(t, err)
	assert.Nil(t, snap)
}

func TestCallerErrorsEndWatchesTransientOnesOnlyAfterTheBound(t *testing.T) {
	h := newHub(t, watch.Config{PollInterval: time.Hour, FailAfter: 50 * time.Millisecond})
	key := watch.Key{3}
	w, err := h.Watch(key, "", nil)
	require.NoError(t, err)
	defer w.Close()
	h.Deliver(key, nil, status.Error(codes.Unavailable, "down"))
	_, err = w.Next()
	require.NoError(t, err, "a transient failure within the bound ends nothing")
	h.Deliver(key, nil, status.Error(codes.Unavailable, "still down"))
	require.NoError(t, func() error { _, err := w.Next(); return err }())

	later := time.Now().Add(100 * time.Millisecond)
	require.Eventually(t, func() bool { return time.Now().After(later) }, time.Second, 5*time.Millisecond)
	h.Deliver(key, nil, status.Error(codes.Unavailable, "down for too long"))
	_, err = w.Next()
	assert.Equal(t, codes.Unavailable, status.Code(err))

	w2, err := h.Watch(watch.Key{4}, "", nil)
	require.NoError(t, err)
	defer w2.Close()
	h.Deliver(watch.Key{4}, nil, status.Error(codes.NotFound, "no such user"))
	_, err = w2.Next()
	assert.Equal(t, codes.NotFound, status.Code(err))
}

func TestWatchesEndAfterTheMaximumDurationAndOnDrain(t *testing.T) {
	h := newHub(t, watch.Config{PollInterval: time.Hour, MaxDuration: 50 * time.Millisecond})
	w, err := h.Watch(watch.Key{5}, "", nil)
	require.NoError(t, err)
	defer w.Close()
	select {
	case <-w.C():
	case <-time.After(5 * time.Second):
		t.Fatal("the watch did not end")
	}
	_, err = w.Next()
	assert.True(t, watch.IsMaxDuration(err))

	h2 := newHub(t, watch.Config{})
	w2, err := h2.Watch(watch.Key{6}, "", nil)
	require.NoError(t, err)
	defer w2.Close()
	h2.Drain(nil)
	_, err = w2.Next()
	assert.Equal(t, codes.Unavailable, status.Code(err))
	_, err = h2.Watch(watch.Key{7}, "", nil)
	assert.Equal(t, codes.Unavailable, status.Code(err), "no new watch while draining")
}

func TestAWakeUpPollsTheUserAtOnce(t *testing.T) {
	polled := make(chan struct{}, 1)
	fetch := func(context.Context) (*creditv1.CreditSessionsGetResponse, error) {
		polled <- struct{}{}
		return answer("r", "s1", "s2"), nil
	}
	h := newHub(t, watch.Config{PollInterval: time.Hour})
	w, err := h.Watch(watch.Key{8}, "user-8", fetch)
	require.NoError(t, err)
	defer w.Close()
	w.Sent(watch.Hash(answer("r0", "s1")), w.Stamp(t.Context()))
	h.Notify(context.Background(), "someone-else")
	h.Notify(context.Background(), "user-8")
	select {
	case <-polled:
	case <-time.After(5 * time.Second):
		t.Fatal("no poll after the wake-up")
	}
	<-w.C()
	snap, err := w.Next()
	require.NoError(t, err)
	require.NotNil(t, snap)
	assert.Equal(t, creditv1.WatchCreditSessionsReason_WATCH_CREDIT_SESSIONS_REASON_WEBHOOK, snap.Reason)
}

func TestWatchesPastTheCapAreRefused(t *testing.T) {
	h := newHub(t, watch.Config{PollInterval: time.Hour, MaxWatches: 2})
	for range 2 {
		w, err := h.Watch(watch.Key{9}, "", nil)
		require.NoError(t, err)
		defer w.Close()
	}
	_, err := h.Watch(watch.Key{10}, "", nil)
	assert.Equal(t, codes.ResourceExhausted, status.Code(err))
}

// Two replicas polled one user (a lease handed over while the first one's fetch was slow,
// or Redis flapping): their answers arrive in any order, and a watch never steps back
// to an older one than it sent, however the replicas' clocks disagree.
func TestAWatchNeverStepsBackToAnOlderSnapshot(t *testing.T) {
	h := newHub(t, watch.Config{PollInterval: time.Hour})
	key := watch.Key{11}
	w, err := h.Watch(key, "", nil)
	require.NoError(t, err)
	defer w.Close()
	w.Sent(watch.Hash(answer("initial", "s1")), watch.Version{Fleet: 10})
	deliver := func(requestID string, version watch.Version, sessions ...string) {
		r := answer(requestID, sessions...)
		h.Deliver(key, &watch.Snapshot{Response: r, Hash: watch.Hash(r), Version: version}, nil)
	}
	next := func() string {
		t.Helper()
		snap, err := w.Next()
		require.NoError(t, err)
		if snap == nil {
			return ""
		}
		return snap.Response.GetRequestId()
	}

	// Replica B's poll started after replica A's, and answers first.
	deliver("B", watch.Version{Fleet: 12}, "s1", "s2")
	assert.Equal(t, "B", next())
	deliver("A, late", watch.Version{Fleet: 11}, "s1")
	assert.Empty(t, next(), "the older answer is not sent after the newer")

	// Both before the reader reads: the newer stays pending whatever comes after it.
	deliver("D", watch.Version{Fleet: 14}, "s1", "s2", "s3")
	deliver("C, late", watch.Version{Fleet: 13}, "s1")
	assert.Equal(t, "D", next())

	// A replica without Redis polls on its own: after what the fleet sent, before what
	// the fleet sends once Redis is back.
	deliver("local", watch.Version{Fleet: 14, Local: 1}, "s1", "s2", "s3", "s4")
	assert.Equal(t, "local", next())
	deliver("fleet again", watch.Version{Fleet: 15}, "s1", "s2", "s3", "s4", "s5")
	assert.Equal(t, "fleet again", next())
	deliver("local, late", watch.Version{Fleet: 14, Local: 2}, "s1")
	assert.Empty(t, next())
}

// A snapshot older than the watch's first message, pending when it is sent, is dropped.
func TestASnapshotOlderThanTheFirstMessageIsDropped(t *testing.T) {
	h := newHub(t, watch.Config{PollInterval: time.Hour})
	key := watch.Key{12}
	w, err := h.Watch(key, "", nil)
	require.NoError(t, err)
	defer w.Close()
	older := answer("older", "s0")
	h.Deliver(key, &watch.Snapshot{Response: older, Hash: watch.Hash(older), Version: watch.Version{Fleet: 5}}, nil)
	w.Sent(watch.Hash(answer("first", "s1")), watch.Version{Fleet: 6})
	snap, err := w.Next()
	require.NoError(t, err)
	assert.Nil(t, snap)
}
