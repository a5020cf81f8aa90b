package monitoring_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// promqlKeywords are the identifiers PromQL reads as operators and modifiers, never as
// metric names.
var promqlKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true,
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"inf": true, "nan": true, "start": true, "end": true,
	// Aggregations, which may be followed by a grouping before their parenthesis.
	"sum": true, "avg": true, "min": true, "max": true, "count": true, "group": true, "stddev": true,
	"stdvar": true, "topk": true, "bottomk": true, "quantile": true, "count_values": true,
}

// groupingKeywords take a parenthesised list of label names.
var groupingKeywords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

// metricNames returns the metric names a PromQL expression selects: identifiers that are
// not functions, keywords, label names in matchers or grouping lists, durations or
// strings. A small scanner rather than Prometheus's parser, which would bring the whole
// Prometheus module into go.mod for a test.
func metricNames(expr string) []string {
	var names []string
	isStart := func(c byte) bool { return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	isPart := func(c byte) bool { return isStart(c) || c >= '0' && c <= '9' }
	skipString := func(i int) int { // i at the opening quote; returns the index after the closing one
		q := expr[i]
		for i++; i < len(expr) && expr[i] != q; i++ {
			if expr[i] == '\\' && q != '`' {
				i++
			}
		}
		return i + 1
	}
	skipTo := func(i int, open, close byte) int { // i at open; returns the index after its close
		depth := 0
		for i < len(expr) {
			switch c := expr[i]; {
			case c == '"' || c == '\'' || c == '`':
				i = skipString(i)
				continue
			case c == open:
				depth++
			case c == close:
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	}
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			i = skipString(i)
		case c == '{':
			i = skipTo(i, '{', '}')
		case c == '[':
			i = skipTo(i, '[', ']')
		case c == '#': // a comment runs to the end of the line
			for i < len(expr) && expr[i] != '\n' {
				i++
			}
		case c >= '0' && c <= '9' || c == '.':
			for i < len(expr) && (isPart(expr[i]) || expr[i] == '.') { // 1.5, 1e3, 0x1f, 5m, 1h30m
				i++
			}
		case isStart(c):
			start := i
			for i < len(expr) && isPart(expr[i]) {
				i++
			}
			word := expr[start:i]
			next := i
			for next < len(expr) && strings.ContainsRune(" \t\n", rune(expr[next])) {
				next++
			}
			followedByParen := next < len(expr) && expr[next] == '('
			switch {
			case groupingKeywords[strings.ToLower(word)] && followedByParen:
				i = skipTo(next, '(', ')')
			case followedByParen, promqlKeywords[strings.ToLower(word)]:
				// a function or an aggregation, or an operator
			default:
				names = append(names, word)
			}
		default:
			i++
		}
	}
	return names
}

func TestMetricNamesFindsSelectorsOnly(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{`up{job="creditsessions"} == 0`, []string{"up"}},
		{`sum by (le, outcome) (rate(a_bucket{x="y{z}",le="2.5"}[5m] offset 1h30m))`, []string{"a_bucket"}},
		{`1 - clamp_min(sum(rate(b[5m])) - (sum(rate(c[5m])) or vector(0)), 0) / sum(rate(b[1d]))`, []string{"b", "c", "b"}},
		{"(x:y:z > (14.4 * 0.005)) and on (instance) group_left (caller) w\n# not_a_metric here", []string{"x:y:z", "w"}},
		{`histogram_quantile(0.99, sum(rate(d[5m:1m]))) > bool 1e3`, []string{"d"}},
		{`sum(rate(e[5m])) by (code)`, []string{"e"}},
	} {
		assert.Equal(t, tc.want, metricNames(tc.expr), tc.expr)
	}
}
