package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/creditsessions/creditsessions/internal/loopback"
	"github.com/creditsessions/creditsessions/internal/plaid"
)

// result is one target measured over one window.
type result struct {
	Window window
	Target string
	Round  int // from 0
	load

	// What the service process's counters rose by over the window (see counters).
	Service counters

	// CPU time each process spent during the window.
	ServiceCPU, EmulatorCPU, LoadgenCPU time.Duration
	// MachineCPU is the busy time of all the machine's CPUs during the window: the
	// three processes, the kernel's work for them, and anything else running.
	MachineCPU time.Duration
	// Peak resident memory of each child during the window, and how it was known.
	ServicePeak, EmulatorPeak int64
	PeakSource                string

	// What the probe before the window saw: sessions in the answer, and its size on the wire.
	Sessions, Size int
}

// RPS is the calls per second of the window.
func (r result) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Calls) / r.Elapsed.Seconds()
}

// busyShares are the CPU time of the three processes, and that of the rest of the
// machine, over the window, as shares of all the machine's CPUs.
func (r result) busyShares() (ours, others float64) {
	if r.Elapsed <= 0 {
		return 0, 0
	}
	capacity := float64(r.Elapsed) * float64(runtime.NumCPU())
	own := r.ServiceCPU + r.EmulatorCPU + r.LoadgenCPU
	return float64(own) / capacity, float64(max(0, r.MachineCPU-own)) / capacity
}

// perCall divides a CPU time by the calls of the window.
func (r result) perCall(d time.Duration) time.Duration {
	if r.Calls == 0 {
		return 0
	}
	return d / time.Duration(r.Calls)
}

// report is a whole run.
type report struct {
	Config   config
	Results  []result
	Children []childExit
	Profiles []string // files written by the service child
}

// failure is what makes the run fail: errors seen by callers, or a child that did not
// stop cleanly.
func (r *report) failure() error {
	var errs []error
	for _, res := range r.Results {
		if res.Errors > 0 {
			errs = append(errs, fmt.Errorf("%s %s: %d of %d calls failed", res.Window.Name(), res.Target, res.Errors, res.Calls))
		}
	}
	for _, c := range r.Children {
		if c.Err != nil {
			errs = append(errs, fmt.Errorf("the %s child (pid %d): %w", c.Role, c.PID, c.Err))
		}
	}
	return errors.Join(errs...)
}

// loadtest starts the children, measures every window of cfg for every target, stops
// the children, and prints the report on stdout. Progress goes to stderr, with the
// children's own stderr.
func loadtest(ctx context.Context, cfg config, stdout, stderr io.Writer) (_ *report, err error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	exe := cfg.Executable
	if exe == "" {
		if exe, err = os.Executable(); err != nil {
			return nil, err
		}
	}
	for _, p := range []*string{&cfg.CPUProfile, &cfg.MemProfile} {
		if *p != "" {
			if *p, err = filepath.Abs(*p); err != nil {
				return nil, err
			}
		}
	}
	rep := &report{Config: cfg}
	if _, ok := stderr.(*os.File); !ok {
		// Each child's stderr is then copied by a goroutine of its own.
		stderr = &syncWriter{w: stderr}
	}

	creds := newCredentials()
	emu, err := startChild(ctx, exe, roleEmulator, []string{
		emulatorClientIDEnv + "=" + creds.ClientID,
		emulatorSecretEnv + "=" + creds.Secret,
	}, stderr)
	if err != nil {
		return nil, err
	}
	defer emu.stop()
	if err := loopback.CheckURL(emu.ready.URL); err != nil {
		return nil, fmt.Errorf("the emulator child: %w", err)
	}
	svcEnv := []string{
		plaidBaseURLEnv + "=" + emu.ready.URL,
		plaidClientIDEnv + "=" + creds.ClientID,
		plaidSecretEnv + "=" + creds.Secret,
	}
	if cfg.CallLogs {
		svcEnv = append(svcEnv, callLogsEnv+"=1")
	}
	if cfg.CPUProfile != "" {
		svcEnv = append(svcEnv, cpuProfileEnv+"="+cfg.CPUProfile)
	}
	if cfg.MemProfile != "" {
		svcEnv = append(svcEnv, memProfileEnv+"="+cfg.MemProfile)
	}
	svc, err := startChild(ctx, exe, roleService, svcEnv, stderr)
	if err != nil {
		return nil, err
	}
	defer svc.stop()
	naive, err := startChild(ctx, exe, roleNaive, svcEnv[:3], stderr)
	if err != nil {
		return nil, err
	}
	defer naive.stop()
	for _, addr := range []string{svc.ready.GRPC, svc.ready.HTTP, svc.ready.Canned, svc.ready.Bare, svc.ready.Admin, naive.ready.Naive, naive.ready.Admin} {
		if err := loopback.CheckAddr(addr); err != nil {
			return nil, fmt.Errorf("the service child: %w", err)
		}
	}
	fmt.Fprintf(stderr, "emulator pid %d at %s; service pid %d, gRPC %s, REST http://%s\n",
		emu.ready.PID, emu.ready.URL, svc.ready.PID, svc.ready.GRPC, svc.ready.HTTP)

	measureErr := measureAll(ctx, cfg, rep, emu, svc, naive, creds, stderr)
	// The emulator's callers first.
	rep.Children = []childExit{svc.stop(), naive.stop(), emu.stop()}
	if measureErr != nil && (ctx.Err() == nil || len(rep.Results) == 0) {
		return nil, measureErr
	}
	rep.print(stdout)
	if measureErr != nil {
		return rep, fmt.Errorf("interrupted, after the windows reported: %w", measureErr)
	}
	return rep, nil
}

