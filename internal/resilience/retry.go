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

// retrying makes attempts until one succeeds, the error is not worth retrying, the
// attempts or the budget run out, or the next wait would outlive the call's deadline
// (deadline returns the zero time when there is none).
func (g *Guard) retrying(ctx context.Context, r plaid.Request, deadline func() time.Time) (*creditv1.CreditSessionsGetResponse, error) {
	for attempt := 1; ; attempt++ {
		resp, err := g.attempt(ctx, r)
		if err == nil {
			return resp, nil
		}
		if attempt >= g.cfg.MaxAttempts || ctx.Err() != nil || !retryable(err) {
			return nil, err
		}
		wait := jitter(min(g.cfg.BackoffMax, g.cfg.BackoffBase<<(attempt-1)))
		var pe *plaid.Error
		if errors.As(err, &pe) && pe.RetryAfter > 0 {
			if pe.RetryAfter > g.cfg.MaxRetryAfter {
				return nil, err // the caller's RetryInfo says when
			}
			wait = max(wait, pe.RetryAfter)
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

// upstreamFailure reports whether err says Plaid is unwell, which is what the circuit
// breaker counts. Caller errors and rate limits are answers from a healthy Plaid.
func upstreamFailure(err error) bool {
	var pe *plaid.Error
	if errors.As(err, &pe) {
		return pe.ErrorType == "API_ERROR" || (pe.HTTPStatus >= 500 && pe.ErrorType != "RATE_LIMIT_EXCEEDED")
	}
	return true
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
