package plaidjson

import (
	"math"
	"strconv"
	"strings"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
)

// enumNames maps between an enum's proto value names and Plaid's spellings, which are
// the proto names without the enum's prefix. It is built from the generated descriptor,
// so a value added to the proto is known here without more code.
type enumNames struct {
	names []string // number → Plaid spelling; "" for the zero value
}

func newEnumNames(values map[string]int32, prefix string) enumNames {
	var e enumNames
	for name, n := range values {
		if n == 0 {
			continue // the _UNSPECIFIED value is ours, never Plaid's
		}
		spelling := strings.TrimPrefix(name, prefix)
		for int(n) >= len(e.names) {
			e.names = append(e.names, "")
		}
		e.names[n] = spelling
	}
	return e
}

// parse looks up Plaid's spelling s. An enum has a handful of values, and comparing s
// with each costs less than hashing it for a map.
func (e enumNames) parse(s []byte) (int32, bool) {
	for n, name := range e.names {
		if name != "" && name == string(s) {
			return int32(n), true
		}
	}
	return 0, false
}

// name returns Plaid's spelling of n, or "" when n has none.
func (e enumNames) name(n int32) string {
	if n > 0 && int(n) < len(e.names) {
		return e.names[n]
	}
	return ""
}

var (
	bankIncomeStatuses = newEnumNames(creditv1.CreditSessionBankIncomeStatus_value,
		"CREDIT_SESSION_BANK_INCOME_STATUS_")
	bankEmploymentStatuses = newEnumNames(creditv1.CreditSessionBankEmploymentStatus_value,
		"CREDIT_SESSION_BANK_EMPLOYMENT_STATUS_")
)

func parseFloat(text []byte) (float64, error) {
	f, err := strconv.ParseFloat(string(text), 64)
	if err != nil || math.IsInf(f, 0) {
		return 0, errValue("number out of range: " + string(text))
	}
	return f, nil
}
