package auth

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the security metrics. Their labels are bounded: callers are labelled by
// the policy's principals or "other", files and reasons by fixed names.
type Metrics struct {
	calls           *prometheus.CounterVec
	quotaRejections *prometheus.CounterVec
	watchRejections *prometheus.CounterVec
	authFailures    *prometheus.CounterVec
	reloadOK        *prometheus.GaugeVec
	reloadErrors    *prometheus.CounterVec
	insecure        prometheus.Gauge
}

// NewMetrics registers the security metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "creditsessions_calls_total",
			Help: "Calls by method, transport (grpc, rest), caller (a principal of the authz policy, else other) and code.",
		}, []string{"method", "transport", "caller", "code"}),
		quotaRejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "creditsessions_caller_quota_rejections_total",
			Help: "Calls refused because their caller had spent its -caller-rate allowance.",
		}, []string{"caller"}),
		watchRejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "creditsessions_caller_watch_rejections_total",
			Help: "Watches refused because their caller had -caller-max-watches open on this replica already.",
		}, []string{"caller"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "creditsessions_auth_failures_total",
			Help: "Calls refused for a missing or bad credential (unauthenticated) or by the authz policy (permission_denied).",
		}, []string{"reason"}),
		reloadOK: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "creditsessions_file_reload_ok",
			Help: "1 when the last load of the file worked, 0 when the service is running on a previous version of it.",
		}, []string{"file"}),
		reloadErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "creditsessions_file_reload_errors_total",
			Help: "Loads of a changed file that failed (the previous version stays in use).",
		}, []string{"file"}),
		insecure: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "creditsessions_insecure",
			Help: "1 when the service was started with -allow-insecure.",
		}),
	}
	m.authFailures.WithLabelValues("unauthenticated")
	m.authFailures.WithLabelValues("permission_denied")
	reg.MustRegister(m.calls, m.quotaRejections, m.watchRejections, m.authFailures, m.reloadOK, m.reloadErrors, m.insecure)
	return m
}

// FileLoaded implements Observer.
func (m *Metrics) FileLoaded(name string, ok bool) {
	if m == nil {
		return
	}
	if ok {
		m.reloadOK.WithLabelValues(name).Set(1)
		return
	}
	m.reloadOK.WithLabelValues(name).Set(0)
	m.reloadErrors.WithLabelValues(name).Inc()
}

// SetInsecure sets creditsessions_insecure.
func (m *Metrics) SetInsecure(insecure bool) {
	if insecure {
		m.insecure.Set(1)
	} else {
		m.insecure.Set(0)
	}
}
