package resilience

import (
	"context"
	"crypto/sha256"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/creditsessions/creditsessions/internal/plaid"
)

// Kind is what went wrong with one upstream attempt, as the failure accounting sees it.
// Metrics label failures with it.
type Kind string

// The kinds of upstream failure. Which of them say "Plaid is down" and which "this
// user's answer is bad" is the point of the accounting: see scopeOf.
const (
	// KindConnection: no answer at all: refused, reset, DNS, TLS, a connection closed
	// before the response began. Plaid (or the way to it) is down, for everybody.
	KindConnection Kind = "connection"
	// KindTimeout: the attempt's own timeout passed, before or while the body arrived
	// (a stalled body).
	KindTimeout Kind = "timeout"
	// KindCutShort: the connection ended inside the body.
	KindCutShort Kind = "cut_short"
	// KindPlaidError: Plaid's error body saying Plaid failed (API_ERROR, or a 5xx).
	KindPlaidError Kind = "plaid_error"
	// KindMaintenance: Plaid's PLANNED_MAINTENANCE: Plaid's for everybody, by definition.
	KindMaintenance Kind = "maintenance"
	// KindEdge5xx: a 5xx page that is not Plaid's JSON (a load balancer's HTML).
	KindEdge5xx Kind = "edge_5xx"
	// KindBadAnswer: an answer that is not a response (a 200 that does not decode).
	KindBadAnswer Kind = "bad_answer"
	// KindTooLarge: a body over -max-response-bytes.
	KindTooLarge Kind = "too_large"
	// KindMemoryWait: the attempt waited out its time for answer memory.
	KindMemoryWait Kind = "memory_wait"
)

// Kinds lists every Kind, for metrics that want all their series from the start.
var Kinds = []Kind{KindConnection, KindMaintenance, KindTimeout, KindCutShort, KindPlaidError, KindEdge5xx, KindBadAnswer, KindTooLarge, KindMemoryWait}

// Scope says whose trouble a failure is: one user's, or the upstream's.
type Scope string

const (
	// ScopeUser: the failure is one user's problem. It does not count for the circuit
	// breaker, which every user shares.
	ScopeUser Scope = "user"
	// ScopeUpstream: the failure may be Plaid being down. The circuit breaker counts it.
	ScopeUpstream Scope = "upstream"
)

// classify returns the kind of an attempt's failure, and false for errors that are no
// failure of the upstream at all (caller errors and rate limits, which a healthy Plaid
// answers; the call ending; the guard's own refusals).
func classify(err error) (Kind, bool) {
	if err == nil {
		// Before the targets below are declared: errors.As makes them escape, and each
		// would be an allocation on every successful attempt (three per call).
		return "", false
	}
	var pe *plaid.Error
	var proto *plaid.ProtocolError
	var open *CircuitOpenError
	switch {
	case err == nil, errors.As(err, &open), errors.Is(err, ErrOverloaded), errors.Is(err, errCallerGone):
		return "", false
	case errors.Is(err, plaid.ErrWaitingForMemory):
		return KindMemoryWait, true
	case errors.As(err, &pe):
		if pe.ErrorType == "API_ERROR" && pe.ErrorCode == "PLANNED_MAINTENANCE" {
			return KindMaintenance, true
		}
		if pe.ErrorType == "API_ERROR" || (pe.HTTPStatus >= 500 && pe.ErrorType != "RATE_LIMIT_EXCEEDED") {
			return KindPlaidError, true
		}
		return "", false
	case errors.Is(err, plaid.ErrTooLarge):
		return KindTooLarge, true
	case errors.Is(err, plaid.ErrCutShort):
		return KindCutShort, true
	case errors.As(err, &proto):
		if proto.HTTPStatus >= 500 {
			return KindEdge5xx, true
		}
		return KindBadAnswer, true
	case errors.Is(err, context.DeadlineExceeded):
		return KindTimeout, true
	case isRefusedOrReset(err):
		return KindConnection, true
	default:
		var netErr net.Error
		if errors.As(err, &netErr) && netErr.Timeout() {
			return KindTimeout, true
		}
		return KindConnection, true
	}
}

func isRefusedOrReset(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
}

// userOnly reports whether a kind is always the one user's problem: the answer arrived
// and was bad, or waiting for memory took too long. Plaid being down shows otherwise.
func userOnly(k Kind) bool {
	return k == KindBadAnswer || k == KindTooLarge || k == KindMemoryWait
}

