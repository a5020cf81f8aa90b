// Package resilience stands between the service and Plaid and absorbs Plaid's bad
// minutes: it coalesces identical calls in flight, retries what is safe and useful to
// retry within a budget, fails fast while Plaid keeps failing (a circuit breaker that
// probes its way back), and caps the calls in flight to Plaid.
//
// The layers, outermost first: coalescing → retries (backoff with jitter, Retry-After,
// budget) → circuit breaker → concurrency cap → one upstream attempt with its timeout.
package resilience

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/plaid"

	"github.com/sony/gobreaker/v2"
)

// Upstream is the Plaid client the guard wraps.
type Upstream interface {
	CreditSessionsGet(ctx context.Context, r plaid.Request) (*creditv1.CreditSessionsGetResponse, error)
}

// Config tunes the guard. Zero values mean the defaults in brackets.
type Config struct {
	// AttemptTimeout bounds one upstream attempt, within the caller's deadline [10s].
	AttemptTimeout time.Duration
	// CallTimeout bounds a whole call whose caller set no deadline [30s].
	CallTimeout time.Duration

	// MaxAttempts caps attempts per call, the first included; 1 disables retries [3].
	MaxAttempts int
	// BackoffBase is the wait before the first retry, doubling after each [100ms], up to
	// BackoffMax [2s]; each wait is jittered to between half and all of it.
	BackoffBase, BackoffMax time.Duration
	// MaxRetryAfter is the longest Retry-After from Plaid the guard waits for; a longer
	// one ends the call with Plaid's error and its RetryInfo [5s].
	MaxRetryAfter time.Duration
	// RetryBudgetRatio is the retries earned by each call [0.2]: during an outage, retries
	// add at most this fraction to the traffic sent to Plaid, after a burst of
	// RetryBudgetBurst retries [10].
	RetryBudgetRatio float64
	RetryBudgetBurst float64

	// BreakerConsecutiveFailures opens the circuit after that many upstream failures in
	// a row [10]; BreakerFailureRatio opens it when that fraction of at least
	// BreakerMinRequests attempts in BreakerWindow failed [0.5 of 20 in 10s]. Ten in a
	// row, not five: with Plaid failing a steady 17% of requests, five in a row comes
	// round every few hundred attempts (0.17^5), which a soak run showed opening the
	// circuit every 35 s at 200 attempts/s; ten in a row is 0.17^10, about 2e-8.
	BreakerConsecutiveFailures uint32
	BreakerFailureRatio        float64
	BreakerMinRequests         uint32
	BreakerWindow              time.Duration
	// BreakerOpenFor is how long calls fail fast before one probe goes through [5s].
	BreakerOpenFor time.Duration

	// MaxInFlight caps upstream attempts in flight [64]; a call waits at most
	// MaxQueueWait for a place [100ms], then gets ErrOverloaded.
	MaxInFlight  int
	MaxQueueWait time.Duration

	// DisableCoalescing sends every call upstream on its own.
	DisableCoalescing bool

	// IsolateAfter is how many calls in a row for one user must fail, while the
	// failures are not Plaid being down, before that user's calls are answered from
	// memory [3]; IsolateFor is how long they are [10s]. Then one call goes through as a
	// probe, with a single attempt; if it fails, the user is isolated again at once.
	// Three, not two: with Plaid failing a steady 20% of requests, a call fails after its
	// retries about 8% of the time, and two in a row for a busy user come round often.
	IsolateAfter int
	IsolateFor   time.Duration
	// FailureMemory is how long a user's failure is remembered [30s]: while it is, a
	// further failure of that user's is theirs alone and the breaker does not count it.
	FailureMemory time.Duration
	// MaxRememberedUsers bounds the users remembered [10000]; past it, the stalest is
	// forgotten.
	MaxRememberedUsers int
}

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.AttemptTimeout, 10*time.Second)
	def(&c.CallTimeout, 30*time.Second)
	def(&c.BackoffBase, 100*time.Millisecond)
	def(&c.BackoffMax, 2*time.Second)
	def(&c.MaxRetryAfter, 5*time.Second)
	def(&c.BreakerWindow, 10*time.Second)
	def(&c.BreakerOpenFor, 5*time.Second)
	def(&c.MaxQueueWait, 100*time.Millisecond)
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 3
	}
	if c.RetryBudgetRatio <= 0 {
		c.RetryBudgetRatio = 0.2
	}
	if c.RetryBudgetBurst <= 0 {
		c.RetryBudgetBurst = 10
	}
	if c.BreakerConsecutiveFailures == 0 {
		c.BreakerConsecutiveFailures = 10
	}
	if c.BreakerFailureRatio <= 0 {
		c.BreakerFailureRatio = 0.5
	}
	if c.BreakerMinRequests == 0 {
		c.BreakerMinRequests = 20
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 64
	}
	def(&c.IsolateFor, 10*time.Second)
	def(&c.FailureMemory, 30*time.Second)
	if c.IsolateAfter <= 0 {
		c.IsolateAfter = 3
	}
	if c.MaxRememberedUsers <= 0 {
		c.MaxRememberedUsers = 10000
	}
	return c
}

