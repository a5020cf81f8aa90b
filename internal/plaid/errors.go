package plaid

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"time"
)

// Error is an error Plaid answered with: its HTTP status and its error body.
type Error struct {
	// HTTPStatus is the HTTP status Plaid sent.
	HTTPStatus int
	// ErrorType is Plaid's broad category, such as INVALID_INPUT.
	ErrorType string `json:"error_type"`
	// ErrorCode is Plaid's specific code, such as INVALID_USER_TOKEN.
	ErrorCode string `json:"error_code"`
	// ErrorCodeReason refines ErrorCode for some OAuth errors.
	ErrorCodeReason string `json:"error_code_reason"`
	// ErrorMessage is for developers; its wording may change.
	ErrorMessage string `json:"error_message"`
	// DisplayMessage is for end users; empty when Plaid sent null.
	DisplayMessage string `json:"display_message"`
	// RequestID is Plaid's identifier of the call.
	RequestID string `json:"request_id"`
	// DocumentationURL points at Plaid's page about the error.
	DocumentationURL string `json:"documentation_url"`
	// SuggestedAction says how to resolve the error, when Plaid knows.
	SuggestedAction string `json:"suggested_action"`
	// RetryAfter is the delay the Retry-After header asked for, or 0.
	RetryAfter time.Duration `json:"-"`
	// Body is the error body exactly as Plaid sent it.
	Body json.RawMessage `json:"-"`
}

func (e *Error) Error() string {
	return fmt.Sprintf("plaid: %s/%s (HTTP %d, request %s): %s",
		e.ErrorType, e.ErrorCode, e.HTTPStatus, e.RequestID, e.ErrorMessage)
}

// ProtocolError reports an upstream answer that is not Plaid's protocol: a body that is
// not JSON, a success body that is not a response, a body over the size limit, a
// redirect. Such an answer says nothing about the request, only about the upstream.
type ProtocolError struct {
	// HTTPStatus is the status the upstream sent.
	HTTPStatus int
	// Reason says what was wrong.
	Reason string
	// Err is the underlying cause, if any.
	Err error
}

func (e *ProtocolError) Error() string {
	msg := fmt.Sprintf("plaid: upstream answered HTTP %d: %s", e.HTTPStatus, e.Reason)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *ProtocolError) Unwrap() error { return e.Err }

// ErrCutShort is the cause of a ProtocolError for a body the connection ended inside:
// a failure of the connection, not of the answer, and so worth another attempt.
var ErrCutShort = errors.New("response body cut short")

// ErrTooLarge is the cause of a ProtocolError for a body over the size limit.
var ErrTooLarge = errors.New("response body over the size limit")

// ErrWaitingForMemory wraps the Admit hook's error when a call gave up waiting for the
// memory to read its answer: a matter of this service's load and that answer's size,
// not of Plaid's health.
var ErrWaitingForMemory = errors.New("waiting for memory")

// MaxRetryAfter caps the delay a Retry-After header may ask for. Larger values, and
// values too large to parse, are taken as this: a delay no caller will wait for, and
// never one that overflows into zero.
const MaxRetryAfter = 24 * time.Hour

// parseError turns a non-2xx answer into an *Error when its body is Plaid's error JSON,
// and a *ProtocolError otherwise (an HTML page from a load balancer, say).
func parseError(resp *http.Response, body []byte) error {
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "application/json" && mt != "" {
		return &ProtocolError{HTTPStatus: resp.StatusCode, Reason: "error body is " + strconv.Quote(mt) + ", not Plaid's JSON"}
	}
	e := &Error{HTTPStatus: resp.StatusCode}
	if err := json.Unmarshal(body, e); err != nil {
		return &ProtocolError{HTTPStatus: resp.StatusCode, Reason: "error body is not Plaid's JSON", Err: err}
	}
	if e.ErrorType == "" || e.ErrorCode == "" {
		return &ProtocolError{HTTPStatus: resp.StatusCode, Reason: "error body has no error_type or error_code"}
	}
	e.Body = append(json.RawMessage(nil), body...)
	e.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"))
	return e
}

// parseRetryAfter reads a Retry-After header in seconds or as an HTTP date.
func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if isDigits(v) {
		s, err := strconv.ParseInt(v, 10, 64)
		if err != nil || s > int64(MaxRetryAfter/time.Second) { // only ErrRange: all digits
			return MaxRetryAfter
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return min(d, MaxRetryAfter)
		}
	}
	return 0
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
