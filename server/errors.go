package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/creditsessions/creditsessions/internal/plaid"
	"github.com/creditsessions/creditsessions/internal/resilience"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Error domains of the google.rpc.ErrorInfo on every error this service returns. Either
// way the reason is a Plaid error code and the metadata carry the Plaid error type, so
// the REST mirror can answer in Plaid's own words.
const (
	// PlaidDomain marks an error Plaid answered with.
	PlaidDomain = "plaid.com"
	// ServiceDomain marks an error that started in this service.
	ServiceDomain = "creditsessions"
)

// RequestIDPrefix starts the request id of an error that started in this service, so
// that nobody quotes it to Plaid.
const RequestIDPrefix = "creditsessions-"

// NewRequestID returns a request id of this service's own. An error that starts here
// carries one in its ErrorInfo (REST: request_id), and the call's log line names it
// beside the detail the caller is not shown.
func NewRequestID() string { return RequestIDPrefix + rand.Text()[:12] }

// ErrorInfo metadata keys (lowerCamelCase, as AIP-193 asks).
const (
	MetaErrorType  = "errorType"
	MetaRequestID  = "requestId"
	MetaHTTPStatus = "httpStatus"
)

// Mapping is one row of the table from Plaid's errors to gRPC codes.
type Mapping struct {
	// ErrorType and ErrorCode select the row; ErrorCode "*" is any other code of the
	// type.
	ErrorType, ErrorCode string
	// Code is the gRPC code when the service called Plaid with its own keys.
	Code codes.Code
	// CallerKeysCode, when set, is the code instead when the caller's keys were
	// forwarded (pass-through mode): an error about the keys is then the caller's.
	CallerKeysCode codes.Code
	// RetryAfter, when set, says retrying is the right move: the status carries a
	// RetryInfo with this delay, unless Plaid sent a Retry-After of its own.
	RetryAfter time.Duration
}

// ErrorTable maps Plaid's errors to gRPC codes, on error_type and error_code first, as
// Plaid asks its clients to; HTTPFallback covers types it does not know. The judgement
// calls, also in docs/contract-and-errors.md:
//
//   - The service builds the request body and headers itself, so a complaint about them
//     (INVALID_BODY, UNKNOWN_FIELDS, INVALID_HEADERS, INCOMPATIBLE_API_VERSION, NOT_FOUND
//     for the endpoint) is this service's bug or configuration: Internal, not the
//     caller's InvalidArgument.
//   - A bad API key, or keys not allowed this environment or route, is the operator's
//     to fix when the service holds the keys: Internal, so it pages someone instead of
//     telling the caller to change a request it cannot change. In pass-through mode the
//     keys are the caller's: Unauthenticated or PermissionDenied.
//   - INVALID_USER_TOKEN ("could not find matching user token") and USER_NOT_FOUND name
//     a user that does not exist: NotFound.
//   - Consent, product enablement and verification state are conditions of the user or
//     the account that a retry will not change: FailedPrecondition.
//   - PRODUCT_NOT_READY, API_ERROR and rate limits are transient: Unavailable or
//     ResourceExhausted with a RetryInfo. CREDITS_EXHAUSTED is ResourceExhausted without
//     one: the allowance will not come back in seconds.
var ErrorTable = []Mapping{
	{ErrorType: "INVALID_REQUEST", ErrorCode: "*", Code: codes.InvalidArgument},
	{ErrorType: "INVALID_REQUEST", ErrorCode: "INVALID_BODY", Code: codes.Internal},
	{ErrorType: "INVALID_REQUEST", ErrorCode: "UNKNOWN_FIELDS", Code: codes.Internal},
	{ErrorType: "INVALID_REQUEST", ErrorCode: "INVALID_HEADERS", Code: codes.Internal},
	{ErrorType: "INVALID_REQUEST", ErrorCode: "INCOMPATIBLE_API_VERSION", Code: codes.Internal},
	{ErrorType: "INVALID_REQUEST", ErrorCode: "NOT_FOUND", Code: codes.Internal},
	{ErrorType: "INVALID_REQUEST", ErrorCode: "SANDBOX_ONLY", Code: codes.Internal},
	{ErrorType: "INVALID_REQUEST", ErrorCode: "NO_LONGER_AVAILABLE", Code: codes.Unimplemented},
	{ErrorType: "INVALID_INPUT", ErrorCode: "*", Code: codes.InvalidArgument},
	{ErrorType: "INVALID_INPUT", ErrorCode: "INVALID_API_KEYS", Code: codes.Internal, CallerKeysCode: codes.Unauthenticated},
	{ErrorType: "INVALID_INPUT", ErrorCode: "UNAUTHORIZED_ENVIRONMENT", Code: codes.Internal, CallerKeysCode: codes.PermissionDenied},
	{ErrorType: "INVALID_INPUT", ErrorCode: "UNAUTHORIZED_ROUTE_ACCESS", Code: codes.Internal, CallerKeysCode: codes.PermissionDenied},
	{ErrorType: "INVALID_INPUT", ErrorCode: "INVALID_PRODUCT", Code: codes.FailedPrecondition},
	{ErrorType: "INVALID_INPUT", ErrorCode: "INVALID_USER_TOKEN", Code: codes.NotFound},
	{ErrorType: "INVALID_INPUT", ErrorCode: "ADDITIONAL_CONSENT_REQUIRED", Code: codes.FailedPrecondition},
	{ErrorType: "INVALID_INPUT", ErrorCode: "USER_PERMISSION_REVOKED", Code: codes.FailedPrecondition},
	{ErrorType: "USER_ERROR", ErrorCode: "*", Code: codes.FailedPrecondition},
	{ErrorType: "USER_ERROR", ErrorCode: "USER_NOT_FOUND", Code: codes.NotFound},
	{ErrorType: "INCOME_VERIFICATION_ERROR", ErrorCode: "*", Code: codes.FailedPrecondition},
	{ErrorType: "INCOME_VERIFICATION_ERROR", ErrorCode: "PRODUCT_NOT_READY", Code: codes.Unavailable, RetryAfter: 30 * time.Second},
	{ErrorType: "INCOME_VERIFICATION_ERROR", ErrorCode: "INCOME_VERIFICATION_NOT_FOUND", Code: codes.NotFound},
	{ErrorType: "RATE_LIMIT_EXCEEDED", ErrorCode: "*", Code: codes.ResourceExhausted, RetryAfter: 2 * time.Second},
	{ErrorType: "RATE_LIMIT_EXCEEDED", ErrorCode: "CREDITS_EXHAUSTED", Code: codes.ResourceExhausted},
	{ErrorType: "API_ERROR", ErrorCode: "*", Code: codes.Unavailable, RetryAfter: time.Second},
	{ErrorType: "API_ERROR", ErrorCode: "PLANNED_MAINTENANCE", Code: codes.Unavailable, RetryAfter: time.Minute},
}

