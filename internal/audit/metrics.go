package audit

import "github.com/prometheus/client_golang/prometheus"

// Why a record was lost: the values of creditsessions_audit_records_lost_total's reason.
const (
	lostQueueFull   = "queue_full"   // the sink could not keep up
	lostSinkFailing = "sink_failing" // still unwritten when the process stopped
	lostClosed      = "closed"       // a call that ended after shutdown closed the trail
)

// Metrics count the trail's records. They are registered whether or not a trail is
// kept, so that the rules and dashboards that select them always find them.
type Metrics struct {
	written prometheus.Counter
	lost    *prometheus.CounterVec
	refused prometheus.Counter
	log     *Log
	reg     prometheus.Registerer
}

// NewMetrics registers the trail's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		written: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "creditsessions_audit_records_written_total",
			Help: "Audit records written to the sink (and fsync'd, for a file).",
		}),
		lost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "creditsessions_audit_records_lost_total",
			Help: "Audit records that could not be kept, by reason: queue_full (the sink could not keep up), sink_failing (unwritten at shutdown), closed (a call ending after shutdown).",
		}, []string{"reason"}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "creditsessions_audit_refused_calls_total",
			Help: "Calls refused with Unavailable because their audit record could not be kept (-audit-required).",
		}),
		reg: reg,
	}
	for _, r := range []string{lostQueueFull, lostSinkFailing, lostClosed} {
		m.lost.WithLabelValues(r)
	}
	reg.MustRegister(m.written, m.lost, m.refused,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "creditsessions_audit_queue_records",
			Help: "Audit records held in memory, not yet written.",
		}, func() float64 { return m.held() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "creditsessions_audit_queue_capacity",
			Help: "The most audit records held in memory before calls are refused or records lost.",
		}, func() float64 {
			if m.log == nil {
				return 0
			}
			return float64(m.log.opts.Queue)
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "creditsessions_audit_sink_failing",
			Help: "1 while the last write to the audit sink failed; 0 when it succeeded or no trail is kept.",
		}, func() float64 {
			if m.log != nil && !m.log.Healthy() {
				return 1
			}
			return 0
		}),
	)
	return m
}

func (m *Metrics) observe(l *Log) {
	if m != nil {
		m.log = l
	}
}

func (m *Metrics) held() float64 {
	if m == nil || m.log == nil {
		return 0
	}
	m.log.mu.Lock()
	defer m.log.mu.Unlock()
	return float64(m.log.held)
}

func (m *Metrics) wrote(n int) {
	if m != nil {
		m.written.Add(float64(n))
	}
}

func (m *Metrics) lose(reason string, n int) {
	if m != nil {
		m.lost.WithLabelValues(reason).Add(float64(n))
	}
}

func (m *Metrics) refuse() {
	if m != nil {
		m.refused.Inc()
	}
}
