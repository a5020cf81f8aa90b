package resilience

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/plaid"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// BackoffBase<<(attempt-1) overflows time.Duration past 63 doublings, and wrapped to
// zero or below: retries without any wait. The wait is capped instead.
func TestBackoffNeverWrapsForManyAttempts(t *testing.T) {
	g := New(nil, Config{BackoffBase: 100 * time.Millisecond, BackoffMax: 2 * time.Second})
	for n := 1; n <= 200; n++ {
		d := g.backoff(n)
		require.Positive(t, d, "attempt %d", n)
		require.LessOrEqual(t, d, 2*time.Second, "attempt %d", n)
	}
	assert.Equal(t, 100*time.Millisecond, g.backoff(1))
	assert.Equal(t, 200*time.Millisecond, g.backoff(2))
	assert.Equal(t, 2*time.Second, g.backoff(64))
}

// The failure memory holds at most MaxRememberedUsers users, however many fail, and
// keeps no user token: only a hash.
func TestFailureMemoryIsBounded(t *testing.T) {
	g := New(nil, Config{MaxRememberedUsers: 100})
	failure := &plaid.Error{HTTPStatus: 500, ErrorType: "API_ERROR", ErrorCode: "INTERNAL_SERVER_ERROR"}
	now := time.Now()
	for i := range 1000 {
		u := keyOf(plaid.Request{UserToken: "user-" + strconv.Itoa(i)})
		for range 3 {
			g.users.callEnded(u, failure, KindPlaidError, now)
		}
	}
	assert.Len(t, g.users.users, 100)
	assert.Equal(t, 100, g.users.isolated(now))
}

// Answers that are bad for one user are that user's problem, never the breaker's; a
// connection failure is everybody's; Plaid's 5xx is the upstream's the first time for
// a user and the user's after.
func TestFailuresAreScopedByKind(t *testing.T) {
	var heard []string
	g := New(nil, Config{})
	g.OnUpstreamFailure = func(k Kind, s Scope) { heard = append(heard, string(k)+"/"+string(s)) }
	u := keyOf(plaid.Request{UserToken: "someone"})
	var scoped *userScoped
	for _, tt := range []struct {
		err  error
		want string
	}{
		{&plaid.ProtocolError{HTTPStatus: 200, Reason: "the success body is not a credit sessions response"}, "bad_answer/user"},
		{&plaid.ProtocolError{HTTPStatus: 200, Reason: "a body over the limit", Err: plaid.ErrTooLarge}, "too_large/user"},
		{fmt.Errorf("plaid: %w to read the response: %w", plaid.ErrWaitingForMemory, context.DeadlineExceeded), "memory_wait/user"},
		{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, "connection/upstream"},
		{&plaid.Error{HTTPStatus: 503, ErrorType: "API_ERROR", ErrorCode: "PLANNED_MAINTENANCE"}, "maintenance/upstream"},
		{&plaid.Error{HTTPStatus: 503, ErrorType: "API_ERROR", ErrorCode: "PLANNED_MAINTENANCE"}, "maintenance/upstream"},
	} {
		heard = nil
		err := g.account(u, tt.err)
		assert.Equal(t, []string{tt.want}, heard, "%v", tt.err)
		assert.Equal(t, strings.HasSuffix(tt.want, "/user"), errors.As(err, &scoped), "%v", tt.err)
	}

	other := keyOf(plaid.Request{UserToken: "someone else"})
	plaid500 := &plaid.Error{HTTPStatus: 500, ErrorType: "API_ERROR", ErrorCode: "INTERNAL_SERVER_ERROR"}
	heard = nil
	require.False(t, errors.As(g.account(other, plaid500), &scoped), "a first failure counts for the breaker")
	require.True(t, errors.As(g.account(other, plaid500), &scoped), "the same user's next one does not")
	assert.Equal(t, []string{"plaid_error/upstream", "plaid_error/user"}, heard)

	rateLimited := &plaid.Error{HTTPStatus: 429, ErrorType: "RATE_LIMIT_EXCEEDED", ErrorCode: "RATE_LIMIT"}
	heard = nil
	assert.Same(t, error(rateLimited), g.account(other, rateLimited), "an answer from a healthy Plaid is no failure")
	assert.Empty(t, heard)
}

