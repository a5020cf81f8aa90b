package audit

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// chain writes n records through a real trail and returns the file's lines.
func chain(t *testing.T, n int) []string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.log")
	l, _ := openTest(t, Options{Path: path})
	for range n {
		_, err := call(l, getMethod, nil)
		require.NoError(t, err)
	}
	require.NoError(t, l.Close())
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	return strings.SplitAfter(strings.TrimSuffix(string(data), "\n"), "\n")
}

func verify(t *testing.T, lines []string) Result {
	t.Helper()
	res, err := Verify(strings.NewReader(strings.Join(lines, "")), GenesisPrev)
	require.NoError(t, err)
	return res
}

func TestVerifyFindsEditedRemovedAndMovedRecords(t *testing.T) {
	lines := chain(t, 5)
	require.Len(t, lines, 5)
	intact := verify(t, lines)
	assert.Empty(t, intact.Breaks)
	assert.Equal(t, 5, intact.Records)

	edited := append([]string(nil), lines...)
	edited[1] = strings.Replace(edited[1], `"sessions":2`, `"sessions":0`, 1)
	require.NotEqual(t, lines[1], edited[1])

	removed := append(append([]string(nil), lines[:2]...), lines[3:]...)
	moved := []string{lines[0], lines[2], lines[1], lines[3], lines[4]}
	removedFirst := lines[1:]

	tests := []struct {
		name  string
		lines []string
		want  []int // lines that break
	}{
		{"a record edited", edited, []int{3}},
		{"a record removed", removed, []int{3}},
		{"two records swapped", moved, []int{2, 3, 4}},
		{"the first record removed", removedFirst, []int{1}},
		{"garbage inserted", []string{lines[0], "not json\n", lines[1]}, []int{2, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []int
			for _, b := range verify(t, tt.lines).Breaks {
				got = append(got, b.Line)
			}
			assert.Equal(t, tt.want, got)
		})
	}
}

// FuzzVerify: any file, however broken, is verified without a panic, an error or a
// hang, and every break it reports names a line of the file.
func FuzzVerify(f *testing.F) {
	f.Add([]byte(`{"v":1,"prev":"` + GenesisPrev + `"}` + "\n"))
	f.Add([]byte("{\"v\":2}\n\n{}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := Verify(bytes.NewReader(data), "")
		require.NoError(t, err, "a reader of bytes never fails")
		assert.LessOrEqual(t, res.Records, bytes.Count(data, []byte{'\n'})+1)
		for _, b := range res.Breaks {
			assert.GreaterOrEqual(t, b.Line, 1)
			assert.LessOrEqual(t, b.Line, res.Records)
		}
	})
}
