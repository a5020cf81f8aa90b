package auth

import (
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"
)

// errorDomain is server.ServiceDomain: the errors below started in this service, and
// name the Plaid error a Plaid client understands, so the REST mirror answers in
// Plaid's shape (see package mirror).
const errorDomain = "creditsessions"

func plaidStatus(code codes.Code, msg, errorType, errorCode string, httpStatus string, retry time.Duration) error {
	st := status.New(code, msg)
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{
		Reason: errorCode, Domain: errorDomain,
		Metadata: map[string]string{"errorType": errorType, "httpStatus": httpStatus},
	}}
	if retry > 0 {
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(retry)})
	}
	if withDetails, err := st.WithDetails(details...); err == nil {
		st = withDetails
	}
	return st.Err()
}

// The messages say nothing an attacker could use; the log line says why.
func unauthenticated() error {
	return plaidStatus(codes.Unauthenticated, "a valid client certificate or bearer token is required",
		"INVALID_INPUT", "INVALID_API_KEYS", "401", 0)
}

func permissionDenied() error {
	return plaidStatus(codes.PermissionDenied, "the caller may not call this method",
		"INVALID_INPUT", "UNAUTHORIZED_ROUTE_ACCESS", "403", 0)
}

func quotaExceeded(wait time.Duration) error {
	// Rounded up to whole milliseconds, so a client that waits as told is admitted.
	wait = (wait + time.Millisecond - 1).Truncate(time.Millisecond)
	return plaidStatus(codes.ResourceExhausted, "this caller's call rate is over its quota",
		"RATE_LIMIT_EXCEEDED", "RATE_LIMIT", "429", wait)
}

// watchRetry is when a caller refused for having too many watches may try again: by
// then one of its watches may have ended, or the balancer may pick a replica where it
// has fewer.
const watchRetry = time.Second

func tooManyWatches() error {
	return plaidStatus(codes.ResourceExhausted, "this caller has too many watches open on this server",
		"RATE_LIMIT_EXCEEDED", "RATE_LIMIT", "429", watchRetry)
}
