package watch

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"

	"github.com/redis/go-redis/v9"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Redis names. Users appear in them only as Keys: SHA-256 hashes of their tokens (and
// keys), never the tokens.
//
// v2: results carry a Version, and a lease comes with a stamp. A replica of before and
// one of after do not understand each other's results, so they share no lease either:
// during a rolling update each generation polls for itself (twice the polls, for as long
// as the update lasts) rather than one leading watches the other cannot hear of.
const (
	wakeChannel   = "creditsessions:watch:wake"
	resultChannel = "creditsessions:watch:v2:result"
	leasePrefix   = "creditsessions:watch:v2:lease:"
	stampPrefix   = "creditsessions:watch:v2:stamp:"
)

// stampTTL is how long a user's stamp counter outlives its last use. Its expiry (or
// Redis restarting empty) costs nothing: see stampLua.
const stampTTL = time.Hour

// stampLua sets the local stamp to the next number of the counter KEYS[2], kept for
// ARGV[3] ms: one more than the last, and never less than Redis's clock in microseconds,
// so that a counter lost (expired, Redis restarted without its data) starts again above
// every number it handed out, unless Redis's clock went back or it handed out more than
// a million a second.
const stampLua = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local stamp = redis.call('INCR', KEYS[2])
if stamp < now then
  stamp = now
  redis.call('SET', KEYS[2], string.format('%d', stamp))
end
redis.call('PEXPIRE', KEYS[2], ARGV[3])
`

// lead takes the lease on KEYS[1] for ARGV[1] (this replica) for ARGV[2] ms when nobody
// holds it (SET NX PX), renews it when this replica does, and, when this replica holds
// it afterwards, returns a stamp (see stampLua); 0 when another does. In a script, so
// that checking, renewing and stamping are one step.
var lead = redis.NewScript(`
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
elseif holder then
  return 0
else
  redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
end` + stampLua + `
return stamp`)

// stamp returns a stamp for KEYS[2] (KEYS[1] is unused, so that the keys line up with
// lead's).
var stamp = redis.NewScript(stampLua + `
return stamp`)

// release deletes KEYS[1] only while ARGV[1] (this replica) holds it.
var release = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`)