// everybody's reports whether a kind of failure is never one user's: the breaker counts
// every one of them, and no user is isolated for them.
func everybodys(k Kind) bool { return k == KindConnection || k == KindMaintenance }

// isolating reports whether a failed call of this kind moves its user towards being
// answered from memory. Connection failures and maintenance are everybody's (the
// breaker's business); waiting for memory is this service's load, not the user's answer.
func isolating(k Kind) bool {
	return !everybodys(k) && k != KindMemoryWait && k != ""
}

// userKey names a user in the failure memory: a hash of the credentials' client id and
// the user token, never the token itself.
type userKey [16]byte

func keyOf(r plaid.Request) userKey {
	// One buffer on the stack for the usual lengths, and Sum256: a hash.Hash and its
	// Sum were two allocations on every call.
	var stack [256]byte
	b := append(stack[:0], r.Credentials.ClientID...)
	b = append(b, 0)
	b = append(b, r.UserToken...)
	sum := sha256.Sum256(b)
	var k userKey
	copy(k[:], sum[:])
	return k
}

// userRecord is what the guard remembers of a user whose calls failed.
type userRecord struct {
	lastFailure   time.Time // the latest failed attempt
	failedIn      uint64    // the answer epoch of the latest attempt that may be Plaid's failure
	failedCalls   int       // calls in a row that ended in an isolating failure
	isolatedUntil time.Time // calls are answered from memory until then
	kind          Kind      // of the latest failed call
	plaidErr      *plaid.Error
}

// maxRememberedBody bounds the Plaid error body kept per remembered user.
const maxRememberedBody = 4 << 10

// userMemory is a bounded map of users whose calls failed recently.
//
// It also tells one user's trouble from everybody's. A user's repeated failure is theirs
// only while Plaid is seen answering someone: the failures since Plaid last answered are
// an epoch (answered counts the answers, and each starts a new one), and once two users
// have failed in one epoch with no answer between, every failure is counted as Plaid's,
// however recently that user failed before. Without this, a total outage seen through two
// users counted each user once per FailureMemory, which the breaker's window never added
// up to, and isolated the users instead.
type userMemory struct {
	// answered counts the attempts Plaid answered (successes, and its refusals of a
	// call): each is proof it is up, for everybody, and starts a new epoch. Atomic, as
	// it is written on every success.
	answered atomic.Uint64

	mu sync.Mutex
	// failersIn is the epoch failers counts the users of: distinct users who failed
	// since Plaid last answered, with a failure that may be Plaid's.
	failersIn uint64
	failers   int
	users     map[userKey]*userRecord
	max       int
	forget    time.Duration // a record with no failure for this long is forgotten
	after     int           // failed calls in a row that isolate a user
	isolate   time.Duration // how long
	evicted   int64
	rejected  int64
}

// upAgain notes that Plaid answered an attempt: a new epoch.
func (m *userMemory) upAgain() { m.answered.Add(1) }

// epoch numbers the time since Plaid last answered, from 1: a record's zero failedIn
// is in no epoch.
func (m *userMemory) epoch() uint64 { return m.answered.Load() + 1 }

// failing reports whether a failure of the user's now is their own trouble, not news
// about the upstream: their latest failure is recent, and no other user has failed
// since Plaid last answered.
func (m *userMemory) failing(k userKey, now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.users[k]
	return r != nil && now.Sub(r.lastFailure) < m.forget && !m.othersFailing(r)
}

// othersFailing reports whether a user other than r's has failed since Plaid last
// answered (r is nil for a user not remembered). Called with m.mu held.
func (m *userMemory) othersFailing(r *userRecord) bool {
	epoch := m.epoch()
	if m.failersIn != epoch {
		return false
	}
	others := m.failers
	if r != nil && r.failedIn == epoch {
		others--
	}
	return others > 0
}

// failedInEpoch counts r's user among the users failing since Plaid last answered.
// Called with m.mu held.
func (m *userMemory) failedInEpoch(r *userRecord) {
	epoch := m.epoch()
	if m.failersIn != epoch {
		m.failersIn, m.failers = epoch, 0
	}
	if r.failedIn != epoch {
		r.failedIn = epoch
		m.failers++
	}
}

