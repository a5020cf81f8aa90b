package emulator

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Plaid's webhooks, as far as credit sessions meet them. The emulator signs every webhook
// it sends as Plaid does (an ES256 JWT in the Plaid-Verification header, whose kid names a
// key served by POST /webhook_verification_key/get, with the claims iat and
// request_body_sha256), and Plaid's sandbox call POST /sandbox/income/fire_webhook adds a
// session to a user and sends the matching webhooks to the URL it names:
//
//	POST /webhook_verification_key/get  {client_id, secret, key_id} → {"key": JWK, "request_id"}
//	POST /sandbox/income/fire_webhook   {client_id, secret, user_token, webhook, webhook_code?,
//	                                     verification_status?, user_id?, item_id?} → {"request_id", "user_id"}
//
// Credentials may come in the body or in Plaid's headers, as for /credit/sessions/get.
// fire_webhook takes the user's user_token (Plaid's takes an item_id; the emulator has no
// items): it adds one session to that user, so the next /credit/sessions/get for the token
// returns it, then sends the webhook named by webhook_code (INCOME_VERIFICATION,
// INCOME_VERIFICATION_RISK_SIGNALS, BANK_INCOME_COMPLETE or SESSION_FINISHED) or, with no
// webhook_code, LINK/SESSION_FINISHED then INCOME/BANK_INCOME_COMPLETE. Each webhook names
// the user by user_id (Emulator.UserID), which the answer also carries (Plaid's carries
// request_id only) so that someone trying the loop from a shell learns the user_id a watch
// needs. Unlike Plaid, it sends them before answering, and answers API_ERROR if the URL
// did not take them with a 2xx, so a test knows they arrived.
const (
	webhookKeyPath  = "/webhook_verification_key/get"
	fireWebhookPath = "/sandbox/income/fire_webhook"
)

// webhookTimeout bounds one webhook delivery, as Plaid bounds its own (10 s).
const webhookTimeout = 10 * time.Second

// maxAddedSessions bounds the sessions AddSession may add, over all users, so that a
// control client can not grow the emulator's memory without end.
const maxAddedSessions = 100_000

// errInvalidKeyID is Plaid's answer for a key_id it does not know. It is not in the error
// table, which lists what /credit/sessions/get can answer.
var errInvalidKeyID = &ErrorSpec{Type: "INVALID_INPUT", Code: "INVALID_WEBHOOK_VERIFICATION_KEY_ID", HTTPStatus: 400,
	Message: "the key_id provided to the webhook verification endpoint was invalid"}

// errWebhookDelivery is the emulator's answer when the webhook URL did not take a
// webhook, and errEmulatorInternal when the emulator itself fails.
var (
	errWebhookDelivery  = mustError("API_ERROR", "INTERNAL_SERVER_ERROR")
	errEmulatorInternal = errWebhookDelivery
)

// signingKey is one of the emulator's ES256 webhook keys.
type signingKey struct {
	kid       string
	private   *ecdsa.PrivateKey
	createdAt int64
	expiredAt *int64 // set once RotateWebhookKey retires the key
}

// addedSession is a session AddSession gave a user: its JSON and its link_session_id.
type addedSession struct {
	id   string
	json []byte
}

// webhookState is the emulator's webhook keys and the sessions added to users. Its
// mutex guards every field but keyFetches.
type webhookState struct {
	mu       sync.Mutex
	keys     map[string]*signingKey
	current  *signingKey
	added    map[string][]addedSession // by user token, the #id suffix included; oldest first
	addedAll int

	keyFetches atomic.Int64
	client     *http.Client
}

