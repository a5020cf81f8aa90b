package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/creditsessions/creditsessions/internal/emulator"
)

// userHZ is the unit of utime and stime in /proc/PID/stat. It is fixed at 100 on every
// Linux architecture Go supports (sysconf(_SC_CLK_TCK) reports it); a process's CPU time
// is therefore known to 10ms, which the windows' lengths make small.
const userHZ = 100

// load is what the workers of one window saw.
type load struct {
	Calls     int64
	Errors    int64
	ErrorKind []string        // up to maxErrorKinds distinct error messages
	Latencies []time.Duration // of the successful calls, sorted
	Elapsed   time.Duration   // from the first call to the end of the last
}

const maxErrorKinds = 5

// drive runs concurrency workers calling t until d has passed, then waits for the calls
// in flight. Every call counts, including those that end after d. Each call is for a
// user of its own (token#worker.call), unless sameUser.
func drive(ctx context.Context, t target, token string, sameUser bool, concurrency int, d time.Duration) load {
	var stop atomic.Bool
	timer := time.AfterFunc(d, func() { stop.Store(true) })
	defer timer.Stop()

	var (
		mu       sync.Mutex
		res      load
		kinds    = map[string]bool{}
		wg       sync.WaitGroup
		perCall  = make([][]time.Duration, concurrency)
		errCount atomic.Int64
	)
	start := time.Now()
	for w := range concurrency {
		wg.Go(func() {
			lat := make([]time.Duration, 0, 4096)
			user := []byte(token + emulator.UserSeparator + strconv.Itoa(w) + ".")
			prefix := len(user)
			for i := 0; !stop.Load() && ctx.Err() == nil; i++ {
				user := strconv.AppendInt(user[:prefix], int64(i), 10)
				if sameUser {
					user = user[:len(token)]
				}
				t0 := time.Now()
				err := t.call(ctx, string(user))
				elapsed := time.Since(t0)
				if err == nil {
					lat = append(lat, elapsed)
					continue
				}
				if ctx.Err() != nil {
					break // interrupted: not the target's failure
				}
				errCount.Add(1)
				mu.Lock()
				if msg := err.Error(); !kinds[msg] && len(kinds) < maxErrorKinds {
					kinds[msg] = true
					res.ErrorKind = append(res.ErrorKind, msg)
				}
				mu.Unlock()
			}
			perCall[w] = lat
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.Latencies = slices.Concat(perCall...)
	slices.Sort(res.Latencies)
	res.Errors = errCount.Load()
	res.Calls = int64(len(res.Latencies)) + res.Errors
	return res
}

// percentile is the nearest-rank percentile p (0 < p <= 100) of sorted.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(float64(len(sorted))*p/100+0.999999999) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

// cpuTime is a process's user plus system CPU time so far, from /proc/PID/stat.
func cpuTime(pid int) (time.Duration, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: the fields follow its last ')'.
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	fields := strings.Fields(string(raw[i+1:]))
	// fields[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields)+2)
	}
	var ticks int64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// machineCPUTime is the CPU time every CPU of the machine has spent busy so far: all
// but idle and iowait in the first line of /proc/stat.
func machineCPUTime() (time.Duration, error) {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := bytes.Cut(raw, []byte("\n"))
	fields := strings.Fields(string(line))
	if len(fields) < 9 || fields[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	// user nice system idle iowait irq softirq steal [guest guest_nice, within user]
	var ticks int64
	for i, f := range fields[1:9] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %w", err)
		}
		if i != 3 && i != 4 {
			ticks += n
		}
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// selfCPUTime is this process's CPU time, to the microsecond.
func selfCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// statusKB is a "Name: N kB" line of /proc/PID/status, in bytes.
func statusKB(pid int, name string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		value, ok := strings.CutPrefix(scanner.Text(), name+":")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(value), "kB")), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/status %s: %w", pid, name, err)
		}
		return kb << 10, nil
	}
	if err := scanner.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s", pid, name)
}

// resetPeakRSS makes VmHWM start again from the current RSS; it reports whether the
// kernel allowed it.
func resetPeakRSS(pid int) bool {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0) == nil
}

// memoryWatch follows one process's peak memory over a window.
type memoryWatch struct {
	pid      int
	hwmReset bool // VmHWM was reset at the start, so it is the window's peak

	stop    chan struct{}
	stopped chan struct{}
	maxRSS  int64 // sampled, read after stopped
}

// watchMemory resets pid's peak RSS and samples its RSS every 100ms until done.
func watchMemory(pid int) *memoryWatch {
	m := &memoryWatch{pid: pid, hwmReset: resetPeakRSS(pid), stop: make(chan struct{}), stopped: make(chan struct{})}
	go func() {
		defer close(m.stopped)
		ticker := time.NewTicker(100 * time.Millisecond)
		defer ticker.Stop()
		for {
			if rss, err := statusKB(pid, "VmRSS"); err == nil {
				m.maxRSS = max(m.maxRSS, rss)
			}
			select {
			case <-m.stop:
				return
			case <-ticker.C:
			}
		}
	}()
	return m
}

