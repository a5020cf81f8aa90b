package mirror

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/creditsessions/creditsessions/internal/plaid"
	"github.com/creditsessions/creditsessions/internal/plaidjson"
	"github.com/creditsessions/creditsessions/server"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// plaidErrorBody is Plaid's error JSON (PlaidError), every member present, nullable ones
// as null, as Plaid sends it.
type plaidErrorBody struct {
	DisplayMessage   *string `json:"display_message"`
	DocumentationURL string  `json:"documentation_url,omitempty"`
	ErrorCode        string  `json:"error_code"`
	ErrorCodeReason  *string `json:"error_code_reason"`
	ErrorMessage     string  `json:"error_message"`
	ErrorType        string  `json:"error_type"`
	RequestID        string  `json:"request_id"`
	SuggestedAction  *string `json:"suggested_action"`
}

// apiError is an error to answer in Plaid's shape.
type apiError struct {
	httpStatus int
	body       plaidErrorBody
	retryAfter float64 // seconds; 0 means no Retry-After
}

func newAPIError(httpStatus int, errorType, errorCode, message string) apiError {
	return apiError{httpStatus: httpStatus, body: plaidErrorBody{ErrorType: errorType, ErrorCode: errorCode, ErrorMessage: message}}
}

// write sends e. An error that did not come from Plaid gets a request id of this
// service's own, prefixed so nobody quotes it to Plaid.
func (e apiError) write(w http.ResponseWriter) {
	if e.body.RequestID == "" {
		e.body.RequestID = server.NewRequestID()
	}
	data, err := json.Marshal(e.body)
	if err != nil { // strings and string pointers only
		data = []byte(`{"error_type":"API_ERROR","error_code":"INTERNAL_SERVER_ERROR"}`)
	}
	writeRaw(w, e.httpStatus, e.retryAfter, data)
}

func writeRaw(w http.ResponseWriter, httpStatus int, retryAfter float64, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int(math.Ceil(retryAfter))))
	}
	w.WriteHeader(httpStatus)
	_, _ = w.Write(body) // a failed write means the client went away
}

// handleError answers every failed call in Plaid's shape: Plaid's own error body and
// status when the error came from Plaid, otherwise the Plaid error code that the
// service chose (see server.ErrorTable and the service's own errors).
func handleError(_ context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	rb, _ := r.Body.(*requestBody)
	answerError(w, rb, err)
}

// answerError is handleError for a call whose request body is rb (nil if not the
// mirror's): a body that failed to decode is answered as such, whatever err is.
func answerError(w http.ResponseWriter, rb *requestBody, err error) {
	if rb != nil && rb.err != nil {
		requestError(rb.err).write(w)
		return
	}
	st := status.Convert(err)
	retry := retryDelay(st)
	var pe *plaid.Error
	if errors.As(err, &pe) && len(pe.Body) > 0 && pe.HTTPStatus >= 400 {
		if pe.RequestID != "" {
			w.Header().Set("Plaid-Request-Id", pe.RequestID)
		}
		writeRaw(w, pe.HTTPStatus, retry, pe.Body)
		return
	}
	e := fromStatus(st)
	e.retryAfter = retry
	if e.body.RequestID != "" && !strings.HasPrefix(e.body.RequestID, server.RequestIDPrefix) {
		w.Header().Set("Plaid-Request-Id", e.body.RequestID) // Plaid's, never ours
	}
	e.write(w)
}

// fromStatus rebuilds a Plaid error from a status: from its ErrorInfo when it has one
// of ours, else from the gRPC code alone.
func fromStatus(st *status.Status) apiError {
	for _, d := range st.Details() {
		info, ok := d.(*errdetails.ErrorInfo)
		if !ok || (info.GetDomain() != server.PlaidDomain && info.GetDomain() != server.ServiceDomain) {
			continue
		}
		meta := info.GetMetadata()
		httpStatus, err := strconv.Atoi(meta[server.MetaHTTPStatus])
		if err != nil || httpStatus < 400 {
			httpStatus = runtime.HTTPStatusFromCode(st.Code())
		}
		e := newAPIError(httpStatus, meta[server.MetaErrorType], info.GetReason(), st.Message())
		e.body.RequestID = meta[server.MetaRequestID]
		for _, d := range st.Details() {
			if lm, ok := d.(*errdetails.LocalizedMessage); ok {
				msg := lm.GetMessage()
				e.body.DisplayMessage = &msg
			}
		}
		return e
	}
	switch st.Code() {
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		return newAPIError(http.StatusBadRequest, "INVALID_REQUEST", "INVALID_FIELD", st.Message())
	case codes.NotFound, codes.Unimplemented:
		return newAPIError(http.StatusBadRequest, "INVALID_REQUEST", "NOT_FOUND", st.Message())
	case codes.Unauthenticated:
		return newAPIError(http.StatusUnauthorized, "INVALID_INPUT", "INVALID_API_KEYS", st.Message())
	case codes.PermissionDenied:
		return newAPIError(http.StatusForbidden, "INVALID_INPUT", "UNAUTHORIZED_ROUTE_ACCESS", st.Message())
	case codes.ResourceExhausted:
		return newAPIError(http.StatusTooManyRequests, "RATE_LIMIT_EXCEEDED", "RATE_LIMIT", st.Message())
	default: // Unavailable, DeadlineExceeded, Canceled, Internal, Unknown...
		return newAPIError(runtime.HTTPStatusFromCode(st.Code()), "API_ERROR", "INTERNAL_SERVER_ERROR", st.Message())
	}
}

// retryDelay is the RetryInfo delay of st, in seconds, or 0 when retrying is not right.
func retryDelay(st *status.Status) float64 {
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration().Seconds()
		}
	}
	return 0
}

// requestError is Plaid's answer to a request body that could not be decoded.
func requestError(err error) apiError {
	var unknown *plaidjson.UnknownFieldsError
	var field *plaidjson.FieldError
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &unknown):
		return newAPIError(http.StatusBadRequest, "INVALID_REQUEST", "UNKNOWN_FIELDS",
			"the following fields are not recognized by this endpoint: "+strings.Join(unknown.Fields, ", "))
	case errors.As(err, &field):
		return newAPIError(http.StatusBadRequest, "INVALID_REQUEST", "INVALID_FIELD",
			field.Path+" must be a properly formatted, non-empty string")
	case errors.As(err, &tooLarge):
		return newAPIError(http.StatusBadRequest, "INVALID_REQUEST", "INVALID_BODY",
			fmt.Sprintf("request body exceeds the limit of %d bytes", tooLarge.Limit))
	default:
		return newAPIError(http.StatusBadRequest, "INVALID_REQUEST", "INVALID_BODY", "body could not be parsed as JSON")
	}
}

// handleRoutingError answers an unknown route or method as Plaid does: 400 NOT_FOUND.
func handleRoutingError(_ context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, httpStatus int) {
	if httpStatus == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", http.MethodPost)
	}
	path := r.URL.Path
	if len(path) > 100 {
		path = path[:100] + "…"
	}
	newAPIError(http.StatusBadRequest, "INVALID_REQUEST", "NOT_FOUND",
		"the requested endpoint "+r.Method+" "+strconv.Quote(path)+" does not exist").write(w)
}
