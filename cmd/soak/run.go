package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/creditsessions/creditsessions/internal/emulator"
	"github.com/creditsessions/creditsessions/internal/plaid"
)

// run soaks the service as cfg says, prints progress to progressOut (unless cfg.Quiet)
// and the summary to stdout, and returns the report. An error means the soak could not
// run; a run whose checks failed returns a report with failures.
func run(ctx context.Context, cfg config, stdout, progressOut io.Writer) (*report, error) {
	cfg = cfg.withDefaults()
	if cfg.Seed == 0 {
		cfg.Seed = rand.Uint64() | 1
	}
	exe := cfg.Executable
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("finding this program to start the service: %w", err)
		}
	}

	faults := newFaultCounter()
	emu, err := emulator.Start("127.0.0.1:0", emulator.Config{Seed: cfg.Seed, Logger: slog.New(faults)})
	if err != nil {
		return nil, err
	}
	defer emu.Close()
	emu.Emulator.SetFaults(cfg.Faults)

	creds := plaid.Credentials{ClientID: emu.Emulator.ClientID(), Secret: emu.Emulator.Secret()}
	svc, err := startService(ctx, exe, emu.URL, creds, cfg.ServiceLog, cfg.ReadyTimeout)
	if err != nil {
		return nil, err
	}
	cl, err := newClients(svc.readyLine, cfg.Concurrency)
	if err != nil {
		svc.kill()
		return nil, err
	}
	defer cl.close()

	vit := &vitals{pid: svc.PID, goroutines: newGoroutineScraper(svc.Admin)}
	defer vit.goroutines.close()
	vit.sample() // the idle service, for the maximum
	upstreamBefore := emu.Emulator.Calls()
	t := newTally()

	monitorCtx, stopMonitor := context.WithCancel(ctx)
	var monitorDone sync.WaitGroup
	monitorDone.Go(func() { monitor(monitorCtx, cfg, vit, t, progressOut) })
	load := sendLoad(ctx, cfg, cl, t)
	stopMonitor()
	monitorDone.Wait()
	vit.markEnd()

	stop := svc.stop(cfg.StopTimeout)
	rep := newReport(cfg, load, t, emu.Emulator.Calls()-upstreamBefore, faults.counts(), vit.report(), stop)
	rep.print(stdout)
	return rep, nil
}

// monitor samples the service's RSS and goroutines every cfg.SampleEvery and once at the end of the
// warm-up, and prints a progress line every cfg.ProgressEvery, until ctx ends.
func monitor(ctx context.Context, cfg config, vit *vitals, t *tally, out io.Writer) {
	start := time.Now()
	samples := time.NewTicker(cfg.SampleEvery)
	defer samples.Stop()
	warmedUp := time.NewTimer(cfg.warmUp())
	defer warmedUp.Stop()
	lines := time.NewTicker(cfg.ProgressEvery)
	defer lines.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-samples.C:
			vit.sample()
		case <-warmedUp.C:
			vit.markStart()
		case <-lines.C:
			if cfg.Quiet {
				continue
			}
			p := t.progress()
			elapsed := time.Since(start)
			fmt.Fprintf(out, "soak: %3.0fs  %d calls (%.0f/s)  good-token errors %s  unknown-token wrong %d  service RSS %s\n",
				elapsed.Seconds(), p.calls, float64(p.calls)/elapsed.Seconds(),
				percent(p.goodFailed, p.good), p.unknownWrong, mib(vit.latestRSS()))
		}
	}
}

// faultCounter is a slog.Handler for the emulator's request log that counts the faults
// it applied, by kind, and the requests.
type faultCounter struct {
	mu sync.Mutex
	n  map[string]int64
}

func newFaultCounter() *faultCounter { return &faultCounter{n: map[string]int64{}} }

func (f *faultCounter) Enabled(context.Context, slog.Level) bool { return true }
func (f *faultCounter) WithAttrs([]slog.Attr) slog.Handler       { return f }
func (f *faultCounter) WithGroup(string) slog.Handler            { return f }

func (f *faultCounter) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "plaid emulator request" {
		return nil
	}
	fault := "none"
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "fault" {
			fault = a.Value.String()
			return false
		}
		return true
	})
	f.mu.Lock()
	f.n[fault]++
	f.mu.Unlock()
	return nil
}

func (f *faultCounter) counts() map[string]int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]int64, len(f.n))
	for k, v := range f.n {
		out[k] = v
	}
	return out
}
