package main

import (
	"bytes"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creditsessions/creditsessions/internal/emulator"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// TestMain doubles as the service child: run re-executes this test binary with
// serviceEnv set, exactly as the soak command re-executes itself.
func TestMain(m *testing.M) {
	if os.Getenv(serviceEnv) == "1" {
		os.Exit(serviceMain())
	}
	goleak.VerifyTestMain(m)
}

// syncBuffer is a bytes.Buffer that the child's stderr copier and the test can share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestSoak(t *testing.T) {
	// Milder than the defaults, and every kind: five failures in a row open the
	// service's circuit for 5 s, which would fail most of a 3 s run.
	faults, err := emulator.ParseFaults("error=0.06,errors=API_ERROR/INTERNAL_SERVER_ERROR+API_ERROR/PLANNED_MAINTENANCE," +
		"ratelimit=0.02,reset=0.01,stall=0.01,stall-for=200ms,garbage=0.01")
	require.NoError(t, err)
	var stdout, progress, serviceLog syncBuffer
	cfg := config{
		Duration: 3 * time.Second, Rate: 40, Concurrency: 4, MaxCalls: 1000,
		Faults: faults, Seed: 1, ServiceLog: &serviceLog,
		SampleEvery: time.Second, ProgressEvery: time.Second,
	}
	rep, err := run(t.Context(), cfg, &stdout, &progress)
	if s := serviceLog.String(); s != "" {
		t.Log("service log:\n" + s)
	}
	require.NoError(t, err)
	t.Log(stdout.String())

	assert.Positive(t, rep.calls, "calls made")
	assert.Equal(t, rep.calls, rep.grpcCalls+rep.restCalls)
	assert.Positive(t, rep.grpcCalls)
	assert.Positive(t, rep.restCalls)
	assert.Greater(t, rep.upstreamPerCall(), 0.0, "upstream calls per call")
	assert.Less(t, rep.goodErrorRate(), 0.5, "good-token error rate")
	assert.Positive(t, rep.unknownCaller, "unknown tokens got their caller error")
	assert.Zero(t, rep.unknownWrong(), "unknown tokens got nothing but their caller error or a transient error")
	assert.True(t, rep.stop.Clean, "the service stopped cleanly: %s", rep.stop.Detail)
	if assert.NotNil(t, rep.stop.Guard, "the service's exit line") {
		assert.Equal(t, rep.calls, rep.stop.Guard.Calls, "every call reached the service's guard")
		assert.GreaterOrEqual(t, rep.stop.Guard.Attempts, rep.upstreamCalls, "the emulator saw no more requests than the guard made")
	}
	for name, s := range map[string]series{"RSS": rep.vitals.RSS, "goroutines": rep.vitals.Goroutines} {
		assert.Positive(t, s.start, "%s after the warm-up", name)
		assert.Positive(t, s.end, "%s at the end", name)
		assert.GreaterOrEqual(t, s.max, max(s.start, s.end), name)
	}
	assert.NoError(t, rep.vitals.RSSErr)
	assert.NoError(t, rep.vitals.GoroutinesErr)
	assert.Equal(t, "-duration", rep.load.stoppedBy)

	out := stdout.String()
	assert.Contains(t, out, "| soak | result |")
	assert.Contains(t, out, "clean, exit 0")
	assert.Contains(t, progress.String(), "soak:", "a progress line")
}

func TestSoakStopsAtMaxCalls(t *testing.T) {
	var serviceLog syncBuffer
	cfg := config{Duration: time.Minute, Rate: 200, Concurrency: 4, MaxCalls: 50, Seed: 7, Quiet: true, ServiceLog: &serviceLog}
	var stdout bytes.Buffer
	rep, err := run(t.Context(), cfg, &stdout, io.Discard)
	require.NoError(t, err, "service log:\n%s", serviceLog.String())
	assert.Equal(t, "-max-calls", rep.load.stoppedBy)
	assert.Equal(t, int64(50), rep.calls)
	assert.Zero(t, rep.goodFailed, "no faults: no failures")
	assert.True(t, rep.stop.Clean, rep.stop.Detail)
	assert.Contains(t, rep.memoryLine(), "no start", "the load ended before the warm-up")
	assert.Empty(t, rep.failures())
}

func TestRunServiceRefusesAnUpstreamOffThisHost(t *testing.T) {
	for _, url := range []string{"", "http://10.0.0.1:8080", "https://127.0.0.1:8080", "http://localhost:8080"} {
		t.Run(url, func(t *testing.T) {
			getenv := func(k string) string {
				if k == serviceBaseURLEnv {
					return url
				}
				return "x"
			}
			var stdout bytes.Buffer
			err := runService(t.Context(), getenv, strings.NewReader(""), &stdout, io.Discard)
			require.Error(t, err)
			assert.Empty(t, stdout.String(), "no ready line")
		})
	}
}

func TestParseFlags(t *testing.T) {
	cfg, err := parseFlags(nil, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, 2*time.Minute, cfg.Duration)
	assert.Equal(t, 300, cfg.Rate)
	assert.Equal(t, 32, cfg.Concurrency)
	assert.Equal(t, uint64(1), cfg.Seed)
	assert.InDelta(t, 0.20, faultRate(cfg), 1e-9, "the default faults fail 20% of calls")
	assert.Equal(t, defaultFaults, cfg.Faults.String())

	for _, args := range [][]string{
		{"-duration", "0s"}, {"-rate", "0"}, {"-concurrency", "0"}, {"-max-calls", "0"},
		{"-faults", "error=2"}, {"extra"},
	} {
		_, err := parseFlags(args, io.Discard)
		assert.Error(t, err, "%q", args)
	}
}

