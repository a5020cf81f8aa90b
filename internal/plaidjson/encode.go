package plaidjson

import (
	"errors"
	"io"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"

	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// AppendResponse appends m to dst as Plaid's JSON: snake_case members, statuses spelled
// as Plaid spells them (an unrecognized_status under `status`), RFC 3339 timestamps,
// counts as numbers, additional_properties inline after the known members. Unset
// optional fields are left out and a set one is written even when it is 0 or "".
func AppendResponse(dst []byte, m *creditv1.CreditSessionsGetResponse) ([]byte, error) {
	// Grow dst once, by about what m takes, rather than by doubling as it fills: a
	// large response would otherwise be copied about twice over on the way.
	e := encoder{b: slices.Grow(dst, 64+sessionSizeEstimate*len(m.GetSessions()))}
	e.response(m)
	return e.b, e.err
}

// sessionSizeEstimate is about what a session with one item and one income result
// takes, identifiers as long as Plaid's included.
const sessionSizeEstimate = 448

// WriteResponse writes m to w as AppendResponse encodes it, a chunk of at least
// chunkSize bytes at a time, with buf as the chunk's scratch
// space; it returns the buffer, grown as needed, for reuse. A large answer thus never
// exists whole in memory. An error from w or from encoding stops it; written says how
// many bytes reached w before, so that a caller can tell a clean failure (none) from an
// answer cut short.
func WriteResponse(w io.Writer, m *creditv1.CreditSessionsGetResponse, buf []byte, chunkSize int) (_ []byte, written int64, err error) {
	e := encoder{b: buf[:0], w: w, chunk: chunkSize}
	e.response(m)
	e.flush()
	return e.b[:0], e.written, e.err
}

// AppendRequest appends m to dst as the JSON body Plaid expects.
func AppendRequest(dst []byte, m *creditv1.CreditSessionsGetRequest) []byte {
	e := encoder{b: dst}
	e.b = append(e.b, '{')
	e.str("user_token", m.GetUserToken(), true)
	e.optStr("client_id", m.ClientId)
	e.optStr("secret", m.Secret)
	e.b = append(e.b, '}')
	return e.b
}

type encoder struct {
	b     []byte
	comma bool // whether the object being written has a member already
	err   error

	// For WriteResponse: b goes to w whenever it holds chunk bytes, between sessions.
	w       io.Writer
	chunk   int
	written int64
}

// flush writes what b holds to w, if there is a w and nothing failed.
func (e *encoder) flush() {
	if e.w == nil || e.err != nil || len(e.b) == 0 {
		return
	}
	n, err := e.w.Write(e.b)
	e.written += int64(n)
	e.fail(err)
	e.b = e.b[:0]
}

// key writes the key of a member the schema names. Those keys are plain ASCII, with
// nothing to escape, so they are copied as they are.
func (e *encoder) key(k string) {
	if e.comma {
		e.b = append(e.b, ',')
	}
	e.comma = true
	e.b = append(e.b, '"')
	e.b = append(e.b, k...)
	e.b = append(e.b, '"', ':')
}

// anyKey writes the key of an additional property, which may need escaping.
func (e *encoder) anyKey(k string) {
	if e.comma {
		e.b = append(e.b, ',')
	}
	e.comma = true
	e.b = appendString(e.b, k)
	e.b = append(e.b, ':')
}

// open starts a nested object or array; close ends it. A nested value always follows a
// key, so after close the enclosing object has a member.
func (e *encoder) open(c byte) {
	e.b = append(e.b, c)
	e.comma = false
}

func (e *encoder) close(c byte) {
	e.b = append(e.b, c)
	e.comma = true
}

func (e *encoder) str(k, v string, always bool) {
	if always || v != "" {
		e.key(k)
		e.b = appendString(e.b, v)
	}
}

func (e *encoder) optStr(k string, v *string) {
	if v != nil {
		e.key(k)
		e.b = appendString(e.b, *v)
	}
}

func (e *encoder) optInt32(k string, v *int32) {
	if v != nil {
		e.key(k)
		e.b = strconv.AppendInt(e.b, int64(*v), 10)
	}
}

// elems writes a non-empty repeated field as an array, one object per element.
func elems[T any](e *encoder, k string, list []*T, elem func(*T)) {
	if len(list) == 0 {
		return
	}
	e.key(k)
	e.b = append(e.b, '[')
	for i, v := range list {
		if i > 0 {
			e.b = append(e.b, ',')
		}
		if v == nil {
			v = new(T) // a nil element is an empty message, as proto.Marshal and protojson treat it
		}
		e.open('{')
		elem(v)
		e.close('}')
	}
	e.close(']')
}

func (e *encoder) response(m *creditv1.CreditSessionsGetResponse) {
	e.open('{')
	// request_id is required by Plaid's schema, so it is written even when empty.
	e.str("request_id", m.GetRequestId(), true)
	// Plaid always sends sessions, [] for a user with none, and callers index it
	// without a check; an empty list means the same as an absent one, so it is
	// always written.
	if len(m.GetSessions()) == 0 {
		e.key("sessions")
		e.b = append(e.b, "[]"...)
	}
	elems(e, "sessions", m.GetSessions(), func(s *creditv1.CreditSession) {
		e.session(s)
		if e.w != nil && len(e.b) >= e.chunk {
			e.flush()
		}
	})
	if extra := m.GetAdditionalProperties(); len(extra) > 0 {
		keys := make([]string, 0, len(extra))
		for k := range extra {
			if k != "request_id" && k != "sessions" { // never shadow a known member
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			e.anyKey(k)
			e.value(extra[k], 0)
		}
	}
	e.close('}')
}

func (e *encoder) session(m *creditv1.CreditSession) {
	e.optStr("link_session_id", m.LinkSessionId)
	if m.SessionStartTime != nil {
		e.key("session_start_time")
		e.timestamp(m.SessionStartTime)
	}
	if m.Results != nil {
		e.key("results")
		e.open('{')
		e.results(m.Results)
		e.close('}')
	}
	elems(e, "errors", m.Errors, e.sessionError)
}

func (e *encoder) results(m *creditv1.CreditSessionResults) {
	elems(e, "item_add_results", m.ItemAddResults, e.itemAdd)
	elems(e, "bank_income_results", m.BankIncomeResults, e.bankIncome)
	elems(e, "bank_employment_results", m.BankEmploymentResults, e.bankEmployment)
	elems(e, "payroll_income_results", m.PayrollIncomeResults, e.payrollIncome)
	if r := m.DocumentIncomeResults; r != nil {
		e.key("document_income_results")
		e.open('{')
		e.optInt32("num_paystubs_uploaded", r.NumPaystubsUploaded)
		e.optInt32("num_w2s_uploaded", r.NumW2SUploaded)
		e.optInt32("num_bank_statements_uploaded", r.NumBankStatementsUploaded)
		e.optInt32("num_1099s_uploaded", r.Num_1099SUploaded)
		e.close('}')
	}
}

func (e *encoder) itemAdd(r *creditv1.CreditSessionItemAddResult) {
	e.optStr("public_token", r.PublicToken)
	e.optStr("item_id", r.ItemId)
	e.optStr("institution_id", r.InstitutionId)
}

func (e *encoder) bankIncome(r *creditv1.CreditSessionBankIncomeResult) {
	switch s := r.StatusValue.(type) {
	case *creditv1.CreditSessionBankIncomeResult_Status:
		e.status(bankIncomeStatuses, int32(s.Status))
	case *creditv1.CreditSessionBankIncomeResult_UnrecognizedStatus:
		e.str("status", s.UnrecognizedStatus, true)
	}
	e.optStr("item_id", r.ItemId)
	e.optStr("institution_id", r.InstitutionId)
}

func (e *encoder) bankEmployment(r *creditv1.CreditSessionBankEmploymentResult) {
	switch s := r.StatusValue.(type) {
	case *creditv1.CreditSessionBankEmploymentResult_Status:
		e.status(bankEmploymentStatuses, int32(s.Status))
	case *creditv1.CreditSessionBankEmploymentResult_UnrecognizedStatus:
		e.str("status", s.UnrecognizedStatus, true)
	}
	e.optStr("item_id", r.ItemId)
	e.optStr("institution_id", r.InstitutionId)
}

func (e *encoder) payrollIncome(r *creditv1.CreditSessionPayrollIncomeResult) {
	e.optInt32("num_paystubs_retrieved", r.NumPaystubsRetrieved)
	e.optInt32("num_w2s_retrieved", r.NumW2SRetrieved)
	e.optStr("institution_id", r.InstitutionId)
	e.optStr("institution_name", r.InstitutionName)
}

func (e *encoder) sessionError(m *creditv1.CreditSessionError) {
	e.optStr("error_type", m.ErrorType)
	e.optStr("error_code", m.ErrorCode)
	e.optStr("error_message", m.ErrorMessage)
	e.optStr("display_message", m.DisplayMessage)
}

// status writes a named status. The zero value, or a number the contract does not name
// (a newer peer's), has no Plaid spelling: that is an error, not a silent drop.
func (e *encoder) status(names enumNames, n int32) {
	name := names.name(n)
	if name == "" {
		e.fail(errors.New("status " + strconv.Itoa(int(n)) + " has no Plaid name"))
		return
	}
	e.str("status", name, true)
}

func (e *encoder) fail(err error) {
	if e.err == nil {
		e.err = err
	}
}

// timestamp writes t in RFC 3339 with 0, 3, 6 or 9 fractional digits, as protojson does;
// Plaid's microsecond timestamps come back as they were sent.
func (e *encoder) timestamp(t *timestamppb.Timestamp) {
	if err := t.CheckValid(); err != nil {
		e.fail(err)
		return
	}
	e.b = append(e.b, '"')
	e.b = appendRFC3339UTC(e.b, t.Seconds, t.Nanos)
	e.b = append(e.b, '"')
}

// value writes a structpb.Value as plain JSON.
func (e *encoder) value(v *structpb.Value, depth int) {
	if depth > maxDepth {
		e.fail(errors.New("additional property nested too deeply"))
		return
	}
	switch k := v.GetKind().(type) {
	case *structpb.Value_StringValue:
		e.b = appendString(e.b, k.StringValue)
	case *structpb.Value_NumberValue:
		f := k.NumberValue
		if math.IsNaN(f) || math.IsInf(f, 0) {
			e.fail(errors.New("additional property holds a number JSON cannot carry"))
			return
		}
		e.b = appendFloat(e.b, f)
	case *structpb.Value_BoolValue:
		e.b = strconv.AppendBool(e.b, k.BoolValue)
	case *structpb.Value_StructValue:
		fields := k.StructValue.GetFields()
		keys := make([]string, 0, len(fields))
		for key := range fields {
			keys = append(keys, key)
		}
		slices.Sort(keys)
		e.open('{')
		for _, key := range keys {
			e.anyKey(key)
			e.value(fields[key], depth+1)
		}
		e.close('}')
	case *structpb.Value_ListValue:
		e.b = append(e.b, '[')
		for i, item := range k.ListValue.GetValues() {
			if i > 0 {
				e.b = append(e.b, ',')
			}
			e.value(item, depth+1)
		}
		e.close(']')
	default: // null, or no kind at all
		e.b = append(e.b, "null"...)
	}
}

// appendFloat formats f as encoding/json does: integers without a fraction, very large
// and very small magnitudes with an exponent.
func appendFloat(b []byte, f float64) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

const hexDigits = "0123456789abcdef"

// AppendString appends s to b as a JSON string, as the codec writes strings: for other
// hand-written JSON encoders of the service (the audit trail's).
func AppendString(b []byte, s string) []byte { return appendString(b, s) }

// appendString writes s as a JSON string. Only what JSON requires is escaped, plus
// U+2028 and U+2029 for JavaScript; invalid UTF-8 becomes U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	// Identifiers and most text are plain ASCII, with nothing to escape: find where
	// that ends a word at a time, and copy that much in one go.
	i := skipPlainASCIIString(s, 0)
	if i == len(s) {
		b = append(b, s...)
		return append(b, '"')
	}
	start := 0
	for i < len(s) {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
