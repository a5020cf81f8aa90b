package monitoring_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// lines collects a child process's output and the JSON log lines in it.
type lines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// field is the value of key in the first JSON log line whose msg is msg, or "".
func (l *lines) field(msg, key string) string {
	sc := bufio.NewScanner(strings.NewReader(l.String()))
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == msg {
			s, _ := m[key].(string)
			return s
		}
	}
	return ""
}

// startProcess runs cmd until the test ends: SIGTERM, then a kill if it lingers.
func startProcess(t *testing.T, cmd *exec.Cmd) *lines {
	t.Helper()
	out := &lines{}
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(cmd.Path), out.String())
		}
	})
	return out
}

// freePort finds a loopback port for a program that cannot report the one it got.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// prom queries a Prometheus server's HTTP API.
type prom struct {
	t    *testing.T
	base string
}

type promResponse struct {
	Status    string          `json:"status"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Data      json.RawMessage `json:"data"`
}

func (p prom) get(path string, query url.Values) promResponse {
	p.t.Helper()
	resp, err := http.Get(p.base + path + "?" + query.Encode())
	require.NoError(p.t, err)
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	require.NoError(p.t, err)
	var r promResponse
	require.NoError(p.t, json.Unmarshal(body, &r), "%s: %s", path, body)
	return r
}

type sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// query evaluates expr now and returns its samples, or the API's error.
func (p prom) query(expr string) ([]sample, error) {
	p.t.Helper()
	r := p.get("/api/v1/query", url.Values{"query": {expr}})
	if r.Status != "success" {
		return nil, fmt.Errorf("%s: %s", r.ErrorType, r.Error)
	}
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	require.NoError(p.t, json.Unmarshal(r.Data, &data))
	if data.ResultType != "vector" {
		return nil, nil // a scalar: no samples to read
	}
	var samples []sample
	require.NoError(p.t, json.Unmarshal(data.Result, &samples))
	return samples, nil
}

func (s sample) value(t *testing.T) float64 {
	str, _ := s.Value[1].(string)
	v, err := strconv.ParseFloat(str, 64)
	require.NoError(t, err)
	return v
}

type alert struct {
	Labels map[string]string `json:"labels"`
	State  string            `json:"state"`
}

func (p prom) alerts() []alert {
	p.t.Helper()
	r := p.get("/api/v1/alerts", nil)
	require.Equal(p.t, "success", r.Status, r.Error)
	var data struct {
		Alerts []alert `json:"alerts"`
	}
	require.NoError(p.t, json.Unmarshal(r.Data, &data))
	return data.Alerts
}

// testRules copies the shipped CircuitOpen alert with a short for:, so the test sees it
// fire in seconds without the shipped rule changing. The copy is labelled to tell it
// from the shipped one, which loads beside it.
func testRules(t *testing.T) ruleFile {
	t.Helper()
	for _, r := range loadRules(t).rules() {
		if r.Alert == "CreditSessionsCircuitOpen" {
			r.For = "1s"
			r.Labels = map[string]string{"severity": r.Labels["severity"], "rules": "e2e"}
			return ruleFile{Groups: []ruleGroup{{Name: "creditsessions-e2e", Rules: []rule{r}}}}
		}
	}
	t.Fatal("the shipped rules have no CreditSessionsCircuitOpen alert")
	return ruleFile{}
}

// The real Prometheus scrapes the built service while it serves healthy calls and then
// through an outage of Plaid (the embedded emulator failing every request): the SLI
// recording rules produce series, the circuit-open alert fires, the fast budget burn
// starts, and every query of the rules and the dashboard evaluates without error.
func TestPrometheusScrapingTheServiceThroughAnOutage(t *testing.T) {
	prometheus, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("the prometheus server is not installed (Debian package prometheus); CI installs it")
	}
	if testing.Short() {
		t.Skip("builds the service and runs Prometheus: not with -short")
	}
	// The whole test, build included, stays within 90 s: each wait gets what is left.
	deadline := time.Now().Add(90 * time.Second)
	upTo := func(d time.Duration) time.Duration { return min(d, time.Until(deadline)) }
	dir := t.TempDir()

	// The service, as built, on the embedded emulator. The circuit stays open for a
	// minute once it opens, so the test reads a steady state.
	bin := filepath.Join(dir, "creditsessionsd")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	buildCtx, cancelBuild := context.WithDeadline(context.Background(), deadline)
	defer cancelBuild()
	build := exec.CommandContext(buildCtx, "go", append(args, "github.com/creditsessions/creditsessions/cmd/creditsessionsd")...)
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)
	svc := exec.Command(bin, "-grpc-addr", "127.0.0.1:0", "-http-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0",
		"-log-format", "json", "-breaker-open-for", "1m")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PLAID_") && !strings.HasPrefix(kv, "OTEL_") {
			svc.Env = append(svc.Env, kv)
		}
	}
	logs := startProcess(t, svc)
	require.Eventually(t, func() bool { return logs.field("serving", "admin_addr") != "" }, upTo(15*time.Second), 50*time.Millisecond,
		"the service did not start")
	adminAddr, grpcAddr := logs.field("serving", "admin_addr"), logs.field("serving", "grpc_addr")
	emulatorURL := logs.field("no Plaid credentials configured: serving from the embedded Plaid emulator", "emulator_url")
	require.NotEmpty(t, emulatorURL)

	// Prometheus: shipped rules plus the test's copy, 1 s scrapes and evaluations.
	testRulesFile := filepath.Join(dir, "e2e.rules.yml")
	data, err := yaml.Marshal(testRules(t))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(testRulesFile, data, 0o600))
	shipped, err := filepath.Abs(rulesFile)
	require.NoError(t, err)
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [%q, %q]
scrape_configs:
  - job_name: creditsessions
    static_configs:
      - targets: [%q]
`, shipped, testRulesFile, adminAddr)
	configFile := filepath.Join(dir, "prometheus.yml")
	require.NoError(t, os.WriteFile(configFile, []byte(config), 0o600))
	promAddr := freePort(t)
	startProcess(t, exec.Command(prometheus, "--config.file="+configFile, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+promAddr, "--log.level=warn"))
	p := prom{t: t, base: "http://" + promAddr}
	require.Eventually(t, func() bool {
		resp, err := http.Get(p.base + "/-/ready")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, upTo(15*time.Second), 100*time.Millisecond, "Prometheus did not become ready")

	// Calls, one at a time, each for a different user, until the test ends.
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	client := creditv1.NewCreditServiceClient(conn)
	ctx, stop := context.WithCancel(context.Background())
	loadDone := make(chan struct{})
	t.Cleanup(func() { stop(); <-loadDone })
	go func() {
		defer close(loadDone)
		tick := time.NewTicker(10 * time.Millisecond) // pacing: about 100 calls/s at most
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			callCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, _ = client.CreditSessionsGet(callCtx, &creditv1.CreditSessionsGetRequest{UserToken: fmt.Sprintf("user-sandbox-example#%d", n)})
			cancel()
		}
	}()

	// Healthy: every SLI series there; no call failed. (A slow call is possible on a
	// loaded machine, so latency only has to be mostly good.)
	sliSeries := []string{}
	for _, sli := range []string{"availability", "latency"} {
		for _, w := range []string{"5m", "30m", "1h", "2h", "6h", "1d", "3d"} {
			sliSeries = append(sliSeries, "creditsessions:sli_"+sli+":ratio_rate"+w)
		}
	}
	require.Eventually(t, func() bool {
		for _, s := range sliSeries {
			samples, err := p.query(s)
			if err != nil || len(samples) != 1 {
				return false
			}
			v := samples[0].value(t)
			if (strings.Contains(s, "availability") && v != 1) || v < 0.9 {
				return false
			}
		}
		return true
	}, upTo(20*time.Second), 250*time.Millisecond, "the SLI recording rules did not produce healthy series")
	for _, a := range p.alerts() {
		assert.NotEqual(t, "firing", a.State, "healthy, yet %v fires", a.Labels)
	}

	// The outage: Plaid answers every request with API_ERROR.
	req, err := http.NewRequest(http.MethodPut, emulatorURL+"/emulator/faults",
		strings.NewReader(`{"error_rate":1,"errors":["API_ERROR/INTERNAL_SERVER_ERROR"]}`))
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode)

	require.Eventually(t, func() bool {
		for _, a := range p.alerts() {
			if a.Labels["alertname"] == "CreditSessionsCircuitOpen" && a.Labels["rules"] == "e2e" && a.State == "firing" {
				return true
			}
		}
		return false
	}, upTo(20*time.Second), 250*time.Millisecond, "CreditSessionsCircuitOpen did not fire")
	assert.Eventually(t, func() bool {
		for _, a := range p.alerts() {
			if a.Labels["alertname"] == "CreditSessionsCircuitOpen" && a.Labels["rules"] == "" {
				return a.State == "pending"
			}
		}
		return false
	}, upTo(5*time.Second), 250*time.Millisecond, "the shipped rule sees the same outage, and waits its 5 minutes")
	require.Eventually(t, func() bool {
		samples, err := p.query("creditsessions:sli_availability:ratio_rate5m")
		return err == nil && len(samples) == 1 && samples[0].value(t) < 1
	}, upTo(10*time.Second), 250*time.Millisecond, "the availability SLI did not see the outage")
	// Every call now fails: the fast burn's page is on its way (its for: is 2 minutes).
	assert.Eventually(t, func() bool {
		for _, a := range p.alerts() {
			if a.Labels["alertname"] == "CreditSessionsAvailabilityBudgetBurnFast" {
				return a.State == "pending" && a.Labels["severity"] == "page"
			}
		}
		return false
	}, upTo(10*time.Second), 250*time.Millisecond, "the availability budget burn did not start")

	// Every query of the rules and the dashboard evaluates.
	for where, expr := range queries(t) {
		_, err := p.query(expr)
		assert.NoError(t, err, "%s: %s", where, expr)
	}
}
