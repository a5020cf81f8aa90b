package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/creditsessions/creditsessions/internal/plaid"
)

// child is a running child process, seen from the parent.
type child struct {
	role  string
	ready childLine
	cmd   *exec.Cmd
	stdin io.Closer        // closing it tells the child its parent is gone
	lines chan childLine   // the lines after the ready line
	done  chan struct{}    // closed once the child has exited and been reaped
	err   error            // cmd.Wait's, read after done
	stop  func() childExit // stops the child, once
}

// childExit is how a child ended.
type childExit struct {
	Role string
	PID  int
	Err  error // nil: it exited 0 after SIGTERM
}

// startChild starts exe as the child role with env added to a clean environment, and
// returns once the child has printed its ready line.
func startChild(ctx context.Context, exe, role string, env []string, stderr io.Writer) (*child, error) {
	cmd := exec.Command(exe)
	cmd.Env = append(childEnviron(), roleEnv+"="+role)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = stderr
	// Its own process group, so that a Ctrl-C reaches this process only, which then
	// stops the children in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the %s child: %w", role, err)
	}
	c := &child{role: role, cmd: cmd, stdin: stdin, lines: make(chan childLine, 16), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		defer close(c.lines)
		scanner := bufio.NewScanner(stdout)
		for scanner.Scan() {
			var line childLine
			if err := json.Unmarshal(scanner.Bytes(), &line); err != nil {
				line = childLine{Error: fmt.Sprintf("unreadable line %q", scanner.Text())}
			}
			c.lines <- line
		}
		c.err = cmd.Wait() // after the last read from stdout, as exec requires
	}()
	c.stop = sync.OnceValue(c.terminate)

	ready, err := c.await(ctx, 30*time.Second, "its ready line")
	if err == nil && (ready.Role != role || ready.PID != cmd.Process.Pid) {
		err = fmt.Errorf("the %s child's ready line is %+v", role, ready)
	}
	if err != nil {
		c.stop()
		return nil, err
	}
	c.ready = ready
	return c, nil
}

// await returns the child's next line.
func (c *child) await(ctx context.Context, timeout time.Duration, what string) (childLine, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case line, ok := <-c.lines:
		if !ok {
			<-c.done
			return childLine{}, fmt.Errorf("the %s child exited before %s: %v", c.role, what, c.err)
		}
		if line.Error != "" {
			return line, fmt.Errorf("the %s child: %s", c.role, line.Error)
		}
		return line, nil
	case <-timer.C:
		return childLine{}, fmt.Errorf("the %s child sent no %s within %v", c.role, what, timeout)
	case <-ctx.Done():
		return childLine{}, ctx.Err()
	}
}

// signal sends sig and waits for the child's acknowledgement, event.
func (c *child) signal(ctx context.Context, sig os.Signal, event string) error {
	if err := c.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signalling the %s child: %w", c.role, err)
	}
	line, err := c.await(ctx, time.Minute, event)
	if err != nil {
		return err
	}
	if line.Event != event {
		return fmt.Errorf("the %s child answered %q, want %q", c.role, line.Event, event)
	}
	return nil
}

// terminate sends SIGTERM and waits for the child to exit; one that does not within
// its grace is killed, and that is an error.
func (c *child) terminate() childExit {
	exit := childExit{Role: c.role, PID: c.cmd.Process.Pid}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(15 * time.Second)
	defer timer.Stop()
	select {
	case <-c.done:
		exit.Err = c.err
	case <-timer.C:
		_ = c.cmd.Process.Kill()
		<-c.done
		exit.Err = errors.New("did not exit within 15s of SIGTERM; killed")
	}
	_ = c.stdin.Close()
	return exit
}

// childEnviron is this process's environment without what the children are told
// explicitly, so that nothing inherited (a real PLAID_SECRET, say) reaches them.
func childEnviron() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PLAID_") || strings.HasPrefix(kv, "LOADTEST_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// newCredentials makes credentials for this run's emulator: random, so that nothing
// but the children's environment holds them.
func newCredentials() plaid.Credentials {
	return plaid.Credentials{ClientID: "loadtest-" + rand.Text(), Secret: rand.Text()}
}
