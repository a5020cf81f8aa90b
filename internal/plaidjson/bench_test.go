package plaidjson_test

import (
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/plaidjson"
)

// benchResponse builds a response shaped like Plaid's: n sessions, each with an id, a
// start time and results holding an item add and one income result of the three kinds,
// about 420 bytes of JSON a session.
func benchResponse(n int) *creditv1.CreditSessionsGetResponse {
	start := time.Date(2024, 5, 1, 12, 0, 0, 946225000, time.UTC)
	m := &creditv1.CreditSessionsGetResponse{RequestId: "Aim3bXq7nP2wR9s", Sessions: make([]*creditv1.CreditSession, 0, n)}
	for i := range n {
		itemID := fmt.Sprintf("M5eVJqLnv3tbzdngLDp9FL5OlDNx%09d", i)
		institution := fmt.Sprintf("ins_%d", 1+i%120)
		results := &creditv1.CreditSessionResults{
			ItemAddResults: []*creditv1.CreditSessionItemAddResult{{
				PublicToken:   proto.String(fmt.Sprintf("public-sandbox-5c224a01-8314-4491-a06f-%012x", i)),
				ItemId:        proto.String(itemID),
				InstitutionId: proto.String(institution),
			}},
		}
		switch i % 3 {
		case 0:
			results.BankIncomeResults = []*creditv1.CreditSessionBankIncomeResult{{
				StatusValue:   &creditv1.CreditSessionBankIncomeResult_Status{Status: creditv1.CreditSessionBankIncomeStatus_CREDIT_SESSION_BANK_INCOME_STATUS_APPROVED},
				ItemId:        proto.String(itemID),
				InstitutionId: proto.String(institution),
			}}
		case 1:
			results.PayrollIncomeResults = []*creditv1.CreditSessionPayrollIncomeResult{{
				NumPaystubsRetrieved: proto.Int32(2),
				NumW2SRetrieved:      proto.Int32(1),
				InstitutionId:        proto.String("ins_92"),
				InstitutionName:      proto.String("Gusto"),
			}}
		case 2:
			results.DocumentIncomeResults = &creditv1.CreditSessionDocumentIncomeResult{
				NumPaystubsUploaded:       proto.Int32(3),
				NumW2SUploaded:            proto.Int32(1),
				NumBankStatementsUploaded: proto.Int32(0),
				Num_1099SUploaded:         proto.Int32(0),
			}
		}
		m.Sessions = append(m.Sessions, &creditv1.CreditSession{
			LinkSessionId:    proto.String(fmt.Sprintf("356dbb28-7f98-44d1-8e6d-%012x", i)),
			SessionStartTime: timestamppb.New(start.Add(-time.Duration(i) * 37 * time.Minute)),
			Results:          results,
		})
	}
	return m
}

var benchSizes = []int{2, 1000, 10000}

func TestBenchResponseIsRealistic(t *testing.T) {
	m := benchResponse(1000)
	body := encode(t, m)
	// A few hundred bytes a session: with identifiers as long as Plaid's, the spec
	// example's first session is about 440 bytes written compactly.
	perSession := len(body) / 1000
	require.InDelta(t, 375, perSession, 125, "bytes a session")
	requireProtoEqual(t, m, decode(t, string(body)))
}

func BenchmarkUnmarshalResponse(b *testing.B) {
	for _, n := range benchSizes {
		body := encode(b, benchResponse(n))
		b.Run(fmt.Sprintf("sessions=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			m := new(creditv1.CreditSessionsGetResponse)
			for b.Loop() {
				if err := plaidjson.UnmarshalResponse(body, m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkAppendResponse(b *testing.B) {
	for _, n := range benchSizes {
		m := benchResponse(n)
		size := len(encode(b, m))
		b.Run(fmt.Sprintf("sessions=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(size))
			var buf []byte
			for b.Loop() {
				var err error
				if buf, err = plaidjson.AppendResponse(buf[:0], m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkWriteResponse is the REST mirror's path for large answers: encoded into a
// writer 32 KiB at a time, with one scratch buffer, never whole.
func BenchmarkWriteResponse(b *testing.B) {
	for _, n := range benchSizes {
		m := benchResponse(n)
		size := len(encode(b, m))
		b.Run(fmt.Sprintf("sessions=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(size))
			buf := make([]byte, 0, 40<<10)
			for b.Loop() {
				var err error
				if buf, _, err = plaidjson.WriteResponse(io.Discard, m, buf, 32<<10); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// The protojson benchmarks handle the same data in protojson's own format, for
// comparison.

func BenchmarkProtojsonUnmarshal(b *testing.B) {
	for _, n := range benchSizes {
		body, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(benchResponse(n))
		require.NoError(b, err)
		b.Run(fmt.Sprintf("sessions=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			m := new(creditv1.CreditSessionsGetResponse)
			for b.Loop() {
				if err := protojson.Unmarshal(body, m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkProtojsonMarshal(b *testing.B) {
	opts := protojson.MarshalOptions{UseProtoNames: true}
	for _, n := range benchSizes {
		m := benchResponse(n)
		body, err := opts.Marshal(m)
		require.NoError(b, err)
		b.Run(fmt.Sprintf("sessions=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			var buf []byte
			for b.Loop() {
				var err error
				if buf, err = opts.MarshalAppend(buf[:0], m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
