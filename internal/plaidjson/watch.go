package plaidjson

import (
	"strings"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
)

var watchRequestKeys = expectedKeys("user_token", "user_id", "client_id", "secret")

// UnmarshalWatchRequest decodes the body of `POST /credit/sessions/watch` into m, with
// the same checks and errors as UnmarshalRequest.
func UnmarshalWatchRequest(data []byte, m *creditv1.WatchCreditSessionsRequest) error {
	d := decoder{scanner: scanner{s: data}}
	m.Reset()
	if d.peek() != '{' {
		return d.typeError("an object")
	}
	d.pos++
	var unknown []string
	var invalid error // the first known member of the wrong type
	obj := d.members(watchRequestKeys)
	for {
		key, more, err := obj.next()
		if err != nil {
			return err
		}
		if !more {
			break
		}
		switch string(key) {
		case "user_token":
			m.UserToken, _, err = d.optString()
		case "user_id":
			m.UserId, err = d.strPtr()
		case "client_id":
			m.ClientId, err = d.strPtr()
		case "secret":
			m.Secret, err = d.strPtr()
		default:
			unknown = append(unknown, string(key))
			err = d.skip(0)
		}
		if err == nil {
			continue
		}
		if _, syntax := err.(*SyntaxError); syntax {
			return err
		}
		if invalid == nil {
			invalid = inField(string(key), err)
		}
		if err := d.skip(0); err != nil {
			return err
		}
	}
	if err := d.end(); err != nil {
		return err
	}
	if len(unknown) > 0 {
		return &UnknownFieldsError{Fields: unknown}
	}
	return invalid
}

// AppendWatchResponse appends one message of a watch as a line of newline-delimited
// JSON: `{"reason":"INITIAL","response":{...}}\n`, the response as AppendResponse
// writes it and the reason without its proto prefix, as Plaid spells its enums.
func AppendWatchResponse(dst []byte, m *creditv1.WatchCreditSessionsResponse) ([]byte, error) {
	dst = append(dst, `{"reason":`...)
	dst = appendString(dst, WatchReason(m.GetReason()))
	dst = append(dst, `,"response":`...)
	dst, err := AppendResponse(dst, m.GetResponse())
	if err != nil {
		return dst, err
	}
	return append(dst, "}\n"...), nil
}

// WatchReason spells a watch reason as the REST mirror does: INITIAL, WEBHOOK, POLL.
func WatchReason(r creditv1.WatchCreditSessionsReason) string {
	return strings.TrimPrefix(r.String(), "WATCH_CREDIT_SESSIONS_REASON_")
}
