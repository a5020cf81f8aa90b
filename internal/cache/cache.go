// Package cache keeps Plaid's answers to /credit/sessions/get for callers that accept
// an answer a bounded number of seconds old (Cache-Control: max-age, RFC 9111), so that
// reading the same user again does not cost a Plaid round trip.
//
// Entries are keyed by a hash of the user token and of the Plaid credentials the answer
// was fetched with, so a caller never gets an answer fetched with keys other than the
// ones its own call would use. An entry whose user's Plaid user_id is known is evicted,
// on every replica, when a verified Plaid webhook names that user; the others live at
// most the operator's max-age.
//
// Each replica keeps entries in its own memory, bounded in bytes. With Redis, entries
// are also shared by the fleet, sealed with AES-256-GCM under names that are hashes;
// when Redis cannot be reached, each replica works from its own memory and nothing
// fails.
package cache

import (
	"container/list"
	"context"
	"crypto/sha256"
	"log/slog"
	"sync"
	"time"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"
)

// Key names a cached answer without holding its token or keys.
type Key [32]byte

// KeyFor derives the Key of the answer for userToken fetched with credentials named by
// scope (the service's client id, or the caller's client id in pass-through mode) and
// secret (the caller's secret in pass-through mode; empty with the service's keys, whose
// secret rotates without changing whose data it reads).
func KeyFor(scope, secret, userToken string) Key {
	h := sha256.New()
	for _, part := range []string{"creditsessions cache v1", scope, secret, userToken} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	var k Key
	h.Sum(k[:0])
	return k
}

// UserKey names a Plaid user_id, as webhooks name users.
func UserKey(userID string) Key {
	return sha256.Sum256([]byte("creditsessions cache user v1\x00" + userID))
}

// Entry is a cached answer.
type Entry struct {
	// Response is Plaid's answer, request_id included. Shared: never modified.
	Response *creditv1.CreditSessionsGetResponse
	// Fetched is when the call that got it from Plaid started: the answer is at least
	// this old.
	Fetched time.Time
}

// Age is how old e is at now, in whole seconds as the Age header says it (RFC 9111,
// section 5.1).
func (e Entry) Age(now time.Time) int64 { return int64(max(now.Sub(e.Fetched), 0) / time.Second) }

// Config configures a Cache.
type Config struct {
	// MaxAge is the oldest answer any caller may be given; it is also the entries' time
	// to live. Required (a Cache is made only when caching is on).
	MaxAge time.Duration
	// MaxBytes bounds the estimated memory of this replica's entries [32 MiB].
	MaxBytes int64
	// Redis, when set, shares entries and evictions with the fleet.
	Redis *redis.Client
	// Keys returns the keys that seal entries in Redis; required with Redis.
	Keys func() Keyring
	// Registerer, when set, receives the cache's metrics.
	Registerer prometheus.Registerer
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// DefaultMaxBytes is Config.MaxBytes's default.
const DefaultMaxBytes = 32 << 20

// maxTombstones bounds the users remembered as recently evicted. Past it, the whole
// local cache is dropped instead: safe, and only under a flood of webhooks.
const maxTombstones = 100000

// Cache is the cache of one replica, and its link to the fleet's.
type Cache struct {
	cfg     Config
	metrics *metrics
	remote  *remote

	mu     sync.Mutex
	lru    list.List // of *item, most recently used first
	items  map[Key]*list.Element
	byUser map[Key]map[Key]struct{}
	// evicted remembers when each user was last evicted, for MaxAge: an answer whose
	// fetch started before then may predate the change the webhook announced, and is
	// not stored.
	evicted map[Key]time.Time
	bytes   int64
}

type item struct {
	key   Key
	user  Key
	known bool // user is set
	entry Entry
	size  int64
}

// New returns a Cache, and starts receiving the fleet's evictions when cfg.Redis is set.
func New(cfg Config) *Cache {
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	c := &Cache{
		cfg:     cfg,
		items:   make(map[Key]*list.Element),
		byUser:  make(map[Key]map[Key]struct{}),
		evicted: make(map[Key]time.Time),
	}
	c.metrics = newMetrics(cfg.Registerer, c)
	if cfg.Redis != nil {
		c.remote = newRemote(c, cfg.Redis, &sealer{current: cfg.Keys, grace: cfg.MaxAge, now: cfg.Now})
	}
	return c
}

// MaxAge is the oldest answer the cache gives anyone.
func (c *Cache) MaxAge() time.Duration { return c.cfg.MaxAge }

// Close stops receiving the fleet's evictions.
func (c *Cache) Close() {
	if c.remote != nil {
		c.remote.close()
	}
}

// Get returns the answer for key if there is one at most maxAge old (and at most the
// operator's MaxAge): from this replica's memory, else from the fleet's Redis.
func (c *Cache) Get(ctx context.Context, key Key, maxAge time.Duration) (Entry, bool) {
	maxAge = min(maxAge, c.cfg.MaxAge)
	now := c.cfg.Now()
	if e, ok := c.local(key, now, maxAge); ok {
		c.metrics.hits.WithLabelValues("memory").Inc()
		return e, true
	}
	if c.remote != nil {
		// An entry fetched before its user's last eviction here is not served: a
		// replica storing it just then, or anyone putting an old value back, would
		// otherwise undo the webhook.
		if it, ok := c.remote.get(ctx, key); ok && now.Sub(it.entry.Fetched) <= maxAge && !c.evictedSince(it) {
			c.store(it)
			c.metrics.hits.WithLabelValues("redis").Inc()
			return it.entry, true
		}
	}
	c.metrics.misses.Inc()
	return Entry{}, false
}

func (c *Cache) local(key Key, now time.Time, maxAge time.Duration) (Entry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return Entry{}, false
	}
	it := el.Value.(*item)
	age := now.Sub(it.entry.Fetched)
	if age > c.cfg.MaxAge {
		c.remove(el, "expired")
		return Entry{}, false
	}
	if age > maxAge {
		return Entry{}, false // fine for a caller less demanding: kept
	}
	c.lru.MoveToFront(el)
	return it.entry, true
}