func (s *webhookState) init() {
	s.keys = make(map[string]*signingKey)
	s.added = make(map[string][]addedSession)
	s.client = &http.Client{
		Timeout: webhookTimeout,
		// A webhook is delivered to the URL given, nowhere else.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	s.rotate(time.Now())
}

// rotate makes a new current key and retires the previous one, if any, as of now.
// The caller holds mu, or is init.
func (s *webhookState) rotate(now time.Time) {
	private, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	if err != nil { // crypto/rand does not fail on the platforms Go supports
		panic("emulator: generating a webhook key: " + err.Error())
	}
	k := &signingKey{kid: newUUID(), private: private, createdAt: now.Unix()}
	if s.current != nil {
		expired := now.Unix()
		s.current.expiredAt = &expired
	}
	s.keys[k.kid] = k
	s.current = k
}

// UserID returns the Plaid user_id of the user that userToken names: stable for a token,
// different for every token (user-sandbox-example and user-sandbox-example#1 are two
// users), and what every webhook about that user carries. Like Plaid's, it is 64 hex
// digits, and it reveals nothing of the token.
func (e *Emulator) UserID(userToken string) string {
	sum := sha256.Sum256([]byte("plaid-emulator user_id\x00" + userToken))
	return hex.EncodeToString(sum[:])
}

// WebhookKeyID returns the kid of the key the emulator signs webhooks with now.
func (e *Emulator) WebhookKeyID() string {
	e.webhooks.mu.Lock()
	defer e.webhooks.mu.Unlock()
	return e.webhooks.current.kid
}

// RotateWebhookKey retires the current webhook key, which /webhook_verification_key/get
// then reports with expired_at set, and signs with a new one from now on. It returns the
// retired kid and the new one.
func (e *Emulator) RotateWebhookKey() (expiredKid, newKid string) {
	e.webhooks.mu.Lock()
	defer e.webhooks.mu.Unlock()
	expiredKid = e.webhooks.current.kid
	e.webhooks.rotate(time.Now())
	return expiredKid, e.webhooks.current.kid
}

// WebhookKeyFetches is the number of POST /webhook_verification_key/get requests received
// so far, whatever their outcome.
func (e *Emulator) WebhookKeyFetches() int64 { return e.webhooks.keyFetches.Load() }

// SignWebhook returns the Plaid-Verification header value for a webhook body: an ES256
// JWT, signed with the current key and naming it by kid, with the claims iat (now) and
// request_body_sha256 (the hex SHA-256 of body exactly as given).
func (e *Emulator) SignWebhook(body []byte) (string, error) {
	e.webhooks.mu.Lock()
	k := e.webhooks.current
	e.webhooks.mu.Unlock()
	return signWebhook(k, body, time.Now())
}

func signWebhook(k *signingKey, body []byte, iat time.Time) (string, error) {
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: k.private, KeyID: k.kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", fmt.Errorf("emulator: webhook signer: %w", err)
	}
	sum := sha256.Sum256(body)
	token, err := jwt.Signed(signer).Claims(map[string]any{
		"iat":                 iat.Unix(),
		"request_body_sha256": hex.EncodeToString(sum[:]),
	}).Serialize()
	if err != nil {
		return "", fmt.Errorf("emulator: signing a webhook: %w", err)
	}
	return token, nil
}

// AddSession gives the user userToken names one more session, so the next
// /credit/sessions/get for that token returns it first (newest first, as Plaid orders
// them), and returns the user's user_id. The token must be one the emulator answers with
// sessions: a fixture, user-sandbox-sessions-N, either with a #id suffix.
func (e *Emulator) AddSession(userToken string) (userID string, err error) {
	_, err = e.addSession(userToken)
	if err != nil {
		return "", err
	}
	return e.UserID(userToken), nil
}

// addSession adds a session and returns its link_session_id.
func (e *Emulator) addSession(userToken string) (string, error) {
	if _, failure := lookupToken(userToken); failure != nil {
		return "", fmt.Errorf("emulator: add session: the user token answers %s/%s, not sessions", failure.Type, failure.Code)
	}
	s := newAddedSession(time.Now())
	w := &e.webhooks
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.addedAll >= maxAddedSessions {
		return "", fmt.Errorf("emulator: add session: %d sessions added already, the most the emulator keeps", maxAddedSessions)
	}
	w.added[userToken] = append(w.added[userToken], s)
	w.addedAll++
	return s.id, nil
}