// RedisFleet is a Fleet over Redis: leases decide which replica polls each user; pub/sub
// carries webhook wake-ups and what each poll found to every replica. When Redis cannot
// be reached, every replica polls its own watches (Lead reports true) and calls to Plaid
// are unaffected; go-redis reconnects, and the fleet resumes, when Redis returns.
//
// What a poll found travels through Redis pub/sub: Plaid's answer, sessions included.
// Pub/sub messages are not stored by Redis, but they cross it: run Redis where the
// service's own traffic may go (a private network, ACLs, TLS with rediss://).
type RedisFleet struct {
	client *redis.Client
	id     string // this replica, in leases
	self   [16]byte
	logger *slog.Logger
	hub    atomic.Pointer[Hub]
	up     atomic.Bool

	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

// opTimeout bounds every Redis operation: a Redis that does not answer quickly counts
// as gone, and watches fall back to local polling.
const opTimeout = time.Second

// NewRedisFleet connects to Redis at addr, a host:port or a redis:// or rediss:// URL
// without a password (addr comes from argv), with password if not empty. Redis need not
// be up yet: the fleet works locally until it is.
func NewRedisFleet(addr, password string, logger *slog.Logger) (*RedisFleet, error) {
	var opts *redis.Options
	if strings.Contains(addr, "://") {
		var err error
		if opts, err = redis.ParseURL(addr); err != nil {
			// Not wrapped: the URL's parse error may quote it.
			return nil, errors.New("-redis-addr: not a redis:// or rediss:// URL")
		}
		if opts.Password != "" {
			return nil, errors.New("-redis-addr: a password in the URL would be on the command line: set REDIS_PASSWORD instead")
		}
	} else {
		opts = &redis.Options{Addr: addr}
	}
	if password != "" {
		opts.Password = password
	}
	opts.DialTimeout = opTimeout / 2
	opts.ReadTimeout = opTimeout / 2
	opts.WriteTimeout = opTimeout / 2
	opts.MaxRetries = 1
	opts.DisableIdentity = true // CLIENT SETINFO: older servers log an error for it
	if logger == nil {
		logger = slog.Default()
	}
	f := &RedisFleet{
		client: redis.NewClient(opts),
		logger: logger,
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	_, _ = rand.Read(f.self[:])
	f.id = hex.EncodeToString(f.self[:])
	return f, nil
}

// Attach starts delivering the fleet's messages to hub.
func (f *RedisFleet) Attach(hub *Hub) {
	f.hub.Store(hub)
	go f.receive()
}

// Client is the fleet's Redis client, for other state the replicas share (the webhook
// replay cache, the answer cache). It is closed by Close.
func (f *RedisFleet) Client() *redis.Client { return f.client }

// Up reports whether Redis answered the last operation.
func (f *RedisFleet) Up() bool { return f.up.Load() }

func (f *RedisFleet) setUp(up bool) {
	if f.up.Swap(up) != up {
		if up {
			f.logger.Info("watch: Redis reachable: polls and webhooks are shared with the fleet")
		} else {
			f.logger.Warn("watch: Redis unreachable: watches poll from this replica until it returns")
		}
	}
}

// Close stops receiving and closes the connections.
func (f *RedisFleet) Close() error {
	f.stopOnce.Do(func() { close(f.stop) })
	if f.hub.Load() != nil {
		<-f.done
	}
	return f.client.Close()
}

func leaseKey(key Key) string { return leasePrefix + hex.EncodeToString(key[:]) }
func stampKey(key Key) string { return stampPrefix + hex.EncodeToString(key[:]) }

// Lead implements Fleet.
func (f *RedisFleet) Lead(ctx context.Context, key Key, ttl time.Duration) (bool, uint64) {
	if !f.up.Load() {
		// Known down: poll here without waiting on Redis; the receiving loop finds out
		// when it is back (it pings Redis every second).
		return true, 0
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	got, err := lead.Run(ctx, f.client, []string{leaseKey(key), stampKey(key)}, f.id, ttl.Milliseconds(), stampTTL.Milliseconds()).Uint64()
	if err != nil {
		f.setUp(false)
		return true, 0 // nobody can tell: poll here rather than not at all
	}
	f.setUp(true)
	return got != 0, got
}

// Stamp implements Fleet.
func (f *RedisFleet) Stamp(ctx context.Context, key Key) uint64 {
	if !f.up.Load() {
		return 0
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	got, err := stamp.Run(ctx, f.client, []string{leaseKey(key), stampKey(key)}, f.id, 0, stampTTL.Milliseconds()).Uint64()
	if err != nil {
		f.setUp(false)
		return 0
	}
	f.setUp(true)
	return got
}

// Release implements Fleet.
func (f *RedisFleet) Release(key Key) {
	if !f.up.Load() {
		return // the lease expires by itself
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := release.Run(ctx, f.client, []string{leaseKey(key)}, f.id).Err(); err != nil {
		f.setUp(false)
	}
}

// PublishWake implements Fleet. The message: this replica's id, then the user's Key.
func (f *RedisFleet) PublishWake(user Key) {
	msg := make([]byte, 0, len(f.self)+len(user))
	msg = append(append(msg, f.self[:]...), user[:]...)
	f.publish(wakeChannel, msg)
}

// A result message: this replica's id (16 bytes), the user's Key (32), the reason (1),
// the fetch's Version (8 + 8, Fleet then Local, big-endian; zero for a failure), whether
// it failed (1), then the answer (CreditSessionsGetResponse) or the failure
// (google.rpc.Status) in protobuf.
const resultHeader = 16 + 32 + 1 + 16 + 1

// PublishResult implements Fleet.
func (f *RedisFleet) PublishResult(key Key, snap *Snapshot, err error) {
	msg := make([]byte, resultHeader, 1024)
	copy(msg, f.self[:])
	copy(msg[16:], key[:])
	var body proto.Message
	if err != nil {
		msg[65] = 1
		body = status.Convert(err).Proto()
	} else {
		msg[48] = byte(snap.Reason)
		binary.BigEndian.PutUint64(msg[49:57], snap.Version.Fleet)
		binary.BigEndian.PutUint64(msg[57:65], snap.Version.Local)
		body = snap.Response
	}
	data, merr := proto.MarshalOptions{}.MarshalAppend(msg, body)
	if merr != nil {
		return
	}
	f.publish(resultChannel, data)
}

func (f *RedisFleet) publish(channel string, msg []byte) {
	if !f.up.Load() {
		return // nobody would hear it; the other replicas poll for themselves meanwhile
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := f.client.Publish(ctx, channel, msg).Err(); err != nil {
		f.setUp(false)
		return
	}
	f.setUp(true)
}

// receive delivers the fleet's messages to the hub until Close. go-redis reconnects and
// subscribes again by itself after Redis went away.
func (f *RedisFleet) receive() {
	defer close(f.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-f.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	ps := f.client.Subscribe(ctx, wakeChannel, resultChannel)
	defer ps.Close()
	retry := time.NewTimer(0)
	<-retry.C
	for ctx.Err() == nil {
		msg, err := ps.ReceiveTimeout(ctx, opTimeout)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() {
				// Quiet: ask Redis whether it is still there. The answer (a Pong)
				// or the failure comes back through Receive.
				if perr := ps.Ping(ctx); perr != nil {
					f.setUp(false)
				}
				continue
			}
			f.setUp(false)
			retry.Reset(250 * time.Millisecond) // a Redis that refuses connections: not a busy loop
			select {
			case <-retry.C:
			case <-ctx.Done():
				return
			}
			continue
		}
		f.setUp(true)
		if m, ok := msg.(*redis.Message); ok {
			f.handle(m.Channel, []byte(m.Payload))
		}
	}
}

func (f *RedisFleet) handle(channel string, msg []byte) {
	hub := f.hub.Load()
	if len(msg) < 16 || string(msg[:16]) == string(f.self[:]) {
		return // our own: delivered locally already
	}
	switch channel {
	case wakeChannel:
		if len(msg) == 16+32 {
			hub.Wake(Key(msg[16:48]))
		}
	case resultChannel:
		if len(msg) < resultHeader {
			return
		}
		key := Key(msg[16:48])
		if !hub.has(key) {
			return // nobody watches that user here: skip decoding
		}
		version := Version{Fleet: binary.BigEndian.Uint64(msg[49:57]), Local: binary.BigEndian.Uint64(msg[57:65])}
		body := msg[resultHeader:]
		if msg[65] == 1 {
			st := &spb.Status{}
			if err := proto.Unmarshal(body, st); err != nil {
				return
			}
			hub.Deliver(key, nil, status.FromProto(st).Err())
			return
		}
		resp := &creditv1.CreditSessionsGetResponse{}
		if err := proto.Unmarshal(body, resp); err != nil {
			return
		}
		reason := creditv1.WatchCreditSessionsReason(msg[48])
		hub.Deliver(key, &Snapshot{Response: resp, Hash: Hash(resp), Reason: reason, Version: version}, nil)
	}
}