func TestCallMix(t *testing.T) {
	const n = 100_000
	mix := newCallMix(1, 0)
	var byClass [4]int
	var grpcCalls int
	unknowns := map[string]bool{}
	for range n {
		c := mix.next()
		byClass[c.class]++
		if c.transport == overGRPC {
			grpcCalls++
		}
		switch c.class {
		case hotToken:
			assert.Equal(t, hotUserToken, c.token)
		case unknownToken:
			assert.False(t, unknowns[c.token], "unknown tokens do not repeat")
			unknowns[c.token] = true
		}
	}
	share := func(k int) float64 { return float64(k) / n }
	assert.InDelta(t, 0.5, share(grpcCalls), 0.01)
	assert.InDelta(t, 0.55, share(byClass[fixtureToken]), 0.01)
	assert.InDelta(t, 0.20, share(byClass[hotToken]), 0.01)
	assert.InDelta(t, 0.15, share(byClass[unknownToken]), 0.01)
	assert.InDelta(t, 0.10, share(byClass[uniqueToken]), 0.01)
}

func TestParseVmRSS(t *testing.T) {
	tests := []struct {
		name    string
		status  string
		want    int64
		wantErr bool
	}{
		{name: "kernel format", status: "Name:\tsoak\nVmPeak:\t  9000 kB\nVmRSS:\t   12345 kB\nThreads:\t7\n", want: 12345 << 10},
		{name: "no VmRSS (a zombie)", status: "Name:\tsoak\nState:\tZ (zombie)\n", wantErr: true},
		{name: "not kB", status: "VmRSS:\t12 MB\n", wantErr: true},
		{name: "not a number", status: "VmRSS:\tlots kB\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseVmRSS([]byte(tt.status))
			if tt.wantErr {
				assert.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestParseGoroutines(t *testing.T) {
	metrics := "# HELP go_goroutines Number of goroutines that currently exist.\n# TYPE go_goroutines gauge\ngo_goroutines 42\ngo_threads 9\n"
	n, err := parseGoroutines(strings.NewReader(metrics))
	require.NoError(t, err)
	assert.Equal(t, int64(42), n)
	_, err = parseGoroutines(strings.NewReader("go_threads 9\n"))
	assert.Error(t, err)
}

func TestLineWriter(t *testing.T) {
	w := newLineWriter()
	for _, chunk := range []string{`{"grpc":`, `"a"}` + "\n" + `{"guard"`, ":1}\n", "partial"} {
		_, err := w.Write([]byte(chunk))
		require.NoError(t, err)
	}
	assert.Equal(t, `{"grpc":"a"}`, string(<-w.ready))
	assert.Equal(t, `{"guard":1}`, string(w.lastLine()))
}

func TestFailures(t *testing.T) {
	passing := func() *report {
		return &report{
			calls: 100, good: 85, unknown: 15, unknownCaller: 15,
			vitals: vitalsReport{RSS: series{start: 100 << 20, end: 110 << 20, max: 120 << 20}},
			stop:   stopResult{Clean: true},
		}
	}
	tests := []struct {
		name   string
		change func(*report)
		want   string
	}{
		{name: "passing", change: func(*report) {}},
		{name: "unclean stop", change: func(r *report) { r.stop = stopResult{Detail: "exit status 1"} }, want: "did not stop cleanly"},
		{name: "unknown token got something else", change: func(r *report) {
			r.unknownCaller = 14
			r.outcomes = []outcomeCount{{label: "gRPC OK", unknown: 1}}
		}, want: "1 unknown-token calls got something other"},
		{name: "transient errors on unknown tokens pass", change: func(r *report) { r.unknownCaller, r.unknownTransit = 10, 5 }},
		{name: "memory grew", change: func(r *report) { r.vitals.RSS.end = 126 << 20 }, want: "memory grew"},
		{name: "small service may grow 16 MiB", change: func(r *report) {
			r.vitals.RSS = series{start: 20 << 20, end: 36 << 20, max: 36 << 20}
		}},
		{name: "memory not measured", change: func(r *report) { r.vitals.RSSErr = os.ErrNotExist }, want: "could not be measured"},
		{name: "no calls", change: func(r *report) { r.calls, r.good, r.unknown, r.unknownCaller = 0, 0, 0, 0 }, want: "no calls"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := passing()
			tt.change(r)
			got := r.failures()
			if tt.want == "" {
				assert.Empty(t, got)
				return
			}
			require.Len(t, got, 1)
			assert.Contains(t, got[0], tt.want)
		})
	}
}

func TestPercentiles(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	p50, p99, maxD := percentiles(ds)
	assert.Equal(t, 50*time.Millisecond, p50)
	assert.Equal(t, 99*time.Millisecond, p99)
	assert.Equal(t, 100*time.Millisecond, maxD)
	p50, p99, maxD = percentiles(nil)
	assert.Zero(t, p50+p99+maxD)
}