// HTTPFallback maps Plaid's HTTP status to a gRPC code for error types ErrorTable does
// not know. Plaid answers most errors with 400; the rest follow HTTP's meaning.
var HTTPFallback = []struct {
	HTTPStatus int // 0 is any status not listed
	Code       codes.Code
	RetryAfter time.Duration
}{
	{HTTPStatus: 400, Code: codes.FailedPrecondition},
	{HTTPStatus: 401, Code: codes.Unauthenticated},
	{HTTPStatus: 403, Code: codes.PermissionDenied},
	{HTTPStatus: 404, Code: codes.NotFound},
	{HTTPStatus: 429, Code: codes.ResourceExhausted, RetryAfter: 2 * time.Second},
	{HTTPStatus: 500, Code: codes.Unavailable, RetryAfter: time.Second},
	{HTTPStatus: 502, Code: codes.Unavailable, RetryAfter: time.Second},
	{HTTPStatus: 503, Code: codes.Unavailable, RetryAfter: time.Second},
	{HTTPStatus: 504, Code: codes.Unavailable, RetryAfter: time.Second},
	{HTTPStatus: 0, Code: codes.Unknown},
}

var errorIndex = func() map[string]Mapping {
	m := make(map[string]Mapping, len(ErrorTable))
	for _, row := range ErrorTable {
		m[row.ErrorType+"/"+row.ErrorCode] = row
	}
	return m
}()

// Lookup returns the row for a Plaid error type and code, and whether one matched;
// without a match, the caller falls back on the HTTP status.
func Lookup(errorType, errorCode string) (Mapping, bool) {
	if row, ok := errorIndex[errorType+"/"+errorCode]; ok {
		return row, true
	}
	row, ok := errorIndex[errorType+"/*"]
	return row, ok
}

func fallback(httpStatus int) Mapping {
	for _, f := range HTTPFallback {
		if f.HTTPStatus == httpStatus || f.HTTPStatus == 0 {
			return Mapping{Code: f.Code, RetryAfter: f.RetryAfter}
		}
	}
	return Mapping{Code: codes.Unknown}
}

