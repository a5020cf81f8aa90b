package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/creditsessions/creditsessions/internal/app"
	"github.com/creditsessions/creditsessions/internal/loopback"
	"github.com/creditsessions/creditsessions/internal/plaid"
)

// The service child's environment. The credentials travel here, never in argv, where
// any user of the machine could read them.
const (
	serviceEnv         = "CREDITSESSIONS_SOAK_SERVICE" // "1": serve instead of soaking
	serviceBaseURLEnv  = "CREDITSESSIONS_SOAK_PLAID_BASE_URL"
	serviceClientIDEnv = "CREDITSESSIONS_SOAK_PLAID_CLIENT_ID"
	serviceSecretEnv   = "CREDITSESSIONS_SOAK_PLAID_SECRET"
)

// readyLine is the one line the child prints on stdout once it listens.
type readyLine struct {
	GRPC  string `json:"grpc"`
	HTTP  string `json:"http"`
	Admin string `json:"admin"` // metrics, for the goroutine count
	PID   int    `json:"pid"`
}

// exitLine is the line the child prints on stdout after a clean stop: what its
// resilience layer did, which cannot be seen from outside.
type exitLine struct {
	Guard guardStats `json:"guard"`
}

// guardStats is resilience.Stats on the wire.
type guardStats struct {
	Calls            int64 `json:"calls"`
	Coalesced        int64 `json:"coalesced"`
	Attempts         int64 `json:"attempts"`
	Retries          int64 `json:"retries"`
	RetryBudgetEmpty int64 `json:"retry_budget_empty"`
	Overloaded       int64 `json:"overloaded"`
	FastFailed       int64 `json:"fast_failed"`
	Isolated         int64 `json:"isolated"`
}

// serviceMain is the child's main: it serves until SIGTERM, or until its stdin closes
// (the soak that started it is gone), and returns the exit code.
func serviceMain() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := runService(ctx, os.Getenv, os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "soak service:", err)
		return 1
	}
	return 0
}

// runService serves on 127.0.0.1 against the Plaid API that getenv names, after
// writing its readyLine to stdout, until ctx is done or stdin reaches its end; after a
// clean stop it writes its exitLine.
func runService(ctx context.Context, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	baseURL := getenv(serviceBaseURLEnv)
	if err := loopback.CheckURL(baseURL); err != nil {
		return fmt.Errorf("%s: %w", serviceBaseURLEnv, err)
	}
	a, err := app.New(app.Config{
		GRPCAddr:  "127.0.0.1:0",
		HTTPAddr:  "127.0.0.1:0",
		AdminAddr: "127.0.0.1:0",
		Plaid: app.PlaidConfig{
			BaseURL:     baseURL,
			Credentials: plaid.Credentials{ClientID: getenv(serviceClientIDEnv), Secret: getenv(serviceSecretEnv)},
		},
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return err
	}
	line, err := json.Marshal(readyLine{GRPC: a.GRPCAddr().String(), HTTP: a.HTTPAddr().String(), Admin: a.AdminAddr().String(), PID: os.Getpid()})
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(stdout, "%s\n", line); err != nil {
		return fmt.Errorf("writing the ready line: %w", err)
	}
	// An orphan must not serve forever: the soak holds our stdin open, and the kernel
	// closes it when the soak dies, however it dies.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		_, _ = io.Copy(io.Discard, stdin)
		cancel()
	}()
	if err := a.Run(ctx); err != nil {
		return err
	}
	st := a.Guard().Stats()
	line, err = json.Marshal(exitLine{Guard: guardStats{
		Calls: st.Calls, Coalesced: st.Coalesced, Attempts: st.Attempts, Retries: st.Retries,
		RetryBudgetEmpty: st.RetryBudgetEmpty, Overloaded: st.Overloaded, FastFailed: st.FastFailed, Isolated: st.Isolated,
	}})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s\n", line)
	return err
}

// service is the running child.
type service struct {
	readyLine
	cmd    *exec.Cmd
	stdout *lineWriter
	done   chan struct{} // closed once the child has exited and been reaped
	err    error         // cmd.Wait's, read after done
}