// ErrOverloaded is returned when no place among MaxInFlight freed up in MaxQueueWait.
var ErrOverloaded = errors.New("resilience: too many calls to Plaid in flight")

// CircuitOpenError is returned, without calling Plaid, while the circuit is open.
type CircuitOpenError struct {
	// RetryAfter is how long until a probe may go through.
	RetryAfter time.Duration
}

func (e *CircuitOpenError) Error() string {
	return fmt.Sprintf("resilience: Plaid has been failing; calls fail fast for %s more", e.RetryAfter.Round(time.Millisecond))
}

// Stats count what the guard did, for tests, soak runs and metrics.
type Stats struct {
	Calls            int64 // calls made to the guard
	Coalesced        int64 // calls that joined an identical call in flight
	Attempts         int64 // requests sent to Plaid
	Retries          int64 // attempts after the first of a call
	RetryBudgetEmpty int64 // retries refused because the budget was spent
	Overloaded       int64 // calls refused with ErrOverloaded
	FastFailed       int64 // attempts refused because the circuit was open
	Isolated         int64 // calls answered from memory because their user kept failing
}

// Guard is an Upstream with the resilience layers around another.
type Guard struct {
	cfg      Config
	next     Upstream
	breaker  *gobreaker.CircuitBreaker[*creditv1.CreditSessionsGetResponse]
	openedAt atomic.Int64 // unix nanos when the circuit last opened
	slots    chan struct{}
	budget   retryBudget

	mu      sync.Mutex
	calls   map[callKey]*sharedCall
	runners runners

	users       userMemory
	lastCounted atomic.Value // Kind of the latest failure the breaker counted

	callCount, coalesced, attempts, retries, budgetEmpty, overloaded, fastFailed atomic.Int64
	// OnStateChange, if set before use, hears the breaker's transitions.
	OnStateChange func(from, to gobreaker.State)
	// OnBreakerOpened, if set before use, hears why the circuit opened: "probe_failed",
	// or the Kind of the failure that tripped it.
	OnBreakerOpened func(reason string)
	// OnUpstreamFailure, if set before use, hears every failed attempt's kind and scope.
	OnUpstreamFailure func(Kind, Scope)
}

var _ Upstream = (*Guard)(nil)

