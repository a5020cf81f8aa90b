package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/creditsessions/creditsessions/internal/app"
	"github.com/creditsessions/creditsessions/internal/emulator"
	"github.com/creditsessions/creditsessions/internal/logbuf"
	"github.com/creditsessions/creditsessions/internal/loopback"
	"github.com/creditsessions/creditsessions/internal/plaid"
)

// The children's environment. Credentials travel here, never in argv, where any user of
// the machine could read them.
const (
	roleEnv      = "LOADTEST_ROLE" // emulator or service: run as that child
	roleEmulator = "emulator"
	roleService  = "service"
	roleNaive    = "naive"

	emulatorClientIDEnv = "LOADTEST_EMULATOR_CLIENT_ID" // what the emulator accepts
	emulatorSecretEnv   = "LOADTEST_EMULATOR_SECRET"
	// The service reads its upstream under the names cmd/creditsessionsd uses.
	plaidBaseURLEnv  = "PLAID_BASE_URL"
	plaidClientIDEnv = "PLAID_CLIENT_ID"
	plaidSecretEnv   = "PLAID_SECRET"
	cpuProfileEnv    = "LOADTEST_CPUPROFILE" // file the service writes its CPU profile to
	callLogsEnv      = "LOADTEST_CALL_LOGS"  // "1": the service logs every call, to the null device
	memProfileEnv    = "LOADTEST_MEMPROFILE" // file the service writes its heap profile to
)

// childLine is a line a child writes on stdout: first when it is ready, with its
// addresses, then once per profiling signal, as an acknowledgement.
type childLine struct {
	Role string `json:"role,omitempty"`
	PID  int    `json:"pid,omitempty"`
	URL  string `json:"url,omitempty"`       // emulator
	GRPC string `json:"grpc_addr,omitempty"` // service
	// Canned is the bare gRPC server in the service's process: the floor (see canned).
	Canned string `json:"canned_addr,omitempty"`
	// Bare is the bare gRPC server that asks Plaid on every call: the design's floor (see bare).
	Bare string `json:"bare_addr,omitempty"`
	// Naive is the naive proxy, in a process of its own: the other yardstick (see naive).
	Naive string `json:"naive_addr,omitempty"`
	// Admin is the service's (or the naive proxy's) /metrics, which counts its allocations.
	Admin string `json:"admin_addr,omitempty"`
	HTTP  string `json:"http_addr,omitempty"` // service
	Event string `json:"event,omitempty"`     // profile-started, profile-written
	Error string `json:"error,omitempty"`     // a profiling failure
}

// Profiling protocol: SIGUSR1 starts the profiles, SIGUSR2 stops and writes them. The
// child acknowledges each on stdout, so the parent knows the window is covered.
const (
	eventProfileStarted = "profile-started"
	eventProfileWritten = "profile-written"
)

// SIGHUP asks the service child to give the memory its heap has freed back to the
// system (debug.FreeOSMemory), before a window's peak RSS is taken: otherwise a window
// would start from, and report as its peak, what the window before it left resident (a
// Go heap returns freed pages to the system only slowly).
const eventMemoryReleased = "memory-released"

// releaseMemoryOnSIGHUP answers SIGHUP until the returned stop is called.
func releaseMemoryOnSIGHUP(out *lineWriter) (stop func()) {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGHUP)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-done:
				return
			case <-signals:
				debug.FreeOSMemory()
				_ = out.write(childLine{Event: eventMemoryReleased})
			}
		}
	}()
	return func() {
		signal.Stop(signals)
		close(done)
		<-finished
	}
}

// runChild runs as the child named by role until ctx is done or stdin reaches its end
// (the parent is gone, however it went).
func runChild(ctx context.Context, role string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		_, _ = io.Copy(io.Discard, stdin)
		cancel()
	}()
	out := &lineWriter{w: stdout}
	switch role {
	case roleEmulator:
		return runEmulator(ctx, getenv, out)
	case roleService:
		return runService(ctx, getenv, out, stderr)
	case roleNaive:
		return runNaive(ctx, getenv, out)
	default:
		return fmt.Errorf("%s=%q: want %s, %s or %s", roleEnv, role, roleEmulator, roleService, roleNaive)
	}
}

func runEmulator(ctx context.Context, getenv func(string) string, out *lineWriter) error {
	// No logger: a line per request would cost more than the answer.
	srv, err := emulator.Start("127.0.0.1:0", emulator.Config{
		ClientID: getenv(emulatorClientIDEnv),
		Secret:   getenv(emulatorSecretEnv),
	})
	if err != nil {
		return err
	}
	if err := out.write(childLine{Role: roleEmulator, PID: os.Getpid(), URL: srv.URL}); err != nil {
		_ = srv.Close()
		return err
	}
	<-ctx.Done()
	return srv.Close()
}

