package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

// readRSS is the resident set size of process pid, in bytes, from /proc/<pid>/status.
func readRSS(pid int) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("reading the service's RSS: %w", err)
	}
	return parseVmRSS(raw)
}

// parseVmRSS reads the VmRSS line of a /proc/<pid>/status file: "VmRSS:\t  12345 kB".
func parseVmRSS(status []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("VmRSS:"))
		if !ok {
			continue
		}
		fields := bytes.Fields(rest)
		if len(fields) != 2 || string(fields[1]) != "kB" {
			return 0, fmt.Errorf("VmRSS line %q: want \"<n> kB\"", sc.Bytes())
		}
		kb, err := strconv.ParseInt(string(fields[0]), 10, 64)
		if err != nil || kb < 0 {
			return 0, fmt.Errorf("VmRSS line %q: %q is not a size", sc.Bytes(), fields[0])
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("no VmRSS line in /proc/<pid>/status")
}

// goroutineScraper reads go_goroutines from the service's Prometheus metrics.
type goroutineScraper struct {
	url    string
	client *http.Client
}

func newGoroutineScraper(adminAddr string) *goroutineScraper {
	return &goroutineScraper{
		url:    "http://" + adminAddr + "/metrics",
		client: &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 1}, Timeout: 2 * time.Second},
	}
}

func (s *goroutineScraper) read() (int64, error) {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, s.url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("scraping the service's metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("scraping the service's metrics: HTTP %d", resp.StatusCode)
	}
	return parseGoroutines(io.LimitReader(resp.Body, 16<<20))
}

func (s *goroutineScraper) close() { s.client.CloseIdleConnections() }

// parseGoroutines finds the go_goroutines gauge in Prometheus' text format.
func parseGoroutines(r io.Reader) (int64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := bytes.CutPrefix(sc.Bytes(), []byte("go_goroutines ")); ok {
			f, err := strconv.ParseFloat(string(bytes.TrimSpace(v)), 64)
			if err != nil {
				return 0, fmt.Errorf("go_goroutines %q: %w", v, err)
			}
			return int64(f), nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("reading the service's metrics: %w", err)
	}
	return 0, fmt.Errorf("no go_goroutines in the service's metrics")
}

// vitals follows the service's RSS (from outside, /proc) and goroutines (from its
// metrics) over the run.
type vitals struct {
	pid        int
	goroutines *goroutineScraper

	mu        sync.Mutex
	rss, gr   series
	rssErr    error // the first failure to read the RSS
	goroutErr error // the first failure to read the goroutines
}

// series is one quantity's samples.
type series struct {
	n, last, max int64
	start        int64 // after the warm-up; 0 until then
	end          int64 // when the load stopped; 0 until then
}

func (s *series) add(v int64) {
	s.n++
	s.last = v
	s.max = max(s.max, v)
}

// sample reads both now; a value that could not be read is 0.
func (v *vitals) sample() (rss, goroutines int64) {
	rss, rssErr := readRSS(v.pid)
	goroutines, grErr := v.goroutines.read()
	v.mu.Lock()
	defer v.mu.Unlock()
	if rssErr != nil {
		v.rssErr = firstErr(v.rssErr, rssErr)
		rss = 0
	} else {
		v.rss.add(rss)
	}
	if grErr != nil {
		v.goroutErr = firstErr(v.goroutErr, grErr)
		goroutines = 0
	} else {
		v.gr.add(goroutines)
	}
	return rss, goroutines
}

func firstErr(first, next error) error {
	if first != nil {
		return first
	}
	return next
}

func (v *vitals) markStart() {
	rss, goroutines := v.sample()
	v.mu.Lock()
	v.rss.start, v.gr.start = rss, goroutines
	v.mu.Unlock()
}

func (v *vitals) markEnd() {
	rss, goroutines := v.sample()
	v.mu.Lock()
	v.rss.end, v.gr.end = rss, goroutines
	v.mu.Unlock()
}

func (v *vitals) latestRSS() int64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.rss.last
}

// vitalsReport is what the summary says about the service's RSS and goroutines.
type vitalsReport struct {
	RSS, Goroutines       series
	RSSErr, GoroutinesErr error
}

func (v *vitals) report() vitalsReport {
	v.mu.Lock()
	defer v.mu.Unlock()
	return vitalsReport{RSS: v.rss, Goroutines: v.gr, RSSErr: v.rssErr, GoroutinesErr: v.goroutErr}
}

// growthAllowance is how far the end RSS may exceed the start: 25%, at least 16 MiB.
func growthAllowance(start int64) int64 { return max(start/4, 16<<20) }

// memoryGrew reports whether the service's RSS grew over the run beyond the allowance.
func (r vitalsReport) memoryGrew() bool {
	s := r.RSS
	return s.start > 0 && s.end > 0 && s.end-s.start > growthAllowance(s.start)
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
