// Package emulator is a stand-in for Plaid's API: an http.Handler that answers
// POST /credit/sessions/get the way Plaid does, with Plaid's JSON bodies, headers, HTTP
// statuses and PlaidError bodies, so that a Plaid client can run and be tested with no
// network and no Plaid account.
//
// It is an independent implementation of Plaid's side of the wire and imports nothing
// from the rest of this repository. Success bodies are JSON fixture files embedded in the
// package and served byte for byte, with only a request_id member inserted, so members
// and enum values a client does not know yet reach it exactly as Plaid would send them.
//
// A request is checked in Plaid's order: route, Content-Type, body, unknown fields, field
// types, missing fields, credentials, and last the user token, which selects the answer:
// Fixtures lists the success users, ErrorToken names a token that provokes a given Plaid
// error (Errors lists them), and user-sandbox-sessions-N answers with N generated
// sessions for load tests. Any of them followed by UserSeparator and an id is another
// user with the same answer.
//
// An Emulator can also misbehave on purpose, so that a client's retries, deadlines and
// circuit breakers meet real failures over a real socket: see Faults, Script and the
// control API under /emulator/.
package emulator

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Credentials the emulator accepts when Config leaves them empty. They are not secret:
// they only open the emulator.
const (
	DefaultClientID = "emulator-client-id"
	DefaultSecret   = "emulator-secret"
)

// endpointPath is the only route the emulator serves, for POST only, like Plaid.
const endpointPath = "/credit/sessions/get"

// maxBodyBytes bounds a request body; a request for this endpoint is a few hundred bytes.
const maxBodyBytes = 1 << 20

// contentType is what Plaid sends on every response, success or error.
const contentType = "application/json; charset=utf-8"

// Config sets what an Emulator accepts.
type Config struct {
	ClientID string // credentials the emulator accepts; empty means DefaultClientID
	Secret   string // empty means DefaultSecret

	// Logger, if not nil, gets one line per request: method, path, status, error type
	// and code, fault, request_id and duration. Never the user token, the secret or the
	// body.
	Logger *slog.Logger

	// Seed seeds the random choice of faults, so that a run can be repeated: the same
	// seed and the same sequence of calls get the same faults. 0 picks a random seed,
	// which Emulator.Seed reports.
	Seed uint64
}

// Emulator answers Plaid's /credit/sessions/get. It is safe for concurrent use.
type Emulator struct {
	clientID string
	secret   string
	accepted atomic.Pointer[[]string] // the secrets accepted; secret is the first
	logger   *slog.Logger
	calls    atomic.Int64
	counted  sync.Map // user token → *atomic.Int64, for the tokens CountCalls was asked about
	faults   faultState
	webhooks webhookState
}

var _ http.Handler = (*Emulator)(nil)

// New returns an Emulator that accepts cfg's credentials.
func New(cfg Config) *Emulator {
	e := &Emulator{clientID: cfg.ClientID, secret: cfg.Secret, logger: cfg.Logger}
	e.faults.init(cfg.Seed)
	e.webhooks.init()
	if e.clientID == "" {
		e.clientID = DefaultClientID
	}
	if e.secret == "" {
		e.secret = DefaultSecret
	}
	e.accepted.Store(&[]string{e.secret})
	return e
}

// ClientID is the client_id the emulator accepts.
func (e *Emulator) ClientID() string { return e.clientID }

// Secret is the secret the emulator accepts.
func (e *Emulator) Secret() string { return e.secret }

// AcceptSecrets replaces the secrets the emulator accepts, as Plaid accepts both the old
// and the new secret while a client rotates it. None means the one it started with.
func (e *Emulator) AcceptSecrets(secrets ...string) {
	if len(secrets) == 0 {
		secrets = []string{e.secret}
	}
	e.accepted.Store(&secrets)
}

// Calls is the number of requests for the path /credit/sessions/get received so far,
// whatever their method or outcome. Requests for other paths are not counted.
func (e *Emulator) Calls() int64 { return e.calls.Load() }

