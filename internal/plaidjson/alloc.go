package plaidjson

import (
	"strings"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"

	"google.golang.org/protobuf/types/known/timestamppb"
)

// A decode allocates its messages, the targets of their optional scalars and the backing
// arrays of their repeated fields in chunks, one kind of value per chunk, rather than
// one by one: a Plaid session is a dozen small objects, and allocating them singly made
// the allocator and the garbage collector the larger part of decoding.
//
// Two rules keep this safe. A value is only ever used through the pointer handed out,
// the address of a chunk element; chunks are never grown or copied, because a proto
// message must not be copied once in use. And each repeated field gets a backing array
// whose capacity is its length, so appending to one reallocates it instead of writing
// over its neighbour in the chunk.
//
// The cost is that a value keeps its whole chunk alive, so one message kept from a
// decode keeps about as much memory as the others of its kind. A response is used as
// a whole, so that costs nothing in practice.

// Chunks double from minChunk up to maxChunk elements: a small body costs one small
// chunk of each kind it uses, and a large one O(n / maxChunk) allocations, wasting at
// most one partly used chunk of each kind.
const (
	minChunk = 4
	maxChunk = 1024
)

func nextChunk(prev int) int {
	return min(max(2*prev, minChunk), maxChunk)
}

// slab hands out zeroed values of type T for one decode.
type slab[T any] struct {
	chunk []T
}

func (s *slab[T]) new() *T {
	if len(s.chunk) == cap(s.chunk) {
		s.chunk = make([]T, 0, nextChunk(cap(s.chunk)))
	}
	s.chunk = s.chunk[:len(s.chunk)+1]
	return &s.chunk[len(s.chunk)-1]
}

// startWith makes chunk the slab's first chunk.
func (s *slab[T]) startWith(chunk []T) {
	s.chunk = chunk[:0]
}

// ptr returns a pointer to a copy of v, for a proto3 optional scalar.
func (s *slab[T]) ptr(v T) *T {
	p := s.new()
	*p = v
	return p
}

// messages hands out messages of type T for one decode, and the backing arrays of the
// repeated fields that hold them.
//
// A list's length is known only at its end, so the list being read grows in place at
// the end of the current chunk of backing arrays, and moves to a new chunk when that
// one is full. That needs the lists of T to be read one at a time: the schema must not
// nest a list of T in an element of a list of T. No message does, which
// TestNoListNestsItsOwnType checks, and beginList panics rather than mix two lists.
type messages[T any] struct {
	slab[T]
	lists   []*T // the chunk that backing arrays are cut from
	reading bool // whether a list is being read
}

// startWith makes chunk and lists the first chunks of messages and of lists.
func (m *messages[T]) startWith(chunk []T, lists []*T) {
	m.slab.startWith(chunk)
	m.lists = lists[:0]
}

// beginList starts a list at the end of the chunk, and returns where it starts.
func (m *messages[T]) beginList() (start int) {
	if m.reading {
		panic("plaidjson: a list nested in an element of a list of the same message")
	}
	m.reading = true
	return len(m.lists)
}

// add appends v to the list being read, which starts at start, and returns where the
// list starts now.
func (m *messages[T]) add(start int, v *T) int {
	if len(m.lists) == cap(m.lists) {
		n := len(m.lists) - start
		chunk := make([]*T, n, max(2*n, nextChunk(cap(m.lists))))
		copy(chunk, m.lists[start:])
		m.lists, start = chunk, 0
	}
	m.lists = append(m.lists, v)
	return start
}

// endList returns the list that starts at start. Its capacity is its length, so that
// appending to it copies it rather than overwriting the next list in the chunk. An
// empty list is nil, as append would leave it.
func (m *messages[T]) endList(start int) []*T {
	m.reading = false
	if len(m.lists) == start {
		return nil
	}
	return m.lists[start:len(m.lists):len(m.lists)]
}

