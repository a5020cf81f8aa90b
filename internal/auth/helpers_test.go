package auth

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// seedString reads a committed fuzz seed ("go test fuzz v1" then one string or []byte).
func seedString(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "fuzz", name))
	require.NoError(t, err)
	lines := strings.SplitN(string(data), "\n", 3)
	require.Len(t, lines, 3)
	v := lines[1]
	v = strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(v, "string("), "[]byte("), ")")
	s, err := strconv.Unquote(v)
	require.NoError(t, err)
	return s
}
