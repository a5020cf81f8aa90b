package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// disturbedShare is the share of the CPUs that work outside the three processes may
// take before a window's figures are called disturbed.
const disturbedShare = 0.10

// print writes the report: a table and ratios per window, the goals' figures, then the
// same in Markdown. With several rounds, every figure is the median of the rounds'.
func (r *report) print(w io.Writer) {
	fmt.Fprintln(w)
	for _, line := range r.preamble() {
		fmt.Fprintln(w, line)
	}
	for _, win := range r.Config.windows() {
		rows := r.window(win)
		if len(rows) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s\n", windowTitle(win, rows))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, strings.Join(columns, "\t")+"\t")
		for _, f := range rows {
			fmt.Fprintln(tw, strings.Join(cells(f), "\t")+"\t")
		}
		_ = tw.Flush()
		for _, line := range ratios(win, rows) { // none for a window cut short
			fmt.Fprintf(w, "  %s\n", strings.Join(line, "  "))
		}
		for _, f := range rows {
			if f.Others > disturbedShare {
				fmt.Fprintf(w, "  WARNING %s: the rest of the machine kept %.0f%% of the CPUs busy during the window (median of the rounds); its figures are disturbed.\n", f.Target, 100*f.Others)
			}
			for _, e := range f.ErrorKind {
				fmt.Fprintf(w, "  ERROR %s: %s\n", f.Target, e)
			}
		}
	}
	fmt.Fprintln(w)
	for _, g := range r.goals() {
		fmt.Fprintf(w, "%s: %s\n", g[0], g[1])
	}
	for _, c := range r.Children {
		status := "exited 0 after SIGTERM"
		if c.Err != nil {
			status = "FAILED: " + c.Err.Error()
		}
		fmt.Fprintf(w, "\n%s child (pid %d): %s", c.Role, c.PID, status)
	}
	fmt.Fprintln(w)
	for _, p := range r.Profiles {
		fmt.Fprintf(w, "service profile: %s\n", p)
	}
	r.printMarkdown(w)
}

// figures are one target's figures in one window: the median of its rounds' each.
type figures struct {
	Target    string
	Window    window
	Rounds    int
	Calls     int64 // of all rounds
	Errors    int64 // of all rounds
	ErrorKind []string
	RPS       float64
	P50, P99  time.Duration
	// CPU time per call of each process.
	ServiceCPU, EmulatorCPU, LoadgenCPU time.Duration
	Ours, Others                        float64
	ServicePeak, EmulatorPeak           int64
	// Per call, in the service's process.
	CtxSwitches, Syscalls, Mallocs float64
	Sessions, Size                 int
}

