// Package watch keeps the watches of users' credit sessions on one replica: one shared
// poll per watched user, however many watch it, driven by a single scheduler (a min-heap
// and one timer for the whole replica, no timer or goroutine per watch); a webhook wakes
// every watch of its user at once; and, with a Fleet (Redis), one replica at a time polls
// each user for the whole fleet and the others receive what it found.
//
// A watch sends a message only when the sessions differ from the last message it sent:
// sessions are compared by a hash of their canonical encoding without Plaid's request_id.
// A watch that falls behind is sent only the newest state (a state stream, not a log of
// changes), so a slow reader costs one pending snapshot, never a queue.
package watch

import (
	"container/heap"
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Key names a watched user without holding its token: a SHA-256 of the token and the
// Plaid client id and secret the polls use (see server.WatchKey). It is what goes into
// Redis, hex-encoded.
type Key [32]byte

// UserKey names a Plaid user_id the same way, for webhook wake-ups.
func UserKey(userID string) Key { return sha256.Sum256([]byte("user_id\x00" + userID)) }

// Fetch gets a user's sessions from Plaid through the service's resilient call path. Its
// errors are gRPC statuses, as a CreditSessionsGet caller would get them.
type Fetch func(ctx context.Context) (*creditv1.CreditSessionsGetResponse, error)

// Snapshot is one answer from Plaid, shared read-only by every watch it is sent on.
type Snapshot struct {
	// Response is Plaid's answer. Never modified once in a Snapshot.
	Response *creditv1.CreditSessionsGetResponse
	// Hash is Hash(Response).
	Hash [32]byte
	// Reason is why the fetch ran: webhook or poll (initial for a watch's first one).
	Reason creditv1.WatchCreditSessionsReason
	// Version orders the fetch among the user's others: a watch never sends a snapshot
	// of a lower version than one it sent.
	Version Version
}

// Version orders the fetches of one user, taken as each fetch starts. With a fleet that
// answers, Fleet is a number Redis hands out, greater than any it handed out before for
// that user (see RedisFleet.Stamp), so fetches on different replicas are ordered by one
// counter, never by their clocks; Local is 0. Without one (no Redis, or Redis not
// answering), Fleet is the greatest fleet number this replica has seen for the user and
// Local counts this replica's fetches: after everything the fleet sent before, and before
// anything it sends once it answers again.
type Version struct {
	Fleet, Local uint64
}

// Less reports whether v comes before o.
func (v Version) Less(o Version) bool {
	return v.Fleet < o.Fleet || (v.Fleet == o.Fleet && v.Local < o.Local)
}

// Hash is the SHA-256 of r's deterministic encoding with request_id left out, so that two
// answers with the same sessions hash the same whatever Plaid's request ids.
func Hash(r *creditv1.CreditSessionsGetResponse) [32]byte {
	bare := &creditv1.CreditSessionsGetResponse{Sessions: r.GetSessions(), AdditionalProperties: r.GetAdditionalProperties()}
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(bare)
	if err != nil { // only for invalid UTF-8 in strings, which the decoder refuses earlier
		data = []byte(err.Error())
	}
	return sha256.Sum256(data)
}

// Config tunes a Hub. Zero values mean the defaults in brackets.
type Config struct {
	// PollInterval is how often each watched user is polled [60s].
	PollInterval time.Duration
	// MaxDuration ends a watch, with OK, after between 90% and 100% of it, so that
	// clients reconnect and spread over replicas, without all reconnecting at once [30m].
	MaxDuration time.Duration
	// FailAfter ends the watches of a user whose polls have all failed, transiently, for
	// longer than this, with the last failure's status [5m].
	FailAfter time.Duration
	// PollTimeout bounds one poll, the resilience layer's retries included [30s].
	PollTimeout time.Duration
	// MaxPolls caps the polls in flight on this replica [16]; a poll due beyond it is
	// put off by a few milliseconds, so that many users falling due together (every
	// client reconnecting after a restart) do not all call Plaid at the same instant.
	MaxPolls int
	// MaxWatches caps the watches open on this replica [50,000, about 750 MiB]; past it a
	// new watch is refused with ResourceExhausted and a RetryInfo, so that watches cannot
	// take the replica's memory without bound.
	MaxWatches int
	// WriteTimeout bounds the time one message may take to reach a watch's reader
	// [30s]: a reader that stops reading has its watch ended then (and at MaxDuration
	// at the latest), as Kubernetes' API server ends a watch whose client does not
	// keep up, instead of holding its slot, goroutine and message for ever.
	WriteTimeout time.Duration
	// Fleet, when set, shares polls and wake-ups with other replicas.
	Fleet Fleet
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.PollInterval, time.Minute)
	def(&c.MaxDuration, 30*time.Minute)
	def(&c.FailAfter, 5*time.Minute)
	def(&c.PollTimeout, 30*time.Second)
	def(&c.WriteTimeout, 30*time.Second)
	if c.MaxPolls <= 0 {
		c.MaxPolls = 16
	}
	if c.MaxWatches <= 0 {
		c.MaxWatches = 50000
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Fleet shares polls and wake-ups among replicas. Its methods must not block for long:
// the hub calls them from poll goroutines, never under its lock.
type Fleet interface {
	// Lead reports whether this replica should poll key now, taking or renewing a
	// lease of ttl. It reports true when the fleet cannot tell (Redis down), so that
	// watches fall back to local polling. When it leads, stamp is as Stamp's, for the
	// poll about to start.
	Lead(ctx context.Context, key Key, ttl time.Duration) (lead bool, stamp uint64)
	// Stamp returns a number greater than every one the fleet returned for key before,
	// for a fetch about to start (see Version), or 0 when the fleet cannot tell.
	Stamp(ctx context.Context, key Key) uint64
	// Release gives up the lease on key, if this replica holds it.
	Release(key Key)
	// PublishWake tells the other replicas that user has news.
	PublishWake(user Key)
	// PublishResult tells the other replicas what a poll of key found.
	PublishResult(key Key, snap *Snapshot, err error)
}

// ErrDraining ends watches when the replica shuts down: Unavailable with a RetryInfo of
// zero, so clients reconnect at once, to another replica.
var ErrDraining = retryable(codes.Unavailable, "the server is shutting down; reconnect", 0)

// errTooManyWatches refuses a watch past MaxWatches: another replica may have room.
var errTooManyWatches = retryable(codes.ResourceExhausted, "too many watches on this server; try again shortly", time.Second)

func retryable(code codes.Code, msg string, delay time.Duration) error {
	st, err := status.New(code, msg).WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(delay)})
	if err != nil {
		panic(err) // only for an OK status
	}
	return st.Err()
}

