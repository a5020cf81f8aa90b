package plaidjson_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
)

func sessionStartBody(ts string) string {
	return `{"request_id":"r","sessions":[{"session_start_time":"` + ts + `"}]}`
}

func TestTimestampsRoundTripByteForByte(t *testing.T) {
	// 0, 3, 6 or 9 fractional digits, as protojson writes them: Plaid's microsecond
	// timestamps must come back exactly as Plaid sent them.
	for _, ts := range []string{
		"2022-09-30T23:40:30Z",
		"2022-09-30T23:40:30.946Z",
		"2022-09-30T23:40:30.946225Z",
		"2022-09-30T23:40:30.946225123Z",
		"2022-09-30T23:40:30.000001Z",
		"2022-09-30T23:40:30.100Z",
		"2022-09-30T23:40:30.000000001Z",
		"0001-01-01T00:00:00Z",
		"9999-12-31T23:59:59.999999999Z",
		"1970-01-01T00:00:00Z",
		"1969-12-31T23:59:59.999Z",
	} {
		t.Run(ts, func(t *testing.T) {
			body := sessionStartBody(ts)
			m := decode(t, body)
			want, err := time.Parse(time.RFC3339Nano, ts)
			require.NoError(t, err)
			assert.True(t, want.Equal(m.GetSessions()[0].GetSessionStartTime().AsTime()))
			assert.Equal(t, body, string(encode(t, m)))
		})
	}
}

func TestTimestampsAreNormalised(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{in: "2022-09-30T23:40:30.946225+02:00", want: "2022-09-30T21:40:30.946225Z"},
		{in: "2022-09-30T23:40:30-05:30", want: "2022-10-01T05:10:30Z"},
		{in: "2022-12-31T23:30:00-01:00", want: "2023-01-01T00:30:00Z"},
		{in: "2022-09-30T23:40:30+00:00", want: "2022-09-30T23:40:30Z"},
		{in: "2022-09-30T23:40:30.5Z", want: "2022-09-30T23:40:30.500Z"},
		{in: "2022-09-30T23:40:30.9462Z", want: "2022-09-30T23:40:30.946200Z"},
		{in: "2022-09-30T23:40:30.94622512Z", want: "2022-09-30T23:40:30.946225120Z"},
		{in: "2022-09-30T23:40:30.946000Z", want: "2022-09-30T23:40:30.946Z"},
		{in: "2022-09-30T23:40:30.000000000Z", want: "2022-09-30T23:40:30Z"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			m := decode(t, sessionStartBody(tt.in))
			in, err := time.Parse(time.RFC3339Nano, tt.in)
			require.NoError(t, err)
			got := m.GetSessions()[0].GetSessionStartTime().AsTime()
			assert.True(t, in.Equal(got), "same instant: %s vs %s", in, got)
			assert.Equal(t, sessionStartBody(tt.want), string(encode(t, m)))
		})
	}
}

func TestTimestampFractionDigitsFromNanos(t *testing.T) {
	base := time.Date(2022, 9, 30, 23, 40, 30, 0, time.UTC).Unix()
	tests := []struct {
		nanos int32
		want  string
	}{
		{nanos: 0, want: "2022-09-30T23:40:30Z"},
		{nanos: 1, want: "2022-09-30T23:40:30.000000001Z"},
		{nanos: 1000, want: "2022-09-30T23:40:30.000001Z"},
		{nanos: 1000000, want: "2022-09-30T23:40:30.001Z"},
		{nanos: 10000000, want: "2022-09-30T23:40:30.010Z"},
		{nanos: 946225000, want: "2022-09-30T23:40:30.946225Z"},
		{nanos: 999999999, want: "2022-09-30T23:40:30.999999999Z"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			m := &creditv1.CreditSessionsGetResponse{RequestId: "r", Sessions: []*creditv1.CreditSession{{
				SessionStartTime: &timestamppb.Timestamp{Seconds: base, Nanos: tt.nanos},
			}}}
			out := string(encode(t, m))
			assert.Equal(t, sessionStartBody(tt.want), out)
			assert.False(t, strings.Contains(out, "+"), "always UTC with Z")
		})
	}
}