func median[T int64 | float64 | time.Duration](vs []T) T {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// summarize gives the median figures of one target's rounds.
func summarize(rounds []result) figures {
	f := figures{Target: rounds[0].Target, Window: rounds[0].Window, Rounds: len(rounds),
		Sessions: rounds[0].Sessions, Size: rounds[0].Size}
	var rps, ours, others, ctxsw, sys, mallocs []float64
	var p50, p99, svc, emu, gen []time.Duration
	var svcPeak, emuPeak []int64
	for _, res := range rounds {
		f.Calls += res.Calls
		f.Errors += res.Errors
		for _, e := range res.ErrorKind {
			if !slices.Contains(f.ErrorKind, e) {
				f.ErrorKind = append(f.ErrorKind, e)
			}
		}
		rps = append(rps, res.RPS())
		p50 = append(p50, percentile(res.Latencies, 50))
		p99 = append(p99, percentile(res.Latencies, 99))
		svc = append(svc, res.perCall(res.ServiceCPU))
		emu = append(emu, res.perCall(res.EmulatorCPU))
		gen = append(gen, res.perCall(res.LoadgenCPU))
		o, x := res.busyShares()
		ours, others = append(ours, o), append(others, x)
		svcPeak, emuPeak = append(svcPeak, res.ServicePeak), append(emuPeak, res.EmulatorPeak)
		n := float64(max(res.Calls, 1))
		ctxsw = append(ctxsw, float64(res.Service.CtxSwitches)/n)
		sys = append(sys, float64(res.Service.Syscalls)/n)
		mallocs = append(mallocs, float64(res.Service.Mallocs)/n)
	}
	f.RPS, f.P50, f.P99 = median(rps), median(p50), median(p99)
	f.ServiceCPU, f.EmulatorCPU, f.LoadgenCPU = median(svc), median(emu), median(gen)
	f.Ours, f.Others = median(ours), median(others)
	f.ServicePeak, f.EmulatorPeak = median(svcPeak), median(emuPeak)
	f.CtxSwitches, f.Syscalls, f.Mallocs = median(ctxsw), median(sys), median(mallocs)
	return f
}

func (r *report) preamble() []string {
	users := "every call for a different user (token#N), so that none shares another's Plaid request; the service runs as shipped, coalescing on"
	if r.Config.SameUser {
		users = "every call for the same user (-same-user): the service's coalescing shares Plaid requests among calls in flight, which flatters it"
	}
	peak := "VmHWM, reset before each window through /proc/PID/clear_refs"
	for _, res := range r.Results {
		if res.PeakSource != "VmHWM" {
			peak = "the largest VmRSS sampled every 100ms (resetting VmHWM was refused)"
			break
		}
	}
	lines := []string{
		fmt.Sprintf("Machine: %s %s/%s, %d CPUs, %s.", runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), cpuModel()),
		"Processes: emulator (Plaid's side), service, and this load generator, each its own process on loopback.",
		fmt.Sprintf("Each target measured alone, in turn, after %v of warm-up at the window's load; %d rounds, each measuring every window for every target (the order of targets turning each round); every figure is the median of the rounds'.", r.Config.Warmup, r.Config.Rounds),
		"Targets: direct (the emulator, as a caller would call Plaid), canned (the floor: a bare grpc-go server answering from memory), bare (the design's floor: the same bare server asking Plaid on every call through the service's own client, and doing nothing else), naive (an afternoon's proxy: dynamic gRPC service, shared net/http client, protojson into dynamicpb), grpc and rest (the service). canned and bare run in the service's process, naive in one of its own; the service columns of each row are those of the process that served it.",
		"Context switches per call: voluntary and involuntary, of all the serving process's threads (/proc/PID/task/*/status); syscalls: read and write calls (/proc/PID/io syscr+syscw); allocs: go_memstats_mallocs_total of the service process.",
		"Users: " + users + ".",
		callLogs(r.Config.CallLogs),
		"CPU per call: utime+stime from /proc/PID/stat over the window, USER_HZ taken as 100 (10ms resolution), divided by the window's calls.",
		"CPU ours: the three processes' CPU time over the window, as a share of all CPUs; CPU others: the rest of the machine's busy time (/proc/stat), kernel threads and other programs. High others means the figures are disturbed.",
		"Peak RSS: " + peak + ".",
		"direct and rest bodies are read in full but not decoded; gRPC answers are decoded, as the client must.",
	}
	if r.Config.profiling() {
		lines = append(lines, fmt.Sprintf("The service was profiled during the %s windows: its CPU per call there includes the profiler's cost.", r.Config.ProfileTarget))
	}
	return lines
}

// window is the figures of win, one per target, in target order.
func (r *report) window(win window) []figures {
	var order []string
	by := map[string][]result{}
	for _, res := range r.Results {
		if res.Window != win {
			continue
		}
		if by[res.Target] == nil {
			order = append(order, res.Target)
		}
		by[res.Target] = append(by[res.Target], res)
	}
	rank := func(t string) int { return slices.Index(targetOrder, t) }
	slices.SortStableFunc(order, func(a, b string) int { return rank(a) - rank(b) })
	rows := make([]figures, 0, len(order))
	for _, t := range order {
		rows = append(rows, summarize(by[t]))
	}
	return rows
}

var targetOrder = []string{targetDirect, targetCanned, targetBare, targetNaive, targetGRPC, targetREST}

func windowTitle(win window, rows []figures) string {
	sizes := make([]string, 0, len(rows))
	for _, f := range rows {
		sizes = append(sizes, fmt.Sprintf("%s %s", f.Target, bytesIEC(int64(f.Size))))
	}
	return fmt.Sprintf("%s (%s): %s, %d sessions (answer size: %s), %s, %v per target, median of %d rounds",
		win.Scenario, win.Kind, win.Token, rows[0].Sessions, strings.Join(sizes, ", "), win.load(), win.Duration, rows[0].Rounds)
}

var columns = []string{"target", "calls", "req/s", "p50", "p99", "errors",
	"service CPU/call", "emulator CPU/call", "loadgen CPU/call", "CPU ours", "CPU others", "service peak RSS", "emulator peak RSS",
	"service ctx switches/call", "service read+write syscalls/call", "service allocs/call"}

