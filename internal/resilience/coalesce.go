package resilience

import (
	"context"
	"sync"
	"time"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
)

// sharedCall is one upstream call that identical calls in flight wait on together. It
// lives as long as its longest-waiting caller needs it: its deadline is the latest of
// theirs, and it is canceled when the last of them leaves.
type sharedCall struct {
	key    callKey
	call   call // the first caller's, which the runner makes
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	resp   *creditv1.CreditSessionsGetResponse
	err    error

	// guarded by Guard.mu
	waiting int  // callers waiting now
	joined  int  // callers that ever waited
	left    bool // removed from Guard.calls

	dmu      sync.Mutex
	deadline time.Time
	timer    *time.Timer
	expired  bool // the deadline passed and the call was canceled: nobody may join it
}

// extend makes the call last at least until d. It reports false when the call's deadline
// has passed already: its context is canceled, so a caller joining it would get nothing
// but that cancellation, however much time the caller itself has left.
func (c *sharedCall) extend(d time.Time) bool {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	if c.expired {
		return false
	}
	if !d.After(c.deadline) {
		return true
	}
	c.deadline = d
	if c.timer != nil {
		c.timer.Stop()
	}
	c.timer = time.AfterFunc(time.Until(d), c.expire)
	return true
}

// expire cancels the call once its latest deadline has passed. A timer stopped too late
// to stop its function finds the deadline moved and leaves the call alone.
func (c *sharedCall) expire() {
	c.dmu.Lock()
	if time.Now().Before(c.deadline) {
		c.dmu.Unlock()
		return
	}
	c.expired = true
	c.dmu.Unlock()
	c.cancel()
}

func (c *sharedCall) hasExpired() bool {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	return c.expired
}

// expiredError is the outcome of a shared call canceled at its deadline: it is
// context.DeadlineExceeded, and keeps the attempt's own error for the log.
type expiredError struct{ err error }

func (e *expiredError) Error() string   { return "deadline exceeded: " + e.err.Error() }
func (e *expiredError) Unwrap() []error { return []error{context.DeadlineExceeded, e.err} }

func (c *sharedCall) currentDeadline() time.Time {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	return c.deadline
}

func (c *sharedCall) stopTimer() {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	if c.timer != nil {
		c.timer.Stop()
	}
}

// coalesce joins the identical call in flight, or starts one, and waits for it or for
// ctx. Calls are identical when their credentials and user token are.
func (g *Guard) coalesce(ctx context.Context, call call) (*creditv1.CreditSessionsGetResponse, error) {
	r := call.r
	key := callKey{clientID: r.Credentials.ClientID, secret: r.Credentials.Secret, user: r.UserToken}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(g.cfg.CallTimeout)
	}

	g.mu.Lock()
	c, joined := g.calls[key]
	if joined && !c.extend(deadline) {
		// The call in flight outlived the callers it was made for and is being canceled;
		// this caller starts afresh rather than inherit that cancellation.
		g.forget(key, c)
		joined = false
	}
	if !joined {
		// Detached from the first caller's cancellation, which must not end the call for
		// the others, but keeping its values (trace context, for one).
		cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		c = &sharedCall{key: key, call: call, ctx: cctx, cancel: cancel, done: make(chan struct{})}
		g.calls[key] = c
		c.extend(deadline)
	}
	c.waiting++
	c.joined++
	g.mu.Unlock()

	if joined {
		g.coalesced.Add(1)
	} else {
		g.budget.deposit()
		g.runners.start(g, c)
	}

	select {
	case <-c.done:
		// Every waiter gets the same message, read-only: the encoders only read it, and
		// one answer of 10,000 sessions is 6 MB of heap, which N clones would multiply
		// outside the answer-memory budget.
		resp, err := c.resp, c.err
		g.mu.Lock()
		c.waiting--
		if c.waiting == 0 {
			// The last waiter has it: the call lets go of it. Something may keep the
			// call a while longer (its deadline's stopped timer stays in the runtime's
			// timer heap until the runtime clears it out), and must not keep the
			// answer with it, outside the answer-memory budget.
			c.resp = nil
		}
		g.mu.Unlock()
		return resp, err
	case <-ctx.Done():
		g.mu.Lock()
		c.waiting--
		if c.waiting == 0 {
			g.forget(key, c)
			c.cancel() // nobody is left to want the answer
		}
		g.mu.Unlock()
		return nil, ctx.Err()
	}
}

// callKey names identical calls: same credentials, same user.
type callKey struct{ clientID, secret, user string }

// run makes the shared call and hands the outcome to its waiters.
func (g *Guard) run(c *sharedCall) {
	defer c.cancel()
	defer c.stopTimer()
	resp, err := g.retrying(c.ctx, c.call, c.currentDeadline)
	if err != nil && c.hasExpired() {
		// The call was canceled because the latest of its callers' deadlines passed. For
		// them that is their deadline, though their own contexts, whose timers fire at the
		// same instant, may not say so yet: a REST caller got 499 "call canceled" for
		// its own deadline instead of 504.
		err = &expiredError{err}
	}
	g.mu.Lock()
	g.forget(c.key, c)
	c.resp, c.err = resp, err
	g.mu.Unlock()
	close(c.done)
}

// forget removes c from the calls in flight, so later callers start afresh. Called with
// g.mu held.
func (g *Guard) forget(key callKey, c *sharedCall) {
	if !c.left && g.calls[key] == c {
		delete(g.calls, key)
	}
	c.left = true
}

// runnerIdle is how long a runner waits for another shared call before it exits.
const runnerIdle = 100 * time.Millisecond

// runners run shared calls on goroutines kept for a while after their last call, so that
// under load a call runs on a stack that has grown already to what a call needs. A
// goroutine of its own per call grew its stack by copying, every call: about 6% of a
// small call's CPU in a profile.
//
// The work handed over is the shared call itself, not a closure around it: one
// allocation less per call.
type runners struct {
	work chan *sharedCall // unbuffered: a send succeeds only into an idle runner's hands
}

// start runs c on an idle runner, or on a new one.
func (r *runners) start(g *Guard, c *sharedCall) {
	select {
	case r.work <- c:
	default:
		go r.loop(g, c)
	}
}

func (r *runners) loop(g *Guard, c *sharedCall) {
	idle := time.NewTimer(runnerIdle)
	defer idle.Stop()
	for {
		g.run(c)
		idle.Reset(runnerIdle)
		select {
		case c = <-r.work:
		case <-idle.C:
			return
		}
	}
}
