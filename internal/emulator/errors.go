package emulator

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
)

// ErrorSpec is one Plaid error the emulator can answer with.
type ErrorSpec struct {
	Type, Code     string
	HTTPStatus     int
	Message        string // error_message; the request checks put the request's details in theirs
	DisplayMessage string // display_message for the end user; "" means null
}

// errorTokenPrefix starts every token that provokes an error; see ErrorToken.
const errorTokenPrefix = "user-sandbox-error-"

// ErrorToken returns the user token that makes the emulator answer, once the request has
// passed the credential check, with the Plaid error errorType/errorCode from Errors. A
// pair that Errors does not list gets INVALID_INPUT/INVALID_USER_TOKEN, as any unknown
// token does.
func ErrorToken(errorType, errorCode string) string {
	return errorTokenPrefix + errorType + "-" + errorCode
}

// Errors returns the Plaid errors the emulator knows, grouped by type. The slice is a
// copy: changing it changes nothing in the emulator.
func Errors() []ErrorSpec {
	return append([]ErrorSpec(nil), errorTable...)
}

// errorTable is Plaid's error catalogue as far as /credit/sessions/get can meet it, with
// Plaid's HTTP status for each and messages in Plaid's style (error_message is for
// developers and not stable, so clients must branch on type and code, never on it).
var errorTable = []ErrorSpec{
	{Type: "INVALID_REQUEST", Code: "MISSING_FIELDS", HTTPStatus: 400, Message: "the following required fields are missing: user_token"},
	{Type: "INVALID_REQUEST", Code: "UNKNOWN_FIELDS", HTTPStatus: 400, Message: "the following fields are not recognized by this endpoint: user_id"},
	{Type: "INVALID_REQUEST", Code: "INVALID_FIELD", HTTPStatus: 400, Message: "user_token must be a properly formatted, non-empty string"},
	{Type: "INVALID_REQUEST", Code: "INVALID_BODY", HTTPStatus: 400, Message: "body could not be parsed as JSON"},
	{Type: "INVALID_REQUEST", Code: "INVALID_HEADERS", HTTPStatus: 400, Message: "the following required headers are missing: PLAID-CLIENT-ID"},
	{Type: "INVALID_REQUEST", Code: "INCOMPATIBLE_API_VERSION", HTTPStatus: 400, Message: "this endpoint is not supported by the API version in the Plaid-Version header"},
	{Type: "INVALID_REQUEST", Code: "NO_LONGER_AVAILABLE", HTTPStatus: 400, Message: "this endpoint is no longer available"},
	{Type: "INVALID_REQUEST", Code: "SANDBOX_ONLY", HTTPStatus: 400, Message: "this endpoint is only available in the Sandbox environment"},
	{Type: "INVALID_REQUEST", Code: "NOT_FOUND", HTTPStatus: 400, Message: "not found"},

	{Type: "INVALID_INPUT", Code: "INVALID_API_KEYS", HTTPStatus: 400, Message: "invalid client_id or secret provided"},
	{Type: "INVALID_INPUT", Code: "UNAUTHORIZED_ENVIRONMENT", HTTPStatus: 400, Message: "you are not authorized to access this environment"},
	{Type: "INVALID_INPUT", Code: "UNAUTHORIZED_ROUTE_ACCESS", HTTPStatus: 400, Message: "you do not have access to this route"},
	{Type: "INVALID_INPUT", Code: "INVALID_PRODUCT", HTTPStatus: 400, Message: "client is not authorized to access the following products: [\"income_verification\"]"},
	{Type: "INVALID_INPUT", Code: "INVALID_USER_TOKEN", HTTPStatus: 400, Message: "could not find matching user token"},
	{Type: "INVALID_INPUT", Code: "ADDITIONAL_CONSENT_REQUIRED", HTTPStatus: 400, Message: "the user has not consented to share the data this request needs"},
	{Type: "INVALID_INPUT", Code: "USER_PERMISSION_REVOKED", HTTPStatus: 400, Message: "the user has revoked permission to share this data"},

	{Type: "USER_ERROR", Code: "USER_NOT_FOUND", HTTPStatus: 400, Message: "the user could not be found",
		DisplayMessage: "We couldn't find your information. Please try again or contact support."},

	{Type: "INCOME_VERIFICATION_ERROR", Code: "PRODUCT_NOT_ENABLED", HTTPStatus: 400, Message: "the income verification product is not enabled for this client"},
	{Type: "INCOME_VERIFICATION_ERROR", Code: "PRODUCT_NOT_READY", HTTPStatus: 400, Message: "the requested product is not yet ready; try again later"},
	{Type: "INCOME_VERIFICATION_ERROR", Code: "VERIFICATION_STATUS_PENDING_APPROVAL", HTTPStatus: 400, Message: "the user has not yet approved the income verification"},
	{Type: "INCOME_VERIFICATION_ERROR", Code: "INCOME_VERIFICATION_NOT_FOUND", HTTPStatus: 400, Message: "the requested income verification could not be found"},

	{Type: "RATE_LIMIT_EXCEEDED", Code: "RATE_LIMIT", HTTPStatus: 429, Message: "rate limit exceeded; try again later"},
	{Type: "RATE_LIMIT_EXCEEDED", Code: "CREDITS_EXHAUSTED", HTTPStatus: 429, Message: "your account has used up its allowance of API calls for this product"},

	{Type: "API_ERROR", Code: "INTERNAL_SERVER_ERROR", HTTPStatus: 500, Message: "an unexpected error occurred"},
	{Type: "API_ERROR", Code: "PLANNED_MAINTENANCE", HTTPStatus: 503, Message: "the Plaid API is temporarily unavailable due to planned maintenance"},
}