// firstChunks are the first chunks of a decoder's slabs, allocated together, so that a
// small body, a session or two, costs one allocation rather than one for each kind of
// value; a larger one goes on to chunks of its own.
type firstChunks struct {
	sessions            [2]creditv1.CreditSession
	sessionLists        [2]*creditv1.CreditSession
	results             [2]creditv1.CreditSessionResults
	itemAdds            [2]creditv1.CreditSessionItemAddResult
	itemAddLists        [2]*creditv1.CreditSessionItemAddResult
	bankIncomes         [2]creditv1.CreditSessionBankIncomeResult
	bankIncomeLists     [2]*creditv1.CreditSessionBankIncomeResult
	bankEmployments     [2]creditv1.CreditSessionBankEmploymentResult
	bankEmploymentLists [2]*creditv1.CreditSessionBankEmploymentResult
	payrollIncomes      [2]creditv1.CreditSessionPayrollIncomeResult
	payrollIncomeLists  [2]*creditv1.CreditSessionPayrollIncomeResult
	documentIncomes     [2]creditv1.CreditSessionDocumentIncomeResult
	sessionErrors       [2]creditv1.CreditSessionError
	sessionErrorLists   [2]*creditv1.CreditSessionError
	timestamps          [2]timestamppb.Timestamp

	bankIncomeNamed            [2]creditv1.CreditSessionBankIncomeResult_Status
	bankIncomeUnrecognized     [2]creditv1.CreditSessionBankIncomeResult_UnrecognizedStatus
	bankEmploymentNamed        [2]creditv1.CreditSessionBankEmploymentResult_Status
	bankEmploymentUnrecognized [2]creditv1.CreditSessionBankEmploymentResult_UnrecognizedStatus

	optStrings [16]string
	optInt32s  [8]int32
}

func (d *decoder) startWith(f *firstChunks) {
	d.sessions.startWith(f.sessions[:], f.sessionLists[:])
	d.results.startWith(f.results[:])
	d.itemAdds.startWith(f.itemAdds[:], f.itemAddLists[:])
	d.bankIncomes.startWith(f.bankIncomes[:], f.bankIncomeLists[:])
	d.bankEmployments.startWith(f.bankEmployments[:], f.bankEmploymentLists[:])
	d.payrollIncomes.startWith(f.payrollIncomes[:], f.payrollIncomeLists[:])
	d.documentIncomes.startWith(f.documentIncomes[:])
	d.sessionErrors.startWith(f.sessionErrors[:], f.sessionErrorLists[:])
	d.timestamps.startWith(f.timestamps[:])
	d.bankIncomeNamed.startWith(f.bankIncomeNamed[:])
	d.bankIncomeUnrecognized.startWith(f.bankIncomeUnrecognized[:])
	d.bankEmploymentNamed.startWith(f.bankEmploymentNamed[:])
	d.bankEmploymentUnrecognized.startWith(f.bankEmploymentUnrecognized[:])
	d.optStrings.startWith(f.optStrings[:])
	d.optInt32s.startWith(f.optInt32s[:])
}

// Chunks of string bytes double from minStringChunk up to maxStringChunk bytes.
const (
	minStringChunk = 512
	maxStringChunk = 64 << 10
)

// stringArena copies the strings a decode keeps out of the body, packed into chunks.
// The body is the caller's and may be reused once decoding returns, so what is kept
// must be copied; copying only that, rather than the whole body, halves the bytes a
// decode allocates. strings.Builder makes a string of its buffer without copying it,
// and never changes bytes once written, so a chunk's strings stay valid as it fills
// and after it is left behind.
type stringArena struct {
	chunk strings.Builder
}

func (a *stringArena) copy(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if a.chunk.Cap()-a.chunk.Len() < len(b) {
		size := min(max(2*a.chunk.Cap(), minStringChunk), maxStringChunk)
		a.chunk = strings.Builder{}
		a.chunk.Grow(max(len(b), size))
	}
	start := a.chunk.Len()
	a.chunk.Write(b)
	return a.chunk.String()[start:]
}
