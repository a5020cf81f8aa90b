package plaidjson

import (
	"math"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth bounds nesting in values this package skips or keeps verbatim, so a hostile
// body cannot exhaust the stack.
const maxDepth = 1000

// scanner reads JSON from a string. Decoding works on one string copy of the body so
// that strings without escapes become substrings of it, with no copy of their own.
type scanner struct {
	s   string
	pos int
}

func (sc *scanner) skipSpace() {
	for sc.pos < len(sc.s) {
		switch sc.s[sc.pos] {
		case ' ', '\t', '\n', '\r':
			sc.pos++
		default:
			return
		}
	}
}

// peek returns the next byte that is not white space, or 0 at the end.
func (sc *scanner) peek() byte {
	sc.skipSpace()
	if sc.pos < len(sc.s) {
		return sc.s[sc.pos]
	}
	return 0
}

func (sc *scanner) syntaxError(msg string) error {
	return &SyntaxError{Offset: int64(sc.pos), msg: msg}
}

func (sc *scanner) expect(c byte) error {
	if sc.peek() != c {
		if sc.pos >= len(sc.s) {
			return sc.syntaxError("unexpected end of JSON input")
		}
		return sc.syntaxError("expected " + strconv.QuoteRune(rune(c)) + ", found " + strconv.QuoteRune(rune(sc.s[sc.pos])))
	}
	sc.pos++
	return nil
}

// null consumes a JSON null if one comes next.
func (sc *scanner) null() bool {
	if sc.peek() == 'n' && strings.HasPrefix(sc.s[sc.pos:], "null") {
		sc.pos += 4
		return true
	}
	return false
}

// object calls member for each member of the object that comes next. member must
// consume the member's value.
func (sc *scanner) object(member func(key string) error) error {
	if err := sc.expect('{'); err != nil {
		return err
	}
	if sc.peek() == '}' {
		sc.pos++
		return nil
	}
	for {
		if sc.peek() != '"' {
			// A key that is not a string is malformed JSON, not a value of the wrong type.
			if sc.pos >= len(sc.s) {
				return sc.syntaxError("unexpected end of JSON input")
			}
			return sc.syntaxError("expected a string key, found " + strconv.QuoteRune(rune(sc.s[sc.pos])))
		}
		key, err := sc.str()
		if err != nil {
			return err
		}
		if err := sc.expect(':'); err != nil {
			return err
		}
		if err := member(key); err != nil {
			return err
		}
		switch sc.peek() {
		case ',':
			sc.pos++
		case '}':
			sc.pos++
			return nil
		default:
			return sc.expectEither(',', '}')
		}
	}
}

// array calls elem for each element of the array that comes next.
func (sc *scanner) array(elem func(i int) error) error {
	if err := sc.expect('['); err != nil {
		return err
	}
	if sc.peek() == ']' {
		sc.pos++
		return nil
	}
	for i := 0; ; i++ {
		if err := elem(i); err != nil {
			return err
		}
		switch sc.peek() {
		case ',':
			sc.pos++
		case ']':
			sc.pos++
			return nil
		default:
			return sc.expectEither(',', ']')
		}
	}
}

func (sc *scanner) expectEither(a, b byte) error {
	if sc.pos >= len(sc.s) {
		return sc.syntaxError("unexpected end of JSON input")
	}
	return sc.syntaxError("expected " + strconv.QuoteRune(rune(a)) + " or " + strconv.QuoteRune(rune(b)) +
		", found " + strconv.QuoteRune(rune(sc.s[sc.pos])))
}

// str reads a JSON string. Invalid UTF-8 becomes U+FFFD, as encoding/json does, since
// protobuf strings must be valid UTF-8.
func (sc *scanner) str() (string, error) {
	if sc.peek() != '"' {
		return "", sc.typeError("string")
	}
	start := sc.pos + 1
	ascii := true
	for i := start; i < len(sc.s); i++ {
		c := sc.s[i]
		switch {
		case c == '"':
			sc.pos = i + 1
			v := sc.s[start:i]
			if !ascii && !utf8.ValidString(v) {
				// One U+FFFD per invalid byte, as unescape and encoding/json do;
				// strings.ToValidUTF8 would fold a run of them into one.
				return sc.unescape(start)
			}
			return v, nil
		case c == '\\':
			return sc.unescape(start)
		case c < 0x20:
			sc.pos = i
			return "", sc.syntaxError("control character in string")
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	sc.pos = len(sc.s)
	return "", sc.syntaxError("unexpected end of JSON input")
}

// unescape is the slow path of str for strings that hold escapes.
func (sc *scanner) unescape(start int) (string, error) {
	var b strings.Builder
	i := start
	for i < len(sc.s) {
		c := sc.s[i]
		switch {
		case c == '"':
			sc.pos = i + 1
			return b.String(), nil
		case c < 0x20:
			sc.pos = i
			return "", sc.syntaxError("control character in string")
		case c == '\\':
			if i+1 >= len(sc.s) {
				sc.pos = i
				return "", sc.syntaxError("unexpected end of JSON input")
			}
			switch e := sc.s[i+1]; e {
			case '"', '\\', '/':
				b.WriteByte(e)
			case 'b':
				b.WriteByte('\b')
			case 'f':
				b.WriteByte('\f')
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'u':
				r, n, ok := sc.hexRune(i)
				if !ok {
					sc.pos = i
					return "", sc.syntaxError("invalid \\u escape")
				}
				b.WriteRune(r)
				i += n
				continue
			default:
				sc.pos = i
				return "", sc.syntaxError("invalid escape " + strconv.Quote(sc.s[i:i+2]))
			}
			i += 2
		case c < utf8.RuneSelf:
			b.WriteByte(c)
			i++
		default:
			r, n := utf8.DecodeRuneInString(sc.s[i:])
			b.WriteRune(r) // RuneError for invalid bytes, as in str
			i += n
		}
	}
	sc.pos = len(sc.s)
	return "", sc.syntaxError("unexpected end of JSON input")
}

// hexRune decodes the \uXXXX escape at i, joining a surrogate pair when one follows.
// It returns the rune and how many bytes it read.
func (sc *scanner) hexRune(i int) (rune, int, bool) {
	r1, ok := hex4(sc.s, i+2)
	if !ok {
		return 0, 0, false
	}
	if utf16.IsSurrogate(r1) {
		if r2, ok := hex4(sc.s, i+8); ok && strings.HasPrefix(sc.s[i+6:], `\u`) {
			if r := utf16.DecodeRune(r1, r2); r != utf8.RuneError {
				return r, 12, true
			}
		}
		return utf8.RuneError, 6, true
	}
	return r1, 6, true
}

func hex4(s string, i int) (rune, bool) {
	if i+4 > len(s) {
		return 0, false
	}
	var r rune
	for _, c := range []byte(s[i : i+4]) {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// number reads the text of a JSON number, checking its grammar.
func (sc *scanner) number() (string, error) {
	sc.skipSpace()
	start, i := sc.pos, sc.pos
	digits := func() int {
		n := 0
		for i < len(sc.s) && '0' <= sc.s[i] && sc.s[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if i < len(sc.s) && sc.s[i] == '-' {
		i++
	}
	if i < len(sc.s) && sc.s[i] == '0' {
		i++
	} else if digits() == 0 {
		if i > start { // a '-' with no digits after it
			sc.pos = i
			return "", sc.syntaxError("invalid number")
		}
		return "", sc.typeError("number")
	}
	if i < len(sc.s) && sc.s[i] == '.' {
		i++
		if digits() == 0 {
			sc.pos = i
			return "", sc.syntaxError("invalid number")
		}
	}
	if i < len(sc.s) && (sc.s[i] == 'e' || sc.s[i] == 'E') {
		i++
		if i < len(sc.s) && (sc.s[i] == '+' || sc.s[i] == '-') {
			i++
		}
		if digits() == 0 {
			sc.pos = i
			return "", sc.syntaxError("invalid number")
		}
	}
	sc.pos = i
	return sc.s[start:i], nil
}

// int32 reads a JSON number that must be a whole number in int32's range. Forms such as
// 2.0 or 2e0 are accepted, as protojson accepts them.
func (sc *scanner) int32() (int32, error) {
	text, err := sc.number()
	if err != nil {
		return 0, err
	}
	if n, err := strconv.ParseInt(text, 10, 32); err == nil {
		return int32(n), nil
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil || f != math.Trunc(f) || f < math.MinInt32 || f > math.MaxInt32 {
		return 0, errValue("a whole number in the 32-bit range, found " + text)
	}
	return int32(f), nil
}

// typeError reports the kind of value found where want was expected. The end of the
// input, or a misspelt true, false or null, is malformed JSON: a *SyntaxError.
func (sc *scanner) typeError(want string) error {
	if sc.pos >= len(sc.s) {
		return sc.syntaxError("unexpected end of JSON input")
	}
	var found string
	switch c := sc.s[sc.pos]; {
	case c == '"':
		found = "a string"
	case c == '{':
		found = "an object"
	case c == '[':
		found = "an array"
	case c == 't' || c == 'f' || c == 'n':
		lit, kind := "null", "null"
		switch c {
		case 't':
			lit, kind = "true", "a boolean"
		case 'f':
			lit, kind = "false", "a boolean"
		}
		if !strings.HasPrefix(sc.s[sc.pos:], lit) {
			return sc.syntaxError("invalid literal")
		}
		found = kind
	case c == '-' || ('0' <= c && c <= '9'):
		found = "a number"
	default:
		return sc.syntaxError("invalid character " + strconv.QuoteRune(rune(c)))
	}
	return errValue("expected " + want + ", found " + found)
}

// literal consumes one of true, false or null.
func (sc *scanner) literal() (string, error) {
	for _, lit := range [...]string{"true", "false", "null"} {
		if strings.HasPrefix(sc.s[sc.pos:], lit) {
			sc.pos += len(lit)
			return lit, nil
		}
	}
	return "", sc.typeError("a JSON value")
}

// skip consumes one value of any kind, checking that it is well formed.
func (sc *scanner) skip(depth int) error {
	if depth > maxDepth {
		return sc.syntaxError("nested too deeply")
	}
	switch c := sc.peek(); {
	case c == '{':
		return sc.object(func(string) error { return sc.skip(depth + 1) })
	case c == '[':
		return sc.array(func(int) error { return sc.skip(depth + 1) })
	case c == '"':
		_, err := sc.str()
		return err
	case c == '-' || ('0' <= c && c <= '9'):
		_, err := sc.number()
		return err
	default:
		_, err := sc.literal()
		return err
	}
}

// end checks that nothing but white space follows the top-level value.
func (sc *scanner) end() error {
	if sc.peek() != 0 || sc.pos < len(sc.s) {
		return sc.syntaxError("invalid character " + strconv.QuoteRune(rune(sc.s[sc.pos])) + " after top-level value")
	}
	return nil
}
