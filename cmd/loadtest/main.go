// Command loadtest measures what the service costs a caller, against calling Plaid
// directly: on one machine, against one Plaid emulator, it drives in turn
//
//   - direct: the emulator over HTTP, as a caller would call Plaid;
//   - canned: the floor, a bare grpc-go server in the service's process that answers
//     from memory what Plaid answered once (see canned);
//   - bare: the same bare server asking Plaid on every call through the service's own
//     client, and nothing else: the floor of any service that answers from Plaid (see bare);
//   - naive: the proxy an afternoon's work gives (see naive);
//   - grpc: the service over gRPC, through one client connection;
//   - rest: the service's REST mirror, through one pooled HTTP client;
//
// and reports requests per second, p50 and p99 latency, errors, and the CPU time per call
// and peak memory of the process that served each target.
//
//	go run ./cmd/loadtest                          # small and large scenarios, 3 rounds, about 15 minutes
//	go run ./cmd/loadtest -scenario large -cpuprofile-service cpu.pprof -profile-target rest
//
// The emulator and the service each run in a child process (this binary, re-executed
// with LOADTEST_ROLE set), so that each process's CPU time is its own; the load generator
// is this process. Everything listens on 127.0.0.1. Credentials reach the children in
// their environment, never in argv. The service runs as shipped, coalescing included, and
// every call is for a different user (the emulator's fixture user with "#N" appended), as
// the performance targets ask: no call may share another's Plaid request. -same-user sends
// them all for one user instead, which lets coalescing flatter the service.
//
// CPU time comes from /proc/PID/stat (utime+stime, in clock ticks of USER_HZ, taken as
// 100), read before and after each measured window; peak memory is VmHWM from
// /proc/PID/status, reset before each window by writing 5 to /proc/PID/clear_refs, or,
// where that is refused, the largest VmRSS sampled every 100ms. Linux only.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/creditsessions/creditsessions/internal/emulator"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if role := os.Getenv(roleEnv); role != "" {
		err = runChild(ctx, role, os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	} else {
		err = run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

// config is one load test run.
type config struct {
	Scenario         string        // small, large or all
	C1Duration       time.Duration // small scenario, concurrency 1 (latency)
	Duration         time.Duration // small scenario, -concurrency (throughput)
	LargeDuration    time.Duration // large scenario
	Warmup           time.Duration // load before each measured window, not measured
	Concurrency      int           // small scenario throughput window
	LargeConcurrency int           // large scenario, memory window
	Rate             int           // small scenario open-loop window, calls per second
	RateDuration     time.Duration // small scenario open-loop window
	Rounds           int           // every window for every target, this many times, interleaved
	SameUser         bool          // every call for one user, so that the service coalesces them

	CallLogs      bool   // the service writes its line per call (to the null device)
	CPUProfile    string // service CPU profile of the measured windows of ProfileTarget
	MemProfile    string // service heap profile at the end of those windows
	ProfileTarget string // grpc or rest

	// Executable is the program re-executed as the children; empty means this one.
	Executable string
}

// defaults are the flags' defaults.
var defaults = config{
	Scenario:         "all",
	C1Duration:       6 * time.Second,
	Duration:         6 * time.Second,
	LargeDuration:    6 * time.Second,
	Warmup:           time.Second,
	Concurrency:      50,
	LargeConcurrency: 20,
	Rate:             1500,
	RateDuration:     8 * time.Second,
	Rounds:           3,
	CallLogs:         true,
	ProfileTarget:    targetGRPC,
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	rep, err := loadtest(ctx, cfg, stdout, stderr)
	if err != nil {
		return err
	}
	return rep.failure()
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := defaults
	fs.StringVar(&cfg.Scenario, "scenario", cfg.Scenario, "small (user-sandbox-example), large (user-sandbox-sessions-10000, about 4 MB), chunked (the large answer without Content-Length), "+
		"coalesced (the large answer, every call for the same user), large-all (large, chunked and coalesced) or all (small and large)")
	fs.DurationVar(&cfg.C1Duration, "c1-duration", cfg.C1Duration, "measured window per target, small scenario at concurrency 1 (latency)")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "measured window per target, small scenario at -concurrency (throughput)")
	fs.DurationVar(&cfg.LargeDuration, "large-duration", cfg.LargeDuration, "measured window per target, large scenario")
	fs.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "unmeasured load before each measured window")
	fs.IntVar(&cfg.Concurrency, "concurrency", cfg.Concurrency, "calls in flight, small scenario throughput window")
	fs.IntVar(&cfg.LargeConcurrency, "large-concurrency", cfg.LargeConcurrency, "calls in flight, large scenario's memory window (it also runs at 1 and 4)")
	fs.IntVar(&cfg.Rate, "rate", cfg.Rate, "calls per second of the small scenario's open-loop window")
	fs.DurationVar(&cfg.RateDuration, "rate-duration", cfg.RateDuration, "measured window per target, small scenario's open-loop window")
	fs.IntVar(&cfg.Rounds, "rounds", cfg.Rounds, "rounds: every window measured for every target this many times, interleaved; the report gives medians")
	fs.BoolVar(&cfg.SameUser, "same-user", cfg.SameUser, "send every call for the same user, so that the service coalesces calls in flight (flatters it)")
	fs.BoolVar(&cfg.CallLogs, "call-logs", cfg.CallLogs, "have the service write its JSON line per call, as in production, to the null device through its buffered log writer (false: warnings only)")
	fs.StringVar(&cfg.CPUProfile, "cpuprofile-service", "", "write the service's CPU profile of each measured window of -profile-target to `file`")
	fs.StringVar(&cfg.MemProfile, "memprofile-service", "", "write the service's heap profile at the end of each measured window of -profile-target to `file` (and one at its start to file.base)")
	fs.StringVar(&cfg.ProfileTarget, "profile-target", cfg.ProfileTarget, "target whose windows are profiled: grpc or rest")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments %q: loadtest takes flags only", fs.Args())
	}
	return cfg, cfg.validate()
}