// UpstreamError is the error a call returns when Plaid answered with an error. Its gRPC
// status follows ErrorTable; it also keeps Plaid's error as sent, which the REST mirror
// answers with unchanged.
type UpstreamError struct {
	status *status.Status
	Plaid  *plaid.Error
}

func (e *UpstreamError) Error() string { return e.status.Err().Error() }

// GRPCStatus makes the gRPC server, and status.Convert, use the mapped status.
func (e *UpstreamError) GRPCStatus() *status.Status { return e.status }

func (e *UpstreamError) Unwrap() error { return e.Plaid }

// plaidError builds the status for a Plaid error, following AIP-193: a developer
// message, one ErrorInfo, a LocalizedMessage where Plaid gave a display message, a
// RetryInfo where retrying is right, and a Help link to Plaid's documentation.
func plaidError(e *plaid.Error, callerKeys bool) *UpstreamError {
	row, ok := Lookup(e.ErrorType, e.ErrorCode)
	if !ok {
		row = fallback(e.HTTPStatus)
	}
	code := row.Code
	if callerKeys && row.CallerKeysCode != codes.OK {
		code = row.CallerKeysCode
	}
	retry := row.RetryAfter
	if retry > 0 && e.RetryAfter > 0 {
		retry = e.RetryAfter
	}
	meta := map[string]string{
		MetaErrorType:  e.ErrorType,
		MetaHTTPStatus: strconv.Itoa(e.HTTPStatus),
	}
	if e.RequestID != "" {
		meta[MetaRequestID] = e.RequestID
	}
	if e.SuggestedAction != "" {
		meta["suggestedAction"] = e.SuggestedAction
	}
	if e.ErrorCodeReason != "" {
		meta["errorCodeReason"] = e.ErrorCodeReason
	}
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: e.ErrorCode, Domain: PlaidDomain, Metadata: meta}}
	if e.DisplayMessage != "" {
		details = append(details, &errdetails.LocalizedMessage{Locale: "en-US", Message: e.DisplayMessage})
	}
	if retry > 0 {
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(retry)})
	}
	if e.DocumentationURL != "" {
		details = append(details, &errdetails.Help{Links: []*errdetails.Help_Link{{
			Description: "Plaid's documentation of " + e.ErrorCode, Url: e.DocumentationURL,
		}}})
	}
	msg := fmt.Sprintf("plaid: %s/%s: %s", e.ErrorType, e.ErrorCode, e.ErrorMessage)
	return &UpstreamError{status: withDetails(status.New(code, msg), details...), Plaid: e}
}

// serviceError builds the status of an error that starts in this service, in Plaid's
// vocabulary so the REST mirror can answer as Plaid would: reason is a Plaid error code
// a Plaid client already understands, with its type, HTTP status and a request id of
// this service's own in the metadata.
func serviceError(code codes.Code, plaidType, plaidCode string, httpStatus int, retry time.Duration, msg string, extra ...protoadapt.MessageV1) *status.Status {
	details := append([]protoadapt.MessageV1{&errdetails.ErrorInfo{
		Reason: plaidCode, Domain: ServiceDomain,
		Metadata: map[string]string{MetaErrorType: plaidType, MetaHTTPStatus: strconv.Itoa(httpStatus), MetaRequestID: NewRequestID()},
	}}, extra...)
	if retry > 0 {
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(retry)})
	}
	return withDetails(status.New(code, msg), details...)
}

func withDetails(st *status.Status, details ...protoadapt.MessageV1) *status.Status {
	if withDetails, err := st.WithDetails(details...); err == nil {
		return withDetails
	}
	return st // only fails for an OK status, which never gets here
}

// missingFields is INVALID_REQUEST/MISSING_FIELDS for the request fields named.
func missingFields(code codes.Code, fields ...string) error {
	violations := make([]*errdetails.BadRequest_FieldViolation, len(fields))
	for i, f := range fields {
		violations[i] = &errdetails.BadRequest_FieldViolation{Field: f, Description: f + " is required"}
	}
	msg := "the following required fields are missing: "
	for i, f := range fields {
		if i > 0 {
			msg += ", "
		}
		msg += f
	}
	return serviceError(code, "INVALID_REQUEST", "MISSING_FIELDS", 400, 0, msg,
		&errdetails.BadRequest{FieldViolations: violations}).Err()
}

