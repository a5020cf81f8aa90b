package resilience

import (
	"context"
	"errors"
	"io"
	"net"
	"time"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/plaid"
)

// PlannedMaintenanceDelay is the wait Plaid's PLANNED_MAINTENANCE suggests when it
// sends no Retry-After: the RetryInfo delay server.ErrorTable gives it. Retrying after
// the usual 100 ms would only meet the maintenance again.
const PlannedMaintenanceDelay = time.Minute

// maxBackoffShift caps the doubling of BackoffBase: past it the shift would overflow
// time.Duration and wrap to zero or below (BackoffMax is long reached by then).
const maxBackoffShift = 30

// backoff is the wait before retry number n (1 for the first), before jitter.
func (g *Guard) backoff(n int) time.Duration {
	d := g.cfg.BackoffBase << min(max(n-1, 0), maxBackoffShift)
	if d <= 0 || d > g.cfg.BackoffMax {
		return g.cfg.BackoffMax
	}
	return d
}

// suggestedDelay is the wait Plaid asks for after err: its Retry-After, or for
// PLANNED_MAINTENANCE without one, PlannedMaintenanceDelay.
func suggestedDelay(err error) time.Duration {
	var pe *plaid.Error
	if !errors.As(err, &pe) {
		return 0
	}
	if pe.RetryAfter > 0 {
		return pe.RetryAfter
	}
	if pe.ErrorType == "API_ERROR" && pe.ErrorCode == "PLANNED_MAINTENANCE" {
		return PlannedMaintenanceDelay
	}
	return 0
}

// retrying makes attempts until one succeeds, the error is not worth retrying, the
// call's attempts or the budget run out, or the next wait would outlive the call's
// deadline (deadline returns the zero time when there is none). How the call ended
// goes to the failure memory of its user.
func (g *Guard) retrying(ctx context.Context, c call, deadline func() time.Time) (*creditv1.CreditSessionsGetResponse, error) {
	// Asked again: the user may have been isolated since this call was admitted, by an
	// identical call that ended in between.
	if isolated, _ := g.users.admit(c.user, time.Now()); isolated != nil {
		return nil, isolated
	}
	resp, err := g.retry(ctx, c, deadline)
	if ctx.Err() == nil { // a call its caller ended says nothing about the user
		kind, _ := classify(err)
		g.users.callEnded(c.user, err, kind, time.Now())
	}
	return resp, err
}

func (g *Guard) retry(ctx context.Context, c call, deadline func() time.Time) (*creditv1.CreditSessionsGetResponse, error) {
	for attempt := 1; ; attempt++ {
		resp, err := g.attempt(ctx, c)
		if err == nil {
			return resp, nil
		}
		if attempt >= c.attempts || ctx.Err() != nil || !retryable(err) {
			return nil, err
		}
		wait := jitter(g.backoff(attempt))
		if suggested := suggestedDelay(err); suggested > 0 {
			if suggested > g.cfg.MaxRetryAfter {
				return nil, err // the caller's RetryInfo says when
			}
			wait = max(wait, suggested)
		}
		if d := deadline(); !d.IsZero() && time.Now().Add(wait).After(d) {
			return nil, err // giving up now beats failing at the deadline
		}
		if !g.budget.withdraw() {
			g.budgetEmpty.Add(1)
			return nil, err
		}
		g.retries.Add(1)
		timer := time.NewTimer(wait)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return nil, err
		}
	}
}

// retryable reports whether another attempt may succeed where this one failed: a
// connection that failed, Plaid's API_ERROR, PRODUCT_NOT_READY and rate limits (but not
// CREDITS_EXHAUSTED). An error about the request itself never is.
func retryable(err error) bool {
	var pe *plaid.Error
	var proto *plaid.ProtocolError
	var netErr net.Error
	var open *CircuitOpenError
	switch {
	case errors.As(err, &open), errors.Is(err, ErrOverloaded):
		return false
	case errors.As(err, &pe):
		switch {
		case pe.ErrorType == "API_ERROR":
			return true
		case pe.ErrorType == "INCOME_VERIFICATION_ERROR" && pe.ErrorCode == "PRODUCT_NOT_READY":
			return true
		case pe.ErrorType == "RATE_LIMIT_EXCEEDED":
			return pe.ErrorCode != "CREDITS_EXHAUSTED"
		default:
			return false
		}
	case errors.Is(err, plaid.ErrWaitingForMemory):
		return false // the next attempt would wait for the same memory
	case errors.As(err, &proto):
		// A 5xx page from something in front of Plaid, or a body the connection ended
		// inside. Not an oversized body, a redirect or a 200 that is not a response:
		// those would come back the same.
		return proto.HTTPStatus >= 500 || errors.Is(err, plaid.ErrCutShort)
	case errors.Is(err, context.DeadlineExceeded):
		return true // the attempt's own timeout; the call's is checked before
	case errors.As(err, &netErr):
		return true
	default:
		return errors.Is(err, net.ErrClosed) || isConnectionError(err)
	}
}

// isConnectionError catches transport failures that are not net.Errors, such as an
// EOF where a response should have started.
func isConnectionError(err error) bool {
	for _, target := range []error{io.EOF, io.ErrUnexpectedEOF} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}