// Hub holds the watches of one replica.
type Hub struct {
	cfg Config

	mu       sync.Mutex
	entries  map[Key]*entry
	byUser   map[Key]map[*entry]struct{}
	queue    schedule
	watchers int
	polls    int // in flight
	draining error
	kick     chan struct{}
	stop     chan struct{}
	done     chan struct{}
	closed   bool
	released []Key  // leases to give up at Close: users whose last watch ended while draining
	local    uint64 // fetches stamped without the fleet: Version.Local

	messages [4]atomic.Int64 // by reason
	slow     atomic.Int64    // watches ended for a reader that did not keep up
	refused  atomic.Int64    // watches refused past MaxWatches
}

// CountSlowReader counts a watch ended because its reader did not take a message
// within WriteTimeout, for the metrics.
func (h *Hub) CountSlowReader() { h.slow.Add(1) }

// SlowReaders is the number of watches ended on this replica for a slow reader.
func (h *Hub) SlowReaders() int64 { return h.slow.Load() }

// Refused is the number of watches refused on this replica for MaxWatches.
func (h *Hub) Refused() int64 { return h.refused.Load() }

// CountMessage counts a message sent on a watch, for the metrics.
func (h *Hub) CountMessage(reason creditv1.WatchCreditSessionsReason) {
	if int(reason) < len(h.messages) {
		h.messages[reason].Add(1)
	}
}

// Messages is the number of messages sent on this replica's watches for reason.
func (h *Hub) Messages(reason creditv1.WatchCreditSessionsReason) int64 {
	if int(reason) < len(h.messages) {
		return h.messages[reason].Load()
	}
	return 0
}

// entry is one watched user: its watchers and its shared poll.
type entry struct {
	item
	key          Key
	user         Key
	hasUser      bool
	fetch        Fetch
	watchers     map[*Watcher]struct{}
	polling      bool
	again        bool // a wake-up came during a poll: poll once more after it
	reason       creditv1.WatchCreditSessionsReason
	failingSince int64  // Unix nanoseconds, this replica's clock, of the first failure in a row heard; 0 when the last poll worked
	fleetSeen    uint64 // the greatest Version.Fleet of the user's fetches heard of here
}

// Watcher is one watch. Its fields are guarded by the hub's lock.
type Watcher struct {
	item
	hub      *Hub
	entry    *entry
	notify   chan struct{}
	pending  *Snapshot
	sentHash [32]byte
	seen     Version // of the newest snapshot sent or pending: older ones are ignored
	end      error
	removed  bool
}

