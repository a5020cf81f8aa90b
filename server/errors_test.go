package server

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/creditsessions/creditsessions/internal/plaid"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
)

// TestDocumentedTableIsTheCodesTable keeps the mapping in docs/contract-and-errors.md
// and ErrorTable equal.
func TestDocumentedTableIsTheCodesTable(t *testing.T) {
	readme, err := os.ReadFile("../docs/contract-and-errors.md")
	require.NoError(t, err)
	row := regexp.MustCompile("(?m)^\\| `([A-Z_]+)` \\| (`[A-Z_]+`|any other) \\| (\\w+) \\| (\\w+) \\| (\\S+) \\|$")
	var documented []Mapping
	for _, m := range row.FindAllStringSubmatch(string(readme), -1) {
		r := Mapping{ErrorType: m[1], ErrorCode: strings.Trim(m[2], "`")}
		if m[2] == "any other" {
			r.ErrorCode = "*"
		}
		r.Code = codeNamed(t, m[3])
		if m[4] != "same" {
			r.CallerKeysCode = codeNamed(t, m[4])
		}
		if m[5] != "none" {
			r.RetryAfter, err = time.ParseDuration(m[5])
			require.NoError(t, err)
		}
		documented = append(documented, r)
	}
	require.NotEmpty(t, documented, "no mapping table in docs/contract-and-errors.md")
	assert.ElementsMatch(t, ErrorTable, documented)
}

func codeNamed(t *testing.T, name string) codes.Code {
	t.Helper()
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		if c.String() == name {
			return c
		}
	}
	t.Fatalf("no gRPC code %q", name)
	return 0
}

func TestPlaidErrorDetails(t *testing.T) {
	e := &plaid.Error{
		HTTPStatus: 429, ErrorType: "RATE_LIMIT_EXCEEDED", ErrorCode: "RATE_LIMIT", ErrorMessage: "slow down",
		DisplayMessage: "Try later", RequestID: "req-1", DocumentationURL: "https://plaid.com/docs/errors/",
		SuggestedAction: "wait", RetryAfter: 7 * time.Second,
	}
	st := plaidError(e, false).GRPCStatus()
	assert.Equal(t, codes.ResourceExhausted, st.Code())
	assert.Equal(t, "plaid: RATE_LIMIT_EXCEEDED/RATE_LIMIT: slow down", st.Message())
	var kinds []string
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			kinds = append(kinds, "ErrorInfo")
			assert.Equal(t, map[string]string{"errorType": "RATE_LIMIT_EXCEEDED", "requestId": "req-1",
				"httpStatus": "429", "suggestedAction": "wait"}, d.GetMetadata())
		case *errdetails.RetryInfo:
			kinds = append(kinds, "RetryInfo")
			assert.Equal(t, 7*time.Second, d.GetRetryDelay().AsDuration(), "Plaid's Retry-After wins")
		case *errdetails.LocalizedMessage:
			kinds = append(kinds, "LocalizedMessage")
			assert.Equal(t, "Try later", d.GetMessage())
		case *errdetails.Help:
			kinds = append(kinds, "Help")
			assert.Equal(t, "https://plaid.com/docs/errors/", d.GetLinks()[0].GetUrl())
		}
	}
	assert.Equal(t, []string{"ErrorInfo", "LocalizedMessage", "RetryInfo", "Help"}, kinds)

	// No retry for CREDITS_EXHAUSTED, even when Plaid sent a Retry-After.
	e.ErrorCode = "CREDITS_EXHAUSTED"
	for _, d := range plaidError(e, false).GRPCStatus().Details() {
		_, isRetry := d.(*errdetails.RetryInfo)
		assert.False(t, isRetry)
	}
}
