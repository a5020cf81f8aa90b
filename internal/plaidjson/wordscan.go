package plaidjson

import (
	"encoding/binary"
	"math/bits"
	"unicode/utf8"
)

// Word-at-a-time scanning of string contents. Most of a Plaid body is the text of keys
// and identifiers, so testing eight bytes per step instead of one is a large saving in
// both directions. Words are read little-endian, so that the first byte in the text is
// the lowest in the word, on any machine. wordscan_test.go holds each helper to a
// plain loop over bytes.

// lowBits and highBits repeat 0x01 and 0x80 in every byte of a word.
const (
	lowBits  = 0x0101010101010101
	highBits = 0x8080808080808080
)

// specialBytes sets the high bit of each byte of w that is '"', '\\', a control
// character (below 0x20) or not ASCII (0x80 and above). Only the lowest set byte is
// exact: a subtraction's borrow can also mark a plain byte above a marked one, never
// below, which is all that finding the first special byte needs.
func specialBytes(w uint64) uint64 {
	// XOR with 0x02 maps '"' (0x22) to 0x20 and the control characters onto
	// themselves, and every other byte to 0x21 or above, so one subtraction finds both.
	quoteOrControl := (w ^ lowBits*0x02) - lowBits*0x21
	backslash := (w ^ lowBits*'\\') - lowBits
	// Either difference can also have the high bit set in a byte of w that is not
	// ASCII; w marks those itself.
	return (quoteOrControl | backslash | w) & highBits
}

// isPlainASCII reports whether c can stand for itself in a JSON string and is ASCII.
func isPlainASCII(c byte) bool {
	return c >= 0x20 && c < utf8.RuneSelf && c != '"' && c != '\\'
}

// skipPlainASCII returns the index of the first byte of s at or after i that is not
// plain ASCII (see isPlainASCII), or len(s).
func skipPlainASCII(s []byte, i int) int {
	for ; i+8 <= len(s); i += 8 {
		if m := specialBytes(binary.LittleEndian.Uint64(s[i:])); m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
	}
	for ; i < len(s) && isPlainASCII(s[i]); i++ {
	}
	return i
}

// skipPlainASCIIString is skipPlainASCII for a string.
func skipPlainASCIIString(s string, i int) int {
	for ; i+8 <= len(s); i += 8 {
		if m := specialBytes(stringWord(s[i:])); m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
	}
	for ; i < len(s) && isPlainASCII(s[i]); i++ {
	}
	return i
}

// hasPrefix reports whether s begins with k, a key as members expects it. Keys are
// short and known, and comparing them a word at a time here costs less than calling
// the runtime's general comparison, which string(s[:len(k)]) == k does.
func hasPrefix(s []byte, k string) bool {
	if len(s) < len(k) {
		return false
	}
	if len(k) < 8 {
		return string(s[:len(k)]) == k
	}
	for i := 0; i < len(k)-8; i += 8 {
		if binary.LittleEndian.Uint64(s[i:]) != stringWord(k[i:]) {
			return false
		}
	}
	last := len(k) - 8 // the last word, which may overlap the one before
	return binary.LittleEndian.Uint64(s[last:]) == stringWord(k[last:])
}

// stringWord is binary.LittleEndian.Uint64 for a string; the compiler makes it one load.
func stringWord(s string) uint64 {
	s = s[:8]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}