func cells(f figures) []string {
	large := f.Window.Scenario != "small"
	svcCPU, svcPeak, ctxsw, sys, mallocs := "-", "-", "-", "-", "-" // direct calls do not reach the service
	if f.Target != targetDirect {
		svcCPU, svcPeak = cpuPerCall(f.ServiceCPU, large), bytesIEC(f.ServicePeak)
		ctxsw, sys, mallocs = fmt.Sprintf("%.2f", f.CtxSwitches), fmt.Sprintf("%.2f", f.Syscalls), fmt.Sprintf("%.0f", f.Mallocs)
	}
	return []string{
		f.Target,
		fmt.Sprint(f.Calls),
		fmt.Sprintf("%.0f", f.RPS),
		latency(f.P50, large),
		latency(f.P99, large),
		fmt.Sprint(f.Errors),
		svcCPU,
		cpuPerCall(f.EmulatorCPU, large),
		cpuPerCall(f.LoadgenCPU, large),
		fmt.Sprintf("%.0f%%", 100*f.Ours),
		fmt.Sprintf("%.0f%%", 100*f.Others),
		svcPeak,
		bytesIEC(f.EmulatorPeak),
		ctxsw, sys, mallocs,
	}
}

// ratios compares the targets of one window: throughput, latency added over direct,
// and CPU per call against the floor and the naive proxy.
func ratios(win window, rows []figures) [][]string {
	by := map[string]figures{}
	for _, f := range rows {
		by[f.Target] = f
	}
	if len(by) < len(targetOrder) {
		return nil
	}
	direct, canned, bareF, naive, g, rest := by[targetDirect], by[targetCanned], by[targetBare], by[targetNaive], by[targetGRPC], by[targetREST]
	large := win.Scenario != "small"
	added := func(d time.Duration) string {
		if d < 0 {
			return latency(d, large)
		}
		return "+" + latency(d, large)
	}
	cpu := func(a, b figures) string { return ratio(a.ServiceCPU.Seconds(), b.ServiceCPU.Seconds()) }
	return [][]string{
		{"req/s ratio:", "grpc/direct " + ratio(g.RPS, direct.RPS), "rest/direct " + ratio(rest.RPS, direct.RPS), "rest/grpc " + ratio(rest.RPS, g.RPS)},
		{"p50 added over direct:", "grpc " + added(g.P50-direct.P50), "rest " + added(rest.P50-direct.P50)},
		{"p99 added over direct:", "grpc " + added(g.P99-direct.P99), "rest " + added(rest.P99-direct.P99)},
		{"service CPU per call over canned:", "grpc " + cpu(g, canned), "rest " + cpu(rest, canned), "naive " + cpu(naive, canned), "bare " + cpu(bareF, canned)},
		{"service CPU per call over bare:", "grpc " + cpu(g, bareF), "rest " + cpu(rest, bareF), "naive " + cpu(naive, bareF)},
		{"service CPU per call over naive:", "grpc " + cpu(g, naive), "rest " + cpu(rest, naive)},
		{"p50 over (direct + canned):", "grpc " + ratio(g.P50.Seconds(), (direct.P50+canned.P50).Seconds()),
			"rest " + ratio(rest.P50.Seconds(), (direct.P50+canned.P50).Seconds())},
	}
}