// A user's repeated failure is theirs while Plaid answers someone else between; when two
// users fail with no answer between, it is an outage: every failure counts for the
// breaker, and no user is isolated for it. An answer from Plaid (a success, or its
// refusal of a call) ends the outage as far as the accounting knows.
func TestTwoUsersFailingWithNobodyAnsweredIsAnOutage(t *testing.T) {
	g := New(nil, Config{IsolateAfter: 2})
	plaid500 := &plaid.Error{HTTPStatus: 500, ErrorType: "API_ERROR", ErrorCode: "INTERNAL_SERVER_ERROR"}
	invalid := &plaid.Error{HTTPStatus: 400, ErrorType: "INVALID_INPUT", ErrorCode: "INVALID_USER_TOKEN"}
	a, b, c := keyOf(plaid.Request{UserToken: "a"}), keyOf(plaid.Request{UserToken: "b"}), keyOf(plaid.Request{UserToken: "c"})
	var heard []string
	g.OnUpstreamFailure = func(_ Kind, s Scope) { heard = append(heard, string(s)) }
	scopes := func(steps ...func()) []string {
		heard = nil
		for _, step := range steps {
			step()
		}
		return heard
	}
	fails := func(u userKey) func() { return func() { _ = g.account(u, plaid500) } }
	answers := func(u userKey, err error) func() { return func() { _ = g.account(u, err) } }

	assert.Equal(t, []string{"upstream", "user", "user"}, scopes(fails(a), fails(a), fails(a)),
		"one user failing alone: theirs after the first")
	assert.Equal(t, []string{"upstream", "upstream", "upstream", "upstream"}, scopes(fails(b), fails(a), fails(b), fails(a)),
		"a second user failing with nobody answered between: everybody's")

	now := time.Now()
	for range 3 {
		g.users.callEnded(a, plaid500, KindPlaidError, now)
		g.users.callEnded(b, plaid500, KindPlaidError, now)
	}
	assert.Zero(t, g.users.isolated(now), "an outage isolates nobody")

	assert.Equal(t, []string{"user", "user", "user"}, scopes(answers(c, nil), fails(a), answers(c, invalid), fails(a), fails(a)),
		"once Plaid answers others between, a user's repeated failure is theirs again")
	for range 2 {
		g.users.callEnded(a, plaid500, KindPlaidError, now)
	}
	assert.Equal(t, 1, g.users.isolated(now), "and they are isolated for it")
}

// stubbornUpstream answers only when released, whatever its context says, and then
// reports the context's error if there is one: the shape of an attempt whose cancellation
// has not been noticed yet.
type stubbornUpstream struct {
	calls   chan struct{}
	release chan struct{}
}

func (u *stubbornUpstream) CreditSessionsGet(ctx context.Context, _ plaid.Request) (*creditv1.CreditSessionsGetResponse, error) {
	u.calls <- struct{}{}
	<-u.release
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return &creditv1.CreditSessionsGetResponse{RequestId: "r"}, nil
}

// frozenDeadline has a deadline but is never done: a caller that has not noticed its
// deadline yet, which under load takes as long as the scheduler likes.
type frozenDeadline struct {
	context.Context
	deadline time.Time
}

func (c frozenDeadline) Deadline() (time.Time, bool) { return c.deadline, true }

// A caller arriving after a shared call's deadline passed, but before the call noticed,
// starts afresh: joining would hand it the dead call's cancellation though its own
// deadline is far off (a REST retry right after a gRPC call timed out got 499).
func TestLateCallerDoesNotJoinAnExpiredSharedCall(t *testing.T) {
	u := &stubbornUpstream{calls: make(chan struct{}, 2), release: make(chan struct{})}
	g := New(u, Config{MaxAttempts: 1})
	first := frozenDeadline{Context: context.Background(), deadline: time.Now().Add(20 * time.Millisecond)}
	go func() { _, _ = g.CreditSessionsGet(first, plaid.Request{UserToken: "u"}) }()
	<-u.calls
	require.Eventually(t, func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		c := g.calls[callKey{user: "u"}] // no credentials: the service's
		if c == nil {
			return false
		}
		c.dmu.Lock()
		defer c.dmu.Unlock()
		return c.expired
	}, 5*time.Second, time.Millisecond, "the shared call's deadline passes")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	result := make(chan error, 1)
	go func() { _, err := g.CreditSessionsGet(ctx, plaid.Request{UserToken: "u"}); result <- err }()
	select {
	case <-u.calls: // a second upstream request: the late caller did not join the dead one
	case <-time.After(5 * time.Second):
		close(u.release)
		t.Fatalf("the late caller joined the expired call: %v", <-result)
	}
	close(u.release)
	require.NoError(t, <-result)
}

// untilCanceled answers only when its attempt's context ends, with that context's error.
type untilCanceled struct{}

func (untilCanceled) CreditSessionsGet(ctx context.Context, _ plaid.Request) (*creditv1.CreditSessionsGetResponse, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// A shared call canceled because its caller's deadline passed ends, for that caller, in
// context.DeadlineExceeded, even when the caller's own context has not noticed its
// deadline yet (its timer fires at the same instant as the call's, in either order).
// It ended in context.Canceled, which the REST mirror answered with 499 "call canceled"
// instead of 504: a busy machine saw it one run in three.
func TestASharedCallEndedByItsDeadlineSaysDeadlineExceeded(t *testing.T) {
	g := New(untilCanceled{}, Config{MaxAttempts: 1})
	ctx := frozenDeadline{Context: context.Background(), deadline: time.Now().Add(50 * time.Millisecond)}
	_, err := g.CreditSessionsGet(ctx, plaid.Request{UserToken: "u"})
	require.Error(t, err)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}
