package emulator

import (
	"fmt"
	"sync"
	"time"
)

// generatedTokenPrefix followed by N in decimal names a user with N generated sessions.
const generatedTokenPrefix = "user-sandbox-sessions-"

// maxGeneratedSessions is the largest N a user-sandbox-sessions-N token may ask for.
const maxGeneratedSessions = 20000

// generatedSessions holds every generated session once, comma-separated, newest first.
// The answer for N sessions is the prefix ending at ends[N], so each N is served from the
// same bytes with nothing built per request.
type generatedSessions struct {
	joined []byte
	ends   []int // ends[n] is the length of the first n sessions in joined
}

var generated = sync.OnceValue(func() generatedSessions {
	g := generatedSessions{
		joined: make([]byte, 0, maxGeneratedSessions*320),
		ends:   make([]int, 1, maxGeneratedSessions+1),
	}
	for i := range maxGeneratedSessions {
		if i > 0 {
			g.joined = append(g.joined, ',')
		}
		g.joined = appendGeneratedSession(g.joined, i)
		g.ends = append(g.ends, len(g.joined))
	}
	return g
})

var (
	generatedOpen  = []byte("{")
	sessionsOpen   = []byte(`"sessions":[`)
	sessionsClosed = []byte("]}")
)

// generatedBody is the answer for user-sandbox-sessions-n.
func generatedBody(n int) successBody {
	g := generated()
	return successBody{
		open: generatedOpen,
		rest: [][]byte{sessionsOpen, g.joined[:g.ends[n]], sessionsClosed},
	}
}

// generatedNewest is the start time of session 0; each later session starts earlier.
var generatedNewest = time.Date(2025, time.June, 30, 23, 40, 30, 946225000, time.UTC)

var (
	generatedInstitutions = []string{"ins_56", "ins_92", "ins_109508", "ins_115", "ins_127989", "ins_3", "ins_13"}
	payrollProviders      = []string{"ADP", "Gusto", "Paychex", "Workday", "Rippling"}
	bankIncomeStatuses    = []string{"APPROVED", "APPROVED", "NO_DEPOSITS_FOUND", "APPROVED", "USER_REPORTED_NO_INCOME", "STARTED", "APPROVED", "INTERNAL_ERROR"}
)

// appendGeneratedSession appends session i, about 300 bytes of compact JSON. The same i
// always gives the same bytes. Sessions cycle through three shapes: an item add with bank
// income, a payroll income, and a document income.
func appendGeneratedSession(b []byte, i int) []byte {
	rng := splitMix64(uint64(i) + 0x9e3779b97f4a7c15)
	// 97 minutes apart, less up to a second of jitter: strictly newest first.
	start := generatedNewest.Add(-time.Duration(i) * 97 * time.Minute).
		Add(-time.Duration(rng.next()%1_000_000) * time.Microsecond)
	institution := generatedInstitutions[rng.next()%uint64(len(generatedInstitutions))]

	b = fmt.Appendf(b, `{"link_session_id":"%s","session_start_time":"%s","results":{`,
		rng.uuid(), start.Format("2006-01-02T15:04:05.000000Z07:00"))
	switch i % 3 {
	case 0:
		itemID := rng.base62(37)
		b = fmt.Appendf(b,
			`"item_add_results":[{"public_token":"public-sandbox-%s","item_id":"%s","institution_id":"%s"}],`+
				`"bank_income_results":[{"status":"%s","item_id":"%s","institution_id":"%s"}]`,
			rng.uuid(), itemID, institution,
			bankIncomeStatuses[rng.next()%uint64(len(bankIncomeStatuses))], itemID, institution)
	case 1:
		b = fmt.Appendf(b,
			`"payroll_income_results":[{"num_paystubs_retrieved":%d,"num_w2s_retrieved":%d,"institution_id":"%s","institution_name":"%s"}]`,
			1+rng.next()%6, rng.next()%3, institution, payrollProviders[rng.next()%uint64(len(payrollProviders))])
	default:
		b = fmt.Appendf(b,
			`"document_income_results":{"num_paystubs_uploaded":%d,"num_w2s_uploaded":%d,"num_bank_statements_uploaded":%d,"num_1099s_uploaded":%d}`,
			rng.next()%4, rng.next()%3, rng.next()%4, rng.next()%2)
	}
	return append(b, "}}"...)
}

// splitMix64 is a tiny deterministic generator, so generated sessions are the same in
// every run and every version of Go.
type splitMix64 uint64

func (s *splitMix64) next() uint64 {
	*s += 0x9e3779b97f4a7c15
	z := uint64(*s)
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// uuid returns a version 4 shaped UUID.
func (s *splitMix64) uuid() string {
	hi, lo := s.next(), s.next()
	return fmt.Sprintf("%08x-%04x-4%03x-%04x-%012x",
		hi>>32, (hi>>16)&0xffff, hi&0xfff, 0x8000|(lo>>48)&0x3fff, lo&0xffffffffffff)
}

// base62 returns n letters and digits, like Plaid's item ids.
func (s *splitMix64) base62(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = requestIDAlphabet[s.next()%uint64(len(requestIDAlphabet))]
	}
	return string(b)
}