func (c config) validate() error {
	switch {
	case !slices.Contains([]string{"small", "large", "chunked", "coalesced", "large-all", "all"}, c.Scenario):
		return fmt.Errorf("-scenario %q: want small, large, chunked, coalesced, large-all or all", c.Scenario)
	case c.C1Duration <= 0 || c.Duration <= 0 || c.LargeDuration <= 0 || c.RateDuration <= 0:
		return errors.New("-c1-duration, -duration, -rate-duration and -large-duration must be positive")
	case c.Rate < 1 || c.Rate > 100_000:
		return errors.New("-rate must be between 1 and 100000")
	case c.Rounds < 1 || c.Rounds > 20:
		return errors.New("-rounds must be between 1 and 20")
	case c.Warmup < 0:
		return errors.New("-warmup must not be negative")
	case c.Concurrency < 1 || c.Concurrency > 10_000 || c.LargeConcurrency < 1 || c.LargeConcurrency > 10_000:
		return errors.New("-concurrency and -large-concurrency must be between 1 and 10000")
	case c.ProfileTarget != targetGRPC && c.ProfileTarget != targetREST:
		return fmt.Errorf("-profile-target %q: want grpc or rest (direct does not go through the service)", c.ProfileTarget)
	}
	return nil
}

// profiling reports whether the service child is asked for profiles.
func (c config) profiling() bool { return c.CPUProfile != "" || c.MemProfile != "" }

// windows are the measurements of the run, in order; each is run for every target.
func (c config) windows() []window {
	var ws []window
	if c.Scenario == "small" || c.Scenario == "all" {
		ws = append(ws,
			window{Scenario: "small", Kind: "rate", Token: smallToken, Rate: c.Rate, Duration: c.RateDuration},
			window{Scenario: "small", Kind: "latency", Token: smallToken, Concurrency: 1, Duration: c.C1Duration},
			window{Scenario: "small", Kind: "throughput", Token: smallToken, Concurrency: c.Concurrency, Duration: c.Duration})
	}
	many := c.Scenario == "large-all"
	if c.Scenario == "large" || c.Scenario == "all" || many {
		ws = append(ws,
			window{Scenario: "large", Kind: "c1", Token: largeToken, Concurrency: 1, Duration: c.LargeDuration},
			window{Scenario: "large", Kind: "c4", Token: largeToken, Concurrency: 4, Duration: c.LargeDuration},
			window{Scenario: "large", Kind: "throughput", Token: largeToken, Concurrency: c.LargeConcurrency, Duration: c.LargeDuration})
	}
	if c.Scenario == "chunked" || many {
		// The same answer sent chunked, as a proxy in front of Plaid may send it: the
		// service learns its size only as it arrives.
		ws = append(ws, window{Scenario: "chunked", Kind: "throughput", Token: chunkedToken, Concurrency: c.LargeConcurrency, Duration: c.LargeDuration})
	}
	if c.Scenario == "coalesced" || many {
		// -large-concurrency identical calls in flight: they share one Plaid request and
		// one answer.
		ws = append(ws, window{Scenario: "coalesced", Kind: "throughput", Token: largeToken, SameUser: true, Concurrency: c.LargeConcurrency, Duration: c.LargeDuration})
	}
	for i := range ws {
		ws[i].SameUser = ws[i].SameUser || c.SameUser
	}
	return ws
}

// The user tokens of the scenarios: the emulator's two-session example, and 10,000
// generated sessions of about 420 bytes each.
const (
	smallToken     = "user-sandbox-example"
	largeToken     = "user-sandbox-sessions-10000"
	chunkedToken   = emulator.ChunkedTokenPrefix + "sessions-10000"
	largeSessions  = 10000
	measureTimeout = time.Minute // bound on one call
)

// window is one measurement: a token, a concurrency (closed loop) or a rate (open
// loop), and a duration.
type window struct {
	Scenario    string // small or large
	Kind        string // rate (open loop), latency (concurrency 1), throughput, c1, c4
	Token       string // the fixture user; each call's user is token#N unless SameUser
	SameUser    bool
	Concurrency int // calls in flight, closed loop; 0 with Rate
	Rate        int // calls a second, open loop
	Duration    time.Duration
}

// load describes the window's load: "concurrency 50" or "1500 calls/s open loop".
func (w window) load() string {
	if w.Rate > 0 {
		return fmt.Sprintf("%d calls/s open loop", w.Rate)
	}
	return fmt.Sprintf("concurrency %d", w.Concurrency)
}

// Name names the window in progress lines and profile file names.
func (w window) Name() string { return w.Scenario + "-" + w.Kind }