// startService starts exe as the service against the emulator at baseURL and waits,
// at most timeout, for its ready line.
func startService(ctx context.Context, exe, baseURL string, creds plaid.Credentials, stderr io.Writer, timeout time.Duration) (*service, error) {
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(),
		serviceEnv+"=1",
		serviceBaseURLEnv+"="+baseURL,
		serviceClientIDEnv+"="+creds.ClientID,
		serviceSecretEnv+"="+creds.Secret,
	)
	out := newLineWriter()
	cmd.Stdout = out
	cmd.Stderr = stderr
	detach(cmd)
	// The pipe's write end stays open, held by cmd, until the child is reaped: the child
	// reads its end of stdin only to notice that we are gone.
	if _, err := cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the service: %w", err)
	}
	s := &service{cmd: cmd, stdout: out, done: make(chan struct{})}
	go func() {
		s.err = cmd.Wait()
		close(s.done)
	}()

	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var line []byte
	select {
	case line = <-out.ready:
	case <-s.done:
		return nil, fmt.Errorf("the service exited before it was ready: %v", s.err)
	case <-timer.C:
		s.kill()
		return nil, fmt.Errorf("the service did not print its addresses within %s", timeout)
	case <-ctx.Done():
		s.kill()
		return nil, ctx.Err()
	}
	if err := s.parseReady(line); err != nil {
		s.kill()
		return nil, fmt.Errorf("the service's ready line %q: %w", line, err)
	}
	return s, nil
}

func (s *service) parseReady(line []byte) error {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s.readyLine); err != nil {
		return err
	}
	if s.PID != s.cmd.Process.Pid {
		return fmt.Errorf("pid %d, but the child is %d", s.PID, s.cmd.Process.Pid)
	}
	return errors.Join(loopback.CheckAddr(s.GRPC), loopback.CheckAddr(s.HTTP), loopback.CheckAddr(s.Admin))
}

// stopResult is how the service ended.
type stopResult struct {
	Clean  bool
	Took   time.Duration // from SIGTERM to exit
	Detail string        // why it was not clean
	Guard  *guardStats   // from the exit line; nil without one
}

// stop sends SIGTERM and waits up to timeout for the child to exit 0; after that it
// kills it.
func (s *service) stop(timeout time.Duration) stopResult {
	start := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		s.kill()
		return stopResult{Took: time.Since(start), Detail: fmt.Sprintf("SIGTERM could not be sent (%v); killed", err)}
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-s.done:
		took := time.Since(start)
		if s.err != nil {
			return stopResult{Took: took, Detail: fmt.Sprintf("after SIGTERM: %v", s.err)}
		}
		res := stopResult{Clean: true, Took: took}
		var exit exitLine
		if err := json.Unmarshal(s.stdout.lastLine(), &exit); err == nil {
			res.Guard = &exit.Guard
		}
		return res
	case <-timer.C:
		s.kill()
		return stopResult{Took: time.Since(start), Detail: fmt.Sprintf("still running %s after SIGTERM; killed", timeout)}
	}
}

// kill ends the child at once and reaps it.
func (s *service) kill() {
	_ = s.cmd.Process.Kill()
	<-s.done
}

// lineWriter is the child's stdout: it hands over the first line, the ready line, at
// once, and keeps the last line after it, the exit line, for after the child has exited.
type lineWriter struct {
	ready chan []byte

	mu      sync.Mutex
	partial []byte
	sent    bool
	last    []byte
}

// maxLine bounds what is kept of one line.
const maxLine = 4 << 10

func newLineWriter() *lineWriter { return &lineWriter{ready: make(chan []byte, 1)} }

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for rest := p; len(rest) > 0; {
		chunk, after, complete := bytes.Cut(rest, []byte("\n"))
		rest = after
		if len(w.partial)+len(chunk) <= maxLine {
			w.partial = append(w.partial, chunk...)
		}
		if !complete {
			break
		}
		line := bytes.Clone(w.partial)
		w.partial = w.partial[:0]
		if !w.sent {
			w.ready <- line
			w.sent = true
		} else {
			w.last = line
		}
	}
	return len(p), nil
}

// lastLine is the last complete line after the first.
func (w *lineWriter) lastLine() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}