// New wraps next.
func New(next Upstream, cfg Config) *Guard {
	cfg = cfg.withDefaults()
	g := &Guard{
		cfg:     cfg,
		next:    next,
		slots:   make(chan struct{}, cfg.MaxInFlight),
		budget:  retryBudget{tokens: cfg.RetryBudgetBurst, max: cfg.RetryBudgetBurst, ratio: cfg.RetryBudgetRatio},
		calls:   make(map[callKey]*sharedCall),
		runners: runners{work: make(chan *sharedCall)},
		users: userMemory{users: make(map[userKey]*userRecord), max: cfg.MaxRememberedUsers,
			forget: cfg.FailureMemory, after: cfg.IsolateAfter, isolate: cfg.IsolateFor},
	}
	g.breaker = gobreaker.NewCircuitBreaker[*creditv1.CreditSessionsGetResponse](gobreaker.Settings{
		Name:        "plaid",
		MaxRequests: 1, // one probe at a time while half-open
		Interval:    cfg.BreakerWindow,
		Timeout:     cfg.BreakerOpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= cfg.BreakerConsecutiveFailures ||
				(c.Requests >= cfg.BreakerMinRequests && float64(c.TotalFailures) >= cfg.BreakerFailureRatio*float64(c.Requests))
		},
		IsSuccessful: func(err error) bool { _, failed := classify(err); return !failed },
		IsExcluded: func(err error) bool {
			if err == nil {
				return false // before the target of errors.As, which would escape on every call
			}
			var user *userScoped
			return errors.Is(err, errCallerGone) || errors.Is(err, ErrOverloaded) || errors.As(err, &user)
		},
		OnStateChange: func(_ string, from, to gobreaker.State) {
			if to == gobreaker.StateOpen {
				g.openedAt.Store(time.Now().UnixNano())
				reason := "probe_failed"
				if from != gobreaker.StateHalfOpen {
					reason, _ = g.lastCounted.Load().(string)
				}
				if g.OnBreakerOpened != nil {
					g.OnBreakerOpened(reason)
				}
			}
			if g.OnStateChange != nil {
				g.OnStateChange(from, to)
			}
		},
	})
	return g
}

// Stats returns the counts so far.
func (g *Guard) Stats() Stats {
	return Stats{
		Calls: g.callCount.Load(), Coalesced: g.coalesced.Load(), Attempts: g.attempts.Load(),
		Retries: g.retries.Load(), RetryBudgetEmpty: g.budgetEmpty.Load(),
		Overloaded: g.overloaded.Load(), FastFailed: g.fastFailed.Load(), Isolated: g.users.rejections(),
	}
}

// IsolatedUsers is the number of users whose calls are answered from memory now.
func (g *Guard) IsolatedUsers() int { return g.users.isolated(time.Now()) }

// BreakerState is the circuit's state: closed, half-open or open.
func (g *Guard) BreakerState() gobreaker.State { return g.breaker.State() }

// InFlight is the number of upstream attempts in flight.
func (g *Guard) InFlight() int { return len(g.slots) }

// CreditSessionsGet fetches a user's sessions through every layer. The caller's ctx
// bounds its wait; an identical call in flight is joined rather than repeated.
//
// A user whose recent calls kept failing, while the failures did not look like Plaid
// being down, is answered from memory with an *IsolatedError: no request to Plaid, no
// retry budget, nothing for the breaker.
func (g *Guard) CreditSessionsGet(ctx context.Context, r plaid.Request) (*creditv1.CreditSessionsGetResponse, error) {
	g.callCount.Add(1)
	u := keyOf(r)
	isolated, probe := g.users.admit(u, time.Now())
	if isolated != nil {
		return nil, isolated
	}
	attempts := g.cfg.MaxAttempts
	if probe {
		attempts = 1 // the pattern is clear: one attempt tells whether it still holds
	}
	c := call{r: r, user: u, attempts: attempts}
	if g.cfg.DisableCoalescing {
		deadline := func() time.Time { d, _ := ctx.Deadline(); return d }
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, g.cfg.CallTimeout)
			defer cancel()
		}
		g.budget.deposit()
		return g.retrying(ctx, c, deadline)
	}
	return g.coalesce(ctx, c)
}

// call is one call's request and what the failure accounting decided for it.
type call struct {
	r        plaid.Request
	user     userKey
	attempts int
}

