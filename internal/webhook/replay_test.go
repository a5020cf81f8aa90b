package webhook_test

import (
	"context"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/creditsessions/creditsessions/internal/webhook"
)

// startRedis starts a real redis-server on a free loopback port for this test, or skips
// the test when none is installed. stop kills it, as a crash would.
func startRedis(t *testing.T) (addr string, stop func()) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not installed (apt-get install redis-server): the fleet tests need a real Redis")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	addr = "127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(bin, "--bind", "127.0.0.1", "--port", strconv.Itoa(port),
		"--save", "", "--appendonly", "no", "--protected-mode", "yes", "--loglevel", "warning")
	require.NoError(t, cmd.Start())
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			_ = cmd.Process.Kill()
			<-done
		}
	}
	t.Cleanup(stop)
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		return c.Ping(ctx).Err() == nil
	}, 10*time.Second, 10*time.Millisecond, "redis-server did not come up on %s", addr)
	return addr, stop
}

// sharing returns an option that makes a handler remember webhooks in the Redis at addr.
func sharing(t *testing.T, addr string) func(*webhook.Options) {
	client := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = client.Close() })
	return func(o *webhook.Options) { o.SharedReplays = webhook.RedisReplays{Client: client} }
}

// Two replicas behind one Redis: a webhook one of them accepted is a replay on the
// other, and Redis keeps it only for the iat window, under a hash.
func TestAWebhookAcceptedByOneReplicaIsAReplayOnAnother(t *testing.T) {
	addr, _ := startRedis(t)
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
	addr, stop := startRedis(t)
	e := newEnv(t, sharing(t, addr))
	stop()
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
