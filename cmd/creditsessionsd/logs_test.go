package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The built binary, sent SIGTERM right after a burst of calls, has written every call's
// log line, and its shutdown lines, by the time it exits: log lines are gathered and
// written in batches (internal/logbuf), and the last batch must not die with the process.
// The flush interval is an hour, so that nothing but the exit writes the calls' lines.
func TestLogLinesAreCompleteAtSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "creditsessionsd")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	require.NoError(t, build.Run())

	cmd := exec.Command(bin, "-grpc-addr", "127.0.0.1:0", "-http-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0",
		"-log-format", "json", "-log-flush-interval", "1h")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")} // no PLAID_*: the embedded emulator
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	// The startup lines are written before the banner (a flush), but "serving" comes
	// later and waits in the buffer: find the REST address in the banner instead.
	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		scanner := bufio.NewScanner(stderr)
		for scanner.Scan() {
			lines <- scanner.Text()
		}
	}()
	var restURL string
	deadline := time.After(30 * time.Second)
	for restURL == "" {
		select {
		case line, ok := <-lines:
			require.True(t, ok, "the binary exited before its banner")
			if _, rest, found := strings.Cut(line, "curl -s "); found {
				fields := strings.Fields(rest)
				restURL = fields[len(fields)-1]
			}
		case <-deadline:
			t.Fatal("no banner within 30s")
		}
	}

	const calls = 20
	for i := range calls {
		resp, err := http.Post(restURL, "application/json", strings.NewReader(`{"user_token":"user-sandbox-example#`+string(rune('a'+i))+`"}`))
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))

	var got []map[string]any
	for line := range lines {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil {
			got = append(got, rec)
		}
	}
	require.NoError(t, cmd.Wait(), "exits 0 after SIGTERM")
	callLines := 0
	var msgs []string
	for _, rec := range got {
		msg, _ := rec["msg"].(string)
		msgs = append(msgs, msg)
		if msg == "call" {
			callLines++
			assert.Equal(t, "OK", rec["code"])
		}
	}
	assert.Equal(t, calls, callLines, "every call's line")
	assert.Contains(t, msgs, "serving")
	assert.Equal(t, "stopped", msgs[len(msgs)-1], "the last line written is the last one logged")
}
