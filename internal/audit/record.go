// Package audit keeps the data-access trail: one JSON line for every call that returned
// or streamed a user's credit data, and for every call refused at the door, written to a
// file (appended, fsync'd in batches, rotated by size, re-opened on SIGHUP) or to
// stdout. Each line carries the SHA-256 of the line before it, so a file whose records
// were edited, removed or reordered fails Verify at the first record after the change.
//
// Records are never sampled. A call's record is queued in memory (bounded) and written
// by one goroutine in batches, so a call costs no system call; when the queue is full or
// the sink fails, the call is refused (Options.Required) or the loss is counted in
// creditsessions_audit_records_lost_total. docs/audit.md is the operator's page.
package audit

import (
	"context"
	"crypto/sha256"
	"time"

	"google.golang.org/grpc/codes"
)

// SchemaVersion is the "v" of every record this package writes. Adding an optional
// field keeps the version; renaming, removing or changing the meaning of one bumps it.
const SchemaVersion = 1

// Record is one line of the trail (schema version 1; docs/audit.md documents each
// field). Optional fields are omitted when they do not apply.
type Record struct {
	V int `json:"v"`
	// Time is when the call ended, RFC 3339 in UTC with nanoseconds.
	Time string `json:"time"`
	// Caller is the authenticated caller's identity; "" when it was never proven.
	Caller    string `json:"caller"`
	Transport string `json:"transport"`
	Method    string `json:"method"`
	// Code is the gRPC status code the caller got, by name ("OK", "PermissionDenied").
	Code string `json:"code"`
	// Refusal says why the service refused the call before serving it:
	// unauthenticated, permission_denied, quota or audit_unavailable.
	Refusal string `json:"refusal,omitempty"`
	// AuthzRule is the authorization policy's rule that decided ("allow_rules/NAME",
	// "deny_rules/NAME"), when a policy decided.
	AuthzRule       string `json:"authz_rule,omitempty"`
	UserTokenSHA256 string `json:"user_token_sha256,omitempty"`
	PlaidClientID   string `json:"plaid_client_id,omitempty"`
	PlaidRequestID  string `json:"plaid_request_id,omitempty"`
	// Sessions is the number of credit sessions the caller was sent: for a watch, in
	// all of its messages.
	Sessions int `json:"sessions"`
	// WatchStart, WatchEnd and Messages are present on watches only.
	WatchStart string `json:"watch_start,omitempty"`
	WatchEnd   string `json:"watch_end,omitempty"`
	Messages   *int   `json:"messages,omitempty"`
	// CacheHit and CacheAgeSeconds are present when the answer came through the
	// response cache: whether it was served from it, and how old it was.
	CacheHit        *bool    `json:"cache_hit,omitempty"`
	CacheAgeSeconds *float64 `json:"cache_age_seconds,omitempty"`
	// Prev is the hex SHA-256 of the previous line of the chain, without its newline;
	// GenesisPrev for the first record of a new chain.
	Prev string `json:"prev"`
}

// GenesisPrev is the Prev of a chain's first record: a new file no record came before.
const GenesisPrev = "0000000000000000000000000000000000000000000000000000000000000000"

// Refusal reasons.
const (
	RefusedUnauthenticated  = "unauthenticated"
	RefusedPermissionDenied = "permission_denied"
	RefusedQuota            = "quota"
	RefusedAuditUnavailable = "audit_unavailable"
)

// Note is what a call learns on its way through the service that its record wants. The
// audit interceptor puts one in the call's context; the security interceptor and the
// service fill it (every method is safe on a nil Note, so code runs the same without
// auditing). A call's handler and interceptors run in one goroutine, so a Note needs no
// lock.
type Note struct {
	caller          string
	refusal, rule   string
	tokenSHA256     [sha256.Size]byte
	hasToken        bool
	clientID        string
	requestID       string
	sessions        int
	cacheHit        *bool
	cacheAgeSeconds *float64
	batch           []BatchUser
}

// BatchUser is what one user of a batch got: a batch call leaves one record per
// distinct user it read, each with that user's outcome, so the trail answers "who read
// this user" for batches as for single calls.
type BatchUser struct {
	// UserToken is hashed into the record; the token itself is never kept.
	UserToken string
	// ClientID is the Plaid client id the read used ("" for the service's own).
	ClientID string
	// RequestID is Plaid's request id of the answer (or of its error), if any.
	RequestID string
	// Sessions is how many credit sessions the caller was sent for this user.
	Sessions int
	// Code is this user's outcome: OK, or the status its result carries.
	Code codes.Code
	// CacheUsed says the caller allowed the cache; Cached and Age say whether the answer
	// came from it, and how old it was.
	CacheUsed, Cached bool
	Age               time.Duration
}

type noteKey struct{}

// NoteFrom returns the call's Note, or nil when the call is not audited.
func NoteFrom(ctx context.Context) *Note {
	n, _ := ctx.Value(noteKey{}).(*Note)
	return n
}

// NoteCaller records the authenticated caller's identity (auth.Security.OnCaller).
func NoteCaller(ctx context.Context, identity string) {
	if n := NoteFrom(ctx); n != nil {
		n.caller = identity
	}
}

// NoteRefusal records why the service refused a call, and the policy rule that
// decided, if any (auth.Security.OnRefused).
func NoteRefusal(ctx context.Context, reason, rule string) {
	if n := NoteFrom(ctx); n != nil {
		n.refusal, n.rule = reason, rule
	}
}

// SetUser records whose data the call asks for, as the SHA-256 of the user token, and
// the Plaid client id it is asked with ("" for the service's own). Neither the token
// nor a secret is kept.
func (n *Note) SetUser(userToken, clientID string) {
	if n == nil {
		return
	}
	n.tokenSHA256 = sha256.Sum256([]byte(userToken))
	n.hasToken = true
	n.clientID = clientID
}

// ClearUser forgets a user set by SetUser: a batch names its users one by one.
func (n *Note) ClearUser() {
	if n != nil {
		n.hasToken, n.clientID = false, ""
	}
}

// SetRequestID records Plaid's request id for the answer the call was given.
func (n *Note) SetRequestID(id string) {
	if n != nil && n.requestID == "" {
		n.requestID = id
	}
}

// AddSessions counts sessions sent to the caller.
func (n *Note) AddSessions(count int) {
	if n != nil {
		n.sessions += count
	}
}

// SetCache records that the answer went through the response cache: whether it was a
// hit, and the age of the cached answer.
func (n *Note) SetCache(hit bool, age time.Duration) {
	if n == nil {
		return
	}
	n.cacheHit = &hit
	if hit {
		secs := age.Seconds()
		n.cacheAgeSeconds = &secs
	}
}

// SetBatch records the users a batch read, one record each (see BatchUser). The
// handler calls it once, after its fan-out is done, from the call's own goroutine.
func (n *Note) SetBatch(users []BatchUser) {
	if n != nil {
		n.batch = users
	}
}

// forUser is the Note of one user of a batch: the call's caller, with that user's read.
func (n *Note) forUser(u BatchUser) Note {
	one := Note{caller: n.caller, refusal: n.refusal, rule: n.rule}
	one.SetUser(u.UserToken, u.ClientID)
	one.requestID, one.sessions = u.RequestID, u.Sessions
	if u.CacheUsed {
		one.SetCache(u.Cached, u.Age)
	}
	return one
}

// timeFormat is RFC 3339 with nanoseconds, fixed width so that records sort as text.
const timeFormat = "2006-01-02T15:04:05.000000000Z07:00"

func formatTime(t time.Time) string { return t.UTC().Format(timeFormat) }
