package server

import (
	"context"
	"errors"
	"net"

	"creditsessions/internal/plaid"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Status maps an error from the upstream client to the gRPC status the caller gets.
func Status(ctx context.Context, err error) *status.Status {
	var pe *plaid.Error
	var proto *plaid.ProtocolError
	var netErr net.Error
	switch {
	case errors.As(err, &pe):
		return status.New(codeFor(pe), pe.ErrorType+"/"+pe.ErrorCode+": "+pe.ErrorMessage)
	case errors.Is(err, context.DeadlineExceeded):
		return status.New(codes.DeadlineExceeded, "deadline exceeded while calling Plaid")
	case errors.Is(err, context.Canceled) || ctx.Err() != nil:
		return status.New(codes.Canceled, "call canceled")
	case errors.As(err, &proto):
		return status.New(codes.Unavailable, "Plaid answered with something that is not its API: "+proto.Reason)
	case errors.As(err, &netErr):
		return status.New(codes.Unavailable, "Plaid could not be reached: "+err.Error())
	default:
		return status.New(codes.Internal, "calling Plaid failed: "+err.Error())
	}
}

// codeFor picks the gRPC code for a Plaid error.
func codeFor(e *plaid.Error) codes.Code {
	switch e.ErrorType {
	case "INVALID_REQUEST":
		return codes.InvalidArgument
	case "INVALID_INPUT":
		if e.ErrorCode == "INVALID_USER_TOKEN" {
			return codes.NotFound
		}
		return codes.FailedPrecondition
	case "USER_ERROR":
		return codes.NotFound
	case "RATE_LIMIT_EXCEEDED":
		return codes.ResourceExhausted
	case "API_ERROR":
		return codes.Unavailable
	}
	switch {
	case e.HTTPStatus == 429:
		return codes.ResourceExhausted
	case e.HTTPStatus >= 500:
		return codes.Unavailable
	default:
		return codes.FailedPrecondition
	}
}