// goals are the performance issue's figures, from the windows that measure them.
func (r *report) goals() [][2]string {
	fig := func(scenario, kind, target string) (figures, bool) {
		for _, win := range r.Config.windows() {
			if win.Scenario == scenario && win.Kind == kind {
				for _, f := range r.window(win) {
					if f.Target == target {
						return f, true
					}
				}
			}
		}
		return figures{}, false
	}
	var out [][2]string
	cpuRatio := func(name, scenario, kind, a, b string) {
		fa, ok1 := fig(scenario, kind, a)
		fb, ok2 := fig(scenario, kind, b)
		if ok1 && ok2 {
			out = append(out, [2]string{name, fmt.Sprintf("%s (%v ÷ %v)", ratio(fa.ServiceCPU.Seconds(), fb.ServiceCPU.Seconds()),
				fa.ServiceCPU.Round(time.Microsecond), fb.ServiceCPU.Round(time.Microsecond))})
		}
	}
	cpuRatio("small call CPU, gRPC ÷ floor", "small", "rate", targetGRPC, targetCanned)
	cpuRatio("small call CPU, REST ÷ floor", "small", "rate", targetREST, targetCanned)
	cpuRatio("small call CPU, bare ÷ floor (the least a call that asks Plaid costs)", "small", "rate", targetBare, targetCanned)
	cpuRatio("small call CPU, gRPC ÷ bare (what the service's features cost)", "small", "rate", targetGRPC, targetBare)
	cpuRatio("small call CPU, gRPC ÷ naive proxy", "small", "rate", targetGRPC, targetNaive)
	cpuRatio("small call CPU, REST ÷ naive proxy", "small", "rate", targetREST, targetNaive)
	for _, kind := range []string{"c1", "c4"} {
		cpuRatio("10,000-session call CPU ÷ naive proxy, gRPC, "+kind, "large", kind, targetGRPC, targetNaive)
		cpuRatio("10,000-session call CPU ÷ naive proxy, REST, "+kind, "large", kind, targetREST, targetNaive)
	}
	direct, ok1 := fig("small", "latency", targetDirect)
	canned, ok2 := fig("small", "latency", targetCanned)
	g, ok3 := fig("small", "latency", targetGRPC)
	rest, ok4 := fig("small", "latency", targetREST)
	if ok1 && ok2 && ok3 && ok4 {
		floor := (direct.P50 + canned.P50).Seconds()
		out = append(out, [2]string{"p50 at concurrency 1 ÷ (direct + floor), gRPC / REST",
			fmt.Sprintf("%s / %s (%v, %v ÷ %v + %v)", ratio(g.P50.Seconds(), floor), ratio(rest.P50.Seconds(), floor),
				g.P50.Round(time.Microsecond), rest.P50.Round(time.Microsecond), direct.P50.Round(time.Microsecond), canned.P50.Round(time.Microsecond))})
	}
	g, ok1 = fig("small", "throughput", targetGRPC)
	rest, ok2 = fig("small", "throughput", targetREST)
	if ok1 && ok2 {
		out = append(out, [2]string{"REST ÷ gRPC answered calls/s, closed loop", fmt.Sprintf("%s (%.0f ÷ %.0f)", ratio(rest.RPS, g.RPS), rest.RPS, g.RPS)})
	}
	g, ok1 = fig("large", "throughput", targetGRPC)
	rest, ok2 = fig("large", "throughput", targetREST)
	if ok1 && ok2 {
		out = append(out, [2]string{fmt.Sprintf("peak RSS, %d × 10k sessions in flight, gRPC / REST", g.Window.Concurrency),
			bytesIEC(g.ServicePeak) + " / " + bytesIEC(rest.ServicePeak)})
	}
	return out
}

func ratio(a, b float64) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", a/b)
}

// latency is in ms: to the microsecond for small answers, to 0.1ms for large ones.
func latency(d time.Duration, large bool) string {
	ms := float64(d) / float64(time.Millisecond)
	if large {
		return fmt.Sprintf("%.1f ms", ms)
	}
	return fmt.Sprintf("%.3f ms", ms)
}

// cpuPerCall is in µs for small answers, in ms for large ones.
func cpuPerCall(d time.Duration, large bool) string {
	if large {
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
}

func bytesIEC(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	default:
		return fmt.Sprintf("%d B", n)
	}
}

// printMarkdown writes the tables again, for BENCHMARKS.md.
func (r *report) printMarkdown(w io.Writer) {
	fmt.Fprint(w, "\n---- Markdown, for BENCHMARKS.md ----\n\n")
	for _, line := range r.preamble() {
		fmt.Fprintf(w, "- %s\n", line)
	}
	row := func(cells []string) { fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | ")) }
	rule := func(n int) {
		fmt.Fprint(w, "|")
		for i := range n {
			if i == 0 {
				fmt.Fprint(w, "---|")
			} else {
				fmt.Fprint(w, "---:|")
			}
		}
		fmt.Fprintln(w)
	}
	for _, win := range r.Config.windows() {
		rows := r.window(win)
		if len(rows) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n**%s**\n\n", windowTitle(win, rows))
		row(columns)
		rule(len(columns))
		for _, f := range rows {
			row(cells(f))
		}
		for _, line := range ratios(win, rows) {
			fmt.Fprintf(w, "\n%s", strings.Join(line, " "))
		}
		fmt.Fprintln(w)
	}
	goals := r.goals()
	if len(goals) == 0 {
		return
	}
	fmt.Fprint(w, "\n**The issue's figures**\n\n")
	row([]string{"figure", "this run"})
	rule(2)
	for _, g := range goals {
		row(g[:])
	}
}

// cpuModel is the processor's name from /proc/cpuinfo, or "unknown CPU".
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	defer f.Close()
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		if name, value, ok := strings.Cut(scanner.Text(), ":"); ok && strings.TrimSpace(name) == "model name" {
			return strings.TrimSpace(value)
		}
	}
	return "unknown CPU"
}

func callLogs(on bool) string {
	if on {
		return "Service logs: a JSON line per call (-call-logs, the default, as shipped), written to the null device through the service's log writer."
	}
	return "Service logs: warnings only; -call-logs adds the production line per call."
}
