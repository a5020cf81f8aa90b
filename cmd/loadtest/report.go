package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// disturbedShare is the share of the CPUs that work outside the three processes may
// take before a window's figures are called disturbed.
const disturbedShare = 0.10

// print writes the report: a table and ratios per window, then the same in Markdown.
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
		for _, res := range rows {
			fmt.Fprintln(tw, strings.Join(cells(res), "\t")+"\t")
		}
		_ = tw.Flush()
		for _, line := range ratios(win, rows) { // none for a window cut short
			fmt.Fprintf(w, "  %s\n", strings.Join(line, "  "))
		}
		for _, res := range rows {
			if _, others := res.busyShares(); others > disturbedShare {
				fmt.Fprintf(w, "  WARNING %s: the rest of the machine kept %.0f%% of the CPUs busy during the window; its figures are disturbed.\n", res.Target, 100*others)
			}
			for _, e := range res.ErrorKind {
				fmt.Fprintf(w, "  ERROR %s: %s\n", res.Target, e)
			}
		}
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
		fmt.Sprintf("Each target measured alone, in turn, after %v of warm-up at the window's concurrency.", r.Config.Warmup),
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

// window is the results of win, in target order.
func (r *report) window(win window) []result {
	var rows []result
	for _, res := range r.Results {
		if res.Window == win {
			rows = append(rows, res)
		}
	}
	return rows
}

func windowTitle(win window, rows []result) string {
	sizes := make([]string, 0, len(rows))
	for _, res := range rows {
		sizes = append(sizes, fmt.Sprintf("%s %s", res.Target, bytesIEC(int64(res.Size))))
	}
	return fmt.Sprintf("%s (%s): %s, %d sessions (answer size: %s), concurrency %d, %v per target",
		win.Scenario, win.Kind, win.Token, rows[0].Sessions, strings.Join(sizes, ", "), win.Concurrency, win.Duration)
}

var columns = []string{"target", "calls", "req/s", "p50", "p99", "errors",
	"service CPU/call", "emulator CPU/call", "loadgen CPU/call", "CPU ours", "CPU others", "service peak RSS", "emulator peak RSS"}

func cells(res result) []string {
	large := res.Window.Scenario != "small"
	svcCPU, svcPeak := "-", "-" // direct calls do not reach the service
	if res.Target != targetDirect {
		svcCPU, svcPeak = cpuPerCall(res.perCall(res.ServiceCPU), large), bytesIEC(res.ServicePeak)
	}
	ours, others := res.busyShares()
	return []string{
		res.Target,
		fmt.Sprint(res.Calls),
		fmt.Sprintf("%.0f", res.RPS()),
		latency(percentile(res.Latencies, 50), large),
		latency(percentile(res.Latencies, 99), large),
		fmt.Sprint(res.Errors),
		svcCPU,
		cpuPerCall(res.perCall(res.EmulatorCPU), large),
		cpuPerCall(res.perCall(res.LoadgenCPU), large),
		fmt.Sprintf("%.0f%%", 100*ours),
		fmt.Sprintf("%.0f%%", 100*others),
		svcPeak,
		bytesIEC(res.EmulatorPeak),
	}
}

// ratios compares the targets of one window: throughput, then latency added over direct.
func ratios(win window, rows []result) [][]string {
	by := map[string]result{}
	for _, res := range rows {
		by[res.Target] = res
	}
	if len(by) < 3 {
		return nil
	}
	direct, canned, g, rest := by[targetDirect], by[targetCanned], by[targetGRPC], by[targetREST]
	large := win.Scenario != "small"
	added := func(res result, p float64) string {
		d := percentile(res.Latencies, p) - percentile(direct.Latencies, p)
		if d < 0 {
			return latency(d, large)
		}
		return "+" + latency(d, large)
	}
	return [][]string{
		{"req/s ratio:", "grpc/direct " + ratio(g.RPS(), direct.RPS()), "rest/direct " + ratio(rest.RPS(), direct.RPS()), "rest/grpc " + ratio(rest.RPS(), g.RPS())},
		{fmt.Sprintf("p50 added over direct at concurrency %d:", win.Concurrency), "grpc " + added(g, 50), "rest " + added(rest, 50)},
		{fmt.Sprintf("p99 added over direct at concurrency %d:", win.Concurrency), "grpc " + added(g, 99), "rest " + added(rest, 99)},
		{"service CPU per call over canned:", "grpc " + ratio(g.perCall(g.ServiceCPU).Seconds(), canned.perCall(canned.ServiceCPU).Seconds()),
			"rest " + ratio(rest.perCall(rest.ServiceCPU).Seconds(), canned.perCall(canned.ServiceCPU).Seconds())},
	}
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
	var summary [][]string
	for _, win := range r.Config.windows() {
		rows := r.window(win)
		if len(rows) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n**%s**\n\n", windowTitle(win, rows))
		row(columns)
		rule(len(columns))
		for _, res := range rows {
			row(cells(res))
		}
		rs := ratios(win, rows)
		if rs == nil {
			continue
		}
		summary = append(summary, []string{
			fmt.Sprintf("%s, concurrency %d", win.Scenario, win.Concurrency),
			strings.TrimPrefix(rs[0][1], "grpc/direct "), strings.TrimPrefix(rs[0][2], "rest/direct "), strings.TrimPrefix(rs[0][3], "rest/grpc "),
			strings.TrimPrefix(rs[1][1], "grpc "), strings.TrimPrefix(rs[1][2], "rest "),
			strings.TrimPrefix(rs[3][1], "grpc "), strings.TrimPrefix(rs[3][2], "rest "),
		})
	}
	if len(summary) == 0 {
		return
	}
	fmt.Fprint(w, "\n**The service against calling Plaid directly**\n\n")
	head := []string{"window", "req/s grpc ÷ direct", "req/s rest ÷ direct", "req/s rest ÷ grpc", "p50 added, grpc", "p50 added, rest",
		"CPU/call grpc ÷ canned", "CPU/call rest ÷ canned"}
	row(head)
	rule(len(head))
	for _, s := range summary {
		row(s)
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
		return "Service logs: a JSON line per call (-call-logs), written to the null device."
	}
	return "Service logs: warnings only; -call-logs adds the production line per call."
}
