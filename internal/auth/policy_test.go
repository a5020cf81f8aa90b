package auth

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/authz"
	"google.golang.org/grpc/metadata"
)

const (
	get        = "/plaid.credit.v1.CreditService/CreditSessionsGet"
	reflection = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
)

func TestPolicyDecidesAsGRPCAuthzDoes(t *testing.T) {
	p, err := ParsePolicy([]byte(`{
	  "name": "p",
	  "deny_rules": [
	    {"name": "web", "source": {"principals": ["spiffe://example.org/ns/web/*"]}},
	    {"name": "canary", "request": {"headers": [{"key": "X-Canary", "values": ["*"]}]}}
	  ],
	  "allow_rules": [
	    {"name": "billing", "source": {"principals": ["spiffe://example.org/ns/billing/*", "*.billing.svc"]},
	     "request": {"paths": ["/plaid.credit.v1.CreditService/*"]}},
	    {"name": "ops", "source": {"principals": ["spiffe://example.org/ns/ops/sa/operator"]}},
	    {"name": "team-red", "source": {"principals": ["*"]},
	     "request": {"paths": ["*CreditSessionsGet"], "headers": [{"key": "x-team", "values": ["red", "blue*"]}]}}
	  ]
	}`))
	require.NoError(t, err)
	md := func(kv ...string) metadata.MD { return metadata.Pairs(kv...) }
	tests := []struct {
		name   string
		method string
		names  []string
		md     metadata.MD
		want   Decision
	}{
		{"a principal by prefix", get, []string{"spiffe://example.org/ns/billing/sa/underwriter"}, nil, Decision{true, "allow_rules/billing"}},
		{"a principal by suffix", get, []string{"batch.billing.svc"}, nil, Decision{true, "allow_rules/billing"}},
		{"any of a certificate's names", get, []string{"spiffe://other/x", "spiffe://example.org/ns/billing/sa/y"}, nil, Decision{true, "allow_rules/billing"}},
		{"a path the rule does not name", reflection, []string{"spiffe://example.org/ns/billing/sa/underwriter"}, nil, Decision{}},
		{"no request: every method", reflection, []string{"spiffe://example.org/ns/ops/sa/operator"}, nil, Decision{true, "allow_rules/ops"}},
		{"exact means exact", get, []string{"spiffe://example.org/ns/ops/sa/operator2"}, nil, Decision{}},
		{"deny first", get, []string{"spiffe://example.org/ns/web/sa/billing"}, nil, Decision{false, "deny_rules/web"}},
		{"deny by header, case-folded key", get, []string{"spiffe://example.org/ns/billing/sa/u"}, md("x-canary", "1"), Decision{false, "deny_rules/canary"}},
		{"headers: exact", get, []string{"anyone"}, md("x-team", "red"), Decision{true, "allow_rules/team-red"}},
		{"headers: prefix", get, []string{"anyone"}, md("x-team", "blueish"), Decision{true, "allow_rules/team-red"}},
		{"headers: values joined by a comma", get, []string{"anyone"}, md("x-team", "red", "x-team", "green"), Decision{}},
		{"headers: absent", get, []string{"anyone"}, nil, Decision{}},
		{"* needs an authenticated caller", get, nil, md("x-team", "red"), Decision{}},
		{"unauthenticated matches no principal", get, nil, nil, Decision{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, p.Authorize(tt.method, tt.names, tt.md))
		})
	}
}

func TestPolicyLabelsCallersFromABoundedSet(t *testing.T) {
	p, err := ParsePolicy([]byte(`{"name": "p", "allow_rules": [
	  {"name": "a", "source": {"principals": ["*", "spiffe://example.org/ns/billing/sa/underwriter", "spiffe://example.org/ns/ops/*"]}}]}`))
	require.NoError(t, err)
	assert.Equal(t, "spiffe://example.org/ns/billing/sa/underwriter", p.Label([]string{"spiffe://example.org/ns/billing/sa/underwriter"}))
	assert.Equal(t, "spiffe://example.org/ns/ops/*", p.Label([]string{"spiffe://example.org/ns/ops/sa/x"}))
	assert.Equal(t, "other", p.Label([]string{"spiffe://example.org/ns/web/sa/y"}), `"*" is not a label`)
	assert.Equal(t, "other", p.Label(nil))
	assert.Equal(t, "other", (*Policy)(nil).Label([]string{"x"}))
}

