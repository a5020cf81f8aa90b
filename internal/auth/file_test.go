package auth

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type recordingObserver struct {
	mu     sync.Mutex
	events []string
}

func (r *recordingObserver) FileLoaded(name string, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ok {
		r.events = append(r.events, name+":ok")
	} else {
		r.events = append(r.events, name+":failed")
	}
}

func upper(c [][]byte) (string, error) {
	s := string(c[0])
	if strings.Contains(s, "bad") {
		return "", errors.New("bad content")
	}
	return strings.ToUpper(s), nil
}

// A file swapped by a symbolic link keeps its modification time and size when the
// new version was written in the same second with as many bytes: only its content
// tells. The file is re-read by content.
func TestAFileIsReloadedByItsContent(t *testing.T) {
	dir := t.TempDir()
	for _, v := range []string{"v1", "v2", "v3"} {
		require.NoError(t, os.Mkdir(filepath.Join(dir, v), 0o700))
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "v1", "f"), []byte("aaaa"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "v2", "f"), []byte("bbbb"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "v3", "f"), []byte("bad!"), 0o600))
	stamp := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, v := range []string{"v1", "v2", "v3"} {
		require.NoError(t, os.Chtimes(filepath.Join(dir, v, "f"), stamp, stamp))
	}
	swap := func(v string) {
		tmp := filepath.Join(dir, "data.tmp")
		require.NoError(t, os.Symlink(v, tmp))
		require.NoError(t, os.Rename(tmp, filepath.Join(dir, "data")))
	}
	swap("v1")
	obs := &recordingObserver{}
	logs := &strings.Builder{}
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		logMu.Lock()
		defer logMu.Unlock()
		return logs.Write(p)
	}), nil))
	f, err := WatchFile("test", []string{filepath.Join(dir, "data", "f")}, time.Hour, logger, obs, upper)
	require.NoError(t, err)
	assert.Equal(t, "AAAA", f.Get())

	swap("v2")
	assert.Equal(t, "AAAA", f.Get(), "not looked at again before the interval")
	f.Refresh()
	assert.Equal(t, "BBBB", f.Get())

	swap("v3")
	f.Refresh()
	f.Refresh()
	assert.Equal(t, "BBBB", f.Get(), "a change that does not parse keeps the last good one")
	assert.Equal(t, []string{"test:ok", "test:ok", "test:failed"}, obs.events, "a broken file is reported once")
	assert.Contains(t, logs.String(), "bad content")
	assert.NotContains(t, logs.String(), "bad!", "the log does not quote the file")

	require.NoError(t, os.Remove(filepath.Join(dir, "data")))
	f.Refresh()
	assert.Equal(t, "BBBB", f.Get(), "nor does a file that went away")

	_, err = WatchFile("test", []string{filepath.Join(dir, "v3", "f")}, time.Hour, logger, obs, upper)
	assert.ErrorContains(t, err, "test: bad content", "a file that does not load at start stops start-up")
}

func TestAFileLooksAgainOnUseAfterItsInterval(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	require.NoError(t, os.WriteFile(path, []byte("one"), 0o600))
	f, err := WatchFile("test", []string{path}, time.Millisecond, nil, nil, upper)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, []byte("two"), 0o600))
	require.Eventually(t, func() bool { return f.Get() == "TWO" }, 5*time.Second, time.Millisecond)
}

func TestAnOversizedFileIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	require.NoError(t, os.WriteFile(path, make([]byte, maxFileBytes+1), 0o600))
	_, err := WatchFile("test", []string{path}, 0, nil, nil, upper)
	assert.ErrorContains(t, err, "larger than 1 MiB")
}

type writerFunc func([]byte) (int, error)

func (w writerFunc) Write(p []byte) (int, error) { return w(p) }