// item is a place in the schedule: an entry's next poll or a watcher's end.
type item struct {
	at  int64 // Unix nanoseconds
	idx int   // in the heap; -1 when not scheduled
}

// New starts a hub's scheduler. Close stops it.
func New(cfg Config) *Hub {
	h := &Hub{
		cfg:     cfg.withDefaults(),
		entries: make(map[Key]*entry),
		byUser:  make(map[Key]map[*entry]struct{}),
		kick:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go h.run()
	return h
}

// Config is the hub's configuration, defaults filled in.
func (h *Hub) Config() Config { return h.cfg }

// Watch registers a watch of key. fetch is used for the user's shared polls when this is
// its first watch on the replica; userID, when not empty, lets webhooks wake it. The
// caller sends the first message itself, then calls Sent with it, and Close at the end.
func (h *Hub) Watch(key Key, userID string, fetch Fetch) (*Watcher, error) {
	now := time.Now().UnixNano()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.draining != nil {
		return nil, h.draining
	}
	if h.watchers >= h.cfg.MaxWatches {
		h.refused.Add(1)
		return nil, errTooManyWatches
	}
	e := h.entries[key]
	if e == nil {
		e = &entry{key: key, fetch: fetch, watchers: make(map[*Watcher]struct{}, 1), item: item{idx: -1}}
		h.entries[key] = e
		// The first poll comes between half an interval and an interval from now, so
		// that users whose watches started together are not polled together forever.
		half := int64(h.cfg.PollInterval) / 2
		e.at = now + half + rand.Int64N(half+1)
		e.reason = creditv1.WatchCreditSessionsReason_WATCH_CREDIT_SESSIONS_REASON_POLL
		h.push(&e.item, e)
	}
	if userID != "" && !e.hasUser {
		e.user, e.hasUser = UserKey(userID), true
		users := h.byUser[e.user]
		if users == nil {
			users = make(map[*entry]struct{}, 1)
			h.byUser[e.user] = users
		}
		users[e] = struct{}{}
	}
	w := &Watcher{hub: h, entry: e, notify: make(chan struct{}, 1), item: item{idx: -1}}
	max := int64(h.cfg.MaxDuration)
	w.at = now + max - rand.Int64N(max/10+1)
	h.push(&w.item, w)
	e.watchers[w] = struct{}{}
	h.watchers++
	return w, nil
}

// C is signalled when the watch has something: call Next.
func (w *Watcher) C() <-chan struct{} { return w.notify }

// Stamp returns the Version of a fetch of the watched user about to start: the caller's
// first one, which it then passes to Sent.
func (w *Watcher) Stamp(ctx context.Context) Version {
	h := w.hub
	var fleet uint64
	if h.cfg.Fleet != nil {
		fleet = h.cfg.Fleet.Stamp(ctx, w.entry.key)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stamp(w.entry, fleet)
}

// stamp makes the Version of a fetch of e about to start, from the fleet's stamp (0:
// none). Under h.mu.
func (h *Hub) stamp(e *entry, fleet uint64) Version {
	if fleet != 0 {
		e.fleetSeen = max(e.fleetSeen, fleet)
		return Version{Fleet: fleet}
	}
	h.local++
	return Version{Fleet: e.fleetSeen, Local: h.local}
}

// Sent records the message the caller sent first, fetched at version (from Stamp), so
// that later snapshots are compared with it and older ones are ignored.
func (w *Watcher) Sent(hash [32]byte, version Version) {
	h := w.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	w.sentHash = hash
	if w.seen.Less(version) {
		w.seen = version
	}
	if w.pending != nil && (w.pending.Hash == hash || w.pending.Version.Less(version)) {
		w.pending = nil
	}
}

// Next returns the snapshot to send, if any, or the error the watch must end with (nil
// error with a nil snapshot: nothing to do). A returned snapshot counts as sent.
func (w *Watcher) Next() (*Snapshot, error) {
	h := w.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if w.end != nil {
		return nil, w.end
	}
	s := w.pending
	w.pending = nil
	if s != nil {
		w.sentHash = s.Hash
	}
	return s, nil
}

// Close ends the watch and, with its user's last watch, the user's polls.
func (w *Watcher) Close() {
	h := w.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if w.removed {
		return
	}
	w.removed = true
	h.unschedule(&w.item)
	e := w.entry
	delete(e.watchers, w)
	h.watchers--
	if len(e.watchers) == 0 {
		h.unschedule(&e.item)
		delete(h.entries, e.key)
		if e.hasUser {
			if users := h.byUser[e.user]; users != nil {
				delete(users, e)
				if len(users) == 0 {
					delete(h.byUser, e.user)
				}
			}
		}
		if h.cfg.Fleet != nil {
			if h.draining != nil {
				// Every watch is ending at once: Close releases them all, in one go.
				h.released = append(h.released, e.key)
			} else {
				go h.cfg.Fleet.Release(e.key)
			}
		}
	}
}

// offer gives w a snapshot if it differs from what w sent last, and is not older than
// what it sent or has pending: two replicas polling one user (a lease handed over, Redis
// coming and going) deliver in any order. Under h.mu.
func (w *Watcher) offer(s *Snapshot) {
	if w.end != nil || s.Version.Less(w.seen) {
		return
	}
	w.seen = s.Version
	if s.Hash == w.sentHash {
		w.pending = nil // back to what the caller has: nothing to send
		return
	}
	w.pending = s
	w.signal()
}

// finish ends w with err. Under h.mu.
func (w *Watcher) finish(err error) {
	if w.end == nil {
		w.end = err
		w.signal()
	}
}

func (w *Watcher) signal() {
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

// has reports whether key is watched on this replica.
func (h *Hub) has(key Key) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.entries[key] != nil
}

// Users is the number of users watched on this replica: the polls it keeps.
func (h *Hub) Users() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.entries)
}

