package main

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// report is what a soak run found.
type report struct {
	cfg  config
	load loadResult

	calls, grpcCalls, restCalls int64
	outcomes                    []outcomeCount // most frequent first

	good, goodFailed                        int64
	failing, failingFast                    int64 // the failing user's calls, and those answered at once
	unknown, unknownCaller, unknownTransit  int64
	goodP50, goodP99, goodMax, okP50, okP99 time.Duration
	upstreamCalls                           int64
	faults                                  map[string]int64 // the emulator's answers by fault kind, "none" included
	vitals                                  vitalsReport
	stop                                    stopResult
}

func newReport(cfg config, load loadResult, t *tally, upstream int64, faults map[string]int64, vit vitalsReport, stop stopResult) *report {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := &report{
		cfg: cfg, load: load,
		calls: t.good + t.unknown, grpcCalls: t.byTrans[overGRPC], restCalls: t.byTrans[overREST],
		good: t.good, goodFailed: t.goodFailed, failing: t.failing, failingFast: t.failingFast,
		unknown: t.unknown, unknownCaller: t.unknownCaller, unknownTransit: t.unknownTransit,
		upstreamCalls: upstream, faults: faults, vitals: vit, stop: stop,
	}
	for _, o := range t.outcomes {
		r.outcomes = append(r.outcomes, *o)
	}
	slices.SortFunc(r.outcomes, func(a, b outcomeCount) int {
		return cmp.Or(cmp.Compare(b.good+b.unknown, a.good+a.unknown), strings.Compare(a.label, b.label))
	})
	r.goodP50, r.goodP99, r.goodMax = percentiles(t.goodLatencies)
	r.okP50, r.okP99, _ = percentiles(t.goodSuccessLatencies)
	return r
}

// unknownWrong is the unknown-token calls that got neither their caller error nor a
// transient error an upstream fault explains.
func (r *report) unknownWrong() int64 { return r.unknown - r.unknownCaller - r.unknownTransit }

// upstreamPerCall is Plaid requests per call made to the service.
func (r *report) upstreamPerCall() float64 {
	if r.calls == 0 {
		return 0
	}
	return float64(r.upstreamCalls) / float64(r.calls)
}

// goodErrorRate is the fraction of good-token calls that failed.
func (r *report) goodErrorRate() float64 {
	if r.good == 0 {
		return 0
	}
	return float64(r.goodFailed) / float64(r.good)
}

// failures are the reasons the run failed; none means it passed.
func (r *report) failures() []string {
	var out []string
	if r.calls == 0 {
		out = append(out, "no calls were made")
	}
	if !r.stop.Clean {
		out = append(out, "the service did not stop cleanly on SIGTERM: "+r.stop.Detail)
	}
	if n := r.unknownWrong(); n > 0 {
		var got []string
		for _, o := range r.outcomes {
			if o.unknown > 0 && !o.expectedForUnknown {
				got = append(got, fmt.Sprintf("%s ×%d", o.label, o.unknown))
			}
		}
		out = append(out, fmt.Sprintf("%d unknown-token calls got something other than their caller error (NotFound / 400 INVALID_USER_TOKEN) "+
			"or an upstream fault's transient error: %s", n, strings.Join(got, ", ")))
	}
	switch v := r.vitals; {
	case v.RSSErr != nil:
		out = append(out, "the service's memory could not be measured: "+v.RSSErr.Error())
	case v.memoryGrew():
		out = append(out, fmt.Sprintf("the service's memory grew over the run: RSS %s after the warm-up, %s at the end (allowed: +%s)",
			mib(v.RSS.start), mib(v.RSS.end), mib(growthAllowance(v.RSS.start))))
	}
	return out
}

