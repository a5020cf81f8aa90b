// Package webhook receives Plaid's webhooks: it verifies each one as Plaid documents
// (an ES256 JWT in the Plaid-Verification header, signed by a key Plaid serves at
// /webhook_verification_key/get, recent, and bound to the body by its SHA-256), drops
// replays, and tells a Notifier which user a webhook about credit sessions concerns.
//
// The Handler serves POST /webhooks/plaid and nothing else, since its listener faces
// Plaid rather than internal callers. A webhook that fails a check changes nothing and
// gets a 4xx; the log line and creditsessions_webhooks_total{result} say which check
// failed. The Handler never calls Plaid itself: a KeyFetcher does (*plaid.Client is one).
package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/creditsessions/creditsessions/internal/plaid"
)

// Path is the one route the Handler serves, for POST only.
const Path = "/webhooks/plaid"

// MaxAge is how old a webhook's iat may be, as Plaid's verification guide says.
const MaxAge = 5 * time.Minute

// MaxClockSkew is how far in the future a webhook's iat may be: Plaid's clock and ours
// disagree a little, never by minutes.
const MaxClockSkew = time.Minute

// DefaultMaxBodyBytes bounds a webhook body; Plaid's are a few hundred bytes.
const DefaultMaxBodyBytes = 64 << 10

// maxTokenBytes bounds the Plaid-Verification header: Plaid's JWTs are about 400 bytes.
const maxTokenBytes = 4 << 10

// maxKeyIDBytes bounds a kid before it is sent to Plaid or logged; Plaid's are UUIDs.
const maxKeyIDBytes = 128

// notifyTimeout bounds a Notify call, which no longer depends on Plaid waiting.
const notifyTimeout = 5 * time.Second

// Notifier learns of each verified webhook that concerns a user's credit sessions.
// Notify is called before the webhook is answered, so it should not block for long; ctx
// ends after a few seconds, even if Plaid has hung up. It is called at most once per
// webhook, never for a replay.
type Notifier interface {
	Notify(ctx context.Context, userID string)
}

// NotifierFunc makes a function a Notifier.
type NotifierFunc func(ctx context.Context, userID string)

// Notify calls f.
func (f NotifierFunc) Notify(ctx context.Context, userID string) { f(ctx, userID) }

// KeyFetcher fetches the webhook verification key named keyID from Plaid's
// `POST /webhook_verification_key/get`. *plaid.Client is one. An unknown key is a
// *plaid.Error with code INVALID_WEBHOOK_VERIFICATION_KEY_ID.
type KeyFetcher interface {
	WebhookVerificationKeyGet(ctx context.Context, keyID string) (*plaid.WebhookVerificationKey, error)
}

var _ KeyFetcher = (*plaid.Client)(nil)

// Options configures a Handler. Keys and Notifier are required.
type Options struct {
	// Keys fetches Plaid's verification keys; the Handler caches them.
	Keys KeyFetcher
	// Notifier hears of each accepted webhook's user_id.
	Notifier Notifier
	// Logger gets one line per webhook; nil means none. Never a body, a token or a
	// signature: bodies carry link and public tokens.
	Logger *slog.Logger
	// Metrics, if set, gets creditsessions_webhooks_total{result}.
	Metrics prometheus.Registerer
	// Now is the clock for iat and the caches; nil means time.Now.
	Now func() time.Time

	// MaxBodyBytes bounds a body (413 beyond it); 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// KeyTTL is how long a valid key is used before Plaid is asked again whether it has
	// expired; 0 means one hour.
	KeyTTL time.Duration
	// KeyFetchEvery and KeyFetchBurst bound how often kids the cache has no answer for
	// may make the Handler ask Plaid: strangers together get that much, and senders
	// whose webhooks verified (Plaid) get as much again of their own, which strangers
	// cannot spend. 0 means every 10 s, with a burst of 5.
	KeyFetchEvery time.Duration
	KeyFetchBurst int
	// SourceKeyFetchEvery and SourceKeyFetchBurst bound the fetches one sender (an
	// address; an IPv6 /64) may cause, so that one sender of junk spends its own
	// allowance and not everyone's. 0 means every minute, with a burst of 2.
	SourceKeyFetchEvery time.Duration
	SourceKeyFetchBurst int
	// TrustedProxies are the proxies in front of the listener (an ingress) whose
	// X-Forwarded-For names the sender. Without them, behind a proxy every webhook
	// comes from the proxy, and the per-sender allowances are one.
	TrustedProxies []netip.Prefix
	// SharedReplays, if set, is asked too whether a verified webhook is new, so that a
	// webhook accepted by one replica is a replay on the others (see RedisReplays).
	SharedReplays ReplayStore
	// ReplayCacheSize bounds the verified webhooks remembered to refuse replays; when
	// that many arrived within MaxAge, new ones are refused (503, for Plaid to retry)
	// rather than let replays through. 0 means 65536.
	ReplayCacheSize int
}