// Watches is the number of watches on this replica.
func (h *Hub) Watches() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.watchers
}

// Notify wakes every watch of userID on every replica: their user is polled now. It is
// what the webhook handler calls for each verified webhook about credit sessions.
func (h *Hub) Notify(_ context.Context, userID string) {
	user := UserKey(userID)
	h.Wake(user)
	if h.cfg.Fleet != nil {
		h.cfg.Fleet.PublishWake(user)
	}
}

// Wake polls, now, the users watched on this replica under user.
func (h *Hub) Wake(user Key) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now().UnixNano()
	for e := range h.byUser[user] {
		if e.polling {
			// The poll in flight may have reached Plaid before the change: once more.
			e.again = true
			continue
		}
		e.reason = creditv1.WatchCreditSessionsReason_WATCH_CREDIT_SESSIONS_REASON_WEBHOOK
		h.unschedule(&e.item)
		e.at = now
		h.push(&e.item, e)
	}
}

// Drain ends every watch with err (ErrDraining when nil) and refuses new ones.
func (h *Hub) Drain(err error) {
	if err == nil {
		err = ErrDraining
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.draining = err
	for _, e := range h.entries {
		for w := range e.watchers {
			w.finish(err)
		}
	}
}

// Close stops the scheduler and releases the fleet leases this replica holds. Watches
// still open get nothing more; Drain them first.
func (h *Hub) Close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	keys := append(make([]Key, 0, len(h.entries)+len(h.released)), h.released...)
	for k := range h.entries {
		keys = append(keys, k)
	}
	h.mu.Unlock()
	close(h.stop)
	<-h.done
	if h.cfg.Fleet != nil {
		for _, k := range keys {
			h.cfg.Fleet.Release(k)
		}
	}
}

// run is the scheduler: one goroutine and one timer for every poll and every watch's end.
func (h *Hub) run() {
	defer close(h.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-h.kick:
		case <-timer.C:
		}
		h.mu.Lock()
		now := time.Now().UnixNano()
		for len(h.queue) > 0 && h.queue[0].at <= now {
			q := heap.Pop(&h.queue).(queued)
			switch x := q.owner.(type) {
			case *entry:
				h.startPoll(x)
			case *Watcher:
				x.finish(errMaxDuration)
			}
		}
		wait := time.Hour
		if len(h.queue) > 0 {
			wait = time.Duration(h.queue[0].at - now)
		}
		h.mu.Unlock()
		timer.Reset(wait)
	}
}

// errMaxDuration ends a watch that reached the maximum duration; the server ends the
// stream with OK for it.
var errMaxDuration = errors.New("watch: maximum duration reached")

// IsMaxDuration reports whether err is the end of a watch that ran its course.
func IsMaxDuration(err error) bool { return errors.Is(err, errMaxDuration) }

// startPoll starts e's poll, unless one is in flight. Under h.mu.
func (h *Hub) startPoll(e *entry) {
	if e.polling {
		return
	}
	if h.polls >= h.cfg.MaxPolls {
		e.at = time.Now().UnixNano() + int64(time.Millisecond) + rand.Int64N(int64(10*time.Millisecond))
		h.push(&e.item, e)
		return
	}
	h.polls++
	e.polling = true
	reason := e.reason
	e.reason = creditv1.WatchCreditSessionsReason_WATCH_CREDIT_SESSIONS_REASON_POLL
	go h.poll(e, reason)
}