// CountCalls starts counting the calls that name userToken, and returns the count so far:
// a test that must know what one user cost Plaid, whatever other users' calls did
// meanwhile (a healthy call retried under load, say). Only tokens asked about are
// counted, so a load run's many tokens cost nothing.
func (e *Emulator) CountCalls(userToken string) func() int64 {
	c, _ := e.counted.LoadOrStore(userToken, new(atomic.Int64))
	return c.(*atomic.Int64).Load
}

// ServeHTTP answers one request as Plaid would, unless a fault says otherwise.
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if e.serveControl(w, r) || e.serveWebhookRoutes(w, r) {
		return
	}
	start := time.Now()
	requestID := newRequestID()
	body, failure, routed := e.answer(w, r)
	var status int
	fault := FaultNone
	if routed {
		// Only a request Plaid would route can meet a fault: the rest is a plain 404.
		status, failure, fault = e.misbehave(w, r, requestID, body, failure)
	} else {
		status = writeAnswer(w, requestID, body, failure)
	}
	if e.logger != nil {
		attrs := []slog.Attr{
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path), // never the query: it is the client's, and could hold anything
			slog.Int("status", status),      // 0: nothing was answered (a reset, or the client went away)
			slog.String("request_id", requestID),
			slog.Duration("duration", time.Since(start)),
		}
		if failure != nil {
			attrs = append(attrs, slog.String("error_type", failure.Type), slog.String("error_code", failure.Code))
		}
		if fault != FaultNone {
			attrs = append(attrs, slog.String("fault", fault.String()))
		}
		e.logger.LogAttrs(r.Context(), slog.LevelInfo, "plaid emulator request", attrs...)
	}
}

// writeAnswer sends the success body, or failure when it is not nil, and returns the
// HTTP status sent.
func writeAnswer(w http.ResponseWriter, requestID string, body successBody, failure *ErrorSpec) int {
	if failure != nil {
		writeError(w, requestID, *failure)
		return failure.HTTPStatus
	}
	body.write(w, requestID)
	return http.StatusOK
}

// answer runs Plaid's checks in Plaid's order and returns either the success body or the
// error to send, and whether the request was routed to the endpoint at all.
func (e *Emulator) answer(w http.ResponseWriter, r *http.Request) (successBody, *ErrorSpec, bool) {
	// Plaid tolerates the doubled slash that a client base URL ending in "/" produces.
	// ServeMux would answer it with a redirect instead, hence this routing by hand.
	if collapseSlashes(r.URL.Path) != endpointPath {
		return successBody{}, errNotFound, false
	}
	e.calls.Add(1)
	if r.Method != http.MethodPost { // Plaid routes POST only: any other method is an unknown route
		return successBody{}, errNotFound, false
	}
	body, failure := e.check(w, r)
	return body, failure, true
}