// The policies grpc-go's translator refuses are refused here too.
func TestParsePolicyRefusesWhatGRPCRefuses(t *testing.T) {
	for name, policy := range map[string]string{
		"no name":                       `{"allow_rules": [{"name": "a"}]}`,
		"no allow rules":                `{"name": "p", "deny_rules": [{"name": "d"}]}`,
		"a rule without a name":         `{"name": "p", "allow_rules": [{"source": {"principals": ["x"]}}]}`,
		"an unknown field":              `{"name": "p", "allow_rules": [{"name": "a", "sauce": {}}]}`,
		"a pseudo-header":               `{"name": "p", "allow_rules": [{"name": "a", "request": {"headers": [{"key": ":path", "values": ["x"]}]}}]}`,
		"a grpc- header":                `{"name": "p", "allow_rules": [{"name": "a", "request": {"headers": [{"key": "grpc-timeout", "values": ["x"]}]}}]}`,
		"a hop-by-hop header":           `{"name": "p", "allow_rules": [{"name": "a", "request": {"headers": [{"key": "Host", "values": ["x"]}]}}]}`,
		"a header without key":          `{"name": "p", "allow_rules": [{"name": "a", "request": {"headers": [{"values": ["x"]}]}}]}`,
		"a header without values":       `{"name": "p", "allow_rules": [{"name": "a", "request": {"headers": [{"key": "x"}]}}]}`,
		"an unknown audit condition":    `{"name": "p", "allow_rules": [{"name": "a"}], "audit_logging_options": {"audit_condition": "on_deny"}}`,
		"an audit logger without name":  `{"name": "p", "allow_rules": [{"name": "a"}], "audit_logging_options": {"audit_loggers": [{"config": {}}]}}`,
		"an unregistered audit logger":  `{"name": "p", "allow_rules": [{"name": "a"}], "audit_logging_options": {"audit_loggers": [{"name": "nope"}]}}`,
		"an audit logger's config list": `{"name": "p", "allow_rules": [{"name": "a"}], "audit_logging_options": {"audit_loggers": [{"name": "stdout_logger", "config": []}]}}`,
		"an unknown audit option":       `{"name": "p", "allow_rules": [{"name": "a"}], "audit_logging_options": {"audit_condition": "ON_DENY", "sink": "x"}}`,
		"truncated":                     `{"name": "p", "allow_rules": [`,
		"trailing value":                `{"name": "p", "allow_rules": [{"name": "a"}]} {}`,
		"not JSON":                      `name: p`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParsePolicy([]byte(policy))
			assert.Error(t, err)
		})
	}
}

// Two rules of one list with one name are refused (grpc-go would keep only the last of
// them, this evaluator would apply both); one name in both lists is no conflict. The
// error names the rules by position, never by name.
func TestParsePolicyRefusesDuplicateRuleNames(t *testing.T) {
	for _, tt := range []struct {
		name, policy, wantErr string
	}{
		{"two allow rules", `{"name": "p", "allow_rules": [{"name": "secret-name"}, {"name": "b"}, {"name": "secret-name"}]}`,
			`authz policy: "allow_rules" 0 and 2 have the same "name"`},
		{"two deny rules", `{"name": "p", "deny_rules": [{"name": "d"}, {"name": "secret-name"}, {"name": "secret-name"}], "allow_rules": [{"name": "a"}]}`,
			`authz policy: "deny_rules" 1 and 2 have the same "name"`},
		{"one deny and one allow rule", `{"name": "p", "deny_rules": [{"name": "secret-name"}], "allow_rules": [{"name": "secret-name"}]}`, ""},
		{"names that differ only in case", `{"name": "p", "allow_rules": [{"name": "Secret-name"}, {"name": "secret-name"}]}`, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParsePolicy([]byte(tt.policy))
			if tt.wantErr == "" {
				require.NoError(t, err)
				assert.NotNil(t, p)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
			assert.NotContains(t, err.Error(), "secret-name")
			assert.Nil(t, p)
		})
	}
}

// FuzzParsePolicy: any file parses or fails cleanly; a policy it accepts, grpc-go's
// translator accepts too, with no two rules of one list sharing a name (grpc-go would
// keep only the last of them, so the two would decide differently); and a parsed policy decides any call without a panic,
// labelling callers only with its own principals.
func FuzzParsePolicy(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePolicy(data)
		if err != nil {
			assert.Nil(t, p)
			return
		}
		assert.NotEmpty(t, p.Name)
		assert.NotEmpty(t, p.AllowRules)
		_, err = authz.NewStatic(string(data))
		assert.NoError(t, err, "what this parser accepts, grpc-go's accepts too")
		for list, rules := range map[string][]Rule{"deny_rules": p.DenyRules, "allow_rules": p.AllowRules} {
			seen := map[string]bool{}
			for _, r := range rules {
				assert.False(t, seen[r.Name], "%s: two rules named alike, which grpc-go reads as one", list)
				seen[r.Name] = true
			}
		}
		for _, names := range [][]string{nil, {""}, {"spiffe://example.org/ns/billing/sa/underwriter"}, {string(data)}} {
			p.Authorize(get, names, metadata.Pairs("x-team", "red"))
			if label := p.Label(names); label != "other" {
				assert.Contains(t, p.principals, label)
			}
		}
	})
}
