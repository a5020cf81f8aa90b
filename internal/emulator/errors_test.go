package emulator

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestErrorToken(t *testing.T) {
	assert.Equal(t, "user-sandbox-error-RATE_LIMIT_EXCEEDED-CREDITS_EXHAUSTED",
		ErrorToken("RATE_LIMIT_EXCEEDED", "CREDITS_EXHAUSTED"))
}

func TestErrorsTable(t *testing.T) {
	specs := Errors()
	byPair := map[[2]string]ErrorSpec{}
	for _, s := range specs {
		pair := [2]string{s.Type, s.Code}
		assert.NotContains(t, byPair, pair, "listed twice")
		byPair[pair] = s
		assert.NotEmpty(t, s.Message, "%s/%s", s.Type, s.Code)
	}

	// What the emulator must know, with Plaid's HTTP status for each.
	required := map[int][][2]string{
		http.StatusBadRequest: {
			{"INVALID_REQUEST", "MISSING_FIELDS"}, {"INVALID_REQUEST", "UNKNOWN_FIELDS"}, {"INVALID_REQUEST", "INVALID_FIELD"},
			{"INVALID_REQUEST", "INVALID_BODY"}, {"INVALID_REQUEST", "INVALID_HEADERS"}, {"INVALID_REQUEST", "INCOMPATIBLE_API_VERSION"},
			{"INVALID_REQUEST", "NOT_FOUND"},
			{"INVALID_INPUT", "INVALID_API_KEYS"}, {"INVALID_INPUT", "UNAUTHORIZED_ENVIRONMENT"}, {"INVALID_INPUT", "UNAUTHORIZED_ROUTE_ACCESS"},
			{"INVALID_INPUT", "INVALID_PRODUCT"}, {"INVALID_INPUT", "INVALID_USER_TOKEN"}, {"INVALID_INPUT", "ADDITIONAL_CONSENT_REQUIRED"},
			{"INVALID_INPUT", "USER_PERMISSION_REVOKED"},
			{"USER_ERROR", "USER_NOT_FOUND"},
			{"INCOME_VERIFICATION_ERROR", "PRODUCT_NOT_ENABLED"}, {"INCOME_VERIFICATION_ERROR", "PRODUCT_NOT_READY"},
			{"INCOME_VERIFICATION_ERROR", "VERIFICATION_STATUS_PENDING_APPROVAL"}, {"INCOME_VERIFICATION_ERROR", "INCOME_VERIFICATION_NOT_FOUND"},
		},
		http.StatusTooManyRequests:     {{"RATE_LIMIT_EXCEEDED", "RATE_LIMIT"}, {"RATE_LIMIT_EXCEEDED", "CREDITS_EXHAUSTED"}},
		http.StatusInternalServerError: {{"API_ERROR", "INTERNAL_SERVER_ERROR"}},
		http.StatusServiceUnavailable:  {{"API_ERROR", "PLANNED_MAINTENANCE"}},
	}
	for status, pairs := range required {
		for _, pair := range pairs {
			s, ok := byPair[pair]
			if assert.True(t, ok, "%s/%s missing", pair[0], pair[1]) {
				assert.Equal(t, status, s.HTTPStatus, "%s/%s", pair[0], pair[1])
			}
		}
	}
	assert.NotEmpty(t, byPair[[2]string{"USER_ERROR", "USER_NOT_FOUND"}].DisplayMessage, "USER_NOT_FOUND is for the end user")
	assert.Equal(t, "could not find matching user token", byPair[[2]string{"INVALID_INPUT", "INVALID_USER_TOKEN"}].Message)

	specs[0].Message = "changed"
	assert.NotEqual(t, "changed", Errors()[0].Message, "Errors returns a copy")
}

func TestEveryErrorToken(t *testing.T) {
	s := startServer(t, Config{})
	c := newClient(t)
	for _, spec := range Errors() {
		t.Run(spec.Type+"/"+spec.Code, func(t *testing.T) {
			token := ErrorToken(spec.Type, spec.Code)
			resp := send(t, c, s.URL, request{headers: defaultHeaders(), body: tokenBody(token)})
			assertPlaidError(t, resp, spec)
			assert.NotContains(t, string(resp.raw), token, "the token is not echoed")

			// The credential check still comes first.
			resp = send(t, c, s.URL, request{
				headers: map[string]string{"PLAID-CLIENT-ID": DefaultClientID, "PLAID-SECRET": "wrong"},
				body:    tokenBody(token),
			})
			require.Equal(t, http.StatusBadRequest, resp.status)
			assert.Equal(t, "INVALID_API_KEYS", resp.object(t)["error_code"])
		})
	}
}

func TestDocumentationURL(t *testing.T) {
	assert.Equal(t, "https://plaid.com/docs/errors/invalid-input/#invalid_user_token",
		documentationURL(ErrorSpec{Type: "INVALID_INPUT", Code: "INVALID_USER_TOKEN"}))
	assert.Equal(t, "https://plaid.com/docs/errors/rate-limit-exceeded/#credits_exhausted",
		documentationURL(ErrorSpec{Type: "RATE_LIMIT_EXCEEDED", Code: "CREDITS_EXHAUSTED"}))
}
