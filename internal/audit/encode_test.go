package audit

import (
	"crypto/sha256"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
)

// The hand-written encoding is Record's JSON, for any strings a caller can put in a
// record (a certificate's names, a method, Plaid's request id).
func TestTheEncodingIsRecords(t *testing.T) {
	l := &Log{opts: Options{ServiceClientID: func() string { return "service-client" }}}
	end := time.Date(2026, 12, 6, 20, 0, 0, 5, time.UTC)
	for _, s := range []string{"", "plain", "quote\" back\\slash", "\x00\x01\x1f\n\r\t", "é ü 中", "bad \xff\xfe utf-8", "\u2028\u2029", "<&>"} {
		hit, age := true, 1.5
		e := entry{method: "/m" + s, transport: "rest", code: codes.PermissionDenied, start: end.Add(-time.Minute), end: end, watch: true, messages: 3}
		e.note = Note{caller: s, refusal: "permission_denied", rule: "deny_rules/" + s, hasToken: true, requestID: s, sessions: 7,
			cacheHit: &hit, cacheAgeSeconds: &age}
		e.note.tokenSHA256 = sha256.Sum256([]byte("tok"))
		var prev [sha256.Size]byte
		prev[0] = 0xab
		line := l.appendRecord(nil, &e, prev, false)
		require.True(t, json.Valid(line), "%q", line)
		var got Record
		require.NoError(t, json.Unmarshal(line, &got))
		want := Record{V: 1, Time: "2026-12-06T20:00:00.000000005Z", Caller: s, Transport: "rest", Method: "/m" + s, Code: "PermissionDenied",
			Refusal: "permission_denied", AuthzRule: "deny_rules/" + s, UserTokenSHA256: sha("tok"), PlaidClientID: "service-client",
			PlaidRequestID: s, Sessions: 7, WatchStart: "2026-12-06T19:59:00.000000005Z", WatchEnd: "2026-12-06T20:00:00.000000005Z",
			Messages: &e.messages, CacheHit: &hit, CacheAgeSeconds: &age, Prev: "ab" + GenesisPrev[2:]}
		var canonical Record // what encoding/json makes of the same strings (U+FFFD for bad bytes)
		data, err := json.Marshal(want)
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(data, &canonical))
		assert.Equal(t, canonical, got, "%q", s)
	}
	// Optional fields absent, and the genesis link.
	line := l.appendRecord(nil, &entry{method: "/m", transport: "grpc", end: end}, [sha256.Size]byte{}, true)
	var got map[string]any
	require.NoError(t, json.Unmarshal(line, &got))
	assert.Equal(t, map[string]any{"v": 1.0, "time": "2026-12-06T20:00:00.000000005Z", "caller": "", "transport": "grpc", "method": "/m",
		"code": "OK", "sessions": 0.0, "prev": GenesisPrev}, got)
}
