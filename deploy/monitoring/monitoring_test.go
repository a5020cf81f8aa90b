package monitoring_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/creditsessions/creditsessions/internal/app"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

const (
	rulesFile     = "rules/creditsessions.rules.yml"
	dashboardFile = "dashboards/creditsessions.json"
	runbookFile   = "../../docs/runbook.md"
)

// ruleFile is a Prometheus rules file, as much of it as the tests read.
type ruleFile struct {
	Groups []ruleGroup `yaml:"groups"`
}

type ruleGroup struct {
	Name     string `yaml:"name"`
	Interval string `yaml:"interval,omitempty"`
	Rules    []rule `yaml:"rules"`
}

type rule struct {
	Record      string            `yaml:"record,omitempty"`
	Alert       string            `yaml:"alert,omitempty"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty"`
	Annotations map[string]string `yaml:"annotations,omitempty"`
}

func loadRules(t *testing.T) ruleFile {
	t.Helper()
	data, err := os.ReadFile(rulesFile)
	require.NoError(t, err)
	var f ruleFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	require.NoError(t, dec.Decode(&f), rulesFile)
	require.NotEmpty(t, f.Groups)
	return f
}

func (f ruleFile) rules() []rule {
	var all []rule
	for _, g := range f.Groups {
		all = append(all, g.Rules...)
	}
	return all
}