// The errors that the request checks raise, looked up once.
var (
	errNotFound       = mustError("INVALID_REQUEST", "NOT_FOUND")
	errInvalidBody    = mustError("INVALID_REQUEST", "INVALID_BODY")
	errUnknownFields  = mustError("INVALID_REQUEST", "UNKNOWN_FIELDS")
	errInvalidField   = mustError("INVALID_REQUEST", "INVALID_FIELD")
	errMissingFields  = mustError("INVALID_REQUEST", "MISSING_FIELDS")
	errInvalidAPIKeys = mustError("INVALID_INPUT", "INVALID_API_KEYS")
	errInvalidToken   = mustError("INVALID_INPUT", "INVALID_USER_TOKEN")
)

// errorsByToken maps each ErrorToken to its error.
var errorsByToken = func() map[string]*ErrorSpec {
	m := make(map[string]*ErrorSpec, len(errorTable))
	for i := range errorTable {
		s := &errorTable[i]
		m[ErrorToken(s.Type, s.Code)] = s
	}
	return m
}()

func mustError(errorType, errorCode string) *ErrorSpec {
	for i := range errorTable {
		if s := &errorTable[i]; s.Type == errorType && s.Code == errorCode {
			return s
		}
	}
	panic("emulator: " + errorType + "/" + errorCode + " is not in the error table")
}

// withMessage returns a copy of s with another error_message.
func (s *ErrorSpec) withMessage(message string) *ErrorSpec {
	c := *s
	c.Message = message
	return &c
}

// docsPages names the page of Plaid's error documentation for each error type.
var docsPages = map[string]string{
	"INVALID_REQUEST":           "invalid-request",
	"INVALID_INPUT":             "invalid-input",
	"USER_ERROR":                "user",
	"INCOME_VERIFICATION_ERROR": "income",
	"RATE_LIMIT_EXCEEDED":       "rate-limit-exceeded",
	"API_ERROR":                 "api",
}

func documentationURL(s ErrorSpec) string {
	page, ok := docsPages[s.Type]
	if !ok {
		page = strings.ReplaceAll(strings.ToLower(s.Type), "_", "-")
	}
	return "https://plaid.com/docs/errors/" + page + "/#" + strings.ToLower(s.Code)
}

// plaidError is Plaid's error body. Every member is always present, nullable ones as null,
// in the order Plaid sends them.
type plaidError struct {
	DisplayMessage   *string `json:"display_message"`
	DocumentationURL string  `json:"documentation_url"`
	ErrorCode        string  `json:"error_code"`
	ErrorCodeReason  *string `json:"error_code_reason"`
	ErrorMessage     string  `json:"error_message"`
	ErrorType        string  `json:"error_type"`
	RequestID        string  `json:"request_id"`
	SuggestedAction  *string `json:"suggested_action"`
}

func writeError(w http.ResponseWriter, requestID string, s ErrorSpec) {
	body := plaidError{
		DocumentationURL: documentationURL(s),
		ErrorCode:        s.Code,
		ErrorMessage:     s.Message,
		ErrorType:        s.Type,
		RequestID:        requestID,
	}
	if s.DisplayMessage != "" {
		body.DisplayMessage = &s.DisplayMessage
	}
	b, err := json.MarshalIndent(body, "", "  ")
	if err != nil { // strings and nil pointers only: cannot happen
		panic("emulator: encoding an error body: " + err.Error())
	}
	b = append(b, '\n')
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(s.HTTPStatus)
	_, _ = w.Write(b) // a write error means the client went away
}