// invalidField is INVALID_REQUEST/INVALID_FIELD for a request field, in Plaid's words.
func invalidField(code codes.Code, field string) error {
	return serviceError(code, "INVALID_REQUEST", "INVALID_FIELD", 400, 0,
		field+" must be a properly formatted, non-empty string",
		&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{
			Field: field, Description: field + " must be valid UTF-8, at most " + strconv.Itoa(MaxUserTokenBytes) + " bytes",
		}}}).Err()
}

// upstreamStatus maps any error from the Plaid client to the status the caller gets.
// Only Plaid's own errors carry Plaid's words. Any other failure gets a fixed message:
// the error itself names addresses, proxies, resolvers, TLS details and bytes of
// Plaid's answer (which may be a user's data), so it goes to the call's log line
// (upstream_error), tied to the caller's answer by the request id in both.
func upstreamStatus(ctx context.Context, err error, callerKeys bool) error {
	var pe *plaid.Error
	var proto *plaid.ProtocolError
	var netErr net.Error
	var open *resilience.CircuitOpenError
	var isolated *resilience.IsolatedError
	switch {
	case errors.As(err, &isolated):
		return isolatedStatus(isolated, callerKeys)
	case errors.As(err, &pe):
		return plaidError(pe, callerKeys)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded):
		return serviceError(codes.DeadlineExceeded, "API_ERROR", "INTERNAL_SERVER_ERROR", 504, 0,
			"deadline exceeded before Plaid answered").Err()
	case errors.Is(err, context.Canceled) || ctx.Err() != nil:
		return serviceError(codes.Canceled, "API_ERROR", "INTERNAL_SERVER_ERROR", 499, 0, "call canceled").Err()
	case errors.As(err, &open):
		return serviceError(codes.Unavailable, "API_ERROR", "INTERNAL_SERVER_ERROR", 503, open.RetryAfter,
			"Plaid has been failing; calls fail fast until a probe succeeds").Err()
	case errors.Is(err, resilience.ErrOverloaded):
		return serviceError(codes.ResourceExhausted, "RATE_LIMIT_EXCEEDED", "RATE_LIMIT", 429, time.Second,
			"too many calls to Plaid in flight; try again shortly").Err()
	case errors.As(err, &proto):
		code, retry, msg := codes.Unavailable, time.Second, "Plaid's answer could not be used"
		switch {
		case proto.HTTPStatus >= 300 && proto.HTTPStatus < 400:
			// Configuration: retrying will not help.
			code, retry, msg = codes.Internal, 0, "Plaid answered with a redirect, which is not followed"
		case errors.Is(err, plaid.ErrTooLarge):
			code, retry, msg = codes.Internal, 0, "Plaid's answer is larger than this service accepts"
		case errors.Is(err, plaid.ErrCutShort):
			msg = "Plaid's answer was cut short"
		}
		return serviceError(code, "API_ERROR", "INTERNAL_SERVER_ERROR", 502, retry, msg).Err()
	case errors.As(err, &netErr):
		return serviceError(codes.Unavailable, "API_ERROR", "INTERNAL_SERVER_ERROR", 503, time.Second,
			"Plaid could not be reached").Err()
	default:
		return serviceError(codes.Internal, "API_ERROR", "INTERNAL_SERVER_ERROR", 500, 0,
			"calling Plaid failed").Err()
	}
}

// isolatedStatus answers a call for a user whose calls keep failing, from memory:
// Unavailable with a RetryInfo saying when the next call goes to Plaid. When Plaid's own
// error was remembered, it is the answer (REST callers get Plaid's body and status, and
// a Retry-After), with the delay the isolation sets.
func isolatedStatus(e *resilience.IsolatedError, callerKeys bool) error {
	retry := max(e.RetryAfter, time.Second)
	if e.Plaid != nil {
		remembered := *e.Plaid
		remembered.RetryAfter = retry
		ue := plaidError(&remembered, callerKeys)
		if ue.status.Code() == codes.Unavailable && retryDelayOf(ue.status) > 0 {
			return ue
		}
	}
	return serviceError(codes.Unavailable, "API_ERROR", "INTERNAL_SERVER_ERROR", 503, retry,
		"this user's recent calls to Plaid kept failing while others' succeeded ("+string(e.Kind)+
			"); answered without calling Plaid until the RetryInfo delay has passed").Err()
}

func retryDelayOf(st *status.Status) time.Duration {
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	return 0
}