func (r *report) print(w io.Writer) {
	cfg := r.cfg
	fmt.Fprintf(w, "\nsoak: %s at %d calls/s (concurrency %d, seed %d); Plaid emulator failing %s of calls:\n  %s\n\n",
		r.loadDuration(), cfg.Rate, cfg.Concurrency, cfg.Seed, percentFloat(faultRate(cfg)), cfg.Faults)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "load\t%d calls in %s (%.1f/s; gRPC %d, REST %d), stopped by %s; %d ticks dropped by the load generator (every worker busy)\n",
		r.calls, r.load.elapsed.Round(time.Millisecond), float64(r.calls)/r.load.elapsed.Seconds(),
		r.grpcCalls, r.restCalls, r.load.stoppedBy, r.load.dropped)
	fmt.Fprintf(tw, "good tokens\t%d calls, %d failed: %s\n", r.good, r.goodFailed, percent(r.goodFailed, r.good))
	if cfg.FailingShare > 0 {
		fmt.Fprintf(tw, "failing user\t%d calls for %s, every one failing; %d answered in under 10 ms\n",
			r.failing, failingUserToken, r.failingFast)
	}
	fmt.Fprintf(tw, "unknown tokens\t%d calls: %d got their caller error, %d a transient error (an upstream fault), %d something else\n",
		r.unknown, r.unknownCaller, r.unknownTransit, r.unknownWrong())
	fmt.Fprintf(tw, "latency, good tokens\tp50 %s, p99 %s, max %s; successful calls only: p50 %s, p99 %s\n",
		ms(r.goodP50), ms(r.goodP99), ms(r.goodMax), ms(r.okP50), ms(r.okP99))
	fmt.Fprintf(tw, "upstream (Plaid)\t%d requests, %.2f per call; %s\n", r.upstreamCalls, r.upstreamPerCall(), faultBreakdown(r.faults))
	fmt.Fprintf(tw, "service's resilience\t%s\n", r.guardLine())
	fmt.Fprintf(tw, "service memory (RSS)\t%s\n", r.memoryLine())
	fmt.Fprintf(tw, "service goroutines\t%s\n", r.goroutinesLine())
	fmt.Fprintf(tw, "service stop\t%s\n", r.stopLine())
	_ = tw.Flush()

	fmt.Fprintln(w, "\noutcomes")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tgood tokens\tunknown tokens\t")
	for _, o := range r.outcomes {
		fmt.Fprintf(tw, "  %s\t%d\t%d\t\n", o.label, o.good, o.unknown)
	}
	_ = tw.Flush()

	fmt.Fprintln(w)
	r.printMarkdown(w)

	if f := r.failures(); len(f) > 0 {
		fmt.Fprintln(w, "\nFAIL")
		for _, reason := range f {
			fmt.Fprintln(w, "  -", reason)
		}
	} else {
		fmt.Fprintln(w, "\nPASS")
	}
}

// loadDuration is -duration, or how long the load ran if something stopped it sooner.
func (r *report) loadDuration() string {
	if r.load.stoppedBy == "-duration" {
		return r.cfg.Duration.String()
	}
	return fmt.Sprintf("%s (of -duration %s; stopped by %s)", r.load.elapsed.Round(time.Second), r.cfg.Duration, r.load.stoppedBy)
}

func (r *report) printMarkdown(w io.Writer) {
	cfg := r.cfg
	rows := [][2]string{
		{"load", fmt.Sprintf("%s at %d calls/s, %d in flight at most: %d calls, half gRPC, half REST", r.loadDuration(), cfg.Rate, cfg.Concurrency, r.calls)},
		{"Plaid (emulator)", fmt.Sprintf("fails %s of requests: `%s`", percentFloat(faultRate(cfg)), cfg.Faults)},
		{"good-token calls that failed", fmt.Sprintf("%s (%d of %d)", percent(r.goodFailed, r.good), r.goodFailed, r.good)},
	}
	if cfg.FailingShare > 0 {
		rows = append(rows, [2]string{"one failing user", fmt.Sprintf("%d calls (%s of all), every one failing; %d answered in under 10 ms",
			r.failing, percentFloat(cfg.FailingShare), r.failingFast)})
	}
	rows = append(rows, [][2]string{
		{"unknown-token calls", fmt.Sprintf("%d of %d got NotFound / 400 `INVALID_USER_TOKEN`; %d a transient error; %d anything else",
			r.unknownCaller, r.unknown, r.unknownTransit, r.unknownWrong())},
		{"latency, good-token calls", fmt.Sprintf("p50 %s, p99 %s", ms(r.goodP50), ms(r.goodP99))},
		{"Plaid requests per call", fmt.Sprintf("%.2f", r.upstreamPerCall())},
		{"service RSS", r.memoryLine()},
		{"service goroutines", r.goroutinesLine()},
		{"stop on SIGTERM", r.stopLine()},
	}...)
	fmt.Fprintln(w, "| soak | result |")
	fmt.Fprintln(w, "|---|---|")
	for _, row := range rows {
		fmt.Fprintf(w, "| %s | %s |\n", row[0], strings.ReplaceAll(row[1], "|", `\|`))
	}
}

