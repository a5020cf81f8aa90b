// Package monitoring holds no code: it is the kustomize Component that ships the
// service's Prometheus rules and Grafana dashboard, and the Go tests that prove them —
// promtool's unit tests, the Component rendering, a drift check of every metric name the
// rules and dashboard use against what the service registers, and an end-to-end run of
// the real Prometheus scraping the built service through an outage.
package monitoring
