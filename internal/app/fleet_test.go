package app_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/app"
	"github.com/creditsessions/creditsessions/internal/emulator"
	"github.com/creditsessions/creditsessions/internal/plaid"
	"github.com/creditsessions/creditsessions/internal/redistest"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fleet is three replicas sharing one Redis and one Plaid (the emulator).
type fleet struct {
	emu      *emulator.Server
	replicas []*service
}

func startFleet(t *testing.T, redisAddr string, interval time.Duration) *fleet {
	t.Helper()
	emu, err := emulator.Start("127.0.0.1:0", emulator.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = emu.Close() })
	f := &fleet{emu: emu}
	for range 3 {
		cfg := app.Config{
			Plaid: app.PlaidConfig{BaseURL: emu.URL, Credentials: plaid.Credentials{
				ClientID: emu.Emulator.ClientID(), Secret: emu.Emulator.Secret()}},
			RedisAddr:   redisAddr,
			WebhookAddr: "127.0.0.1:0",
		}
		cfg.Watch.PollInterval = interval
		f.replicas = append(f.replicas, start(t, cfg))
	}
	f.waitRedis(t, 1)
	return f
}

// waitRedis waits until every replica's creditsessions_redis_up is want.
func (f *fleet) waitRedis(t *testing.T, want float64) {
	t.Helper()
	for i, s := range f.replicas {
		require.Eventually(t, func() bool { return s.scrape(t)["creditsessions_redis_up"][""] == want },
			10*time.Second, 20*time.Millisecond, "replica %d: creditsessions_redis_up never became %v", i, want)
	}
}

// watchEverywhere starts n gRPC watches of token on each replica and waits for their
// first messages.
func (f *fleet) watchEverywhere(t *testing.T, token, userID string, n int) [][]*watchClient {
	t.Helper()
	out := make([][]*watchClient, len(f.replicas))
	for i, s := range f.replicas {
		for range n {
			w := watchGRPC(t, s, &creditv1.WatchCreditSessionsRequest{UserToken: token, UserId: &userID})
			require.Equal(t, "INITIAL", w.next(t).reason)
			out[i] = append(out[i], w)
		}
	}
	return out
}

// pollsTakeAnIntervalEach checks that the fleet, all replicas together, makes one call
// to Plaid per interval: the next n calls take at least n-1 intervals (three replicas
// polling on their own would make them in a third of that).
func (f *fleet) pollsTakeAnIntervalEach(t *testing.T, n int64, interval time.Duration) {
	t.Helper()
	calls := f.emu.Emulator.Calls()
	start := time.Now()
	require.Eventually(t, func() bool { return f.emu.Emulator.Calls() >= calls+n },
		time.Duration(n+20)*interval, interval/10)
	elapsed := time.Since(start)
	assert.GreaterOrEqual(t, elapsed, time.Duration(n-1)*interval,
		"%d Plaid calls in %v: more than one poller per interval", n, elapsed)
}

func TestFleetPollsEachUserOncePerInterval(t *testing.T) {
	r := redistest.Start(t)
	const interval = 100 * time.Millisecond
	f := startFleet(t, r.Addr(), interval)
	const token = "user-sandbox-example#fleet"
	watches := f.watchEverywhere(t, token, f.emu.Emulator.UserID(token), 5)
	f.pollsTakeAnIntervalEach(t, 6, interval)
	for _, ws := range watches {
		for _, w := range ws {
			w.none(t)
		}
	}
	// Redis names users by hashes only.
	rc := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer rc.Close()
	keys, err := rc.Keys(context.Background(), "*").Result()
	require.NoError(t, err)
	require.NotEmpty(t, keys, "the poller's lease")
	for _, k := range keys {
		assert.NotContains(t, k, "user-sandbox")
		assert.NotContains(t, k, f.emu.Emulator.UserID(token))
	}

	// What the one poller finds reaches every replica's watches.
	_, err = f.emu.Emulator.AddSession(token)
	require.NoError(t, err)
	for i, ws := range watches {
		for _, w := range ws {
			ev := w.next(t)
			assert.Equal(t, "POLL", ev.reason, "replica %d", i)
			assert.Equal(t, 3, ev.sessions, "replica %d", i)
		}
	}
}