// Put stores resp, the answer for key that a fetch started at fetched got from Plaid.
// userID, when not empty, is the user's Plaid user_id, by which webhooks evict it.
func (c *Cache) Put(ctx context.Context, key Key, userID string, resp *creditv1.CreditSessionsGetResponse, fetched time.Time) {
	it := &item{key: key, entry: Entry{Response: resp, Fetched: fetched}}
	if userID != "" {
		it.user, it.known = UserKey(userID), true
	}
	if !c.store(it) {
		return
	}
	if c.remote != nil {
		c.remote.put(ctx, it)
	}
}

func (c *Cache) evictedSince(it *item) bool {
	if !it.known {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	at, ok := c.evicted[it.user]
	return ok && !it.entry.Fetched.After(at)
}

// store keeps it in memory unless it is too large, older than what is there, or
// fetched before its user's last eviction. It reports whether it kept it.
func (c *Cache) store(it *item) bool {
	it.size = entrySize(it.entry.Response)
	if it.size > c.cfg.MaxBytes/8 {
		return false // one answer must not push out hundreds
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if it.known {
		if at, ok := c.evicted[it.user]; ok && !it.entry.Fetched.After(at) {
			return false
		}
	}
	if el, ok := c.items[it.key]; ok {
		old := el.Value.(*item)
		if old.entry.Fetched.After(it.entry.Fetched) {
			return false
		}
		if !it.known && old.known {
			it.user, it.known = old.user, true // a plain get does not forget a user_id learnt earlier
		}
		c.remove(el, "")
	}
	for c.bytes+it.size > c.cfg.MaxBytes && c.lru.Len() > 0 {
		c.remove(c.lru.Back(), "capacity")
	}
	c.items[it.key] = c.lru.PushFront(it)
	c.bytes += it.size
	if it.known {
		set := c.byUser[it.user]
		if set == nil {
			set = make(map[Key]struct{}, 1)
			c.byUser[it.user] = set
		}
		set[it.key] = struct{}{}
	}
	return true
}

// remove drops el, counting the eviction under cause unless cause is "".
func (c *Cache) remove(el *list.Element, cause string) {
	it := el.Value.(*item)
	c.lru.Remove(el)
	delete(c.items, it.key)
	c.bytes -= it.size
	if it.known {
		if set := c.byUser[it.user]; set != nil {
			delete(set, it.key)
			if len(set) == 0 {
				delete(c.byUser, it.user)
			}
		}
	}
	if cause != "" {
		c.metrics.evictions.WithLabelValues(cause).Inc()
	}
}

// EvictUser drops every entry of the user Plaid calls userID, on this replica and, with
// Redis, in Redis and on every other replica. Called for each verified webhook.
func (c *Cache) EvictUser(ctx context.Context, userID string) {
	user := UserKey(userID)
	c.evictLocal(user)
	if c.remote != nil {
		c.remote.evict(ctx, user)
	}
}

func (c *Cache) evictLocal(user Key) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.cfg.Now()
	if len(c.evicted) >= maxTombstones {
		for u, at := range c.evicted {
			if now.Sub(at) > c.cfg.MaxAge {
				delete(c.evicted, u)
			}
		}
		if len(c.evicted) >= maxTombstones {
			c.flushLocked("webhook")
			clear(c.evicted)
		}
	}
	c.evicted[user] = now
	for key := range c.byUser[user] {
		if el, ok := c.items[key]; ok {
			c.remove(el, "webhook")
		}
	}
}

// flush drops every local entry: what this replica holds may have missed evictions (it
// lost Redis for a while).
func (c *Cache) flush(cause string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.flushLocked(cause)
}

func (c *Cache) flushLocked(cause string) {
	for c.lru.Len() > 0 {
		c.remove(c.lru.Back(), cause)
	}
}

// Bytes is the estimated memory of this replica's entries.
func (c *Cache) Bytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes
}

// Len is the number of entries in this replica's memory.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// entrySize estimates what an answer costs in memory: twice its wire size for the decoded
// messages (Go structs, string headers and pointers outweigh protobuf's varints), plus
// the entry's own bookkeeping. MaxBytes bounds this estimate.
func entrySize(resp *creditv1.CreditSessionsGetResponse) int64 {
	return int64(2*proto.Size(resp)) + 256
}
