package plaidjson

import (
	"strings"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
)

var watchRequestKeys = expectedKeys("user_token", "user_id", "client_id", "secret")

// UnmarshalWatchRequest decodes the body of `POST /credit/sessions/watch` into m, with
// the same checks and errors as UnmarshalRequest.
func UnmarshalWatchRequest(data []byte, m *creditv1.WatchCreditSessionsRequest) error {
	m.Reset()
	return unmarshalRequestObject(data, watchRequestKeys, func(d *decoder, key string) (text string, known bool, err error) {
		switch key {
		case "user_token":
			m.UserToken, _, err = d.optString()
			return m.UserToken, true, err
		case "user_id":
			m.UserId, err = d.strPtr()
			return m.GetUserId(), true, err
		case "client_id":
			m.ClientId, err = d.strPtr()
			return m.GetClientId(), true, err
		case "secret":
			m.Secret, err = d.strPtr()
			return m.GetSecret(), true, err
		}
		return "", false, nil
	})
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
