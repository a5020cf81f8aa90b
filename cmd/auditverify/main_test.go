package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/creditsessions/creditsessions/internal/audit"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// writeChain writes n records chained from prev, and returns the last line's hash.
func writeChain(t *testing.T, path, prev string, n int) (string, []string) {
	t.Helper()
	var lines []string
	for i := range n {
		line := fmt.Sprintf(`{"v":1,"time":"t%d","caller":"c","transport":"grpc","method":"/m","code":"OK","sessions":%d,"prev":"%s"}`, i, i, prev)
		sum := sha256.Sum256([]byte(line))
		prev = hex.EncodeToString(sum[:])
		lines = append(lines, line+"\n")
	}
	require.NoError(t, os.WriteFile(path, []byte(strings.Join(lines, "")), 0o600))
	return prev, lines
}

func TestAuditverifySaysWhereAChainBreaks(t *testing.T) {
	dir := t.TempDir()
	first, second := filepath.Join(dir, "audit.log.1"), filepath.Join(dir, "audit.log")
	last, _ := writeChain(t, first, audit.GenesisPrev, 3)
	_, lines := writeChain(t, second, last, 3)

	var out, errOut bytes.Buffer
	require.NoError(t, run(context.Background(), []string{first, second}, &out, &errOut))
	assert.Contains(t, out.String(), second+": 3 records, chain intact")

	// The middle record of the second file removed.
	require.NoError(t, os.WriteFile(second, []byte(lines[0]+lines[2]), 0o600))
	out.Reset()
	err := run(context.Background(), []string{first, second}, &out, &errOut)
	assert.ErrorIs(t, err, errBroken)
	assert.Contains(t, out.String(), "\n"+second+":2: prev does not match line 1: a record was edited, removed or moved before here\n")

	// The first file's last record removed: the second file no longer links to it.
	_, firstLines := writeChain(t, first, audit.GenesisPrev, 3)
	require.NoError(t, os.WriteFile(first, []byte(firstLines[0]+firstLines[1]), 0o600))
	_, _ = writeChain(t, second, last, 3)
	out.Reset()
	assert.ErrorIs(t, run(context.Background(), []string{first, second}, &out, &errOut), errBroken)
	assert.Contains(t, out.String(), second+":1: prev does not match the last record of the file before")

	assert.Error(t, run(context.Background(), nil, &out, &errOut), "no file")
}