// Result values of creditsessions_webhooks_total: the outcome of a webhook, or the check
// it failed.
const (
	ResultAccepted           = "accepted"            // verified, concerns a user's sessions, Notifier told
	ResultIgnored            = "ignored"             // verified, concerns nothing watched (or names no user)
	ResultReplayed           = "replayed"            // verified, but seen already within MaxAge
	ResultBodyTooLarge       = "body_too_large"      // over MaxBodyBytes
	ResultUnreadableBody     = "unreadable_body"     // the body could not be read
	ResultMissingSignature   = "missing_signature"   // no Plaid-Verification header
	ResultMalformedSignature = "malformed_signature" // not a compact JWS, or an oversized header or kid
	ResultBadAlg             = "bad_alg"             // alg other than ES256 (none, HS256, RS256, ...)
	ResultMissingKID         = "missing_kid"         // no kid in the JWT header
	ResultUnknownKID         = "unknown_kid"         // Plaid knows no such key
	ResultKeyFetchLimited    = "key_fetch_limited"   // an unknown kid, and fetches are rate-limited now
	ResultKeyUnavailable     = "key_unavailable"     // Plaid could not be asked, or sent an unusable key
	ResultExpiredKey         = "expired_key"         // Plaid says the key has expired_at set
	ResultBadSignature       = "bad_signature"       // the signature does not verify with the key
	ResultBadClaims          = "bad_claims"          // claims missing or not of the right type
	ResultIATTooOld          = "iat_too_old"         // iat older than MaxAge
	ResultIATInFuture        = "iat_in_future"       // iat later than now + MaxClockSkew
	ResultBodyMismatch       = "body_mismatch"       // request_body_sha256 is not the body's
	ResultBadBody            = "bad_body"            // verified, but not a webhook's JSON
	ResultReplayCacheFull    = "replay_cache_full"   // too many webhooks within MaxAge to remember
)

// Results lists every result value, so dashboards see each at 0 from the start.
var Results = []string{
	ResultAccepted, ResultIgnored, ResultReplayed, ResultBodyTooLarge, ResultUnreadableBody,
	ResultMissingSignature, ResultMalformedSignature, ResultBadAlg, ResultMissingKID, ResultUnknownKID,
	ResultKeyFetchLimited, ResultKeyUnavailable, ResultExpiredKey, ResultBadSignature, ResultBadClaims,
	ResultIATTooOld, ResultIATInFuture, ResultBodyMismatch, ResultBadBody, ResultReplayCacheFull,
}

// relevant lists the webhooks that concern credit sessions, by webhook_type/webhook_code.
var relevant = map[string]bool{
	"INCOME/INCOME_VERIFICATION":              true,
	"INCOME/BANK_INCOME_COMPLETE":             true,
	"INCOME/INCOME_VERIFICATION_RISK_SIGNALS": true,
	"LINK/SESSION_FINISHED":                   true,
}

// Handler serves POST /webhooks/plaid. It is safe for concurrent use.
type Handler struct {
	notifier       Notifier
	logger         *slog.Logger
	now            func() time.Time
	maxBody        int64
	trustedProxies []netip.Prefix
	budget         *fetchBudget
	keys           *keyCache
	replays        *replayCache
	shared         ReplayStore
	results        *prometheus.CounterVec
	sharedFailures prometheus.Counter
}

var _ http.Handler = (*Handler)(nil)

// NewHandler returns a Handler for opts.
func NewHandler(opts Options) (*Handler, error) {
	if opts.Keys == nil {
		return nil, errors.New("webhook: Options.Keys is required")
	}
	if opts.Notifier == nil {
		return nil, errors.New("webhook: Options.Notifier is required")
	}
	h := &Handler{notifier: opts.Notifier, logger: opts.Logger, now: opts.Now, maxBody: opts.MaxBodyBytes,
		trustedProxies: opts.TrustedProxies, shared: opts.SharedReplays}
	if h.logger == nil {
		h.logger = slog.New(slog.DiscardHandler)
	}
	if h.now == nil {
		h.now = time.Now
	}
	if h.maxBody <= 0 {
		h.maxBody = DefaultMaxBodyBytes
	}
	h.budget = newFetchBudget(opts.KeyFetchEvery, opts.KeyFetchBurst, opts.SourceKeyFetchEvery, opts.SourceKeyFetchBurst)
	h.keys = newKeyCache(opts.Keys, h.now, h.logger, opts.KeyTTL, h.budget)
	h.replays = newReplayCache(opts.ReplayCacheSize)
	results, err := register(opts.Metrics, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "creditsessions_webhooks_total",
		Help: "Plaid webhooks received, by result: accepted, ignored, replayed, or the check that failed.",
	}, []string{"result"}))
	if err != nil {
		return nil, err
	}
	for _, r := range Results {
		results.WithLabelValues(r)
	}
	h.results = results
	if h.sharedFailures, err = register(opts.Metrics, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "creditsessions_webhook_replay_store_failures_total",
		Help: "Verified webhooks whose replay check could not reach the fleet's store (Redis): this replica's memory alone decided.",
	})); err != nil {
		return nil, err
	}
	return h, nil
}

