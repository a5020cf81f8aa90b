package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"

	"github.com/creditsessions/creditsessions/internal/plaidjson"
)

// appendRecord appends e's record as one JSON object, the fields in Record's order. By
// hand rather than by encoding/json: reflection was half of the trail's cost per call
// (BENCHMARKS.md). TestTheEncodingIsRecords holds it to Record's JSON.
func (l *Log) appendRecord(b []byte, e *entry, prev [sha256.Size]byte, genesis bool) []byte {
	n := &e.note
	b = append(b, `{"v":`...)
	b = strconv.AppendInt(b, SchemaVersion, 10)
	b = appendField(b, "time", formatTime(e.end))
	b = appendField(b, "caller", n.caller)
	b = appendField(b, "transport", e.transport)
	b = appendField(b, "method", e.method)
	b = appendField(b, "code", e.code.String())
	if n.refusal != "" {
		b = appendField(b, "refusal", n.refusal)
	}
	if n.rule != "" {
		b = appendField(b, "authz_rule", n.rule)
	}
	clientID := n.clientID
	if n.hasToken {
		b = append(b, `,"user_token_sha256":"`...)
		b = hex.AppendEncode(b, n.tokenSHA256[:])
		b = append(b, '"')
		if clientID == "" {
			clientID = l.opts.ServiceClientID()
		}
	}
	if clientID != "" {
		b = appendField(b, "plaid_client_id", clientID)
	}
	if n.requestID != "" {
		b = appendField(b, "plaid_request_id", n.requestID)
	}
	b = append(b, `,"sessions":`...)
	b = strconv.AppendInt(b, int64(n.sessions), 10)
	if e.watch {
		b = appendField(b, "watch_start", formatTime(e.start))
		b = appendField(b, "watch_end", formatTime(e.end))
		b = append(b, `,"messages":`...)
		b = strconv.AppendInt(b, int64(e.messages), 10)
	}
	if n.cacheHit != nil {
		b = append(b, `,"cache_hit":`...)
		b = strconv.AppendBool(b, *n.cacheHit)
	}
	if n.cacheAgeSeconds != nil {
		b = append(b, `,"cache_age_seconds":`...)
		b = strconv.AppendFloat(b, *n.cacheAgeSeconds, 'f', -1, 64)
	}
	b = append(b, `,"prev":"`...)
	if genesis {
		b = append(b, GenesisPrev...)
	} else {
		b = hex.AppendEncode(b, prev[:])
	}
	return append(b, `"}`...)
}

func appendField(b []byte, name, value string) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return plaidjson.AppendString(b, value)
}
