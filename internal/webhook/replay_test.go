package webhook_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/creditsessions/creditsessions/internal/redistest"
	"github.com/creditsessions/creditsessions/internal/webhook"
)

// sharing returns an option that makes a handler remember webhooks in the Redis at addr.
func sharing(t *testing.T, addr string) func(*webhook.Options) {
	client := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = client.Close() })
	return func(o *webhook.Options) { o.SharedReplays = webhook.RedisReplays{Client: client} }
}

// Two replicas behind one Redis: a webhook one of them accepted is a replay on the
// other, and Redis keeps it only for the iat window, under a hash.
func TestAWebhookAcceptedByOneReplicaIsAReplayOnAnother(t *testing.T) {
	addr := redistest.Start(t).Addr()
	a := newEnv(t, sharing(t, addr))
	b := a.replica(t, sharing(t, addr))
	body := incomeBody("user-1")
	token, err := a.emu.SignWebhook(body)
	require.NoError(t, err)

	require.Equal(t, http.StatusOK, a.post(t, body, token))
	assert.Equal(t, "user-1", a.nextNotification(t))
	assert.Equal(t, http.StatusOK, b.post(t, body, token), "a replay is acknowledged, as Plaid resends")
	b.noNotification(t)
	assert.Equal(t, 1.0, b.count(t, webhook.ResultReplayed))

	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	keys, err := c.Keys(t.Context(), "*").Result()
	require.NoError(t, err)
	require.Len(t, keys, 1)
	assert.Regexp(t, `^creditsessions:webhook:seen:[0-9a-f]{64}$`, keys[0])
	ttl, err := c.PTTL(t.Context(), keys[0]).Result()
	require.NoError(t, err)
	assert.InDelta(t, (webhook.MaxAge + time.Second).Seconds(), ttl.Seconds(), 3, "kept for the iat window")
}

// With Redis gone, each replica's own memory decides: its own replays are still caught,
// every genuine webhook is still accepted, and the fallback is counted.
func TestRedisDownFallsBackToEachReplicasMemory(t *testing.T) {
	r := redistest.Start(t)
	e := newEnv(t, sharing(t, r.Addr()))
	r.Stop()
	body := incomeBody("user-2")
	token, err := e.emu.SignWebhook(body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, e.post(t, body, token))
	assert.Equal(t, "user-2", e.nextNotification(t))
	require.Equal(t, http.StatusOK, e.post(t, body, token))
	e.noNotification(t)
	assert.Equal(t, 1.0, e.count(t, webhook.ResultReplayed))
	assert.Equal(t, 1.0, e.gauge(t, "creditsessions_webhook_replay_store_failures_total"))
	assert.Contains(t, e.logs.String(), "replay store did not answer")
}