func runService(ctx context.Context, getenv func(string) string, out *lineWriter, stderr io.Writer) error {
	baseURL := getenv(plaidBaseURLEnv)
	if err := loopback.CheckURL(baseURL); err != nil {
		return fmt.Errorf("%s: %w", plaidBaseURLEnv, err)
	}
	// Warnings only by default: the figures are the service's, not its log pipeline's.
	// With -call-logs, every call's line is written, as in production, to the null
	// device: the encoding and the write are counted, not a disk.
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if getenv(callLogsEnv) == "1" {
		null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		defer null.Close()
		// Through the log writer cmd/creditsessionsd puts in front of stderr.
		lw := logbuf.New(null, logbuf.Options{})
		defer lw.Stop()
		logger = slog.New(slog.NewJSONHandler(lw, nil))
	}
	a, err := app.New(app.Config{
		GRPCAddr:  "127.0.0.1:0",
		HTTPAddr:  "127.0.0.1:0",
		AdminAddr: "127.0.0.1:0",
		Plaid: app.PlaidConfig{
			BaseURL:     baseURL,
			Credentials: plaid.Credentials{ClientID: getenv(plaidClientIDEnv), Secret: getenv(plaidSecretEnv)},
		},
		ShutdownGrace: 5 * time.Second,
		Logger:        logger,
	})
	if err != nil {
		return err
	}
	defer releaseMemoryOnSIGHUP(out)()
	if cpu, mem := getenv(cpuProfileEnv), getenv(memProfileEnv); cpu != "" || mem != "" {
		stop := serveProfiles(cpu, mem, out)
		defer stop()
	}
	upstream, err := plaid.NewClient(plaid.Config{BaseURL: baseURL, Credentials: plaid.Credentials{
		ClientID: getenv(plaidClientIDEnv), Secret: getenv(plaidSecretEnv)}})
	if err != nil {
		return err
	}
	cannedAddr, stopCanned, err := startCanned(upstream)
	if err != nil {
		return err
	}
	defer stopCanned()
	bareAddr, stopBare, err := startBareProxy(upstream)
	if err != nil {
		return err
	}
	defer stopBare()
	if err := out.write(childLine{Role: roleService, PID: os.Getpid(), GRPC: a.GRPCAddr().String(),
		HTTP: a.HTTPAddr().String(), Canned: cannedAddr, Bare: bareAddr, Admin: a.AdminAddr().String()}); err != nil {
		return err
	}
	return a.Run(ctx)
}

// runNaive runs the naive proxy (see naive) in a process of its own: its CPU, memory
// and counters are its own, and what its large answers leave in memory does not sit in
// the service's. Its allocations are served as the service's are, on a /metrics of its
// own that says nothing else.
func runNaive(ctx context.Context, getenv func(string) string, out *lineWriter) error {
	baseURL := getenv(plaidBaseURLEnv)
	if err := loopback.CheckURL(baseURL); err != nil {
		return fmt.Errorf("%s: %w", plaidBaseURLEnv, err)
	}
	addr, stop, err := startNaive(baseURL, plaid.Credentials{ClientID: getenv(plaidClientIDEnv), Secret: getenv(plaidSecretEnv)})
	if err != nil {
		return err
	}
	defer stop()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	metrics := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Fprintf(w, "go_memstats_mallocs_total %d\n", ms.Mallocs)
	})}
	go func() { _ = metrics.Serve(ln) }()
	defer metrics.Close()
	defer releaseMemoryOnSIGHUP(out)()
	if err := out.write(childLine{Role: roleNaive, PID: os.Getpid(), Naive: addr, Admin: ln.Addr().String()}); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

// serveProfiles answers the profiling signals until the returned stop is called.
func serveProfiles(cpuPath, memPath string, out *lineWriter) (stop func()) {
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGUSR1, syscall.SIGUSR2)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		var cpuFile *os.File
		for {
			select {
			case <-done:
				if cpuFile != nil {
					pprof.StopCPUProfile()
					_ = cpuFile.Close()
				}
				return
			case sig := <-signals:
				var err error
				event := eventProfileStarted
				if sig == syscall.SIGUSR1 {
					cpuFile, err = startProfiles(cpuPath, memPath)
				} else {
					event = eventProfileWritten
					err = writeProfiles(cpuFile, memPath)
					cpuFile = nil
				}
				line := childLine{Event: event}
				if err != nil {
					line.Error = err.Error()
				}
				_ = out.write(line)
			}
		}
	}()
	return func() {
		signal.Stop(signals)
		close(done)
		<-finished
	}
}

// startProfiles starts the CPU profile, and writes the heap profile the window's is to
// be compared with (go tool pprof -diff_base).
func startProfiles(cpuPath, memPath string) (*os.File, error) {
	if memPath != "" {
		if err := writeHeapProfile(baseProfilePath(memPath)); err != nil {
			return nil, err
		}
	}
	if cpuPath == "" {
		return nil, nil
	}
	f, err := os.Create(cpuPath)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, err
	}
	return f, nil
}

func writeProfiles(cpuFile *os.File, memPath string) error {
	var errs []error
	if cpuFile != nil {
		pprof.StopCPUProfile()
		errs = append(errs, cpuFile.Close())
	}
	if memPath != "" {
		errs = append(errs, writeHeapProfile(memPath))
	}
	return errors.Join(errs...)
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	runtime.GC() // so that in-use figures are up to date
	if err := pprof.WriteHeapProfile(f); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// baseProfilePath is where the heap profile at the start of a window goes: mem.pprof
// gives mem.base.pprof.
func baseProfilePath(path string) string { return insertBeforeExt(path, "base") }

// insertBeforeExt inserts "."+s before path's extension: a/cpu.pprof, x gives a/cpu.x.pprof.
func insertBeforeExt(path, s string) string {
	ext := filepath.Ext(path)
	return strings.TrimSuffix(path, ext) + "." + s + ext
}

// lineWriter writes childLines, one JSON object a line, from any goroutine.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (lw *lineWriter) write(line childLine) error {
	b, err := json.Marshal(line)
	if err != nil {
		return err
	}
	lw.mu.Lock()
	defer lw.mu.Unlock()
	if _, err := lw.w.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("writing to the parent: %w", err)
	}
	return nil
}