// newAddedSession is a bank income session that started at start.
func newAddedSession(start time.Time) addedSession {
	id := newUUID()
	item := strings.ReplaceAll(newUUID(), "-", "")
	b, _ := json.Marshal(map[string]any{ // strings only: cannot fail
		"link_session_id":    id,
		"session_start_time": start.UTC().Format("2006-01-02T15:04:05.000000Z07:00"),
		"results": map[string]any{
			"item_add_results": []any{map[string]any{
				"public_token": "public-sandbox-" + newUUID(), "item_id": item, "institution_id": "ins_56",
			}},
			"bank_income_results": []any{map[string]any{
				"status": "APPROVED", "item_id": item, "institution_id": "ins_56",
			}},
		},
	})
	return addedSession{id: id, json: b}
}

// withAddedSessions returns body with the sessions added to userToken in front of its own.
func (e *Emulator) withAddedSessions(userToken string, body successBody) (successBody, *ErrorSpec) {
	w := &e.webhooks
	w.mu.Lock()
	added := w.added[userToken]
	w.mu.Unlock()
	if len(added) == 0 {
		return body, nil
	}
	var raw bytes.Buffer
	raw.Write(body.open)
	for _, p := range body.rest {
		raw.Write(p)
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw.Bytes(), &members); err != nil {
		return successBody{}, errEmulatorInternal.withMessage("emulator: a fixture body does not decode")
	}
	var sessions []json.RawMessage
	if s, ok := members["sessions"]; ok {
		if err := json.Unmarshal(s, &sessions); err != nil {
			return successBody{}, errEmulatorInternal.withMessage("emulator: a fixture's sessions do not decode")
		}
	}
	all := make([]json.RawMessage, 0, len(added)+len(sessions))
	for _, s := range slices.Backward(added) {
		all = append(all, s.json)
	}
	all = append(all, sessions...)
	members["sessions"], _ = json.Marshal(all) // valid JSON pieces: cannot fail
	out, _ := json.Marshal(members)
	merged, err := newFixtureBody(out)
	if err != nil {
		return successBody{}, errEmulatorInternal.withMessage("emulator: " + err.Error())
	}
	return merged, nil
}

// lastSessionID returns the link_session_id of the session last added to userToken.
func (e *Emulator) lastSessionID(userToken string) (string, bool) {
	w := &e.webhooks
	w.mu.Lock()
	defer w.mu.Unlock()
	if a := w.added[userToken]; len(a) > 0 {
		return a[len(a)-1].id, true
	}
	return "", false
}

// FireWebhook sends one signed webhook of webhookType/webhookCode about the user
// userToken names to url, and returns an error unless url answered 2xx. The body has
// the members Plaid documents for that webhook (a SESSION_FINISHED names the session last
// added to the user, if any); any other type and code get webhook_type, webhook_code,
// user_id and environment, for tests of webhooks a receiver should ignore.
func (e *Emulator) FireWebhook(ctx context.Context, url, userToken, webhookType, webhookCode string) error {
	if webhookType == "" || webhookCode == "" {
		return errors.New("emulator: fire webhook: webhook type and code are required")
	}
	sessionID, ok := e.lastSessionID(userToken)
	if !ok {
		sessionID = newUUID()
	}
	body := webhookBody(e.UserID(userToken), webhookType, webhookCode, sessionID, "")
	return e.deliver(ctx, url, body)
}

// webhookBody is the JSON of a webhook about userID.
func webhookBody(userID, webhookType, webhookCode, sessionID, verificationStatus string) []byte {
	m := map[string]any{"webhook_type": webhookType, "webhook_code": webhookCode, "user_id": userID, "environment": "sandbox"}
	switch webhookType + "/" + webhookCode {
	case "LINK/SESSION_FINISHED":
		m["status"] = "SUCCESS"
		m["link_session_id"] = sessionID
		m["link_token"] = "link-sandbox-" + newUUID()
		m["public_tokens"] = []string{"public-sandbox-" + newUUID()}
	case "INCOME/INCOME_VERIFICATION":
		if verificationStatus == "" {
			verificationStatus = "VERIFICATION_STATUS_PROCESSING_COMPLETE"
		}
		m["item_id"] = strings.ReplaceAll(newUUID(), "-", "")
		m["verification_status"] = verificationStatus
	case "INCOME/INCOME_VERIFICATION_RISK_SIGNALS":
		m["item_id"] = strings.ReplaceAll(newUUID(), "-", "")
		m["risk_signals_status"] = "RISK_SIGNALS_PROCESSING_COMPLETE"
	case "INCOME/BANK_INCOME_COMPLETE":
		m["result"] = "SUCCESS"
	}
	b, _ := json.Marshal(m) // strings only: cannot fail
	return b
}