func (h *Hub) poll(e *entry, reason creditv1.WatchCreditSessionsReason) {
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.PollTimeout)
	defer cancel()
	lead, fleetStamp := true, uint64(0)
	if h.cfg.Fleet != nil {
		// The lease outlives two intervals, so the holder keeps it from poll to poll
		// and another replica takes over within two intervals of the holder's end.
		lead, fleetStamp = h.cfg.Fleet.Lead(ctx, e.key, 2*h.cfg.PollInterval+h.cfg.PollTimeout)
	}
	if lead {
		h.mu.Lock()
		version := h.stamp(e, fleetStamp)
		h.mu.Unlock()
		resp, err := e.fetch(ctx)
		var snap *Snapshot
		if err == nil {
			snap = &Snapshot{Response: resp, Hash: Hash(resp), Reason: reason, Version: version}
		}
		h.mu.Lock()
		// Only to the entry that polled: a later one for the same user (its last watch
		// left meanwhile, a new one came) has local versions of its own.
		if h.entries[e.key] == e {
			h.deliver(e, snap, err)
		}
		h.mu.Unlock()
		if h.cfg.Fleet != nil {
			h.cfg.Fleet.PublishResult(e.key, snap, err)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	e.polling = false
	h.polls--
	if h.entries[e.key] != e {
		return // its last watch left meanwhile
	}
	h.unschedule(&e.item)
	e.at = time.Now().UnixNano() + int64(h.cfg.PollInterval)
	if e.again {
		e.again = false
		e.at = time.Now().UnixNano()
		e.reason = creditv1.WatchCreditSessionsReason_WATCH_CREDIT_SESSIONS_REASON_WEBHOOK
	}
	h.push(&e.item, e)
}

// Deliver hands what a poll of key on another replica found (snap, or err) to the
// watches of key on this replica. A caller's error ends them at once; a transient one
// only once the user's polls have failed for longer than FailAfter.
func (h *Hub) Deliver(key Key, snap *Snapshot, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.entries[key]
	if e == nil {
		return
	}
	if snap != nil {
		e.fleetSeen = max(e.fleetSeen, snap.Version.Fleet)
	}
	h.deliver(e, snap, err)
}

// deliver is Deliver for e. Under h.mu.
func (h *Hub) deliver(e *entry, snap *Snapshot, err error) {
	if err == nil {
		e.failingSince = 0
		for w := range e.watchers {
			w.offer(snap)
		}
		return
	}
	if Transient(err) {
		// When the failures began is told by this replica's clock, which is the one it
		// is compared with: another replica's may be minutes off.
		if e.failingSince == 0 {
			e.failingSince = time.Now().UnixNano()
		}
		if time.Now().UnixNano()-e.failingSince <= int64(h.cfg.FailAfter) {
			// Debug: during an outage this would be a line per watched user per interval;
			// the upstream metrics and the calls' own lines tell the story.
			h.cfg.Logger.Debug("watch: polling Plaid failed; retrying at the next poll", "error", status.Convert(err).Message())
			return
		}
	}
	for w := range e.watchers {
		w.finish(err)
	}
}

// Transient reports whether a poll's error may go away by itself: Plaid unavailable,
// rate limits, timeouts. Anything else (the caller's NotFound, InvalidArgument,
// FailedPrecondition, PermissionDenied, the service's Internal) ends the watch at once,
// as it would end a CreditSessionsGet.
func Transient(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.ResourceExhausted, codes.DeadlineExceeded, codes.Aborted:
		return true
	}
	return false
}

// Scheduling. Under h.mu.

type queued struct {
	*item
	owner any // *entry or *Watcher
}

type schedule []queued

func (s schedule) Len() int           { return len(s) }
func (s schedule) Less(i, j int) bool { return s[i].at < s[j].at }
func (s schedule) Swap(i, j int) {
	s[i], s[j] = s[j], s[i]
	s[i].idx, s[j].idx = i, j
}
func (s *schedule) Push(x any) {
	q := x.(queued)
	q.idx = len(*s)
	*s = append(*s, q)
}
func (s *schedule) Pop() any {
	old := *s
	q := old[len(old)-1]
	old[len(old)-1] = queued{}
	*s = old[:len(old)-1]
	q.idx = -1
	return q
}

func (h *Hub) push(it *item, owner any) {
	heap.Push(&h.queue, queued{item: it, owner: owner})
	if it.idx == 0 {
		select {
		case h.kick <- struct{}{}:
		default:
		}
	}
}

func (h *Hub) unschedule(it *item) {
	if it.idx >= 0 {
		heap.Remove(&h.queue, it.idx)
	}
}
