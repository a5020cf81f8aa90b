package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMain lets the test binary serve as the children: loadtest re-executes its own
// binary, which under go test is this one.
func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := runChild(ctx, role, os.Getenv, os.Stdin, os.Stdout, os.Stderr)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadtest child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestLoadtestShortRun runs the small scenario briefly, profiling the REST windows, and
// checks the plumbing: every target measured, no errors, CPU accounted, profiles written,
// children stopped.
func TestLoadtestShortRun(t *testing.T) {
	dir := t.TempDir()
	cfg := defaults
	cfg.Scenario = "small"
	cfg.C1Duration = 800 * time.Millisecond
	cfg.Duration = 800 * time.Millisecond
	cfg.Warmup = 200 * time.Millisecond
	cfg.Concurrency = 4
	cfg.Rate = 200
	cfg.RateDuration = 800 * time.Millisecond
	cfg.Rounds = 2
	cfg.ProfileTarget = targetREST
	cfg.CPUProfile = filepath.Join(dir, "cpu.pprof")
	cfg.MemProfile = filepath.Join(dir, "mem.pprof")

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	rep, err := loadtest(ctx, cfg, &stdout, &stderr)
	require.NoError(t, err, "stderr:\n%s", stderr.String())
	t.Log("\n" + stdout.String())
	require.NoError(t, rep.failure())

	require.Len(t, rep.Results, 6*3*2, "6 targets × 3 windows × 2 rounds")
	for _, res := range rep.Results {
		t.Run(res.Window.Name()+"/"+res.Target, func(t *testing.T) {
			assert.Zero(t, res.Errors, "errors: %v", res.ErrorKind)
			assert.Positive(t, res.Calls)
			assert.Positive(t, res.RPS())
			assert.Len(t, res.Latencies, int(res.Calls))
			assert.Positive(t, res.Sessions)
			assert.Positive(t, res.EmulatorPeak)
			if res.Window.Kind == "latency" {
				return // at concurrency 1, a slow machine may spend under a clock tick
			}
			if res.Target != targetCanned { // which answers without Plaid
				assert.Positive(t, res.perCall(res.EmulatorCPU), "the emulator served every call")
			}
			assert.Positive(t, res.perCall(res.LoadgenCPU))
			if res.Target == targetDirect {
				return
			}
			assert.Positive(t, res.perCall(res.ServiceCPU))
			assert.Positive(t, res.ServicePeak)
		})
	}
	targets := map[string]int{}
	for _, res := range rep.Results {
		targets[res.Target]++
	}
	assert.Equal(t, map[string]int{targetDirect: 6, targetCanned: 6, targetBare: 6, targetNaive: 6, targetGRPC: 6, targetREST: 6}, targets)
	for _, res := range rep.Results {
		if res.Target != targetDirect && res.Window.Kind != "latency" {
			assert.Positive(t, res.Service.Mallocs, "%s %s: allocations counted", res.Window.Name(), res.Target)
			assert.Positive(t, res.Service.Syscalls, "%s %s: system calls counted", res.Window.Name(), res.Target)
		}
	}

	require.Len(t, rep.Children, 3)
	for _, c := range rep.Children {
		assert.NoError(t, c.Err, "the %s child", c.Role)
		// Reaped, so gone: the pid names no process (reuse so soon is implausible).
		assert.ErrorIs(t, syscall.Kill(c.PID, 0), syscall.ESRCH, "the %s child is still there", c.Role)
	}

	var want []string
	for _, round := range []string{"", ".2"} {
		for _, w := range []string{"small-rate", "small-latency", "small-throughput"} {
			want = append(want, "cpu."+w+round+".pprof", "mem."+w+round+".base.pprof", "mem."+w+round+".pprof")
		}
	}
	require.Len(t, rep.Profiles, len(want))
	for i, name := range want {
		assert.Equal(t, filepath.Join(dir, name), rep.Profiles[i])
		info, err := os.Stat(filepath.Join(dir, name))
		if assert.NoError(t, err) {
			assert.Positive(t, info.Size(), name)
		}
	}
	for _, table := range []string{"small (rate)", "small (latency)", "small (throughput)", "Markdown, for BENCHMARKS.md", "| rest |", "| naive |",
		"small call CPU, gRPC ÷ floor", "REST ÷ gRPC answered calls/s"} {
		assert.Contains(t, stdout.String(), table)
	}
}

// TestChildStopsWhenParentGoes checks the orphan guard: a child whose stdin closes
// (its parent died, however) stops on its own.
func TestChildStopsWhenParentGoes(t *testing.T) {
	exe, err := os.Executable()
	require.NoError(t, err)
	c, err := startChild(t.Context(), exe, roleEmulator, nil, os.Stderr)
	require.NoError(t, err)
	t.Cleanup(func() { c.stop() })
	require.NoError(t, c.stdin.Close())
	select {
	case <-c.done:
		assert.NoError(t, c.err)
	case <-time.After(15 * time.Second):
		t.Fatal("the child did not exit after its stdin closed")
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    func(*config)
		wantErr string
	}{
		{name: "defaults", args: nil, want: func(*config) {}},
		{name: "large only", args: []string{"-scenario", "large", "-large-concurrency", "8"},
			want: func(c *config) { c.Scenario, c.LargeConcurrency = "large", 8 }},
		{name: "unknown scenario", args: []string{"-scenario", "huge"}, wantErr: "-scenario"},
		{name: "direct cannot be profiled", args: []string{"-profile-target", "direct"}, wantErr: "-profile-target"},
		{name: "zero concurrency", args: []string{"-concurrency", "0"}, wantErr: "-concurrency"},
		{name: "arguments", args: []string{"secret"}, wantErr: "flags only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseFlags(tt.args, &bytes.Buffer{})
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			want := defaults
			tt.want(&want)
			assert.Equal(t, want, got)
		})
	}
}

func TestPercentile(t *testing.T) {
	var sorted []time.Duration
	for i := 1; i <= 100; i++ {
		sorted = append(sorted, time.Duration(i))
	}
	assert.Equal(t, time.Duration(50), percentile(sorted, 50))
	assert.Equal(t, time.Duration(99), percentile(sorted, 99))
	assert.Equal(t, time.Duration(100), percentile(sorted, 100))
	assert.Equal(t, time.Duration(7), percentile([]time.Duration{7}, 99))
	assert.Zero(t, percentile(nil, 50))
}

func TestInsertBeforeExt(t *testing.T) {
	assert.Equal(t, "/a/cpu.small-latency.pprof", insertBeforeExt("/a/cpu.pprof", "small-latency"))
	assert.Equal(t, "/a/mem.base", insertBeforeExt("/a/mem", "base"))
	assert.Equal(t, "/a/mem.x.base.pprof", baseProfilePath(insertBeforeExt("/a/mem.pprof", "x")))
}
