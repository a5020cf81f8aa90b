package app

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/creditsessions/creditsessions/internal/auth"
	"github.com/creditsessions/creditsessions/internal/cache"
	"github.com/creditsessions/creditsessions/internal/plaid"
	"github.com/creditsessions/creditsessions/internal/webhook"
	"github.com/creditsessions/creditsessions/server"
)

// CacheConfig turns on and bounds the cache of Plaid's answers (see internal/cache).
type CacheConfig struct {
	// MaxAge is the oldest answer any caller may ask for with Cache-Control: max-age, and
	// the entries' time to live. 0, the default, turns the cache off.
	MaxAge time.Duration
	// MaxBytes bounds the estimated memory of one replica's entries; 0 means
	// cache.DefaultMaxBytes.
	MaxBytes int64
	// KeyFile holds the AES-256 keys that seal entries in Redis (one a line, base64 or
	// hex, the first sealing), re-read when it changes. Required with RedisAddr.
	KeyFile string
}

// FileCacheKey names the cache key file in logs and metrics.
const FileCacheKey = "cache_key"

// startCache builds the cache when cfg.Cache asks for one, and lets svc use it.
func (a *App) startCache(svc *server.Service, upstream PlaidConfig, credentials func() plaid.Credentials, answerMemory int64, obs auth.Observer) error {
	cc := a.cfg.Cache
	switch {
	case cc.MaxAge < 0:
		return errors.New("-cache-max-age: must not be negative")
	case cc.MaxAge == 0:
		if cc.KeyFile != "" {
			return errors.New("-cache-key-file is set but the cache is off: set -cache-max-age too")
		}
		return nil
	case cc.MaxBytes < 0:
		return errors.New("-cache-max-bytes: must not be negative")
	}
	if cc.MaxBytes == 0 {
		cc.MaxBytes = cache.DefaultMaxBytes
	}
	// The cache's memory counts with the other bounds the service holds to: with
	// GOMEMLIMIT set (the manifests set it from the container's limit), the answers in
	// flight and the cache together may take at most half of it, leaving the rest to
	// watches, connections and the garbage collector's headroom.
	if limit := debug.SetMemoryLimit(-1); limit > 0 && limit < 1<<62 && cc.MaxBytes+answerMemory > limit/2 {
		return fmt.Errorf("-cache-max-bytes (%d) and -answer-memory (%d) together exceed half of GOMEMLIMIT (%d): lower them or raise the memory limit",
			cc.MaxBytes, answerMemory, limit)
	}
	cfg := cache.Config{MaxAge: cc.MaxAge, MaxBytes: cc.MaxBytes, Registerer: a.metrics.Registry, Logger: a.logger}
	if a.fleet != nil {
		if cc.KeyFile == "" {
			return errors.New("-cache-key-file: required with -redis-addr and -cache-max-age, so that what the cache puts in Redis is sealed")
		}
		keys, err := auth.WatchFile(FileCacheKey, []string{cc.KeyFile}, a.cfg.Security.ReloadEvery, a.logger, obs,
			func(contents [][]byte) (cache.Keyring, error) { return cache.ParseKeyring(contents[0]) })
		if err != nil {
			return fmt.Errorf("-cache-key-file: %w", err)
		}
		a.security.Track(keys)
		cfg.Redis, cfg.Keys = a.fleet.Client(), keys.Get
	} else if cc.KeyFile != "" {
		return errors.New("-cache-key-file is set but there is no -redis-addr: entries stay in memory, unsealed, and need no key")
	}
	a.cache = cache.New(cfg)
	scope := func() string { return upstream.Credentials.ClientID }
	if credentials != nil {
		scope = func() string { return credentials().ClientID }
	}
	svc.EnableCache(a.cache, scope)
	return nil
}

// webhookNotifier tells the cache, then the watches, of each verified webhook: the
// cache first, so that a watch's fetch on the webhook refreshes it after the eviction.
func (a *App) webhookNotifier() webhook.Notifier {
	if a.cache == nil {
		return a.hub
	}
	return webhook.NotifierFunc(func(ctx context.Context, userID string) {
		a.cache.EvictUser(ctx, userID)
		a.hub.Notify(ctx, userID)
	})
}

// Cache is the replica's cache of Plaid's answers, or nil when caching is off.
func (a *App) Cache() *cache.Cache { return a.cache }
