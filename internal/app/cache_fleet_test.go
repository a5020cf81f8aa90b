package app_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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

// newCacheKey returns a fresh AES-256 key in hex, as -cache-key-file holds it.
func newCacheKey(t *testing.T) string {
	t.Helper()
	var k [32]byte
	_, err := rand.Read(k[:])
	require.NoError(t, err)
	return hex.EncodeToString(k[:])
}

func keyID(t *testing.T, hexKey string) []byte {
	raw, err := hex.DecodeString(hexKey)
	require.NoError(t, err)
	sum := sha256.Sum256(raw)
	return sum[:4]
}

// writeKeys replaces the key file's contents, as a Secret volume's update does.
func writeKeys(t *testing.T, path string, keys ...string) {
	t.Helper()
	tmp := path + ".new"
	require.NoError(t, os.WriteFile(tmp, []byte(strings.Join(keys, "\n")+"\n"), 0o600))
	require.NoError(t, os.Rename(tmp, path))
}

// cacheFleet is two replicas with the cache on, sharing a Redis and the emulator.
type cacheFleet struct {
	emu      *emulator.Server
	replicas []*service
	keyFile  string
	redis    *redis.Client
}

func startCacheFleet(t *testing.T, r *redistest.Server, key string) *cacheFleet {
	t.Helper()
	emu, err := emulator.Start("127.0.0.1:0", emulator.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = emu.Close() })
	f := &cacheFleet{emu: emu, keyFile: filepath.Join(t.TempDir(), "cache-key")}
	writeKeys(t, f.keyFile, key)
	for range 2 {
		cfg := app.Config{
			Plaid: app.PlaidConfig{BaseURL: emu.URL, Credentials: plaid.Credentials{
				ClientID: emu.Emulator.ClientID(), Secret: emu.Emulator.Secret()}},
			RedisAddr:   r.Addr(),
			WebhookAddr: "127.0.0.1:0",
			Cache:       app.CacheConfig{MaxAge: time.Minute, KeyFile: f.keyFile},
		}
		cfg.Watch.PollInterval = time.Hour
		cfg.Security.ReloadEvery = 20 * time.Millisecond
		f.replicas = append(f.replicas, start(t, cfg))
	}
	fl := &fleet{replicas: f.replicas}
	fl.waitRedis(t, 1)
	f.redis = redis.NewClient(&redis.Options{Addr: r.Addr()})
	t.Cleanup(func() { _ = f.redis.Close() })
	return f
}

func (f *cacheFleet) entries(t *testing.T) map[string][]byte {
	t.Helper()
	names, err := f.redis.Keys(context.Background(), "creditsessions:cache:entry:*").Result()
	require.NoError(t, err)
	out := make(map[string][]byte, len(names))
	for _, n := range names {
		v, err := f.redis.Get(context.Background(), n).Bytes()
		require.NoError(t, err)
		out[n] = v
	}
	return out
}

func TestCacheFleetSharesSealedEntriesAndWebhooksEvictEverywhere(t *testing.T) {
	r := redistest.Start(t)
	f := startCacheFleet(t, r, newCacheKey(t))
	emu := f.emu.Emulator
	const token = "user-sandbox-example#fleet-cache"
	userID := emu.UserID(token)
	a, b := f.replicas[0], f.replicas[1]

	calls := emu.Calls()
	first := getGRPC(t, a, token, "cache-control", "max-age=60", "plaid-user-id", userID)
	require.NoError(t, first.err)
	require.Equal(t, 2, first.sessions)
	// The other replica finds it in Redis: no Plaid request, over REST too.
	shared := getREST(t, b, token, "Cache-Control", "max-age=60")
	require.NoError(t, shared.err)
	assert.Equal(t, first.requestID, shared.requestID)
	assert.NotEmpty(t, shared.age)
	assert.Equal(t, calls+1, emu.Calls(), "one Plaid request for the fleet")
	assert.Equal(t, 1.0, b.scrape(t)["creditsessions_cache_hits_total"]["source=redis"])

	// Redis holds ciphertext under hashed names: no JSON, no token, no user_id, no
	// session id, no request id.
	entries := f.entries(t)
	require.Len(t, entries, 1)
	resp, err := a.grpc.CreditSessionsGet(context.Background(), &creditv1.CreditSessionsGetRequest{UserToken: token})
	require.NoError(t, err)
	sessionID := resp.GetSessions()[0].GetLinkSessionId()
	require.NotEmpty(t, sessionID)
	keys, err := f.redis.Keys(context.Background(), "*").Result()
	require.NoError(t, err)
	for _, k := range keys {
		assert.NotContains(t, k, "user-sandbox")
		assert.NotContains(t, k, userID)
	}
	for name, v := range entries {
		assert.False(t, json.Valid(v), "%s is JSON", name)
		for _, plain := range []string{`"sessions"`, "request_id", "user-sandbox", userID, sessionID, first.requestID} {
			assert.NotContains(t, string(v), plain, "%s holds %q in clear", name, plain)
		}
	}

	// A verified webhook on replica a evicts the user's entry on b, within a second.
	_, err = emu.AddSession(token)
	require.NoError(t, err)
	fired := time.Now()
	url := "http://" + a.app.WebhookAddr().String() + "/webhooks/plaid"
	require.NoError(t, emu.FireWebhook(context.Background(), url, token, "INCOME", "BANK_INCOME_COMPLETE"))
	require.Eventually(t, func() bool {
		return b.scrape(t)["creditsessions_cache_evictions_total"]["cause=webhook"] >= 1
	}, time.Second, 5*time.Millisecond, "replica b never evicted the entry")
	assert.Less(t, time.Since(fired), time.Second)
	assert.Empty(t, f.entries(t), "evicted from Redis too")
	calls = emu.Calls()
	after := getGRPC(t, b, token, "cache-control", "max-age=60")
	require.NoError(t, after.err)
	assert.Equal(t, 3, after.sessions, "the new session, from Plaid")
	assert.Empty(t, after.age)
	assert.Equal(t, calls+1, emu.Calls())
}