func TestFleetWebhookOnOneReplicaReachesWatchesOnAll(t *testing.T) {
	r := redistest.Start(t)
	f := startFleet(t, r.Addr(), time.Hour) // no poll during the test: only the webhook
	const token = "user-sandbox-example#fleet-webhook"
	watches := f.watchEverywhere(t, token, f.emu.Emulator.UserID(token), 5)
	_, err := f.emu.Emulator.AddSession(token)
	require.NoError(t, err)
	calls := f.emu.Emulator.Calls()
	fired := time.Now()
	url := "http://" + f.replicas[0].app.WebhookAddr().String() + "/webhooks/plaid"
	require.NoError(t, f.emu.Emulator.FireWebhook(context.Background(), url, token, "INCOME", "BANK_INCOME_COMPLETE"))
	for i, ws := range watches {
		for _, w := range ws {
			ev := w.next(t)
			assert.Equal(t, "WEBHOOK", ev.reason, "replica %d", i)
			assert.Equal(t, 3, ev.sessions, "replica %d", i)
		}
	}
	assert.Less(t, time.Since(fired), time.Second)
	assert.Equal(t, calls+1, f.emu.Emulator.Calls(), "one Plaid call for the fleet")
}

// A webhook one replica accepted, sent again to another (a replay, or Plaid's load
// balancer delivering twice), wakes nobody twice: the replay cache is the fleet's.
func TestFleetWebhookAcceptedOnOneReplicaIsAReplayOnAnother(t *testing.T) {
	r := redistest.Start(t)
	f := startFleet(t, r.Addr(), time.Hour) // no poll during the test: only the webhook
	body := []byte(`{"webhook_type":"INCOME","webhook_code":"BANK_INCOME_COMPLETE","user_id":"user-replayed","result":"SUCCESS","environment":"sandbox"}`)
	token, err := f.emu.Emulator.SignWebhook(body)
	require.NoError(t, err)
	for i, want := range []string{"accepted", "replayed", "replayed"} {
		url := "http://" + f.replicas[i].app.WebhookAddr().String() + "/webhooks/plaid"
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, bytes.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Plaid-Verification", token)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, 1.0, f.replicas[i].scrape(t)["creditsessions_webhooks_total"]["result="+want], "replica %d", i)
	}
}

func TestFleetWakeReachesEveryReplica(t *testing.T) {
	r := redistest.Start(t)
	f := startFleet(t, r.Addr(), time.Hour) // no poll during the test: only wake-ups
	f.watchEverywhere(t, "user-sandbox-example#wake", "user-wake", 2)
	for i, s := range f.replicas {
		calls := f.emu.Emulator.Calls()
		// A webhook about the user reaches replica i: whichever replica holds the
		// user's lease polls Plaid, once, at once.
		s.app.Hub().Notify(context.Background(), "user-wake")
		require.Eventually(t, func() bool { return f.emu.Emulator.Calls() == calls+1 },
			5*time.Second, 5*time.Millisecond, "a wake-up on replica %d", i)
	}

	// Shutdown gives the lease back, so another replica need not wait for it to expire.
	rc := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer rc.Close()
	leases, err := rc.Keys(context.Background(), "creditsessions:watch:v2:lease:*").Result()
	require.NoError(t, err)
	require.Len(t, leases, 1, "one lease for the one user")
	for _, s := range f.replicas {
		require.NoError(t, s.stopFn())
	}
	leases, err = rc.Keys(context.Background(), "creditsessions:watch:v2:lease:*").Result()
	require.NoError(t, err)
	assert.Empty(t, leases)
}

func TestFleetSurvivesRedisRestarting(t *testing.T) {
	r := redistest.Start(t)
	const interval = 100 * time.Millisecond
	f := startFleet(t, r.Addr(), interval)
	const token = "user-sandbox-example#restart"
	watches := f.watchEverywhere(t, token, f.emu.Emulator.UserID(token), 2)
	changed := func(sessions int) {
		t.Helper()
		_, err := f.emu.Emulator.AddSession(token)
		require.NoError(t, err)
		for i, ws := range watches {
			for _, w := range ws {
				ev := w.next(t)
				assert.Equal(t, "POLL", ev.reason, "replica %d", i)
				assert.Equal(t, sessions, ev.sessions, "replica %d", i)
			}
		}
	}

	r.Stop()
	f.waitRedis(t, 0)
	// Calls keep working, and watches keep being told, each replica polling on its own.
	for i, s := range f.replicas {
		resp, err := s.grpc.CreditSessionsGet(context.Background(), &creditv1.CreditSessionsGetRequest{UserToken: "user-sandbox-example"})
		require.NoError(t, err, "replica %d", i)
		assert.Len(t, resp.GetSessions(), 2)
	}
	changed(3)

	r.Restart()
	f.waitRedis(t, 1)
	// Back to one poller for the fleet; the watches never ended.
	f.pollsTakeAnIntervalEach(t, 6, interval)
	changed(4)
	for i, s := range f.replicas {
		assert.Equal(t, 2, s.app.Hub().Watches(), fmt.Sprintf("replica %d", i))
	}
}
