package plaidjson

import (
	"strings"
	"time"
	"unicode/utf8"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"

	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// UnmarshalResponse decodes the body of a Plaid `/credit/sessions/get` success response
// into m, replacing what m held.
//
// It follows Plaid's schema rather than protojson's rules: null means absent; members
// unknown to the schema are skipped below the top level and kept in
// additional_properties at the top level; a status value the contract does not name is
// kept in unrecognized_status. A known member of the wrong type is a *FieldError and
// malformed JSON a *SyntaxError.
//
// m does not keep data, which the caller may reuse. The messages decoded into m are
// allocated together, in chunks (see alloc.go), so any one of them keeps the others'
// memory alive.
func UnmarshalResponse(data []byte, m *creditv1.CreditSessionsGetResponse) error {
	d := decoder{scanner: scanner{s: data}}
	d.startWith(new(firstChunks))
	m.Reset()
	if d.peek() != '{' {
		return d.typeError("an object")
	}
	d.pos++
	if err := d.response(m); err != nil {
		return err
	}
	return d.end()
}

var requestKeys = expectedKeys("user_token", "client_id", "secret")

// UnmarshalRequest decodes a `/credit/sessions/get` request body, as a Plaid client
// sends it, into m. Members the schema does not have are an *UnknownFieldsError, as
// they are for Plaid. A string that is not valid UTF-8 (raw or as an unpaired surrogate
// escape) is a *FieldError: it is never passed on, changed, to Plaid.
func UnmarshalRequest(data []byte, m *creditv1.CreditSessionsGetRequest) error {
	m.Reset()
	return unmarshalRequestObject(data, requestKeys, func(d *decoder, key string) (text string, known bool, err error) {
		switch key {
		case "user_token":
			m.UserToken, _, err = d.optString()
			return m.UserToken, true, err
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

// unmarshalRequestObject decodes a request body, a JSON object, as Plaid checks one:
// member reads the value of a member the schema has (returning the text it read, which
// must be valid UTF-8, and known) or reports it unknown, reading nothing. Unknown
// members are an *UnknownFieldsError, reported before a member of the wrong type or
// with text that is not UTF-8 (a *FieldError), as Plaid reports them.
func unmarshalRequestObject(data []byte, keys []string, member func(d *decoder, key string) (text string, known bool, err error)) error {
	d := decoder{scanner: scanner{s: data}}
	if d.peek() != '{' {
		return d.typeError("an object")
	}
	d.pos++
	var unknown []string
	var invalid error // the first known member of the wrong type
	obj := d.members(keys)
	for {
		key, more, err := obj.next()
		if err != nil {
			return err
		}
		if !more {
			break
		}
		text, known, err := member(&d, string(key))
		if !known {
			unknown = append(unknown, string(key))
			err = d.skip(0)
		}
		if err == nil {
			if bad := validText(text); bad != nil && invalid == nil {
				invalid = inField(string(key), bad) // read already: nothing to skip
			}
			continue
		}
		if _, syntax := err.(*SyntaxError); syntax {
			return err
		}
		// Keep reading: Plaid reports unknown members before wrongly typed ones.
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

// validText refuses a request string that held bytes that are not UTF-8, or an unpaired
// surrogate escape. Decoding turns either into U+FFFD, as encoding/json does, which is
// right for a response to be shown but wrong for a token: it would forward to Plaid a
// token other than the one the caller sent. No token, client id or secret holds U+FFFD.
func validText(s string) error {
	if strings.ContainsRune(s, utf8.RuneError) {
		return errValue("not valid UTF-8")
	}
	return nil
}

// decoder reads Plaid's JSON into messages it allocates from its slabs.
type decoder struct {
	scanner

	sessions        messages[creditv1.CreditSession]
	results         slab[creditv1.CreditSessionResults]
	itemAdds        messages[creditv1.CreditSessionItemAddResult]
	bankIncomes     messages[creditv1.CreditSessionBankIncomeResult]
	bankEmployments messages[creditv1.CreditSessionBankEmploymentResult]
	payrollIncomes  messages[creditv1.CreditSessionPayrollIncomeResult]
	documentIncomes slab[creditv1.CreditSessionDocumentIncomeResult]
	sessionErrors   messages[creditv1.CreditSessionError]
	timestamps      slab[timestamppb.Timestamp]

	// The oneof wrappers of statuses, named and unrecognized.
	bankIncomeNamed            slab[creditv1.CreditSessionBankIncomeResult_Status]
	bankIncomeUnrecognized     slab[creditv1.CreditSessionBankIncomeResult_UnrecognizedStatus]
	bankEmploymentNamed        slab[creditv1.CreditSessionBankEmploymentResult_Status]
	bankEmploymentUnrecognized slab[creditv1.CreditSessionBankEmploymentResult_UnrecognizedStatus]

	// What the proto3 optional scalars point to.
	optStrings slab[string]
	optInt32s  slab[int32]
}

// list decodes an array of objects (null means empty), each into a new message that
// elem fills.
func list[T any](d *decoder, pool *messages[T], elem func(*T) error) ([]*T, error) {
	switch d.peek() {
	case '[':
		d.pos++
	case 'n':
		if d.nullAt() {
			return nil, nil
		}
		fallthrough
	default:
		return nil, d.typeError("an array")
	}
	start := pool.beginList()
	for i := 0; ; i++ {
		more, err := d.element(i == 0)
		if err != nil || !more {
			return pool.endList(start), err
		}
		c := d.peek()
		if c == 'n' && d.nullAt() {
			return pool.endList(start), inElem(i, errValue("null is not a valid element"))
		}
		v := pool.new()
		start = pool.add(start, v)
		if c != '{' {
			return pool.endList(start), inElem(i, d.typeError("an object"))
		}
		d.pos++
		if err := elem(v); err != nil {
			return pool.endList(start), inElem(i, err)
		}
	}
}

// message decodes an object (null means absent) into a new message that fill fills.
func message[T any](d *decoder, pool *slab[T], fill func(*T) error) (*T, error) {
	c := d.peek()
	if c == 'n' && d.nullAt() {
		return nil, nil
	}
	v := pool.new()
	if c != '{' {
		return v, d.typeError("an object")
	}
	d.pos++
	return v, fill(v)
}

// The functions below each read the members of one message's object, whose '{' has
// been consumed, up to and including its '}'. Each object's keys are listed, for
// members to expect, in the order AppendResponse writes them, the proto's field order.

var responseKeys = expectedKeys("request_id", "sessions")

func (d *decoder) response(m *creditv1.CreditSessionsGetResponse) error {
	obj := d.members(responseKeys)
	for {
		key, more, err := obj.next()
		if err != nil || !more {
			return err
		}
		switch string(key) {
		case "request_id":
			m.RequestId, _, err = d.optString()
		case "sessions":
			m.Sessions, err = list(d, &d.sessions, d.session)
		default:
			var v *structpb.Value
			if v, err = d.value(0); err == nil {
				if m.AdditionalProperties == nil {
					m.AdditionalProperties = make(map[string]*structpb.Value)
				}
				m.AdditionalProperties[d.strings.copy(key)] = v
			}
		}
		if err != nil {
			return inField(string(key), err)
		}
	}
}

var sessionKeys = expectedKeys("link_session_id", "session_start_time", "results", "errors")

func (d *decoder) session(m *creditv1.CreditSession) error {
	obj := d.members(sessionKeys)
	for {
		key, more, err := obj.next()
		if err != nil || !more {
			return err
		}
		switch string(key) {
		case "link_session_id":
			m.LinkSessionId, err = d.strPtr()
		case "session_start_time":
			m.SessionStartTime, err = d.timestamp()
		case "results":
			m.Results, err = message(d, &d.results, d.sessionResults)
		case "errors":
			m.Errors, err = list(d, &d.sessionErrors, d.sessionError)
		default:
			err = d.skip(0)
		}
		if err != nil {
			return inField(string(key), err)
		}
	}
}

var resultsKeys = expectedKeys("item_add_results", "bank_income_results", "bank_employment_results", "payroll_income_results", "document_income_results")

func (d *decoder) sessionResults(m *creditv1.CreditSessionResults) error {
	obj := d.members(resultsKeys)
	for {
		key, more, err := obj.next()
		if err != nil || !more {
			return err
		}
		switch string(key) {
		case "item_add_results":
			m.ItemAddResults, err = list(d, &d.itemAdds, d.itemAdd)
		case "bank_income_results":
			m.BankIncomeResults, err = list(d, &d.bankIncomes, d.bankIncome)
		case "bank_employment_results":
			m.BankEmploymentResults, err = list(d, &d.bankEmployments, d.bankEmployment)
		case "payroll_income_results":
			m.PayrollIncomeResults, err = list(d, &d.payrollIncomes, d.payrollIncome)
		case "document_income_results":
			m.DocumentIncomeResults, err = message(d, &d.documentIncomes, d.documentIncome)
		default:
			err = d.skip(0)
		}
		if err != nil {
			return inField(string(key), err)
		}
	}
}

var itemAddKeys = expectedKeys("public_token", "item_id", "institution_id")

func (d *decoder) itemAdd(m *creditv1.CreditSessionItemAddResult) error {
	obj := d.members(itemAddKeys)
	for {
		key, more, err := obj.next()
		if err != nil || !more {
			return err
		}
		switch string(key) {
		case "public_token":
			m.PublicToken, err = d.strPtr()
		case "item_id":
			m.ItemId, err = d.strPtr()
		case "institution_id":
			m.InstitutionId, err = d.strPtr()
		default:
			err = d.skip(0)
		}
		if err != nil {
			return inField(string(key), err)
		}
	}
}

var bankResultKeys = expectedKeys("status", "item_id", "institution_id")

func (d *decoder) bankIncome(m *creditv1.CreditSessionBankIncomeResult) error {
	obj := d.members(bankResultKeys)
	for {
		key, more, err := obj.next()
		if err != nil || !more {
			return err
		}
		switch string(key) {
		case "status":
			var v []byte
			var ok bool
			if v, ok, err = d.optText(); ok {
				if s, known := bankIncomeStatuses.parse(v); known {
					w := d.bankIncomeNamed.new()
					w.Status = creditv1.CreditSessionBankIncomeStatus(s)
					m.StatusValue = w
				} else {
					w := d.bankIncomeUnrecognized.new()
					w.UnrecognizedStatus = d.strings.copy(v)
					m.StatusValue = w
				}
			}
		case "item_id":
			m.ItemId, err = d.strPtr()
		case "institution_id":
			m.InstitutionId, err = d.strPtr()
		default:
			err = d.skip(0)
		}
		if err != nil {
			return inField(string(key), err)
		}
	}
}

func (d *decoder) bankEmployment(m *creditv1.CreditSessionBankEmploymentResult) error {
	obj := d.members(bankResultKeys)
	for {
		key, more, err := obj.next()
		if err != nil || !more {
			return err
		}
		switch string(key) {
		case "status":
			var v []byte
			var ok bool
			if v, ok, err = d.optText(); ok {
				if s, known := bankEmploymentStatuses.parse(v); known {
					w := d.bankEmploymentNamed.new()
					w.Status = creditv1.CreditSessionBankEmploymentStatus(s)
					m.StatusValue = w
				} else {
					w := d.bankEmploymentUnrecognized.new()
					w.UnrecognizedStatus = d.strings.copy(v)
					m.StatusValue = w
				}
			}
		case "item_id":
			m.ItemId, err = d.strPtr()
		case "institution_id":
			m.InstitutionId, err = d.strPtr()
		default:
			err = d.skip(0)
		}
		if err != nil {
			return inField(string(key), err)
		}
	}
}

var payrollIncomeKeys = expectedKeys("num_paystubs_retrieved", "num_w2s_retrieved", "institution_id", "institution_name")

func (d *decoder) payrollIncome(m *creditv1.CreditSessionPayrollIncomeResult) error {
	obj := d.members(payrollIncomeKeys)
	for {
		key, more, err := obj.next()
		if err != nil || !more {
			return err
		}
		switch string(key) {
		case "num_paystubs_retrieved":
			m.NumPaystubsRetrieved, err = d.int32Ptr()
		case "num_w2s_retrieved":
			m.NumW2SRetrieved, err = d.int32Ptr()
		case "institution_id":
			m.InstitutionId, err = d.strPtr()
		case "institution_name":
			m.InstitutionName, err = d.strPtr()
		default:
			err = d.skip(0)
		}
		if err != nil {
			return inField(string(key), err)
		}
	}
}

var documentIncomeKeys = expectedKeys("num_paystubs_uploaded", "num_w2s_uploaded", "num_bank_statements_uploaded", "num_1099s_uploaded")

func (d *decoder) documentIncome(m *creditv1.CreditSessionDocumentIncomeResult) error {
	obj := d.members(documentIncomeKeys)
	for {
		key, more, err := obj.next()
		if err != nil || !more {
			return err
		}
		switch string(key) {
		case "num_paystubs_uploaded":
			m.NumPaystubsUploaded, err = d.int32Ptr()
		case "num_w2s_uploaded":
			m.NumW2SUploaded, err = d.int32Ptr()
		case "num_bank_statements_uploaded":
			m.NumBankStatementsUploaded, err = d.int32Ptr()
		case "num_1099s_uploaded":
			m.Num_1099SUploaded, err = d.int32Ptr()
		default:
			err = d.skip(0)
		}
		if err != nil {
			return inField(string(key), err)
		}
	}
}

var sessionErrorKeys = expectedKeys("error_type", "error_code", "error_message", "display_message")

func (d *decoder) sessionError(m *creditv1.CreditSessionError) error {
	obj := d.members(sessionErrorKeys)
	for {
		key, more, err := obj.next()
		if err != nil || !more {
			return err
		}
		switch string(key) {
		case "error_type":
			m.ErrorType, err = d.strPtr()
		case "error_code":
			m.ErrorCode, err = d.strPtr()
		case "error_message":
			m.ErrorMessage, err = d.strPtr()
		case "display_message":
			m.DisplayMessage, err = d.strPtr()
		default:
			err = d.skip(0)
		}
		if err != nil {
			return inField(string(key), err)
		}
	}
}

// optText reads a string without keeping it (see text); null means absent, ok == false.
func (d *decoder) optText() (v []byte, ok bool, err error) {
	switch d.peek() {
	case '"':
		// quoted's fast path, repeated to save a call for nearly every value.
		start := d.pos + 1
		if i := skipPlainASCII(d.s, start); i < len(d.s) && d.s[i] == '"' {
			d.pos = i + 1
			return d.s[start:i], true, nil
		}
		v, err = d.quoted()
		return v, err == nil, err
	case 'n':
		if d.nullAt() {
			return nil, false, nil
		}
	}
	return nil, false, d.typeError("string")
}

// optString decodes a string; null means absent, ok == false.
func (d *decoder) optString() (v string, ok bool, err error) {
	text, ok, err := d.optText()
	if !ok {
		return "", false, err
	}
	return d.strings.copy(text), true, nil
}

// strPtr decodes a string; null means absent, a nil pointer.
func (d *decoder) strPtr() (*string, error) {
	text, ok, err := d.optText()
	if !ok {
		return nil, err
	}
	return d.optStrings.ptr(d.strings.copy(text)), nil
}

// int32Ptr decodes a count; null means absent, a nil pointer.
func (d *decoder) int32Ptr() (*int32, error) {
	if d.peek() == 'n' && d.nullAt() {
		return nil, nil
	}
	v, err := d.int32()
	if err != nil {
		return nil, err
	}
	return d.optInt32s.ptr(v), nil
}

// timestamp decodes an RFC 3339 date-time; null means absent.
func (d *decoder) timestamp() (*timestamppb.Timestamp, error) {
	v, ok, err := d.optText()
	if !ok {
		return nil, err
	}
	secs, nanos, ok := parseRFC3339UTC(v)
	if !ok { // not the form Plaid sends: time.Parse decides
		text := string(v)
		t, err := time.Parse(time.RFC3339Nano, text)
		if err != nil {
			return nil, errValue("not an RFC 3339 date-time: " + quoteShort(text))
		}
		secs, nanos = t.Unix(), int32(t.Nanosecond())
		if err := (&timestamppb.Timestamp{Seconds: secs, Nanos: nanos}).CheckValid(); err != nil {
			return nil, errValue("date-time out of range: " + quoteShort(text))
		}
	}
	ts := d.timestamps.new()
	ts.Seconds, ts.Nanos = secs, nanos
	return ts, nil
}

// value decodes any JSON value into a structpb.Value, for members the schema does not
// name. Numbers become float64, as in protojson and JavaScript. Such members are rare,
// so value allocates as structpb's constructors do.
func (d *decoder) value(depth int) (*structpb.Value, error) {
	if depth > maxDepth {
		return nil, d.syntaxError("nested too deeply")
	}
	switch c := d.peek(); {
	case c == '{':
		d.pos++
		fields := map[string]*structpb.Value{}
		obj := d.members(nil)
		for {
			key, more, err := obj.next()
			if err == nil && more {
				var v *structpb.Value
				v, err = d.value(depth + 1)
				fields[d.strings.copy(key)] = v
			}
			if err != nil || !more {
				return structpb.NewStructValue(&structpb.Struct{Fields: fields}), err
			}
		}
	case c == '[':
		d.pos++
		var values []*structpb.Value
		for first := true; ; first = false {
			more, err := d.element(first)
			if err == nil && more {
				var v *structpb.Value
				v, err = d.value(depth + 1)
				values = append(values, v)
			}
			if err != nil || !more {
				return structpb.NewListValue(&structpb.ListValue{Values: values}), err
			}
		}
	case c == '"':
		s, err := d.str()
		return structpb.NewStringValue(s), err
	case c == '-' || isDigit(c):
		text, err := d.number()
		if err != nil {
			return nil, err
		}
		f, err := parseFloat(text)
		return structpb.NewNumberValue(f), err
	default:
		lit, err := d.literal()
		switch lit {
		case "true":
			return structpb.NewBoolValue(true), err
		case "false":
			return structpb.NewBoolValue(false), err
		default:
			return structpb.NewNullValue(), err
		}
	}
}

func quoteShort(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return `"` + s + `"`
}