func (r *report) memoryLine() string {
	v := r.vitals
	if v.RSSErr != nil {
		return "not measured: " + v.RSSErr.Error()
	}
	return r.seriesLine(v.RSS, mib)
}

// goroutinesLine reports the goroutines, which only show a leak: there is no check on
// them, since their count after the warm-up includes calls in flight.
func (r *report) goroutinesLine() string {
	v := r.vitals
	if v.GoroutinesErr != nil {
		return "not measured: " + v.GoroutinesErr.Error()
	}
	return r.seriesLine(v.Goroutines, func(n int64) string { return strconv.FormatInt(n, 10) })
}

func (r *report) seriesLine(s series, format func(int64) string) string {
	if s.start == 0 {
		return fmt.Sprintf("end %s, max %s; no start: the load ended before the %s warm-up", format(s.end), format(s.max), r.cfg.warmUp())
	}
	return fmt.Sprintf("%s after a %s warm-up → %s at the end (%+.1f%%), max %s",
		format(s.start), r.cfg.warmUp(), format(s.end), 100*float64(s.end-s.start)/float64(s.start), format(s.max))
}

func (r *report) guardLine() string {
	g := r.stop.Guard
	if g == nil {
		return "not reported (the service did not stop cleanly)"
	}
	return fmt.Sprintf("%d calls: %d coalesced into another; %d Plaid attempts, %d of them retries; "+
		"%d retries refused by the budget; %d fast-failed by the open circuit; %d refused as overloaded; "+
		"%d answered from memory (their user kept failing)",
		g.Calls, g.Coalesced, g.Attempts, g.Retries, g.RetryBudgetEmpty, g.FastFailed, g.Overloaded, g.Isolated)
}

func (r *report) stopLine() string {
	if r.stop.Clean {
		return fmt.Sprintf("clean, exit 0 after %s", r.stop.Took.Round(time.Millisecond))
	}
	return "NOT clean: " + r.stop.Detail
}

// faultRate is the fraction of Plaid requests the faults fail.
func faultRate(cfg config) float64 {
	f := cfg.Faults
	return f.ErrorRate + f.RateLimitRate + f.ResetRate + f.StallRate + f.GarbageRate
}

func faultBreakdown(counts map[string]int64) string {
	var total int64
	kinds := make([]string, 0, len(counts))
	for k, n := range counts {
		total += n
		if k != "none" {
			kinds = append(kinds, k)
		}
	}
	if len(kinds) == 0 {
		return "no faults injected"
	}
	slices.Sort(kinds)
	var faulted int64
	parts := make([]string, len(kinds))
	for i, k := range kinds {
		faulted += counts[k]
		parts[i] = fmt.Sprintf("%s %d", k, counts[k])
	}
	return fmt.Sprintf("faults injected in %s of them (%s)", percent(faulted, total), strings.Join(parts, ", "))
}

// percentiles returns the p50, p99 and maximum of ds (nearest rank), sorting ds.
func percentiles(ds []time.Duration) (p50, p99, maxD time.Duration) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	slices.Sort(ds)
	rank := func(p float64) time.Duration {
		i := int(math.Ceil(p*float64(len(ds)))) - 1
		return ds[min(max(i, 0), len(ds)-1)]
	}
	return rank(0.50), rank(0.99), ds[len(ds)-1]
}

func percent(n, of int64) string {
	if of == 0 {
		return "n/a"
	}
	return percentFloat(float64(n) / float64(of))
}

func percentFloat(f float64) string { return fmt.Sprintf("%.2f%%", 100*f) }

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }
