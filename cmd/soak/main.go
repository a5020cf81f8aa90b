// Command soak runs the service for a bounded time against a Plaid emulator that fails
// on purpose, and reports what callers saw: outcomes, error rates, latency, how many
// calls reached Plaid, and whether the service's memory grew.
//
//	go run ./cmd/soak                    # 2 minutes at 300 calls/s, Plaid failing 20% of calls
//	go run ./cmd/soak -duration 45s -quiet
//
// The emulator runs in this process; the service runs as a child process (this same
// binary, re-executed with CREDITSESSIONS_SOAK_SERVICE=1) so that its memory is measured
// alone: RSS from /proc, goroutines from its admin listener's metrics, and, once it
// has stopped, what its resilience layer did. Everything listens on 127.0.0.1 and all
// traffic stays there. The run stops by
// itself after -duration or -max-calls calls, prints a summary and a Markdown table for
// BENCHMARKS.md on stdout, and exits 1 if the service did not stop cleanly on SIGTERM, if
// an unknown user token got anything but its caller error (or an upstream fault's
// transient error), or if the service's memory grew over the run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/creditsessions/creditsessions/internal/emulator"
)

// defaultFaults make the emulator fail 20% of calls, in every way it knows.
const defaultFaults = "error=0.14,errors=API_ERROR/INTERNAL_SERVER_ERROR+API_ERROR/PLANNED_MAINTENANCE," +
	"ratelimit=0.03,reset=0.01,stall=0.01,stall-for=200ms,garbage=0.01"

func main() {
	if os.Getenv(serviceEnv) == "1" {
		os.Exit(serviceMain())
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(2)
	}
	rep, err := run(ctx, cfg, os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
	if len(rep.failures()) > 0 {
		os.Exit(1)
	}
}

// config is one soak run.
type config struct {
	Duration    time.Duration // how long load is sent
	Rate        int           // calls per second, all workers together
	Concurrency int           // workers, so calls in flight at most
	MaxCalls    int64         // load stops after this many calls even before Duration
	Faults      emulator.Faults
	Seed        uint64 // seeds the emulator's faults and the call mix
	// FailingShare is the share of calls for one user whose every call fails (Plaid's
	// 500 for that user), on top of the mix: one user's trouble must not raise the
	// good-token failure rate.
	FailingShare float64
	Quiet        bool // no progress lines

	// Executable is the program started as the service, with serviceEnv set; empty
	// means this one (os.Executable). Tests leave it empty: the test binary's TestMain
	// serves in that mode.
	Executable string
	// ServiceLog receives the service's stderr: its warnings and errors; nil discards.
	ServiceLog io.Writer

	CallTimeout   time.Duration // deadline of each call [5s]
	ReadyTimeout  time.Duration // wait for the service's address line [30s]
	StopTimeout   time.Duration // wait for the service to exit after SIGTERM [15s]
	SampleEvery   time.Duration // RSS sampling period [5s]
	ProgressEvery time.Duration // progress line period [10s]
}

func (c config) withDefaults() config {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.CallTimeout, 5*time.Second)
	def(&c.ReadyTimeout, 30*time.Second)
	def(&c.StopTimeout, 15*time.Second)
	def(&c.SampleEvery, 5*time.Second)
	def(&c.ProgressEvery, 10*time.Second)
	if c.ServiceLog == nil {
		c.ServiceLog = io.Discard
	}
	return c
}

// warmUp is how long the service runs under load before its "start" RSS is taken.
func (c config) warmUp() time.Duration { return min(15*time.Second, c.Duration/6) }

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg config
	fs.DurationVar(&cfg.Duration, "duration", 2*time.Minute, "how long to send load")
	fs.IntVar(&cfg.Rate, "rate", 300, "calls per second, in total")
	fs.IntVar(&cfg.Concurrency, "concurrency", 32, "calls in flight at most; a tick that finds every worker busy is dropped")
	fs.Int64Var(&cfg.MaxCalls, "max-calls", 1_000_000, "stop after this many calls, even before -duration")
	faults := fs.String("faults", defaultFaults, "the emulator's random faults, in emulator.ParseFaults syntax (\"none\" for none)")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "seed of the emulator's faults and of the call mix (0: random)")
	fs.BoolVar(&cfg.Quiet, "quiet", false, "no progress lines")
	fs.Float64Var(&cfg.FailingShare, "failing-user-share", 0, "share of calls (0 to 0.5) for one hot user whose every call fails, beside the mix")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments %q: soak takes flags only", fs.Args())
	}
	var err error
	if cfg.Faults, err = emulator.ParseFaults(*faults); err != nil {
		return config{}, fmt.Errorf("-faults: %w", err)
	}
	switch {
	case cfg.Duration <= 0:
		return config{}, errors.New("-duration must be positive")
	case cfg.Rate <= 0 || cfg.Rate > 100_000:
		return config{}, errors.New("-rate must be between 1 and 100000")
	case cfg.Concurrency <= 0 || cfg.Concurrency > 10_000:
		return config{}, errors.New("-concurrency must be between 1 and 10000")
	case !(cfg.FailingShare >= 0 && cfg.FailingShare <= 0.5):
		return config{}, errors.New("-failing-user-share must be between 0 and 0.5")
	case cfg.MaxCalls <= 0:
		return config{}, errors.New("-max-calls must be positive")
	}
	cfg.ServiceLog = stderr
	return cfg, nil
}