// check runs the checks after routing, in Plaid's order.
func (e *Emulator) check(w http.ResponseWriter, r *http.Request) (successBody, *ErrorSpec) {
	if !isJSONContentType(r.Header.Get("Content-Type")) {
		return successBody{}, errInvalidBody.withMessage("the request Content-Type must be application/json")
	}

	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return successBody{}, errInvalidBody.withMessage(fmt.Sprintf("request body exceeds the limit of %d bytes", maxBodyBytes))
		}
		return successBody{}, errInvalidBody.withMessage("request body could not be read")
	}
	fields, ok := parseObject(raw)
	if !ok {
		return successBody{}, errInvalidBody
	}

	var unknown []string
	for name := range fields {
		if !knownFields[name] {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return successBody{}, errUnknownFields.withMessage(
			"the following fields are not recognized by this endpoint: " + strings.Join(unknown, ", "))
	}

	var clientID, secret, userToken string
	// In the order that missing fields are listed.
	required := []struct {
		name  string
		value *string
	}{{"client_id", &clientID}, {"secret", &secret}, {"user_token", &userToken}}
	for _, f := range required {
		if raw, ok := fields[f.name]; ok { // JSON null leaves the value empty: absent
			if err := json.Unmarshal(raw, f.value); err != nil {
				return successBody{}, errInvalidField.withMessage(f.name + " must be a properly formatted, non-empty string")
			}
		}
	}
	// Credentials may come in the body or the headers; the body wins when both are set.
	if clientID == "" {
		clientID = r.Header.Get("PLAID-CLIENT-ID")
	}
	if secret == "" {
		secret = r.Header.Get("PLAID-SECRET")
	}
	if c, ok := e.counted.Load(userToken); ok {
		c.(*atomic.Int64).Add(1)
	}
	var missing []string
	for _, f := range required {
		if *f.value == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return successBody{}, errMissingFields.withMessage(
			"the following required fields are missing: " + strings.Join(missing, ", "))
	}

	// Constant time, and both compared, so timing tells nothing about either.
	idOK := subtle.ConstantTimeCompare([]byte(clientID), []byte(e.clientID))
	secretOK := 0
	for _, s := range *e.accepted.Load() {
		secretOK |= subtle.ConstantTimeCompare([]byte(secret), []byte(s))
	}
	if idOK&secretOK != 1 {
		return successBody{}, errInvalidAPIKeys
	}
	body, failure := lookupToken(userToken)
	if failure != nil {
		return successBody{}, failure
	}
	return e.withAddedSessions(userToken, body)
}

// knownFields are the request body members this endpoint accepts.
var knownFields = map[string]bool{"client_id": true, "secret": true, "user_token": true}

// parseObject decodes a request body that must be one JSON object.
func parseObject(raw []byte) (map[string]json.RawMessage, bool) {
	// Unmarshal accepts "null" into a map without error; only an object will do.
	trimmed := bytes.TrimLeft(raw, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, false
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, false
	}
	return fields, true
}

// isJSONContentType reports whether a Content-Type header value is application/json,
// with any parameters and in any case.
func isJSONContentType(value string) bool {
	mediaType, _, err := mime.ParseMediaType(value)
	if err != nil && !errors.Is(err, mime.ErrInvalidMediaParameter) {
		return false
	}
	return mediaType == "application/json"
}

// collapseSlashes replaces every run of slashes in p with one slash.
func collapseSlashes(p string) string {
	if !strings.Contains(p, "//") {
		return p
	}
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		if p[i] == '/' && i > 0 && p[i-1] == '/' {
			continue
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

const requestIDAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// newRequestID returns a fresh Plaid-like request id: 5 to 15 random alphanumerics.
// It identifies a request in logs; it is not a secret, so math/rand is enough.
func newRequestID() string {
	b := make([]byte, 5+rand.IntN(11))
	for i := range b {
		b[i] = requestIDAlphabet[rand.IntN(len(requestIDAlphabet))]
	}
	return string(b)
}

// successBody is a success response: a fixture JSON object into which write inserts the
// request_id as the first member, without re-encoding anything.
type successBody struct {
	open   []byte   // up to and including the top-level '{'
	rest   [][]byte // the object's members and its closing '}', written in order
	empty  bool     // the object has no members, so no comma follows request_id
	indent bool     // the fixture is indented, so request_id gets its own line

	chunked bool      // sent without a Content-Length
	fault   FaultKind // met by every call for this user
}

func (b successBody) write(w http.ResponseWriter, requestID string) {
	var member string
	switch {
	case b.empty:
		member = `"request_id":"` + requestID + `"`
	case b.indent:
		member = "\n  \"request_id\": \"" + requestID + "\","
	default:
		member = `"request_id":"` + requestID + `",`
	}
	n := len(b.open) + len(member)
	for _, p := range b.rest {
		n += len(p)
	}
	h := w.Header()
	h.Set("Content-Type", contentType)
	if !b.chunked {
		h.Set("Content-Length", strconv.Itoa(n))
	}
	w.WriteHeader(http.StatusOK)
	// A write error means the client went away; there is no one left to tell.
	_, _ = w.Write(b.open)
	_, _ = io.WriteString(w, member)
	for _, p := range b.rest {
		_, _ = w.Write(p)
	}
}