// measureAll measures every window for every target, one target at a time, in rounds:
// each round measures every window for every target once, so that whatever else the
// machine does in a stretch of time falls on every target alike.
func measureAll(ctx context.Context, cfg config, rep *report, emu, svc, naive *child, creds plaid.Credentials, stderr io.Writer) error {
	windows := cfg.windows()
	maxConcurrency := 64 // the open-loop windows' calls in flight, with room
	for _, w := range windows {
		maxConcurrency = max(maxConcurrency, w.Concurrency)
	}
	grpcT, err := newGRPCTarget(svc.ready.GRPC)
	if err != nil {
		return err
	}
	cannedT, err := newGRPCTarget(svc.ready.Canned)
	if err != nil {
		return err
	}
	bareT, err := newGRPCTarget(svc.ready.Bare)
	if err != nil {
		return err
	}
	naiveT, err := newGRPCTarget(naive.ready.Naive)
	if err != nil {
		return err
	}
	targets := []namedTarget{
		{targetDirect, newHTTPTarget(emu.ready.URL, creds, maxConcurrency)},
		{targetCanned, cannedT},
		{targetBare, bareT},
		{targetNaive, naiveT},
		{targetGRPC, grpcT},
		{targetREST, newHTTPTarget("http://"+svc.ready.HTTP, plaid.Credentials{}, maxConcurrency)},
	}
	defer func() {
		for _, t := range targets {
			t.close()
		}
	}()

	probed := make(map[window]map[string][2]int)
	for _, w := range windows {
		// Every target must give the same answer, or the comparison means nothing.
		probes := make(map[string][2]int)
		for _, t := range targets {
			sessions, size, err := t.probe(ctx, w.Token)
			if err != nil {
				return fmt.Errorf("%s: probing %s: %w", w.Name(), t.name, err)
			}
			probes[t.name] = [2]int{sessions, size}
		}
		want := probes[targetDirect][0]
		if (w.Token == largeToken || w.Token == chunkedToken) && want != largeSessions {
			return fmt.Errorf("%s: the emulator answered %d sessions for %s, want %d", w.Name(), want, w.Token, largeSessions)
		}
		for name, p := range probes {
			if p[0] != want || want == 0 {
				return fmt.Errorf("%s: %s answered %d sessions, direct %d", w.Name(), name, p[0], want)
			}
		}
		probed[w] = probes
	}

	for round := range cfg.Rounds {
		for _, w := range windows {
			if err := measureRound(ctx, cfg, rep, w, round, len(windows) > 1, targets, probed[w], emu, svc, naive, stderr); err != nil {
				return err
			}
		}
	}
	return nil
}

type namedTarget = struct {
	name string
	target
}

