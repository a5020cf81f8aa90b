package plaidjson

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// The word-at-a-time helpers, against plain loops over bytes.

func skipPlainASCIIReference(s []byte, i int) int {
	for ; i < len(s) && isPlainASCII(s[i]); i++ {
	}
	return i
}

func TestSpecialBytesFindsTheFirstSpecialByte(t *testing.T) {
	// Every byte value at every position of a word, alone and after every other byte
	// value in an earlier position, since a borrow from a lower byte could mislead.
	word := func(b []byte) uint64 {
		var w uint64
		for i := 7; i >= 0; i-- {
			w = w<<8 | uint64(b[i])
		}
		return w
	}
	for first := range 256 {
		for second := range 256 {
			for i := range 8 {
				for j := i + 1; j <= 8; j++ {
					b := [8]byte{'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a'}
					b[i] = byte(first)
					if j < 8 {
						b[j] = byte(second)
					}
					want := skipPlainASCIIReference(b[:], 0)
					got := 8
					if m := specialBytes(word(b[:])); m != 0 {
						got = firstMarked(m)
					}
					if got != want {
						require.Equal(t, want, got, "word %q", b)
					}
				}
			}
		}
	}
}

func firstMarked(m uint64) int {
	for i := range 8 {
		if m>>(8*i+7)&1 != 0 {
			return i
		}
	}
	return 8
}

func TestSkipPlainASCIIMatchesAByteLoop(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	special := []byte{'"', '\\', 0, '\n', 0x1f, 0x7f, 0x80, 0xc3, 0xff, ' ', '!', '#', '[', ']'}
	for range 20_000 {
		b := make([]byte, rng.IntN(40))
		for i := range b {
			if rng.IntN(8) == 0 {
				b[i] = special[rng.IntN(len(special))]
			} else {
				b[i] = byte(' ' + rng.IntN(95))
			}
		}
		for start := 0; start <= len(b); start++ {
			want := skipPlainASCIIReference(b, start)
			require.Equal(t, want, skipPlainASCII(b, start), "%q from %d", b, start)
			require.Equal(t, want, skipPlainASCIIString(string(b), start), "%q from %d", b, start)
		}
	}
}

func TestHasPrefixMatchesBytesHasPrefix(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for _, keys := range [][]string{sessionKeys, resultsKeys, itemAddKeys, bankResultKeys, payrollIncomeKeys, documentIncomeKeys, sessionErrorKeys, responseKeys, requestKeys} {
		for _, k := range keys {
			for range 200 {
				// The key itself, truncated, with one byte changed, or with more after it.
				s := []byte(k)
				switch rng.IntN(4) {
				case 0:
					s = s[:rng.IntN(len(s))]
				case 1:
					s[rng.IntN(len(s))] ^= byte(1 + rng.IntN(255))
				case 2:
					s = append(s, `"x",`...)
				}
				require.Equal(t, bytes.HasPrefix(s, []byte(k)), hasPrefix(s, k), "%q in %q", k, s)
			}
		}
	}
	require.True(t, hasPrefix([]byte(`"ab":1`), `"ab":`), "keys shorter than a word")
	require.False(t, hasPrefix([]byte(`"ab"`), `"ab":`))
}
