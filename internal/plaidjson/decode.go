package plaidjson

import (
	"time"

	creditv1 "creditsessions/gen/plaid/credit/v1"

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
func UnmarshalResponse(data []byte, m *creditv1.CreditSessionsGetResponse) error {
	d := decoder{scanner: scanner{s: string(data)}}
	m.Reset()
	if d.peek() != '{' {
		return d.typeError("an object")
	}
	if err := d.response(m); err != nil {
		return err
	}
	return d.end()
}

// UnmarshalRequest decodes a `/credit/sessions/get` request body, as a Plaid client
// sends it, into m. Members the schema does not have are an *UnknownFieldsError, as
// they are for Plaid.
func UnmarshalRequest(data []byte, m *creditv1.CreditSessionsGetRequest) error {
	d := decoder{scanner: scanner{s: string(data)}}
	m.Reset()
	if d.peek() != '{' {
		return d.typeError("an object")
	}
	var unknown []string
	var invalid error // the first known member of the wrong type
	known := func(key string, err error) error {
		if err == nil {
			return nil
		}
		if _, syntax := err.(*SyntaxError); syntax {
			return err
		}
		// Keep reading: Plaid reports unknown members before wrongly typed ones.
		if invalid == nil {
			invalid = inField(key, err)
		}
		return d.skip(0)
	}
	err := d.object(func(key string) error {
		switch key {
		case "user_token":
			v, err := d.optString()
			m.UserToken = v.get()
			return known(key, err)
		case "client_id":
			v, err := d.optString()
			m.ClientId = v.ptr()
			return known(key, err)
		case "secret":
			v, err := d.optString()
			m.Secret = v.ptr()
			return known(key, err)
		default:
			unknown = append(unknown, key)
			return d.skip(0)
		}
	})
	if err != nil {
		return err
	}
	if err := d.end(); err != nil {
		return err
	}
	if len(unknown) > 0 {
		return &UnknownFieldsError{Fields: unknown}
	}
	return invalid
}

type decoder struct {
	scanner
}

// optional is a decoded scalar and whether it was present (not absent, not null).
type optional[T any] struct {
	v  T
	ok bool
}

func (o optional[T]) get() T { return o.v }

func (o optional[T]) ptr() *T {
	if !o.ok {
		return nil
	}
	v := o.v
	return &v
}

func (d *decoder) optString() (optional[string], error) {
	if d.null() {
		return optional[string]{}, nil
	}
	v, err := d.str()
	return optional[string]{v, err == nil}, err
}

func (d *decoder) optInt32() (optional[int32], error) {
	if d.null() {
		return optional[int32]{}, nil
	}
	v, err := d.int32()
	return optional[int32]{v, err == nil}, err
}

// list decodes an array (null means empty) by calling elem for each element.
func list[T any](d *decoder, elem func(*T) error) ([]*T, error) {
	if d.null() {
		return nil, nil
	}
	if d.peek() != '[' {
		return nil, d.typeError("an array")
	}
	var out []*T
	err := d.array(func(i int) error {
		if d.null() {
			return inElem(i, errValue("null is not a valid element"))
		}
		v := new(T)
		out = append(out, v)
		return inElem(i, elem(v))
	})
	return out, err
}

// message decodes an object (null means absent) by calling member for each member.
func message[T any](d *decoder, member func(m *T, key string) error) (*T, error) {
	if d.null() {
		return nil, nil
	}
	v := new(T)
	return v, d.obj(func(key string) error { return member(v, key) })
}

// obj is object with a type check first, so a wrong type is a FieldError.
func (d *decoder) obj(member func(key string) error) error {
	if d.peek() != '{' {
		return d.typeError("an object")
	}
	return d.object(member)
}

func (d *decoder) response(m *creditv1.CreditSessionsGetResponse) error {
	return d.object(func(key string) error {
		var err error
		switch key {
		case "request_id":
			var v optional[string]
			v, err = d.optString()
			m.RequestId = v.get()
		case "sessions":
			m.Sessions, err = list(d, d.session)
		default:
			var v *structpb.Value
			if v, err = d.value(0); err == nil {
				if m.AdditionalProperties == nil {
					m.AdditionalProperties = make(map[string]*structpb.Value)
				}
				m.AdditionalProperties[key] = v
			}
		}
		return inField(key, err)
	})
}

func (d *decoder) session(m *creditv1.CreditSession) error {
	return d.obj(func(key string) error {
		var err error
		switch key {
		case "link_session_id":
			var v optional[string]
			v, err = d.optString()
			m.LinkSessionId = v.ptr()
		case "session_start_time":
			m.SessionStartTime, err = d.timestamp()
		case "results":
			m.Results, err = message(d, d.results)
		case "errors":
			m.Errors, err = list(d, d.sessionError)
		default:
			err = d.skip(0)
		}
		return inField(key, err)
	})
}

func (d *decoder) results(m *creditv1.CreditSessionResults, key string) error {
	var err error
	switch key {
	case "item_add_results":
		m.ItemAddResults, err = list(d, d.itemAdd)
	case "bank_income_results":
		m.BankIncomeResults, err = list(d, d.bankIncome)
	case "bank_employment_results":
		m.BankEmploymentResults, err = list(d, d.bankEmployment)
	case "payroll_income_results":
		m.PayrollIncomeResults, err = list(d, d.payrollIncome)
	case "document_income_results":
		m.DocumentIncomeResults, err = message(d, d.documentIncome)
	default:
		err = d.skip(0)
	}
	return inField(key, err)
}

func (d *decoder) itemAdd(m *creditv1.CreditSessionItemAddResult) error {
	return d.obj(func(key string) error {
		var err error
		switch key {
		case "public_token":
			m.PublicToken, err = d.strPtr()
		case "item_id":
			m.ItemId, err = d.strPtr()
		case "institution_id":
			m.InstitutionId, err = d.strPtr()
		default:
			err = d.skip(0)
		}
		return inField(key, err)
	})
}

func (d *decoder) bankIncome(m *creditv1.CreditSessionBankIncomeResult) error {
	return d.obj(func(key string) error {
		var err error
		switch key {
		case "status":
			var v optional[string]
			if v, err = d.optString(); v.ok {
				if s, known := bankIncomeStatuses.parse(v.v); known {
					m.StatusValue = &creditv1.CreditSessionBankIncomeResult_Status{Status: creditv1.CreditSessionBankIncomeStatus(s)}
				} else {
					m.StatusValue = &creditv1.CreditSessionBankIncomeResult_UnrecognizedStatus{UnrecognizedStatus: v.v}
				}
			}
		case "item_id":
			m.ItemId, err = d.strPtr()
		case "institution_id":
			m.InstitutionId, err = d.strPtr()
		default:
			err = d.skip(0)
		}
		return inField(key, err)
	})
}

func (d *decoder) bankEmployment(m *creditv1.CreditSessionBankEmploymentResult) error {
	return d.obj(func(key string) error {
		var err error
		switch key {
		case "status":
			var v optional[string]
			if v, err = d.optString(); v.ok {
				if s, known := bankEmploymentStatuses.parse(v.v); known {
					m.StatusValue = &creditv1.CreditSessionBankEmploymentResult_Status{Status: creditv1.CreditSessionBankEmploymentStatus(s)}
				} else {
					m.StatusValue = &creditv1.CreditSessionBankEmploymentResult_UnrecognizedStatus{UnrecognizedStatus: v.v}
				}
			}
		case "item_id":
			m.ItemId, err = d.strPtr()
		case "institution_id":
			m.InstitutionId, err = d.strPtr()
		default:
			err = d.skip(0)
		}
		return inField(key, err)
	})
}

func (d *decoder) payrollIncome(m *creditv1.CreditSessionPayrollIncomeResult) error {
	return d.obj(func(key string) error {
		var err error
		switch key {
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
		return inField(key, err)
	})
}

func (d *decoder) documentIncome(m *creditv1.CreditSessionDocumentIncomeResult, key string) error {
	var err error
	switch key {
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
	return inField(key, err)
}

func (d *decoder) sessionError(m *creditv1.CreditSessionError) error {
	return d.obj(func(key string) error {
		var err error
		switch key {
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
		return inField(key, err)
	})
}

func (d *decoder) strPtr() (*string, error) {
	v, err := d.optString()
	return v.ptr(), err
}

func (d *decoder) int32Ptr() (*int32, error) {
	v, err := d.optInt32()
	return v.ptr(), err
}

// timestamp decodes an RFC 3339 date-time; null means absent.
func (d *decoder) timestamp() (*timestamppb.Timestamp, error) {
	v, err := d.optString()
	if err != nil || !v.ok {
		return nil, err
	}
	t, err := time.Parse(time.RFC3339Nano, v.v)
	if err != nil {
		return nil, errValue("not an RFC 3339 date-time: " + quoteShort(v.v))
	}
	ts := timestamppb.New(t)
	if err := ts.CheckValid(); err != nil {
		return nil, errValue("date-time out of range: " + quoteShort(v.v))
	}
	return ts, nil
}

// value decodes any JSON value into a structpb.Value, for members the schema does not
// name. Numbers become float64, as in protojson and JavaScript.
func (d *decoder) value(depth int) (*structpb.Value, error) {
	if depth > maxDepth {
		return nil, d.syntaxError("nested too deeply")
	}
	switch c := d.peek(); {
	case c == '{':
		fields := map[string]*structpb.Value{}
		err := d.object(func(key string) error {
			v, err := d.value(depth + 1)
			fields[key] = v
			return err
		})
		return structpb.NewStructValue(&structpb.Struct{Fields: fields}), err
	case c == '[':
		var values []*structpb.Value
		err := d.array(func(int) error {
			v, err := d.value(depth + 1)
			values = append(values, v)
			return err
		})
		return structpb.NewListValue(&structpb.ListValue{Values: values}), err
	case c == '"':
		s, err := d.str()
		return structpb.NewStringValue(s), err
	case c == '-' || ('0' <= c && c <= '9'):
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