// measureRound measures window w once for every target.
func measureRound(ctx context.Context, cfg config, rep *report, w window, round int, perWindow bool, targets []namedTarget,
	probes map[string][2]int, emu, svc, naive *child, stderr io.Writer) error {
	{
		// The order turns with each round, so that no target always follows the same one.
		for i := range targets {
			t := targets[(i+round)%len(targets)]
			fmt.Fprintf(stderr, "round %d/%d, %s: %s, %s: warm-up %v, then %v measured\n",
				round+1, cfg.Rounds, w.Name(), t.name, w.load(), cfg.Warmup, w.Duration)
			if cfg.Warmup > 0 {
				if warm := driveWindow(ctx, t.target, w, cfg.Warmup); ctx.Err() != nil {
					return ctx.Err()
				} else if warm.Errors > 0 && warm.Errors == warm.Calls {
					return fmt.Errorf("%s: %s: every call failed during warm-up (%d), such as %s", w.Name(), t.name, warm.Errors, warm.ErrorKind[0])
				}
			}
			// The process that serves the target: the service's, or the naive proxy's.
			server := svc
			if t.name == targetNaive {
				server = naive
			}
			if err := server.signal(ctx, syscall.SIGHUP, eventMemoryReleased); err != nil {
				return err
			}
			profiled := cfg.profiling() && t.name == cfg.ProfileTarget
			if profiled {
				if err := svc.signal(ctx, syscall.SIGUSR1, eventProfileStarted); err != nil {
					return err
				}
			}
			res, err := measureWindow(ctx, w, t.name, t.target, emu.ready.PID, server.ready.PID, server.ready.Admin)
			if err != nil {
				return err
			}
			res.Round = round
			res.Sessions, res.Size = probes[t.name][0], probes[t.name][1]
			rep.Results = append(rep.Results, res)
			if profiled {
				if err := svc.signal(ctx, syscall.SIGUSR2, eventProfileWritten); err != nil {
					return err
				}
				files, err := nameProfiles(cfg, w, round, perWindow)
				if err != nil {
					return err
				}
				rep.Profiles = append(rep.Profiles, files...)
			}
		}
	}
	return nil
}

// driveWindow drives t as w says, for d.
func driveWindow(ctx context.Context, t target, w window, d time.Duration) load {
	if w.Rate > 0 {
		return driveRate(ctx, t, w.Token, w.SameUser, w.Rate, d)
	}
	return drive(ctx, t, w.Token, w.SameUser, w.Concurrency, d)
}

// measureWindow drives t over w and takes each process's CPU time and memory around it.
func measureWindow(ctx context.Context, w window, name string, t target, emuPID, svcPID int, svcAdmin string) (result, error) {
	res := result{Window: w, Target: name}
	countersBefore, err0 := readCounters(svcPID, svcAdmin)
	emuMem, svcMem := watchMemory(emuPID), watchMemory(svcPID)
	emuBefore, err1 := cpuTime(emuPID)
	svcBefore, err2 := cpuTime(svcPID)
	machineBefore, err5 := machineCPUTime()
	selfBefore := selfCPUTime()

	res.load = driveWindow(ctx, t, w, w.Duration)

	selfAfter := selfCPUTime()
	emuAfter, err3 := cpuTime(emuPID)
	svcAfter, err4 := cpuTime(svcPID)
	machineAfter, err6 := machineCPUTime()
	res.EmulatorPeak, res.PeakSource = emuMem.done()
	res.ServicePeak, _ = svcMem.done()
	countersAfter, err7 := readCounters(svcPID, svcAdmin)
	res.Service = counters{
		CtxSwitches: countersAfter.CtxSwitches - countersBefore.CtxSwitches,
		Syscalls:    countersAfter.Syscalls - countersBefore.Syscalls,
		Mallocs:     countersAfter.Mallocs - countersBefore.Mallocs,
	}
	if err := errors.Join(err0, err1, err2, err3, err4, err5, err6, err7); err != nil {
		return res, fmt.Errorf("reading CPU times: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	res.EmulatorCPU, res.ServiceCPU, res.LoadgenCPU = emuAfter-emuBefore, svcAfter-svcBefore, selfAfter-selfBefore
	res.MachineCPU = machineAfter - machineBefore
	return res, nil
}

// nameProfiles gives the window's profiles their final names and returns them: the
// names asked for when only one window is profiled in one round, else those with the
// window's name, and the round past the first, inserted (cpu.pprof becomes
// cpu.small-latency.pprof, then cpu.small-latency.2.pprof).
func nameProfiles(cfg config, w window, round int, perWindow bool) ([]string, error) {
	final := func(path string) string {
		if perWindow {
			path = insertBeforeExt(path, w.Name())
		}
		if round > 0 {
			path = insertBeforeExt(path, strconv.Itoa(round+1))
		}
		return path
	}
	type move struct{ from, to string }
	var moves []move
	if cfg.CPUProfile != "" {
		moves = append(moves, move{cfg.CPUProfile, final(cfg.CPUProfile)})
	}
	if cfg.MemProfile != "" {
		moves = append(moves,
			move{baseProfilePath(cfg.MemProfile), baseProfilePath(final(cfg.MemProfile))},
			move{cfg.MemProfile, final(cfg.MemProfile)})
	}
	var files []string
	for _, m := range moves {
		if m.from != m.to {
			if err := os.Rename(m.from, m.to); err != nil {
				return nil, err
			}
		}
		files = append(files, m.to)
	}
	return files, nil
}

// syncWriter serialises writes to w.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
