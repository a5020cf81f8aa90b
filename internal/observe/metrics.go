// Package observe is the service's observability: Prometheus metrics, the admin HTTP
// server (metrics, health probes, pprof) and OpenTelemetry tracing from the standard
// OTEL_* environment variables.
package observe

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/membudget"
	"github.com/creditsessions/creditsessions/internal/plaid"
	"github.com/creditsessions/creditsessions/internal/resilience"
	"github.com/creditsessions/creditsessions/internal/watch"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
)

// Metrics holds the service's collectors, in a registry of their own.
type Metrics struct {
	Registry *prometheus.Registry
	// GRPC counts and times every call, gRPC and REST alike (the mirror runs the same
	// interceptor chain): grpc_server_started_total, grpc_server_handled_total,
	// grpc_server_handling_seconds.
	GRPC *GRPCMetrics

	upstreamRequests *prometheus.CounterVec
	upstreamSeconds  *prometheus.HistogramVec
}

// NewMetrics registers the Go runtime, process and gRPC server collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		GRPC:     newGRPCMetrics([]float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}),
		upstreamRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "creditsessions_upstream_requests_total",
			Help: "Requests sent to Plaid, by outcome (ok, plaid_error, protocol_error, transport_error, canceled) and Plaid error code.",
		}, []string{"outcome", "error_code"}),
		upstreamSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "creditsessions_upstream_request_duration_seconds",
			Help:    "Time Plaid took to answer a request, by outcome.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"outcome"}),
	}
	m.Registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.GRPC, m.upstreamRequests, m.upstreamSeconds,
	)
	return m
}

// UnaryServerInterceptor is the gRPC server metrics interceptor.
func (m *Metrics) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return m.GRPC.UnaryServerInterceptor()
}

// ObserveGuard exports the resilience layer's counts and state. It sets the guard's
// OnUpstreamFailure and OnBreakerOpened, so it must be called before the guard is used.
func (m *Metrics) ObserveGuard(g *resilience.Guard) {
	failures := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "creditsessions_upstream_failures_total",
		Help: "Failed requests to Plaid by kind, and scope: user (one user's trouble, not counted by the circuit breaker) or upstream (counted).",
	}, []string{"kind", "scope"})
	for _, k := range resilience.Kinds {
		for _, sc := range []resilience.Scope{resilience.ScopeUser, resilience.ScopeUpstream} {
			failures.WithLabelValues(string(k), string(sc))
		}
	}
	opened := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "creditsessions_circuit_breaker_opened_total",
		Help: "Times the circuit to Plaid opened, by reason: the kind of failure that tripped it, or probe_failed.",
	}, []string{"reason"})
	g.OnUpstreamFailure = func(k resilience.Kind, sc resilience.Scope) {
		failures.WithLabelValues(string(k), string(sc)).Inc()
	}
	g.OnBreakerOpened = func(reason string) { opened.WithLabelValues(reason).Inc() }
	m.Registry.MustRegister(failures, opened,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "creditsessions_isolated_users",
			Help: "Users whose calls are answered from memory now, because their calls kept failing while others' succeeded.",
		}, func() float64 { return float64(g.IsolatedUsers()) }),
	)
	counter := func(name, help string, read func(resilience.Stats) int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(read(g.Stats())) })
	}
	m.Registry.MustRegister(
		// Not creditsessions_calls_total: that counts every call by caller and code
		// (package auth).
		counter("creditsessions_guarded_calls_total", "Calls that reached the resilience layer.",
			func(s resilience.Stats) int64 { return s.Calls }),
		counter("creditsessions_coalesced_calls_total", "Calls that shared an identical call in flight instead of calling Plaid.",
			func(s resilience.Stats) int64 { return s.Coalesced }),
		counter("creditsessions_upstream_retries_total", "Requests to Plaid that were retries.",
			func(s resilience.Stats) int64 { return s.Retries }),
		counter("creditsessions_retry_budget_exhausted_total", "Retries not made because the retry budget was spent.",
			func(s resilience.Stats) int64 { return s.RetryBudgetEmpty }),
		counter("creditsessions_overloaded_total", "Calls refused because too many requests to Plaid were in flight.",
			func(s resilience.Stats) int64 { return s.Overloaded }),
		counter("creditsessions_isolated_rejections_total", "Calls answered from memory, without calling Plaid, because their user's calls kept failing.",
			func(s resilience.Stats) int64 { return s.Isolated }),
		counter("creditsessions_circuit_open_rejections_total", "Requests to Plaid not made because the circuit was open.",
			func(s resilience.Stats) int64 { return s.FastFailed }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "creditsessions_upstream_in_flight", Help: "Requests to Plaid in flight.",
		}, func() float64 { return float64(g.InFlight()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "creditsessions_circuit_breaker_state", Help: "The circuit to Plaid: 0 closed, 1 half-open, 2 open.",
		}, func() float64 { return float64(g.BreakerState()) }),
	)
}

