package cache

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"
)

// Redis names: hashes only, never a token, a user_id or a key.
const (
	entryPrefix   = "creditsessions:cache:entry:"
	userPrefix    = "creditsessions:cache:user:" // a set of the user's entry names
	evictChannel  = "creditsessions:cache:evict"
	remoteTimeout = 250 * time.Millisecond
)

// evictScript deletes the entries named in the set KEYS[1], then the set.
var evictScript = redis.NewScript(`
local names = redis.call('SMEMBERS', KEYS[1])
for i = 1, #names, 500 do
  redis.call('DEL', unpack(names, i, math.min(i + 499, #names)))
end
return redis.call('DEL', KEYS[1])`)

// remote is the fleet's side of the cache: sealed entries in Redis, evictions by pub/sub.
// A Redis that fails or is slow only makes it skip Redis until Redis answers again.
type remote struct {
	c      *Cache
	client *redis.Client
	sealer *sealer
	up     atomic.Bool

	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

func newRemote(c *Cache, client *redis.Client, s *sealer) *remote {
	r := &remote{c: c, client: client, sealer: s, stop: make(chan struct{}), done: make(chan struct{})}
	go r.receive()
	return r
}

func (r *remote) close() {
	r.stopOnce.Do(func() { close(r.stop) })
	<-r.done
}

func entryName(key Key) string { return entryPrefix + hex.EncodeToString(key[:]) }
func userName(user Key) string { return userPrefix + hex.EncodeToString(user[:]) }

// A sealed entry's plaintext: when it was fetched (8 bytes, Unix nanoseconds), whether
// its user is known (1), the user's Key (32), then the answer in protobuf.
const plainHeader = 8 + 1 + 32

func (r *remote) put(ctx context.Context, it *item) {
	if !r.up.Load() {
		return
	}
	plain := make([]byte, plainHeader, plainHeader+proto.Size(it.entry.Response))
	binary.BigEndian.PutUint64(plain, uint64(it.entry.Fetched.UnixNano()))
	if it.known {
		plain[8] = 1
		copy(plain[9:], it.user[:])
	}
	plain, err := proto.MarshalOptions{}.MarshalAppend(plain, it.entry.Response)
	if err != nil {
		return
	}
	name := entryName(it.key)
	ttl := r.c.cfg.MaxAge - r.c.cfg.Now().Sub(it.entry.Fetched)
	if ttl <= 0 {
		return
	}
	value := r.sealer.seal(plain, name)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), remoteTimeout)
	defer cancel()
	_, err = r.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, name, value, ttl)
		if it.known {
			p.SAdd(ctx, userName(it.user), name)
			p.PExpire(ctx, userName(it.user), r.c.cfg.MaxAge)
		}
		return nil
	})
	r.result(err)
}

func (r *remote) get(ctx context.Context, key Key) (*item, bool) {
	if !r.up.Load() {
		return nil, false
	}
	name := entryName(key)
	ctx, cancel := context.WithTimeout(ctx, remoteTimeout)
	defer cancel()
	value, err := r.client.Get(ctx, name).Bytes()
	if errors.Is(err, redis.Nil) {
		r.result(nil)
		return nil, false
	}
	if err != nil {
		if ctx.Err() == nil || errors.Is(err, context.DeadlineExceeded) {
			r.result(err)
		}
		return nil, false
	}
	r.result(nil)
	plain, err := r.sealer.open(value, name)
	if err != nil || len(plain) < plainHeader {
		r.c.metrics.unreadable.Inc() // a key this replica does not have, or tampering
		return nil, false
	}
	resp := &creditv1.CreditSessionsGetResponse{}
	if err := proto.Unmarshal(plain[plainHeader:], resp); err != nil {
		r.c.metrics.unreadable.Inc()
		return nil, false
	}
	it := &item{key: key, entry: Entry{Response: resp, Fetched: time.Unix(0, int64(binary.BigEndian.Uint64(plain)))}}
	if plain[8] == 1 {
		it.user, it.known = Key(plain[9:41]), true
	}
	return it, true
}

// evict deletes the user's entries from Redis and tells the other replicas. Every
// replica that hears it deletes them from Redis too: one that stored an entry just
// before hearing it would otherwise leave it there.
func (r *remote) evict(ctx context.Context, user Key) {
	if !r.up.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), remoteTimeout)
	defer cancel()
	err := evictScript.Run(ctx, r.client, []string{userName(user)}).Err()
	if err == nil {
		err = r.client.Publish(ctx, evictChannel, user[:]).Err()
	}
	r.result(err)
}

func (r *remote) result(err error) {
	if err != nil {
		r.setUp(false)
	}
}

func (r *remote) setUp(up bool) {
	if r.up.Swap(up) == up {
		return
	}
	if up {
		// Evictions published while this replica could not hear them are lost: what it
		// holds in memory may be stale beyond what webhooks allow.
		r.c.flush("redis_reconnect")
		r.c.cfg.Logger.Info("cache: Redis reachable: entries are shared with the fleet")
	} else {
		r.c.cfg.Logger.Warn("cache: Redis unreachable: each replica caches in its own memory until it returns")
	}
}

// receive applies the fleet's evictions until close, and tracks whether Redis is up.
func (r *remote) receive() {
	defer close(r.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-r.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	ps := r.client.Subscribe(ctx, evictChannel)
	defer ps.Close()
	retry := time.NewTimer(0)
	<-retry.C
	for ctx.Err() == nil {
		msg, err := ps.ReceiveTimeout(ctx, time.Second)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() {
				if perr := ps.Ping(ctx); perr != nil {
					r.setUp(false)
				}
				continue
			}
			r.setUp(false)
			retry.Reset(250 * time.Millisecond)
			select {
			case <-retry.C:
			case <-ctx.Done():
				return
			}
			continue
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			r.setUp(true) // subscribed (again): evictions reach this replica from now on
		case *redis.Pong:
			r.setUp(true)
		case *redis.Message:
			if len(m.Payload) == len(Key{}) {
				user := Key([]byte(m.Payload))
				r.c.evictLocal(user)
				ectx, ecancel := context.WithTimeout(ctx, remoteTimeout)
				r.result(evictScript.Run(ectx, r.client, []string{userName(user)}).Err())
				ecancel()
			}
		}
	}
}