// register registers c with r, if any; a second Handler on the same registry counts
// into the first one's collector.
func register[C prometheus.Collector](r prometheus.Registerer, c C) (C, error) {
	if r == nil {
		return c, nil
	}
	if err := r.Register(c); err != nil {
		are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err)
		existing, same := are.ExistingCollector.(C)
		if !ok || !same {
			return c, fmt.Errorf("webhook: registering metrics: %w", err)
		}
		return existing, nil
	}
	return c, nil
}

// ServeHTTP answers POST /webhooks/plaid: 200 for a verified webhook (accepted, ignored
// or replayed), 400 for a verified one whose body is not a webhook, 401 for one that fails
// verification, 413 for an oversized body, 503 when the replay cache is full; 404 for any
// other path and 405 for any other method.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != Path {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			h.refuse(w, r, http.StatusRequestEntityTooLarge, ResultBodyTooLarge, "", err)
			return
		}
		h.refuse(w, r, http.StatusBadRequest, ResultUnreadableBody, "", err)
		return
	}
	// Header.Get is case-insensitive: over HTTP/2 the name arrives in lower case.
	from := sourceOf(r, h.trustedProxies)
	signed, result, err := h.verify(r.Context(), r.Header.Get("Plaid-Verification"), body, from)
	kid := signed.kid
	if result != "" {
		h.refuse(w, r, http.StatusUnauthorized, result, kid, err)
		return
	}
	h.budget.trust(from, h.now())
	switch h.seen(r.Context(), signed.replayKey(), signed.claims.iat().Add(MaxAge+time.Second)) {
	case replaySeen:
		h.answer(w, r, ResultReplayed, kid)
		return
	case replayFull:
		h.refuse(w, r, http.StatusServiceUnavailable, ResultReplayCacheFull, kid, nil)
		return
	}

	var hook struct {
		WebhookType string `json:"webhook_type"`
		WebhookCode string `json:"webhook_code"`
		UserID      string `json:"user_id"`
	}
	if err := json.Unmarshal(body, &hook); err != nil || hook.WebhookType == "" || hook.WebhookCode == "" {
		if err == nil {
			err = errors.New("no webhook_type or webhook_code")
		}
		h.refuse(w, r, http.StatusBadRequest, ResultBadBody, kid, err)
		return
	}
	attrs := []slog.Attr{slog.String("webhook_type", clip(hook.WebhookType)), slog.String("webhook_code", clip(hook.WebhookCode))}
	if !relevant[hook.WebhookType+"/"+hook.WebhookCode] || hook.UserID == "" {
		h.answer(w, r, ResultIgnored, kid, attrs...)
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), notifyTimeout)
	defer cancel()
	h.notifier.Notify(ctx, hook.UserID)
	h.answer(w, r, ResultAccepted, kid, append(attrs, slog.String("user_id", clip(hook.UserID)))...)
}

// verify checks raw against body and returns the token, or the result naming the check
// that failed, with the cause to log. Everything that needs no key is checked before a
// key is looked up; a key not cached is fetched at from's expense.
func (h *Handler) verify(ctx context.Context, raw string, body []byte, from netip.Prefix) (t token, result string, err error) {
	t, result, err = parseToken(raw, body, h.now())
	if result != "" {
		return t, result, err
	}
	parsed, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return t, ResultMalformedSignature, err
	}
	if len(parsed.Headers) != 1 || parsed.Headers[0].KeyID != t.kid || parsed.Headers[0].Algorithm != string(jose.ES256) {
		return t, ResultMalformedSignature, errors.New("the library reads another header")
	}
	key, result, err := h.keys.get(ctx, t.kid, from)
	if result != "" {
		return t, result, err
	}
	var verified claims
	if err := parsed.Claims(key, &verified); err != nil {
		if errors.Is(err, jose.ErrCryptoFailure) {
			return t, ResultBadSignature, err
		}
		return t, ResultBadClaims, err
	}
	// The claims checked before were the token's word; these are Plaid's. They are the
	// same bytes, but the time has moved on, and the check costs nothing.
	if result, err := verified.check(body, h.now()); result != "" {
		return t, result, err
	}
	t.claims = verified
	return t, "", nil
}

// refuse answers a webhook that failed a check. The answer names no check: the log and
// the metric do.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, status int, result, kid string, err error) {
	h.results.WithLabelValues(result).Inc()
	attrs := []slog.Attr{slog.String("result", result), slog.Int("status", status), slog.String("remote_addr", r.RemoteAddr)}
	if kid != "" {
		attrs = append(attrs, slog.String("kid", kid))
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", clip(err.Error())))
	}
	h.logger.LogAttrs(r.Context(), slog.LevelWarn, "plaid webhook refused", attrs...)
	http.Error(w, http.StatusText(status), status)
}

// answer acknowledges a verified webhook with 200.
func (h *Handler) answer(w http.ResponseWriter, r *http.Request, result, kid string, attrs ...slog.Attr) {
	h.results.WithLabelValues(result).Inc()
	attrs = append(attrs, slog.String("result", result), slog.String("kid", kid))
	h.logger.LogAttrs(r.Context(), slog.LevelInfo, "plaid webhook", attrs...)
	w.WriteHeader(http.StatusOK)
}

// clip bounds a string a sender chose before it reaches a log line.
func clip(s string) string {
	const max = 128
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