// attempt makes one upstream request through the breaker and the concurrency cap.
func (g *Guard) attempt(ctx context.Context, c call) (*creditv1.CreditSessionsGetResponse, error) {
	resp, err := g.breaker.Execute(func() (*creditv1.CreditSessionsGetResponse, error) {
		if err := g.acquire(ctx); err != nil {
			return nil, err
		}
		defer func() { <-g.slots }()
		g.attempts.Add(1)
		actx, cancel := context.WithTimeout(ctx, g.cfg.AttemptTimeout)
		defer cancel()
		resp, err := g.next.CreditSessionsGet(actx, c.r)
		if err != nil && ctx.Err() != nil {
			// The call ended, not the upstream: not the breaker's business.
			return nil, &callerGone{err}
		}
		return resp, g.account(c.user, err)
	})
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		g.fastFailed.Add(1)
		wait := g.cfg.BreakerOpenFor - time.Since(time.Unix(0, g.openedAt.Load()))
		return nil, &CircuitOpenError{RetryAfter: max(wait, 100*time.Millisecond)}
	}
	if err == nil {
		return resp, nil // before the targets of errors.As, which escape
	}
	var gone *callerGone
	if errors.As(err, &gone) {
		err = gone.err
	}
	var user *userScoped
	if errors.As(err, &user) {
		err = user.err
	}
	return resp, err
}

// account decides whose trouble a failed attempt is. A bad answer (one that does not
// decode, or is too large) or a wait for answer memory is always the user's. A
// connection failure or Plaid's PLANNED_MAINTENANCE is always the upstream's. Anything else (Plaid's 5xx, an edge's
// HTML 5xx, a timeout, a body cut short) is the upstream's the first time for a user,
// and the user's while that user's failure is remembered, unless another user has failed
// too since Plaid last answered anyone: so the breaker counts such failures across
// distinct users, one user failing again and again cannot open it, and an outage seen
// through only two users opens it as fast as one seen through many.
// The user's failures come back wrapped in userScoped, which the breaker excludes.
func (g *Guard) account(u userKey, err error) error {
	kind, failed := classify(err)
	if !failed {
		if answered(err) {
			g.users.upAgain()
		}
		return err
	}
	now := time.Now()
	scope := ScopeUpstream
	if userOnly(kind) || (!everybodys(kind) && g.users.failing(u, now)) {
		scope = ScopeUser
	}
	if !everybodys(kind) {
		g.users.attemptFailed(u, now, !userOnly(kind))
	}
	if g.OnUpstreamFailure != nil {
		g.OnUpstreamFailure(kind, scope)
	}
	if scope == ScopeUser {
		return &userScoped{err}
	}
	g.lastCounted.Store(string(kind))
	return err
}

// answered reports whether an attempt that was no failure got an answer from Plaid (a
// success, or Plaid refusing the call): proof that Plaid is up for everybody.
func answered(err error) bool {
	if err == nil {
		return true
	}
	// Declared here, not above: errors.As makes its target escape, and a target
	// declared before the nil test cost every successful call an allocation.
	var pe *plaid.Error
	return errors.As(err, &pe)
}

// acquire takes a place among MaxInFlight, waiting at most MaxQueueWait.
func (g *Guard) acquire(ctx context.Context) error {
	select {
	case g.slots <- struct{}{}:
		return nil
	default:
	}
	timer := time.NewTimer(g.cfg.MaxQueueWait)
	defer timer.Stop()
	select {
	case g.slots <- struct{}{}:
		return nil
	case <-timer.C:
		g.overloaded.Add(1)
		return ErrOverloaded
	case <-ctx.Done():
		return &callerGone{ctx.Err()}
	}
}

// errCallerGone marks an attempt that ended because its call did.
var errCallerGone = errors.New("the call ended")

type callerGone struct{ err error }

func (e *callerGone) Error() string        { return e.err.Error() }
func (e *callerGone) Unwrap() []error      { return []error{e.err, errCallerGone} }
func (e *callerGone) Is(target error) bool { return target == errCallerGone }

// retryBudget is a token bucket: each call earns ratio tokens (up to max), each retry
// spends one. It keeps retries from multiplying traffic to Plaid during an outage.
type retryBudget struct {
	mu                 sync.Mutex
	tokens, max, ratio float64
}

func (b *retryBudget) deposit() {
	b.mu.Lock()
	b.tokens = min(b.max, b.tokens+b.ratio)
	b.mu.Unlock()
}

func (b *retryBudget) withdraw() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tokens >= 1 {
		b.tokens--
		return true
	}
	return false
}

// jitter returns a duration between d/2 and d.
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2)
}
