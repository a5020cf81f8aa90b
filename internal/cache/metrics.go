package cache

import "github.com/prometheus/client_golang/prometheus"

// Metric names, for the dashboard and its drift test.
const (
	MetricHits       = "creditsessions_cache_hits_total"
	MetricMisses     = "creditsessions_cache_misses_total"
	MetricEvictions  = "creditsessions_cache_evictions_total"
	MetricBytes      = "creditsessions_cache_bytes"
	MetricEntries    = "creditsessions_cache_entries"
	MetricUnreadable = "creditsessions_cache_unreadable_total"
)

type metrics struct {
	hits       *prometheus.CounterVec
	misses     prometheus.Counter
	evictions  *prometheus.CounterVec
	unreadable prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, c *Cache) *metrics {
	m := &metrics{
		hits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricHits,
			Help: "Calls that allowed a cached answer and got one, by where it was found: memory (this replica) or redis (the fleet's).",
		}, []string{"source"}),
		misses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricMisses,
			Help: "Calls that allowed a cached answer (Cache-Control: max-age) and found none young enough: Plaid was asked.",
		}),
		evictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricEvictions,
			Help: "Entries dropped from this replica's memory, by cause: webhook, expired, capacity, redis_reconnect.",
		}, []string{"cause"}),
		unreadable: prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricUnreadable,
			Help: "Entries read from Redis that did not open with this replica's cache keys (a key not yet rotated in, or tampering); treated as misses.",
		}),
	}
	for _, s := range []string{"memory", "redis"} {
		m.hits.WithLabelValues(s)
	}
	for _, cause := range []string{"webhook", "expired", "capacity", "redis_reconnect"} {
		m.evictions.WithLabelValues(cause)
	}
	if reg != nil {
		reg.MustRegister(m.hits, m.misses, m.evictions, m.unreadable,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: MetricBytes,
				Help: "Estimated memory of this replica's cache entries; bounded by -cache-max-bytes.",
			}, func() float64 { return float64(c.Bytes()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: MetricEntries,
				Help: "Cache entries in this replica's memory.",
			}, func() float64 { return float64(c.Len()) }))
	}
	return m
}
