package plaidjson

// Plaid writes every date-time as YYYY-MM-DDTHH:MM:SS.ffffffZ, one per session, and
// time.Parse and Time.AppendFormat spent more on them than on the rest of a session
// together: time.Parse builds a Time with a location, and AppendFormat interprets its
// layout. The two functions here handle that one form directly, on plain numbers;
// decoding leaves anything else (offsets, year 0, malformed text) to time.Parse, so
// what is accepted, and every error, stay time.Parse's. rfc3339_test.go checks them
// against the time package over many generated values.

// parseRFC3339UTC parses s when it has the form YYYY-MM-DDTHH:MM:SS, an optional
// fraction of any number of digits, then Z, giving seconds and nanoseconds since the
// Unix epoch. Digits beyond the ninth are dropped, as time.Parse drops them. It reports
// ok == false for anything else, including dates that do not exist and year 0, which
// timestamppb cannot hold; where ok is true, time.Parse(time.RFC3339Nano, s) gives the
// same instant.
func parseRFC3339UTC(s []byte) (secs int64, nanos int32, ok bool) {
	if len(s) < len("2006-01-02T15:04:05Z") || s[len(s)-1] != 'Z' ||
		s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' {
		return 0, 0, false
	}
	century, ok0 := twoDigits(s[0], s[1])
	year, ok1 := twoDigits(s[2], s[3])
	year += 100 * century
	month, ok2 := twoDigits(s[5], s[6])
	day, ok3 := twoDigits(s[8], s[9])
	hour, ok4 := twoDigits(s[11], s[12])
	minute, ok5 := twoDigits(s[14], s[15])
	second, ok6 := twoDigits(s[17], s[18])
	if !(ok0 && ok1 && ok2 && ok3 && ok4 && ok5 && ok6) ||
		year < 1 || month < 1 || month > 12 || day < 1 || day > daysIn(month, year) ||
		hour > 23 || minute > 59 || second > 59 {
		return 0, 0, false
	}
	if frac := s[19 : len(s)-1]; len(frac) > 0 {
		if len(frac) < 2 || frac[0] != '.' {
			return 0, 0, false
		}
		for i := 1; i < len(frac); i++ {
			c := frac[i]
			if !isDigit(c) {
				return 0, 0, false
			}
			if i <= 9 {
				nanos = nanos*10 + int32(c-'0')
			}
		}
		for i := len(frac); i <= 9; i++ {
			nanos *= 10
		}
	}
	secs = daysSinceEpoch(year, month, day)*secondsPerDay + int64(hour*3600+minute*60+second)
	return secs, nanos, true
}

const secondsPerDay = 24 * 60 * 60

// twoDigits reads the number the decimal digits a and b make; ok is false if either is
// not a digit. Subtracting '0' wraps anything below it round to above 9.
func twoDigits(a, b byte) (n int, ok bool) {
	a, b = a-'0', b-'0'
	return int(a)*10 + int(b), a <= 9 && b <= 9
}

var monthDays = [13]int{0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}

func daysIn(month, year int) int {
	if month == 2 && year%4 == 0 && (year%100 != 0 || year%400 == 0) {
		return 29
	}
	return monthDays[month]
}

// daysSinceEpoch counts the days from 1970-01-01 to a date of the proleptic Gregorian
// calendar, year 1 or later. It is Howard Hinnant's days_from_civil: years start in
// March, so that the leap day falls at the end of one, and 400 years make an era of
// 146097 days.
func daysSinceEpoch(year, month, day int) int64 {
	if month <= 2 {
		year--
	}
	era := year / 400
	yearOfEra := year - era*400
	dayOfYear := (153*((month+9)%12)+2)/5 + day - 1
	dayOfEra := yearOfEra*365 + yearOfEra/4 - yearOfEra/100 + dayOfYear
	return int64(era*146097+dayOfEra) - 719468 // 719468 days from 0000-03-01 to 1970-01-01
}

// civilDate is the inverse of daysSinceEpoch (Hinnant's civil_from_days), for dates
// in year 1 or later.
func civilDate(days int64) (year, month, day int) {
	z := days + 719468
	era := z / 146097
	dayOfEra := z - era*146097
	yearOfEra := (dayOfEra - dayOfEra/1460 + dayOfEra/36524 - dayOfEra/146096) / 365
	dayOfYear := dayOfEra - (365*yearOfEra + yearOfEra/4 - yearOfEra/100)
	m := (5*dayOfYear + 2) / 153 // 0 for March
	day = int(dayOfYear - (153*m+2)/5 + 1)
	month = int(m + 3)
	year = int(yearOfEra + era*400)
	if month > 12 {
		month -= 12
		year++
	}
	return year, month, day
}

// appendRFC3339UTC writes an instant as time's "2006-01-02T15:04:05" layout in UTC,
// then a fraction of 0, 3, 6 or 9 digits as protojson writes it, then Z. The instant
// must be valid for timestamppb: years 1 to 9999, nanos in [0, 1e9).
func appendRFC3339UTC(b []byte, secs int64, nanos int32) []byte {
	days, rem := secs/secondsPerDay, secs%secondsPerDay
	if rem < 0 {
		days, rem = days-1, rem+secondsPerDay
	}
	year, month, day := civilDate(days)
	sec := int(rem)
	b = appendDigits(b, year, 4)
	b = append(b, '-')
	b = appendDigits(b, month, 2)
	b = append(b, '-')
	b = appendDigits(b, day, 2)
	b = append(b, 'T')
	b = appendDigits(b, sec/3600, 2)
	b = append(b, ':')
	b = appendDigits(b, sec/60%60, 2)
	b = append(b, ':')
	b = appendDigits(b, sec%60, 2)
	if n := int(nanos); n != 0 {
		width := 9
		switch {
		case n%1e6 == 0:
			n, width = n/1e6, 3
		case n%1e3 == 0:
			n, width = n/1e3, 6
		}
		b = append(b, '.')
		b = appendDigits(b, n, width)
	}
	return append(b, 'Z')
}

// appendDigits writes n, which must be below 10^width, in exactly width digits.
func appendDigits(b []byte, n, width int) []byte {
	b = append(b, "000000000"[:width]...)
	for i := len(b) - 1; n > 0; i-- {
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return b
}
