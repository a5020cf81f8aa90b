package cache

import (
	"strings"
	"time"
)

// Directives are what a request's Cache-Control says to the cache (RFC 9111, section
// 5.2.1). The zero value, no header at all, means the cache is neither read nor written.
type Directives struct {
	// MaxAge is the oldest answer the caller accepts, when HasMaxAge.
	MaxAge time.Duration
	// HasMaxAge: the request carried one valid max-age.
	HasMaxAge bool
	// NoCache: ask Plaid whatever the cache holds, and store the answer.
	NoCache bool
	// NoStore: neither read nor write the cache for this request.
	NoStore bool
}

// maxDeltaSeconds is the largest delta-seconds kept: RFC 9111 section 1.2.2 tells a
// recipient to take a larger value as 2^31. The operator's -cache-max-age bounds it much
// lower anyway.
const maxDeltaSeconds = 1 << 31

// maxHeaderBytes bounds what is parsed: no real Cache-Control is longer, and the parse
// stays linear whatever a caller sends.
const maxHeaderBytes = 4 << 10

// ParseDirectives reads Cache-Control field values, each a comma-separated list
// (several field lines combine as one list, RFC 9110 section 5.3). Parsing is lenient
// where RFC 9111 allows it and ignores what it cannot use, never failing the call:
//   - directive names are case-insensitive; white space around items and "=" is skipped;
//   - max-age takes delta-seconds, bare or (tolerated, section 5.2) quoted; a value that
//     is not all digits makes that directive invalid, and it is ignored;
//   - a max-age given twice with different values is invalid (section 4.2.1) and
//     ignored: the call goes to Plaid, which is always safe;
//   - unknown directives and extensions (max-stale, min-fresh, only-if-cached, ...) are
//     ignored, as section 5.2.3 says;
//   - past 4 KiB, the rest of the field is ignored.
func ParseDirectives(values []string) Directives {
	var d Directives
	seen, conflict := false, false
	var maxAge int64
	budget := maxHeaderBytes
	for _, v := range values {
		if len(v) > budget {
			v = v[:budget]
		}
		budget -= len(v)
		for item := range strings.SplitSeq(v, ",") {
			name, value, hasValue := strings.Cut(item, "=")
			name = strings.ToLower(strings.TrimSpace(name))
			value = strings.TrimSpace(value)
			switch name {
			case "no-cache":
				// A no-cache naming fields ("no-cache=x") is a response directive;
				// in a request it can only mean the same as the bare one.
				d.NoCache = true
			case "no-store":
				d.NoStore = true
			case "max-age":
				if !hasValue {
					continue
				}
				secs, ok := deltaSeconds(value)
				if !ok {
					continue
				}
				if seen && secs != maxAge {
					conflict = true
				}
				seen, maxAge = true, secs
			}
		}
		if budget <= 0 {
			break
		}
	}
	if seen && !conflict {
		d.HasMaxAge = true
		d.MaxAge = time.Duration(maxAge) * time.Second
	}
	return d
}

// deltaSeconds parses 1*DIGIT, optionally in double quotes, saturating at 2^31.
func deltaSeconds(s string) (int64, bool) {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
	}
	if s == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if n < maxDeltaSeconds {
			n = n*10 + int64(c-'0')
		}
	}
	return min(n, maxDeltaSeconds), true
}