// done stops the sampling and returns the window's peak RSS and how it was known.
func (m *memoryWatch) done() (int64, string) {
	close(m.stop)
	<-m.stopped
	if rss, err := statusKB(m.pid, "VmRSS"); err == nil {
		m.maxRSS = max(m.maxRSS, rss)
	}
	if m.hwmReset {
		if hwm, err := statusKB(m.pid, "VmHWM"); err == nil {
			return hwm, "VmHWM"
		}
	}
	return m.maxRSS, "VmRSS sampled every 100ms"
}

// counters are a process's running totals that a window's difference divides by its
// calls: context switches of all its live threads (/proc/PID/task/*/status, voluntary
// and not), read and write system calls (/proc/PID/io syscr and syscw: every read(2) and
// write(2) family call, sockets included; epoll and futex calls are not among them), and,
// for the service, the heap allocations its runtime counted (go_memstats_mallocs_total
// on its admin listener's /metrics).
type counters struct {
	CtxSwitches int64
	Syscalls    int64
	Mallocs     int64
}

// readCounters reads pid's counters; adminAddr, when set, is where its mallocs are.
func readCounters(pid int, adminAddr string) (counters, error) {
	var c counters
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return c, err
	}
	for _, t := range tasks {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()))
		if err != nil {
			continue // the thread exited meanwhile
		}
		for line := range strings.SplitSeq(string(raw), "\n") {
			if v, ok := strings.CutPrefix(line, "voluntary_ctxt_switches:"); ok {
				n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				c.CtxSwitches += n
			} else if v, ok := strings.CutPrefix(line, "nonvoluntary_ctxt_switches:"); ok {
				n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				c.CtxSwitches += n
			}
		}
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return c, err
	}
	for line := range strings.SplitSeq(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "syscr:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			c.Syscalls += n
		} else if v, ok := strings.CutPrefix(line, "syscw:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			c.Syscalls += n
		}
	}
	if adminAddr != "" {
		if c.Mallocs, err = scrapeMallocs(adminAddr); err != nil {
			return c, err
		}
	}
	return c, nil
}

var scrapeClient = &http.Client{Timeout: 10 * time.Second}

// scrapeMallocs reads go_memstats_mallocs_total from the service's /metrics.
func scrapeMallocs(adminAddr string) (int64, error) {
	resp, err := scrapeClient.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	scanner := bufio.NewScanner(resp.Body)
	scanner.Buffer(make([]byte, 64<<10), 1<<20)
	for scanner.Scan() {
		if v, ok := strings.CutPrefix(scanner.Text(), "go_memstats_mallocs_total "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int64(f), err
		}
	}
	if err := scanner.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("/metrics: no go_memstats_mallocs_total")
}

// driveRate makes calls at rate per second, open loop: each on its own goroutine at its
// appointed time, whether or not earlier ones have ended, as independent callers would.
// At most maxOutstanding are in flight; a call that finds them all taken counts as an
// error ("overloaded"), so that a target that cannot keep up shows it.
func driveRate(ctx context.Context, t target, token string, sameUser bool, rate int, d time.Duration) load {
	const maxOutstanding = 512
	var (
		mu       sync.Mutex
		res      load
		kinds    = map[string]bool{}
		wg       sync.WaitGroup
		errCount atomic.Int64
		slots    = make(chan struct{}, maxOutstanding)
	)
	fail := func(msg string) {
		errCount.Add(1)
		mu.Lock()
		if !kinds[msg] && len(kinds) < maxErrorKinds {
			kinds[msg] = true
			res.ErrorKind = append(res.ErrorKind, msg)
		}
		mu.Unlock()
	}
	interval := time.Second / time.Duration(rate)
	n := int(d / interval)
	lat := make([]time.Duration, 0, n)
	start := time.Now()
	for i := 0; i < n && ctx.Err() == nil; i++ {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		select {
		case slots <- struct{}{}:
		default:
			fail("overloaded: more than 512 calls in flight")
			continue
		}
		user := token
		if !sameUser {
			user = token + emulator.UserSeparator + "r" + strconv.Itoa(i)
		}
		wg.Go(func() {
			defer func() { <-slots }()
			t0 := time.Now()
			err := t.call(ctx, user)
			elapsed := time.Since(t0)
			if err == nil {
				mu.Lock()
				lat = append(lat, elapsed)
				mu.Unlock()
				return
			}
			if ctx.Err() == nil {
				fail(err.Error())
			}
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	slices.Sort(lat)
	res.Latencies = lat
	res.Errors = errCount.Load()
	res.Calls = int64(len(lat)) + res.Errors
	return res
}
