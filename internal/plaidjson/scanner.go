package plaidjson

import (
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth bounds nesting in values this package skips or keeps verbatim, so a hostile
// body cannot exhaust the stack.
const maxDepth = 1000

// scanner reads JSON from the body as the caller passed it. It never copies the whole
// body: keys are matched in place, and only the strings a decode keeps are copied, into
// a stringArena.
//
// Objects and arrays are read with loops, over members and element, rather than with
// callbacks: a callback per object cost a closure and an indirect call for every
// member, and hid the per-message code from the inliner.
type scanner struct {
	s       []byte
	pos     int
	strings stringArena
}

// skipSpace is the slow path of peek.
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
	// Plaid's bodies are compact, so the next byte is almost never white space; this
	// check keeps peek small enough to inline.
	if sc.pos < len(sc.s) && sc.s[sc.pos] > ' ' {
		return sc.s[sc.pos]
	}
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

// nullAt consumes a JSON null at sc.pos, if there is one there. Callers peek first,
// and call it only when they have seen its 'n'.
func (sc *scanner) nullAt() bool {
	if sc.at("null") {
		sc.pos += 4
		return true
	}
	return false
}

// at reports whether the body holds lit at sc.pos.
func (sc *scanner) at(lit string) bool {
	return len(sc.s)-sc.pos >= len(lit) && string(sc.s[sc.pos:sc.pos+len(lit)]) == lit
}

// members reads the members of an object whose '{' has been consumed:
//
//	obj := sc.members(sessionKeys)
//	for {
//		key, more, err := obj.next()
//		if err != nil || !more {
//			return err
//		}
//		// read the value of key
//	}
//
// next reads a member's key and the colon after it, and the caller then consumes the
// value; at the closing '}' next consumes it and returns more == false. The key is read
// as text reads strings, and switch string(key) does not copy it.
//
// Most of the strings in a body are keys, and searching each for its closing quote
// cost more than anything else in decoding, largely in mispredicted branches. But a
// writer puts an object's members in the same order every time, so members first
// compares the body in place with the key it expects next, with its quotes and colon:
// that is one compare of a known length, predictably true. Only a key it did not
// expect, or white space, takes the general path, which searches for the key's end and
// leaves the guess where it was.
type members struct {
	sc       *scanner
	expected []string // the object's known keys as `"key":`, in the order writers use
	guess    int      // the index in expected of the key to try next
	started  bool     // whether a member has been read, so a comma comes next
}

func (sc *scanner) members(expected []string) members {
	return members{sc: sc, expected: expected}
}

func (o *members) next() (key []byte, more bool, err error) {
	sc := o.sc
	if o.guess < len(o.expected) { // the fast path: compact JSON, and the key expected
		s, i := sc.s, sc.pos
		if o.started && i < len(s) {
			switch s[i] {
			case ',':
				i++
			case '}':
				sc.pos++
				return nil, false, nil
			}
		}
		// The closing quote compared is not escaped: no known key ends in a backslash.
		if k := o.expected[o.guess]; o.started == (i > sc.pos) && hasPrefix(s[i:], k) {
			sc.pos = i + len(k)
			o.started = true
			o.guess++
			return s[i+1 : i+len(k)-2], true, nil
		}
	}

	c := sc.peek()
	switch {
	case c == '}':
		sc.pos++
		return nil, false, nil
	case !o.started:
		o.started = true
	case c == ',':
		sc.pos++
		c = sc.peek()
	default:
		return nil, false, sc.expectEither(',', '}')
	}
	if c != '"' {
		// A key that is not a string is malformed JSON, not a value of the wrong type.
		if sc.pos >= len(sc.s) {
			return nil, false, sc.syntaxError("unexpected end of JSON input")
		}
		return nil, false, sc.syntaxError("expected a string key, found " + strconv.QuoteRune(rune(c)))
	}
	if key, err = sc.quoted(); err != nil {
		return nil, false, err
	}
	if sc.pos < len(sc.s) && sc.s[sc.pos] == ':' { // compact JSON
		sc.pos++
	} else if err := sc.expect(':'); err != nil {
		return nil, false, err
	}
	return key, true, nil
}

// expectedKeys returns keys as members expects them: quoted, with the colon after.
func expectedKeys(keys ...string) []string {
	expected := make([]string, len(keys))
	for i, k := range keys {
		expected[i] = `"` + k + `":`
	}
	return expected
}

// element moves to the next element of an array whose '[' has been consumed; the
// caller must then consume the element. At the closing ']' element consumes it and
// returns more == false. first says whether this is the array's first element, that
// is whether a comma must come before it.
func (sc *scanner) element(first bool) (more bool, err error) {
	switch c := sc.peek(); {
	case c == ']':
		sc.pos++
		return false, nil
	case first:
		return true, nil // what comes is the element, which reports what is wrong with it
	case c == ',':
		sc.pos++
		return true, nil
	default:
		return false, sc.expectEither(',', ']')
	}
}

func (sc *scanner) expectEither(a, b byte) error {
	if sc.pos >= len(sc.s) {
		return sc.syntaxError("unexpected end of JSON input")
	}
	return sc.syntaxError("expected " + strconv.QuoteRune(rune(a)) + " or " + strconv.QuoteRune(rune(b)) +
		", found " + strconv.QuoteRune(rune(sc.s[sc.pos])))
}

// str reads a JSON string, to keep. Invalid UTF-8 becomes U+FFFD, as encoding/json
// does, since protobuf strings must be valid UTF-8.
func (sc *scanner) str() (string, error) {
	v, err := sc.text()
	if err != nil {
		return "", err
	}
	return sc.strings.copy(v), nil
}

// text reads a JSON string and returns what it says: a slice of the body when the
// string holds no escapes and is valid UTF-8, as nearly every string in a Plaid body
// does, else a new slice. Either must be copied to be kept past the decode.
func (sc *scanner) text() ([]byte, error) {
	if sc.peek() != '"' {
		return nil, sc.typeError("string")
	}
	return sc.quoted()
}

// quoted is text for a string whose opening quote is at sc.pos.
func (sc *scanner) quoted() ([]byte, error) {
	start := sc.pos + 1
	i := skipPlainASCII(sc.s, start)
	if i < len(sc.s) && sc.s[i] == '"' { // the common case: plain ASCII throughout
		sc.pos = i + 1
		return sc.s[start:i], nil
	}
	ascii := true
	for ; i < len(sc.s); i++ {
		c := sc.s[i]
		switch {
		case c == '"':
			sc.pos = i + 1
			v := sc.s[start:i]
			if !ascii && !utf8.Valid(v) {
				// One U+FFFD per invalid byte, as unescape and encoding/json do;
				// bytes.ToValidUTF8 would fold a run of them into one.
				return sc.unescape(start)
			}
			return v, nil
		case c == '\\':
			return sc.unescape(start)
		case c < 0x20:
			sc.pos = i
			return nil, sc.syntaxError("control character in string")
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	sc.pos = len(sc.s)
	return nil, sc.syntaxError("unexpected end of JSON input")
}

// unescape is the slow path of text for strings that hold escapes or invalid UTF-8.
func (sc *scanner) unescape(start int) ([]byte, error) {
	b := make([]byte, 0, 32)
	i := start
	for i < len(sc.s) {
		c := sc.s[i]
		switch {
		case c == '"':
			sc.pos = i + 1
			return b, nil
		case c < 0x20:
			sc.pos = i
			return nil, sc.syntaxError("control character in string")
		case c == '\\':
			if i+1 >= len(sc.s) {
				sc.pos = i
				return nil, sc.syntaxError("unexpected end of JSON input")
			}
			switch e := sc.s[i+1]; e {
			case '"', '\\', '/':
				b = append(b, e)
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				r, n, ok := sc.hexRune(i)
				if !ok {
					sc.pos = i
					return nil, sc.syntaxError("invalid \\u escape")
				}
				b = utf8.AppendRune(b, r)
				i += n
				continue
			default:
				sc.pos = i
				return nil, sc.syntaxError("invalid escape " + strconv.Quote(string(sc.s[i:i+2])))
			}
			i += 2
		case c < utf8.RuneSelf:
			b = append(b, c)
			i++
		default:
			r, n := utf8.DecodeRune(sc.s[i:])
			b = utf8.AppendRune(b, r) // RuneError for invalid bytes, as in text
			i += n
		}
	}
	sc.pos = len(sc.s)
	return nil, sc.syntaxError("unexpected end of JSON input")
}

// hexRune decodes the \uXXXX escape at i, joining a surrogate pair when one follows.
// It returns the rune and how many bytes it read.
func (sc *scanner) hexRune(i int) (rune, int, bool) {
	r1, ok := hex4(sc.s, i+2)
	if !ok {
		return 0, 0, false
	}
	if utf16.IsSurrogate(r1) {
		if r2, ok := hex4(sc.s, i+8); ok && sc.s[i+6] == '\\' && sc.s[i+7] == 'u' {
			if r := utf16.DecodeRune(r1, r2); r != utf8.RuneError {
				return r, 12, true
			}
		}
		return utf8.RuneError, 6, true
	}
	return r1, 6, true
}

func hex4(s []byte, i int) (rune, bool) {
	if i+4 > len(s) {
		return 0, false
	}
	var r rune
	for _, c := range s[i : i+4] {
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

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// digits returns the index of the first byte at or after i that is not a digit.
func (sc *scanner) digits(i int) int {
	for i < len(sc.s) && isDigit(sc.s[i]) {
		i++
	}
	return i
}

// number reads the text of a JSON number, checking its grammar.
func (sc *scanner) number() ([]byte, error) {
	sc.peek()
	start, i := sc.pos, sc.pos
	if i < len(sc.s) && sc.s[i] == '-' {
		i++
	}
	if i < len(sc.s) && sc.s[i] == '0' {
		i++
	} else if j := sc.digits(i); j > i {
		i = j
	} else {
		if i > start { // a '-' with no digits after it
			sc.pos = i
			return nil, sc.syntaxError("invalid number")
		}
		return nil, sc.typeError("number")
	}
	if i < len(sc.s) && sc.s[i] == '.' {
		i++
		j := sc.digits(i)
		if j == i {
			sc.pos = i
			return nil, sc.syntaxError("invalid number")
		}
		i = j
	}
	if i < len(sc.s) && (sc.s[i] == 'e' || sc.s[i] == 'E') {
		i++
		if i < len(sc.s) && (sc.s[i] == '+' || sc.s[i] == '-') {
			i++
		}
		j := sc.digits(i)
		if j == i {
			sc.pos = i
			return nil, sc.syntaxError("invalid number")
		}
		i = j
	}
	sc.pos = i
	return sc.s[start:i], nil
}

// int32 reads a JSON number that must be an integer in int32's range, written as one:
// as strict as encoding/json is for an integer, since counts are integers in Plaid's
// schema. A fraction or an exponent (2.0, 2e0, 1e-400) is refused.
func (sc *scanner) int32() (int32, error) {
	// Counts are small integers: read up to nine digits, which cannot overflow, without
	// strconv. Anything else (a leading zero before more digits, a fraction, an
	// exponent, a long number) takes the general path.
	sc.peek()
	i := sc.pos
	neg := i < len(sc.s) && sc.s[i] == '-'
	if neg {
		i++
	}
	start := i
	var n int32
	for i < len(sc.s) && i-start < 9 && isDigit(sc.s[i]) {
		n = n*10 + int32(sc.s[i]-'0')
		i++
	}
	if digits := i - start; digits > 0 && (digits == 1 || sc.s[start] != '0') &&
		(i == len(sc.s) || !isNumberByte(sc.s[i])) {
		sc.pos = i
		if neg {
			n = -n
		}
		return n, nil
	}

	text, err := sc.number()
	if err != nil {
		return 0, err
	}
	n64, err := strconv.ParseInt(string(text), 10, 32)
	if err != nil {
		return 0, errValue("an integer in the 32-bit range, found " + string(text))
	}
	return int32(n64), nil
}

// isNumberByte reports whether c can continue a JSON number after its integer digits.
func isNumberByte(c byte) bool {
	return isDigit(c) || c == '.' || c == 'e' || c == 'E'
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
		if !sc.at(lit) {
			return sc.syntaxError("invalid literal")
		}
		found = kind
	case c == '-' || isDigit(c):
		found = "a number"
	default:
		return sc.syntaxError("invalid character " + strconv.QuoteRune(rune(c)))
	}
	return errValue("expected " + want + ", found " + found)
}

// literal consumes one of true, false or null.
func (sc *scanner) literal() (string, error) {
	for _, lit := range [...]string{"true", "false", "null"} {
		if sc.at(lit) {
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
		sc.pos++
		obj := sc.members(nil)
		for {
			_, more, err := obj.next()
			if err != nil || !more {
				return err
			}
			if err := sc.skip(depth + 1); err != nil {
				return err
			}
		}
	case c == '[':
		sc.pos++
		for first := true; ; first = false {
			more, err := sc.element(first)
			if err != nil || !more {
				return err
			}
			if err := sc.skip(depth + 1); err != nil {
				return err
			}
		}
	case c == '"':
		_, err := sc.text()
		return err
	case c == '-' || isDigit(c):
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
