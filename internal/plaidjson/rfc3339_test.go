package plaidjson

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
)

// These tests hold the hand-written date-time code in rfc3339.go to the time package,
// which the codec used before, over many generated values.

// timestampInputs generates date-time texts: mostly of the form Plaid sends, with
// values in and out of range, and some of every other form, near misses included.
func timestampInputs(n int) []string {
	rng := rand.New(rand.NewPCG(3, 4))
	pick := func(options ...string) string { return options[rng.IntN(len(options))] }
	num := func(width, limit int) string {
		s := strconv.Itoa(rng.IntN(limit))
		return strings.Repeat("0", max(0, width-len(s))) + s
	}
	inputs := []string{
		"0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z", "0000-01-01T00:00:00Z",
		"0000-12-31T23:59:59.999999999Z", "1970-01-01T00:00:00Z", "1969-12-31T23:59:59.999Z",
		"2000-02-29T12:00:00Z", "1900-02-29T12:00:00Z", "2100-02-29T00:00:00Z", "2400-02-29T00:00:00Z",
		"2023-02-29T00:00:00Z", "2024-02-29T00:00:00Z", "2022-09-30T23:40:30.946225Z",
		"2022-09-30T23:40:30.Z", "2022-09-30T23:40:30,5Z", "2022-09-30T23:40:30.5z",
		"2022-09-30t23:40:30Z", "2022-09-30T23:40:30.1234567891Z", "2022-09-30T23:40:30.000000000001Z",
		"2022-09-30T24:00:00Z", "2022-09-30T23:60:00Z", "2022-09-30T23:59:60Z", "2022-00-10T00:00:00Z",
		"2022-13-10T00:00:00Z", "2022-04-31T00:00:00Z", "2022-04-00T00:00:00Z", "+022-09-30T23:40:30Z",
		"-022-09-30T23:40:30Z", "2022-09-30T23:40:30+00:00", "2022-09-30T23:40:30-23:59",
		"2022-09-30T23:40:30.5+01:00", "2022-9-30T23:40:30Z", "2022-09-30T23:40:3Z", "2022-09-30T23:40:30ZZ",
		"2022-09-30 23:40:30Z", "2022-09-30T23:40:30", "", "Z", "2022-09-30T23:40:30.Z",
		"2022-09-30T23:40:30.-1Z", "2022-09-30T23:40:30.+1Z", "2022-09-30T23:40:30. 1Z",
	}
	for len(inputs) < n {
		date := num(4, 10000) + "-" + num(2, 14) + "-" + num(2, 33)
		if rng.IntN(4) == 0 { // a real date, so that most inputs are valid
			t := time.Unix(rng.Int64N(253402300800+62135596800)-62135596800, 0).UTC()
			date = t.Format("2006-01-02")
		}
		clock := num(2, 25) + ":" + num(2, 61) + ":" + num(2, 61)
		if rng.IntN(2) == 0 {
			clock = num(2, 24) + ":" + num(2, 60) + ":" + num(2, 60)
		}
		frac := pick("", "", ".", "."+num(1, 10), "."+num(3, 1000), "."+num(6, 1000000),
			"."+num(9, 1000000000), "."+num(9, 1000000000)+num(4, 10000), ","+num(3, 1000), ".12a")
		zone := pick("Z", "Z", "Z", "z", "+00:00", "-00:00", "+05:30", "-23:59", "+24:00", "", "Z ")
		s := date + "T" + clock + frac + zone
		if rng.IntN(10) == 0 { // and damage one byte
			b := []byte(s)
			b[rng.IntN(len(b))] = pick("0", "9", "-", ":", "T", ".", "Z", "x", "\x00")[0]
			s = string(b)
		}
		inputs = append(inputs, s)
	}
	return inputs
}

// canonical reports whether s has the form parseRFC3339UTC is for.
func canonical(s string) bool {
	if len(s) < 20 || s[len(s)-1] != 'Z' || s[:4] == "0000" {
		return false
	}
	for i, c := range []byte(s[:19]) {
		switch i {
		case 4, 7:
			if c != '-' {
				return false
			}
		case 10:
			if c != 'T' {
				return false
			}
		case 13, 16:
			if c != ':' {
				return false
			}
		default:
			if c < '0' || c > '9' {
				return false
			}
		}
	}
	frac := s[19 : len(s)-1]
	if frac == "" {
		return true
	}
	if len(frac) < 2 || frac[0] != '.' {
		return false
	}
	return strings.Trim(frac[1:], "0123456789") == ""
}