func TestCacheFleetKeyRotation(t *testing.T) {
	r := redistest.Start(t)
	oldKey, newKey := newCacheKey(t), newCacheKey(t)
	f := startCacheFleet(t, r, oldKey)
	emu := f.emu.Emulator
	a, b := f.replicas[0], f.replicas[1]
	const before, after = "user-sandbox-example#sealed-before", "user-sandbox-example#sealed-after"
	require.NoError(t, getGRPC(t, a, before, "cache-control", "max-age=60").err)
	for _, v := range f.entries(t) {
		require.Equal(t, keyID(t, oldKey), v[1:5], "sealed with the only key")
	}

	// The new key first, the old one kept: new entries are sealed with the new key, old
	// ones still open.
	writeKeys(t, f.keyFile, newKey, oldKey)
	probes := 0
	require.Eventually(t, func() bool {
		probes++
		require.NoError(t, getGRPC(t, a, "user-sandbox-example#probe-"+strconv.Itoa(probes), "cache-control", "max-age=60").err)
		for _, v := range f.entries(t) {
			if string(v[1:5]) == string(keyID(t, newKey)) {
				return true
			}
		}
		return false
	}, 5*time.Second, 25*time.Millisecond, "the new key never sealed an entry")
	// The other replica re-reads the file on its own schedule: wait until it opens what
	// the new key sealed, or it may never have seen the file with both keys.
	require.Eventually(t, func() bool {
		probes++
		probe := "user-sandbox-example#probe-" + strconv.Itoa(probes)
		require.NoError(t, getGRPC(t, a, probe, "cache-control", "max-age=60").err)
		return getREST(t, b, probe, "Cache-Control", "max-age=60").age != ""
	}, 5*time.Second, 25*time.Millisecond, "the other replica never read the new key")
	require.NoError(t, getGRPC(t, a, after, "cache-control", "max-age=60").err)

	// Only the new key in the file: what the old one sealed still opens, within max-age.
	writeKeys(t, f.keyFile, newKey)
	calls := emu.Calls()
	unreadable := b.scrape(t)["creditsessions_cache_unreadable_total"][""] // the probes' before b had the new key
	require.Eventually(t, func() bool {
		got := getREST(t, b, before, "Cache-Control", "max-age=60")
		return got.err == nil && got.age != ""
	}, 5*time.Second, 25*time.Millisecond)
	got := getREST(t, b, after, "Cache-Control", "max-age=60")
	require.NoError(t, got.err)
	assert.NotEmpty(t, got.age)
	assert.Equal(t, calls, emu.Calls(), "both entries opened on the other replica")
	assert.Equal(t, unreadable, b.scrape(t)["creditsessions_cache_unreadable_total"][""])
}

func TestCacheFleetSurvivesRedisDying(t *testing.T) {
	r := redistest.Start(t)
	f := startCacheFleet(t, r, newCacheKey(t))
	emu := f.emu.Emulator
	const token = "user-sandbox-example#redis-dies"
	for _, s := range f.replicas {
		require.NoError(t, getGRPC(t, s, token, "cache-control", "max-age=60").err)
	}
	r.Stop()
	(&fleet{replicas: f.replicas}).waitRedis(t, 0)
	for i, s := range f.replicas {
		for _, tr := range transports {
			// Each replica answers from its own memory, and what it lacks from Plaid.
			hit := tr.get(t, s, token, "cache-control", "max-age=60")
			require.NoError(t, hit.err, "replica %d over %s", i, tr.name)
			calls := emu.Calls()
			other := tr.get(t, s, "user-sandbox-example#while-down-"+tr.name, "cache-control", "max-age=60")
			require.NoError(t, other.err, "replica %d over %s", i, tr.name)
			assert.Equal(t, calls+1, emu.Calls())
			again := tr.get(t, s, "user-sandbox-example#while-down-"+tr.name, "cache-control", "max-age=60")
			require.NoError(t, again.err)
			assert.NotEmpty(t, again.age, "kept in memory while Redis is down")
		}
	}
	r.Restart()
	(&fleet{replicas: f.replicas}).waitRedis(t, 1)
	// Shared again: what one replica stores, the other reads without asking Plaid.
	back := ""
	require.Eventually(t, func() bool {
		back = "user-sandbox-example#back-" + strconv.FormatInt(emu.Calls()+1, 10)
		require.NoError(t, getGRPC(t, f.replicas[0], back, "cache-control", "max-age=60").err)
		return len(f.entries(t)) > 0
	}, 5*time.Second, 25*time.Millisecond, "nothing reached Redis once it was back")
	calls := emu.Calls()
	got := getGRPC(t, f.replicas[1], back, "cache-control", "max-age=60")
	require.NoError(t, got.err)
	assert.NotEmpty(t, got.age)
	assert.Equal(t, calls, emu.Calls())
}