// dashboard is the part of a Grafana dashboard the tests read.
type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query string `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	data, err := os.ReadFile(dashboardFile)
	require.NoError(t, err)
	var d dashboard
	require.NoError(t, json.Unmarshal(data, &d), dashboardFile)
	return d
}

// queries is every PromQL expression the rules and the dashboard hold, each with where
// it comes from.
func queries(t *testing.T) map[string]string {
	t.Helper()
	q := map[string]string{}
	for _, r := range loadRules(t).rules() {
		q["rule "+r.Record+r.Alert] = r.Expr
	}
	for _, p := range loadDashboard(t).Panels {
		for _, tg := range p.Targets {
			q["panel "+p.Title+" "+tg.RefID] = tg.Expr
		}
	}
	return q
}

func TestPromtoolChecksAndUnitTestsPass(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed (Debian package prometheus); CI installs it")
	}
	out, err := exec.Command(promtool, "check", "rules", rulesFile).CombinedOutput()
	require.NoError(t, err, "%s", out)
	tests, err := filepath.Glob("tests/*.yml")
	require.NoError(t, err)
	require.NotEmpty(t, tests)
	out, err = exec.Command(promtool, append([]string{"test", "rules"}, tests...)...).CombinedOutput()
	require.NoError(t, err, "%s", out)
}

// Every alert the unit tests leave out would be an alert nobody has seen fire.
func TestEveryAlertHasAUnitTest(t *testing.T) {
	tests, err := filepath.Glob("tests/*.yml")
	require.NoError(t, err)
	tested := map[string]bool{}
	for _, path := range tests {
		data, err := os.ReadFile(path)
		require.NoError(t, err)
		var f struct {
			Tests []struct {
				AlertRuleTest []struct {
					Alertname string `yaml:"alertname"`
					ExpAlerts []any  `yaml:"exp_alerts"`
				} `yaml:"alert_rule_test"`
			} `yaml:"tests"`
		}
		require.NoError(t, yaml.Unmarshal(data, &f), path)
		for _, tc := range f.Tests {
			for _, a := range tc.AlertRuleTest {
				if len(a.ExpAlerts) > 0 {
					tested[a.Alertname] = true
				}
			}
		}
	}
	for _, r := range loadRules(t).rules() {
		if r.Alert != "" {
			assert.True(t, tested[r.Alert], "%s: no promtool test shows it firing", r.Alert)
		}
	}
}

// runbookAnchors are the anchors GitHub gives the runbook's headings.
func runbookAnchors(t *testing.T) map[string]bool {
	t.Helper()
	data, err := os.ReadFile(runbookFile)
	require.NoError(t, err)
	anchors := map[string]bool{}
	drop := regexp.MustCompile(`[^\p{L}\p{N}\- _]`)
	for line := range strings.Lines(string(data)) {
		if h, ok := strings.CutPrefix(line, "#"); ok {
			h = strings.TrimSpace(strings.TrimLeft(h, "#"))
			anchors[strings.ReplaceAll(drop.ReplaceAllString(strings.ToLower(h), ""), " ", "-")] = true
		}
	}
	return anchors
}

func TestEveryAlertSaysWhatAndWhereToLook(t *testing.T) {
	anchors := runbookAnchors(t)
	alerts := 0
	for _, r := range loadRules(t).rules() {
		if r.Alert == "" {
			continue
		}
		alerts++
		assert.Contains(t, []string{"page", "ticket"}, r.Labels["severity"], "%s: severity", r.Alert)
		assert.NotEmpty(t, r.Annotations["summary"], "%s: summary", r.Alert)
		assert.NotEmpty(t, r.Annotations["description"], "%s: description", r.Alert)
		anchor, ok := strings.CutPrefix(r.Annotations["runbook_url"], "docs/runbook.md#")
		if assert.True(t, ok, "%s: runbook_url %q is not docs/runbook.md#anchor", r.Alert, r.Annotations["runbook_url"]) {
			assert.Equal(t, strings.ToLower(r.Alert), anchor, "%s: runbook anchor", r.Alert)
			assert.True(t, anchors[anchor], "%s: docs/runbook.md has no heading for #%s", r.Alert, anchor)
		}
	}
	assert.GreaterOrEqual(t, alerts, 10)
}

func TestDashboardIsImportable(t *testing.T) {
	d := loadDashboard(t)
	assert.Equal(t, "creditsessions", d.UID)
	assert.NotEmpty(t, d.Title)
	assert.Positive(t, d.SchemaVersion)
	require.Len(t, d.Templating.List, 1)
	assert.Equal(t, "datasource", d.Templating.List[0].Type, "the Prometheus data source is chosen on import")
	assert.Equal(t, "prometheus", d.Templating.List[0].Query)

	ids := map[int]bool{}
	var firstQueries []string
	for _, p := range d.Panels {
		assert.False(t, ids[p.ID], "panel id %d twice", p.ID)
		ids[p.ID] = true
		assert.LessOrEqual(t, p.GridPos.X+p.GridPos.W, 24, "%s: wider than the grid", p.Title)
		if p.Type == "row" {
			continue
		}
		if assert.NotNil(t, p.Datasource, "%s: data source", p.Title) {
			assert.Equal(t, "${datasource}", p.Datasource.UID, "%s: data source", p.Title)
		}
		require.NotEmpty(t, p.Targets, "%s: no query", p.Title)
		for _, tg := range p.Targets {
			assert.NotEmpty(t, tg.Expr, "%s: empty query", p.Title)
			assert.NotContains(t, tg.Expr, "$", "%s: a Grafana variable in a query cannot be checked against Prometheus", p.Title)
			if len(firstQueries) < 8 {
				firstQueries = append(firstQueries, tg.Expr)
			}
		}
	}
	for _, q := range firstQueries {
		assert.Contains(t, q, "creditsessions:sli_", "the SLIs and budget burn come first")
	}
}

// Render the Component the way an overlay uses it: a kustomization that lists it under
// components.
func TestComponentRendersOnItsOwn(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not installed (Debian package kubectl); CI installs it")
	}
	dir := t.TempDir()
	here, err := filepath.Abs(".")
	require.NoError(t, err)
	rel, err := filepath.Rel(dir, here) // kustomize refuses absolute component paths
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(
		"apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\ncomponents:\n  - "+rel+"\n"), 0o600))
	out, err := exec.Command(kubectl, "kustomize", dir).Output()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		t.Fatalf("kubectl kustomize: %v: %s", err, exit.Stderr)
	}
	require.NoError(t, err)

	type configMap struct {
		Kind     string `yaml:"kind"`
		Metadata struct {
			Name   string            `yaml:"name"`
			Labels map[string]string `yaml:"labels"`
		} `yaml:"metadata"`
		Data map[string]string `yaml:"data"`
	}
	maps := map[string]configMap{}
	dec := yaml.NewDecoder(bytes.NewReader(out))
	for {
		var cm configMap
		if err := dec.Decode(&cm); errors.Is(err, io.EOF) {
			break
		} else {
			require.NoError(t, err)
		}
		assert.Equal(t, "ConfigMap", cm.Kind)
		maps[cm.Metadata.Name] = cm
	}
	require.Len(t, maps, 2)

	rules, err := os.ReadFile(rulesFile)
	require.NoError(t, err)
	assert.Equal(t, string(rules), maps["creditsessions-prometheus-rules"].Data["creditsessions.rules.yml"])
	dash, err := os.ReadFile(dashboardFile)
	require.NoError(t, err)
	grafana := maps["creditsessions-grafana-dashboard"]
	assert.Equal(t, string(dash), grafana.Data["creditsessions.json"])
	assert.Equal(t, "1", grafana.Metadata.Labels["grafana_dashboard"], "the label Grafana's dashboard sidecar looks for")
}

// exportedFamilies are the metric families the service registers, read from its
// collectors' descriptors (a scrape would miss vectors no call has touched yet). The
// service runs with every optional part on, the webhook listener and a Redis fleet among
// them, since their metrics exist only where they do: the Redis address is one where
// nothing listens, which the fleet survives by polling locally.
func exportedFamilies(t *testing.T) []string {
	t.Helper()
	keyFile := filepath.Join(t.TempDir(), "cache-key")
	require.NoError(t, os.WriteFile(keyFile, []byte(strings.Repeat("ab", 32)+"\n"), 0o600))
	a, err := app.New(app.Config{
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		WebhookAddr: "127.0.0.1:0", RedisAddr: "127.0.0.1:1",
		Cache:  app.CacheConfig{MaxAge: time.Minute, KeyFile: keyFile},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	require.NoError(t, err)
	families, err := a.MetricFamilies()
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.NoError(t, a.Run(ctx)) // a canceled context: starts, then stops at once
	return families
}

// The drift check: every metric a rule or a panel selects is one the service registers
// (or a recording rule of the rules file, or Prometheus's own up). Renaming a metric
// without updating the rules and the dashboard fails here.
func TestQueriesUseOnlyMetricsTheServiceExports(t *testing.T) {
	exported := map[string]bool{"up": true} // Prometheus's own, per scrape target
	for _, f := range exportedFamilies(t) {
		exported[f] = true
		for _, suffix := range []string{"_bucket", "_sum", "_count"} { // histograms' series
			exported[f+suffix] = true
		}
	}
	recorded := map[string]bool{}
	for _, r := range loadRules(t).rules() {
		if r.Record != "" {
			recorded[r.Record] = true
		}
	}
	missing := map[string][]string{}
	for where, expr := range queries(t) {
		names := metricNames(expr)
		assert.NotEmpty(t, names, "%s: selects no metric: %s", where, expr)
		for _, name := range names {
			if strings.Contains(name, ":") {
				assert.True(t, recorded[name], "%s: %s is no recording rule of %s", where, name, rulesFile)
			} else if !exported[name] {
				missing[name] = append(missing[name], where)
			}
		}
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range missing {
			if !yield(n) {
				return
			}
		}
	})
	for _, name := range names {
		slices.Sort(missing[name])
		t.Errorf("%s is not a metric the service registers; used by: %s", name, strings.Join(missing[name], "; "))
	}
}