// deliver signs body and POSTs it to url.
func (e *Emulator) deliver(ctx context.Context, url string, body []byte) error {
	signature, err := e.SignWebhook(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("emulator: webhook request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Plaid-Verification", signature)
	req.Header.Set("User-Agent", "Plaid Verifier")
	resp, err := e.webhooks.client.Do(req)
	if err != nil {
		return fmt.Errorf("emulator: sending a webhook: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // so the connection is reused
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("emulator: the webhook URL answered HTTP %d", resp.StatusCode)
	}
	return nil
}

// serveWebhookRoutes answers r if it is for one of Plaid's webhook calls, and reports
// whether it was. Faults do not apply to these.
func (e *Emulator) serveWebhookRoutes(w http.ResponseWriter, r *http.Request) bool {
	path := collapseSlashes(r.URL.Path)
	if path != webhookKeyPath && path != fireWebhookPath {
		return false
	}
	start := time.Now()
	requestID := newRequestID()
	var failure *ErrorSpec
	var answer any
	switch {
	case r.Method != http.MethodPost:
		failure = errNotFound
	case path == webhookKeyPath:
		e.webhooks.keyFetches.Add(1)
		answer, failure = e.webhookKey(w, r, requestID)
	default:
		answer, failure = e.fireWebhook(w, r, requestID)
	}
	status := http.StatusOK
	if failure != nil {
		writeError(w, requestID, *failure)
		status = failure.HTTPStatus
	} else {
		b, _ := json.Marshal(answer) // maps of strings and numbers: cannot fail
		h := w.Header()
		h.Set("Content-Type", contentType)
		h.Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(b)
	}
	if e.logger != nil {
		attrs := []slog.Attr{
			slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Int("status", status),
			slog.String("request_id", requestID), slog.Duration("duration", time.Since(start)),
		}
		if failure != nil {
			attrs = append(attrs, slog.String("error_type", failure.Type), slog.String("error_code", failure.Code))
		}
		e.logger.LogAttrs(r.Context(), slog.LevelInfo, "plaid emulator request", attrs...)
	}
	return true
}

// webhookKey answers /webhook_verification_key/get.
func (e *Emulator) webhookKey(w http.ResponseWriter, r *http.Request, requestID string) (any, *ErrorSpec) {
	fields, failure := e.readRequest(w, r, []string{"key_id"}, []string{"key_id"})
	if failure != nil {
		return nil, failure
	}
	e.webhooks.mu.Lock()
	k, ok := e.webhooks.keys[fields["key_id"]]
	var expiredAt *int64
	if ok && k.expiredAt != nil {
		v := *k.expiredAt
		expiredAt = &v
	}
	e.webhooks.mu.Unlock()
	if !ok {
		return nil, errInvalidKeyID
	}
	point, err := k.private.PublicKey.Bytes() // 0x04 || X || Y, 32 bytes each
	if err != nil || len(point) != 65 {
		return nil, errEmulatorInternal.withMessage("emulator: encoding a webhook key")
	}
	return map[string]any{
		"key": map[string]any{
			"alg": "ES256", "crv": "P-256", "kid": k.kid, "kty": "EC", "use": "sig",
			"x":          base64.RawURLEncoding.EncodeToString(point[1:33]),
			"y":          base64.RawURLEncoding.EncodeToString(point[33:]),
			"created_at": k.createdAt,
			"expired_at": expiredAt,
		},
		"request_id": requestID,
	}, nil
}

// fireWebhookCodes maps each webhook_code fire_webhook accepts to its webhook_type.
var fireWebhookCodes = map[string]string{
	"INCOME_VERIFICATION":              "INCOME",
	"INCOME_VERIFICATION_RISK_SIGNALS": "INCOME",
	"BANK_INCOME_COMPLETE":             "INCOME",
	"SESSION_FINISHED":                 "LINK",
}

// fireWebhook answers /sandbox/income/fire_webhook.
func (e *Emulator) fireWebhook(w http.ResponseWriter, r *http.Request, requestID string) (any, *ErrorSpec) {
	fields, failure := e.readRequest(w, r,
		[]string{"user_token", "webhook", "webhook_code", "verification_status", "user_id", "item_id"},
		[]string{"user_token", "webhook"})
	if failure != nil {
		return nil, failure
	}
	target, err := url.Parse(fields["webhook"])
	if err != nil || (target.Scheme != "http" && target.Scheme != "https") || target.Host == "" {
		return nil, errInvalidField.withMessage("webhook must be an absolute http or https URL")
	}
	token := fields["user_token"]
	if _, failure := lookupToken(token); failure != nil {
		return nil, failure
	}
	userID := e.UserID(token)
	if id := fields["user_id"]; id != "" && id != userID {
		return nil, errInvalidField.withMessage("user_id does not belong to user_token")
	}
	codes := []string{"SESSION_FINISHED", "BANK_INCOME_COMPLETE"}
	if code := fields["webhook_code"]; code != "" {
		if _, ok := fireWebhookCodes[code]; !ok {
			return nil, errInvalidField.withMessage("webhook_code must be one of INCOME_VERIFICATION, INCOME_VERIFICATION_RISK_SIGNALS, BANK_INCOME_COMPLETE, SESSION_FINISHED")
		}
		codes = []string{code}
	}
	sessionID, err := e.addSession(token)
	if err != nil {
		return nil, errEmulatorInternal.withMessage(err.Error())
	}
	for _, code := range codes {
		body := webhookBody(userID, fireWebhookCodes[code], code, sessionID, fields["verification_status"])
		if err := e.deliver(r.Context(), target.String(), body); err != nil {
			return nil, errWebhookDelivery.withMessage("the session was added, but a webhook was not delivered: " + err.Error())
		}
	}
	return map[string]any{"request_id": requestID, "user_id": userID}, nil
}

// readRequest runs Plaid's request checks for an endpoint whose members, beside
// client_id and secret, are the strings in known, of which required must be set. It
// returns every member's value.
func (e *Emulator) readRequest(w http.ResponseWriter, r *http.Request, known, required []string) (map[string]string, *ErrorSpec) {
	if !isJSONContentType(r.Header.Get("Content-Type")) {
		return nil, errInvalidBody.withMessage("the request Content-Type must be application/json")
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		return nil, errInvalidBody.withMessage("request body could not be read")
	}
	members, ok := parseObject(raw)
	if !ok {
		return nil, errInvalidBody
	}
	known = append([]string{"client_id", "secret"}, known...)
	var unknown []string
	for name := range members {
		if !slices.Contains(known, name) {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return nil, errUnknownFields.withMessage("the following fields are not recognized by this endpoint: " + strings.Join(unknown, ", "))
	}
	fields := make(map[string]string, len(members))
	for _, name := range known {
		if raw, ok := members[name]; ok {
			var v string
			if err := json.Unmarshal(raw, &v); err != nil {
				return nil, errInvalidField.withMessage(name + " must be a properly formatted, non-empty string")
			}
			fields[name] = v
		}
	}
	if fields["client_id"] == "" {
		fields["client_id"] = r.Header.Get("PLAID-CLIENT-ID")
	}
	if fields["secret"] == "" {
		fields["secret"] = r.Header.Get("PLAID-SECRET")
	}
	var missing []string
	for _, name := range append([]string{"client_id", "secret"}, required...) {
		if fields[name] == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return nil, errMissingFields.withMessage("the following required fields are missing: " + strings.Join(missing, ", "))
	}
	idOK := subtle.ConstantTimeCompare([]byte(fields["client_id"]), []byte(e.clientID))
	secretOK := subtle.ConstantTimeCompare([]byte(fields["secret"]), []byte(e.secret))
	if idOK&secretOK != 1 {
		return nil, errInvalidAPIKeys
	}
	return fields, nil
}

// newUUID returns a random version 4 UUID.
func newUUID() string {
	var b [16]byte
	_, _ = crand.Read(b[:]) // never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