// admit returns the isolation error when the user is answered from memory now, and
// whether the user was isolated before and this call is the probe that may end it (so
// that it gets one attempt, no retries).
func (m *userMemory) admit(k userKey, now time.Time) (*IsolatedError, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.users[k]
	if r == nil {
		return nil, false
	}
	if now.Sub(r.lastFailure) >= m.forget && !now.Before(r.isolatedUntil) {
		delete(m.users, k)
		return nil, false
	}
	if now.Before(r.isolatedUntil) {
		m.rejected++
		return &IsolatedError{Kind: r.kind, Plaid: r.plaidErr, RetryAfter: r.isolatedUntil.Sub(now)}, true
	}
	return nil, r.failedCalls >= m.after
}

// attemptFailed notes a failed attempt's time, and whether the failure may be Plaid's.
func (m *userMemory) attemptFailed(k userKey, now time.Time, maybeUpstream bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.record(k, now)
	r.lastFailure = now
	if maybeUpstream {
		m.failedInEpoch(r)
	}
}

// callEnded notes how a call ended: success forgets the user; a failure of an
// isolating kind counts towards isolation, unless other users are failing too with
// nobody answered between: then it is an outage, which is the breaker's to handle, and
// isolating the users would only hide it.
func (m *userMemory) callEnded(k userKey, err error, kind Kind, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err == nil {
		delete(m.users, k)
		return
	}
	if !isolating(kind) || m.othersFailing(m.users[k]) {
		return
	}
	r := m.record(k, now)
	r.lastFailure = now
	r.failedCalls++
	r.kind = kind
	r.plaidErr = nil
	var pe *plaid.Error
	if errors.As(err, &pe) {
		kept := *pe
		if len(kept.Body) > maxRememberedBody {
			kept.Body = nil // the mirror rebuilds a body from the status
		}
		r.plaidErr = &kept
	}
	if r.failedCalls >= m.after {
		r.isolatedUntil = now.Add(m.isolate)
	}
}

// record returns k's record, making room for it when the memory is full. Called with
// m.mu held.
func (m *userMemory) record(k userKey, now time.Time) *userRecord {
	if r := m.users[k]; r != nil {
		return r
	}
	if len(m.users) >= m.max {
		m.evict(now)
	}
	r := &userRecord{}
	m.users[k] = r
	return r
}

// evict forgets every stale record, or else the one whose latest failure is oldest.
// A scan: it runs only when a new user fails while the memory is full.
func (m *userMemory) evict(now time.Time) {
	var oldestKey userKey
	var oldest time.Time
	found := false
	for k, r := range m.users {
		if now.Sub(r.lastFailure) >= m.forget && !now.Before(r.isolatedUntil) {
			delete(m.users, k)
			m.evicted++
			continue
		}
		if !found || r.lastFailure.Before(oldest) {
			oldestKey, oldest, found = k, r.lastFailure, true
		}
	}
	if len(m.users) >= m.max && found {
		delete(m.users, oldestKey)
		m.evicted++
	}
}

// isolated counts the users answered from memory now.
func (m *userMemory) isolated(now time.Time) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, r := range m.users {
		if now.Before(r.isolatedUntil) {
			n++
		}
	}
	return n
}

func (m *userMemory) rejections() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rejected
}

// IsolatedError answers, without calling Plaid, a call for a user whose recent calls
// kept failing while others' succeeded: the trouble is that user's, and another attempt
// now would cost Plaid and the shared retry budget for nothing.
type IsolatedError struct {
	// Kind is how the user's latest call failed.
	Kind Kind
	// Plaid is the error Plaid answered that call with, if it was one of Plaid's.
	Plaid *plaid.Error
	// RetryAfter is how long until a call for this user is sent to Plaid again.
	RetryAfter time.Duration
}

func (e *IsolatedError) Error() string {
	return "resilience: this user's calls to Plaid keep failing (" + string(e.Kind) +
		"); answered without calling Plaid for " + e.RetryAfter.Round(time.Millisecond).String() + " more"
}

// Unwrap gives Plaid's error, so the REST mirror can answer with Plaid's body.
func (e *IsolatedError) Unwrap() error {
	if e.Plaid == nil {
		return nil
	}
	return e.Plaid
}

// userScoped marks an attempt's failure that the breaker must not count.
type userScoped struct{ err error }

func (e *userScoped) Error() string { return e.err.Error() }
func (e *userScoped) Unwrap() error { return e.err }
