package auth

import (
	"testing"
	"time"

	"github.com/creditsessions/creditsessions/server"

	"github.com/stretchr/testify/assert"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The refusals carry the ErrorInfo the REST mirror turns into Plaid's error body.
func TestRefusalsSpeakTheServicesErrorDialect(t *testing.T) {
	for _, tt := range []struct {
		err                        error
		code                       codes.Code
		errorType, errorCode, http string
	}{
		{unauthenticated(), codes.Unauthenticated, "INVALID_INPUT", "INVALID_API_KEYS", "401"},
		{permissionDenied(), codes.PermissionDenied, "INVALID_INPUT", "UNAUTHORIZED_ROUTE_ACCESS", "403"},
		{quotaExceeded(1500 * time.Microsecond), codes.ResourceExhausted, "RATE_LIMIT_EXCEEDED", "RATE_LIMIT", "429"},
	} {
		st := status.Convert(tt.err)
		assert.Equal(t, tt.code, st.Code())
		info := st.Details()[0].(*errdetails.ErrorInfo)
		assert.Equal(t, server.ServiceDomain, info.GetDomain())
		assert.Equal(t, tt.errorCode, info.GetReason())
		assert.Equal(t, tt.errorType, info.GetMetadata()[server.MetaErrorType])
		assert.Equal(t, tt.http, info.GetMetadata()[server.MetaHTTPStatus])
	}
	retry := status.Convert(quotaExceeded(1500 * time.Microsecond)).Details()[1].(*errdetails.RetryInfo)
	assert.Equal(t, 2*time.Millisecond, retry.GetRetryDelay().AsDuration(), "rounded up, so waiting as told is enough")
}