func TestParseRFC3339UTCAgreesWithTimeParse(t *testing.T) {
	var fast int
	for _, s := range timestampInputs(200_000) {
		secs, nanos, ok := parseRFC3339UTC([]byte(s))
		want, err := time.Parse(time.RFC3339Nano, s)
		if ok {
			fast++
			require.NoError(t, err, "parseRFC3339UTC accepted %q, which time.Parse does not", s)
			require.Equal(t, want.Unix(), secs, "%q", s)
			require.Equal(t, int32(want.Nanosecond()), nanos, "%q", s)
			continue
		}
		// The fast path must cover every valid text of Plaid's form; the others
		// go to time.Parse, which decides.
		require.False(t, err == nil && canonical(s), "parseRFC3339UTC refused %q, a valid date-time of the common form", s)
	}
	require.Greater(t, fast, 20_000, "too few generated inputs take the fast path for the test to mean much")
}

func TestDecodedTimestampsAgreeWithTimeParse(t *testing.T) {
	// The whole path, fast or not, against what the codec did before: time.Parse,
	// then timestamppb's range.
	for _, s := range timestampInputs(50_000) {
		body := `{"request_id":"r","sessions":[{"session_start_time":"` + s + `"}]}`
		m := new(creditv1.CreditSessionsGetResponse)
		err := UnmarshalResponse([]byte(body), m)

		want, parseErr := time.Parse(time.RFC3339Nano, s)
		if parseErr == nil && timestamppb.New(want).CheckValid() == nil {
			require.NoError(t, err, "%q", s)
			got := m.GetSessions()[0].GetSessionStartTime()
			require.Equal(t, want.Unix(), got.GetSeconds(), "%q", s)
			require.Equal(t, int32(want.Nanosecond()), got.GetNanos(), "%q", s)
			continue
		}
		if strings.ContainsAny(s, "\x00") {
			continue // not a valid JSON string at all
		}
		var fe *FieldError
		require.ErrorAs(t, err, &fe, "%q", s)
		assert.Equal(t, "sessions[0].session_start_time", fe.Path)
	}
}

// formatReference is how the encoder wrote timestamps before appendRFC3339UTC.
func formatReference(secs int64, nanos int32) string {
	b := time.Unix(secs, int64(nanos)).UTC().AppendFormat(nil, "2006-01-02T15:04:05")
	if n := nanos; n != 0 {
		digits := 9
		switch {
		case n%1e6 == 0:
			n, digits = n/1e6, 3
		case n%1e3 == 0:
			n, digits = n/1e3, 6
		}
		frac := strconv.Itoa(int(n))
		b = append(b, '.')
		b = append(b, strings.Repeat("0", digits-len(frac))...)
		b = append(b, frac...)
	}
	return string(append(b, 'Z'))
}

func TestAppendRFC3339UTCAgreesWithTime(t *testing.T) {
	const minSecs, maxSecs = -62135596800, 253402300799 // timestamppb's range
	rng := rand.New(rand.NewPCG(5, 6))
	secs := []int64{minSecs, maxSecs, 0, -1, 1, 951782400, 951868800, 4107542400, -2203891200}
	for range 200_000 {
		secs = append(secs, minSecs+rng.Int64N(maxSecs-minSecs+1))
	}
	nanos := []int32{0, 1, 999999999, 1000, 1000000, 10000000, 946225000, 123456789, 500000000}
	for i, s := range secs {
		n := nanos[i%len(nanos)]
		if i%3 == 0 {
			n = rng.Int32N(1e9)
		}
		require.Equal(t, formatReference(s, n), string(appendRFC3339UTC(nil, s, n)), "secs %d nanos %d", s, n)
	}
}

func TestCivilDatesAgreeWithTime(t *testing.T) {
	// Every day from 0001-01-01 to 9999-12-31, both ways.
	day := time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	for days := day.Unix() / secondsPerDay; day.Year() < 10000; days, day = days+1, day.AddDate(0, 0, 1) {
		y, m, d := day.Date()
		if got := daysSinceEpoch(y, int(m), d); got != days {
			require.Equal(t, days, got, "daysSinceEpoch(%s)", day.Format(time.DateOnly))
		}
		if gy, gm, gd := civilDate(days); gy != y || gm != int(m) || gd != d {
			require.Equal(t, day.Format(time.DateOnly), time.Date(gy, time.Month(gm), gd, 0, 0, 0, 0, time.UTC).Format(time.DateOnly), "civilDate(%d)", days)
		}
		if got := daysIn(int(m), y); got != time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC).Day() {
			require.Failf(t, "daysIn", "daysIn(%d, %d) = %d", m, y, got)
		}
	}
}