// ObserveAnswerMemory exports the bytes that large answers in flight hold, and how often
// a call waited for its turn.
func (m *Metrics) ObserveAnswerMemory(b *membudget.Budget) {
	m.Registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "creditsessions_answer_memory_bytes",
			Help: "Bytes of large Plaid answers that calls in flight hold, out of creditsessions_answer_memory_limit_bytes.",
		}, func() float64 { return float64(b.InUse()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "creditsessions_answer_memory_limit_bytes",
			Help: "Bytes of large Plaid answers that calls in flight may hold at once.",
		}, func() float64 { return float64(b.Size()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "creditsessions_answer_memory_waits_total",
			Help: "Calls that waited for other calls' large answers to go before reading their own.",
		}, func() float64 { return float64(b.Waits()) }),
	)
}

// Upstream is the interface of the Plaid client.
type Upstream = resilience.Upstream

// InstrumentUpstream counts and times every request to Plaid by outcome.
func (m *Metrics) InstrumentUpstream(next Upstream) Upstream {
	return instrumented{next: next, m: m}
}

type instrumented struct {
	next Upstream
	m    *Metrics
}

func (u instrumented) CreditSessionsGet(ctx context.Context, r plaid.Request) (*creditv1.CreditSessionsGetResponse, error) {
	start := time.Now()
	resp, err := u.next.CreditSessionsGet(ctx, r)
	outcome, code := classify(err)
	u.m.upstreamRequests.WithLabelValues(outcome, code).Inc()
	u.m.upstreamSeconds.WithLabelValues(outcome).Observe(time.Since(start).Seconds())
	return resp, err
}

func classify(err error) (outcome, errorCode string) {
	if err == nil {
		return "ok", "" // before the targets of errors.As, which escape
	}
	var pe *plaid.Error
	var proto *plaid.ProtocolError
	switch {
	case errors.As(err, &pe):
		return "plaid_error", pe.ErrorCode
	case errors.Is(err, context.Canceled):
		return "canceled", ""
	case errors.As(err, &proto):
		return "protocol_error", ""
	default: // connection failures and timeouts: the client returns nothing else
		return "transport_error", ""
	}
}

// ObserveWatch exports the watches of hub: how many are open, and the messages sent on
// them by reason.
func (m *Metrics) ObserveWatch(hub *watch.Hub) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "creditsessions_watches", Help: "Watches of users' credit sessions open on this replica.",
	}, func() float64 { return float64(hub.Watches()) }))
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "creditsessions_watches_limit", Help: "The most watches this replica takes at once (-max-watches, or derived from its memory limit).",
	}, func() float64 { return float64(hub.Config().MaxWatches) }))
	m.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "creditsessions_watch_refusals_total", Help: "Watches refused because this replica had its -max-watches open (ResourceExhausted with a RetryInfo: clients try another replica).",
	}, func() float64 { return float64(hub.Refused()) }))
	m.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "creditsessions_watch_slow_readers_total", Help: "Watches ended because their reader did not take a message within -watch-write-timeout (or before -watch-max-duration).",
	}, func() float64 { return float64(hub.SlowReaders()) }))
	for _, r := range []creditv1.WatchCreditSessionsReason{
		creditv1.WatchCreditSessionsReason_WATCH_CREDIT_SESSIONS_REASON_INITIAL,
		creditv1.WatchCreditSessionsReason_WATCH_CREDIT_SESSIONS_REASON_WEBHOOK,
		creditv1.WatchCreditSessionsReason_WATCH_CREDIT_SESSIONS_REASON_POLL,
	} {
		label := strings.ToLower(strings.TrimPrefix(r.String(), "WATCH_CREDIT_SESSIONS_REASON_"))
		m.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "creditsessions_watch_messages_total",
			Help:        "Messages sent on watches, by why they were sent (initial, webhook, poll).",
			ConstLabels: prometheus.Labels{"reason": label},
		}, func() float64 { return float64(hub.Messages(r)) }))
	}
}

// ObserveRedis exports whether the replica reaches the fleet's Redis.
func (m *Metrics) ObserveRedis(up func() bool) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "creditsessions_redis_up", Help: "1 when this replica reaches the fleet's Redis, 0 when it does not (watches then poll locally).",
	}, func() float64 {
		if up() {
			return 1
		}
		return 0
	}))
}

// descName picks the fully-qualified name out of a descriptor's String(), the only way
// client_golang shows it: Desc{fqName: "name", help: ...}.
var descName = regexp.MustCompile(`^Desc\{fqName: "([^"]+)"`)

// FamilyNames lists the name of every metric family registered, from the collectors'
// descriptors rather than a scrape: a vector with labels appears in /metrics only once
// a label set has been used, but its descriptor is there from the start. Monitoring
// rules and dashboards are checked against this list, so that renaming a metric without
// updating them fails the build. A histogram's series add _bucket, _sum and _count.
func (m *Metrics) FamilyNames() ([]string, error) {
	descs := make(chan *prometheus.Desc)
	go func() {
		m.Registry.Describe(descs)
		close(descs)
	}()
	seen := map[string]bool{}
	var bad []string
	for d := range descs {
		match := descName.FindStringSubmatch(d.String())
		if match == nil || d.Err() != nil {
			bad = append(bad, d.String())
			continue
		}
		seen[match[1]] = true
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("observe: descriptors without a readable name: %v", bad)
	}
	return slices.Sorted(maps.Keys(seen)), nil
}
