package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/metadata"
)

// Policy is an authorization policy in grpc-go's authz JSON format (gRFC A43): deny
// rules first, then allow rules; a call no allow rule matches is denied.
//
// Why not grpc-go's own authz interceptors: they read the caller from the gRPC peer's
// TLS state, which REST calls (the mirror calls the service in-process) and bearer
// tokens do not have. This evaluator has the same semantics, over the caller's
// identities however they were proven: a token's sub and a certificate's names are
// matched by the same principals. ParsePolicy accepts exactly what grpc-go's translator
// accepts (the tests run both over the same policies).
type Policy struct {
	Name       string
	DenyRules  []Rule `json:"deny_rules"`
	AllowRules []Rule `json:"allow_rules"`
	// AuditLoggingOptions are gRFC A59's (policy_audit.go).
	AuditLoggingOptions auditLoggingOptions `json:"audit_logging_options"`

	// principals lists every principal the policy names, to label metrics.
	principals []string
	// headerRules is whether any rule matches metadata.
	headerRules bool
	// a59 is the policy's audit logging.
	a59 policyAudit
}

// Rule matches calls by who makes them (Source) and what they call (Request).
type Rule struct {
	Name    string
	Source  Source
	Request Request
}

// Source names the callers a rule matches. No principals matches every caller.
type Source struct {
	Principals []string
}

// Request names the calls a rule matches: any of Paths, and every one of Headers.
type Request struct {
	Paths   []string
	Headers []Header
}

// Header matches metadata: any of Values against the key's values, joined by ",".
type Header struct {
	Key    string
	Values []string
}

// ParsePolicy reads a policy. Its errors name what is wrong, never quote the file.
func ParsePolicy(data []byte) (*Policy, error) {
	var p Policy
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	if err := d.Decode(&p); err != nil {
		var unknown string
		if msg := err.Error(); strings.HasPrefix(msg, "json: unknown field ") {
			unknown = ": " + msg[len("json: "):]
		}
		if unknown != "" {
			return nil, errors.New("authz policy" + unknown)
		}
		return nil, fmt.Errorf("authz policy: %w", scrub(err))
	}
	if d.More() {
		return nil, errors.New("authz policy: more than one JSON value")
	}
	if p.Name == "" {
		return nil, errors.New(`authz policy: "name" is not present`)
	}
	if len(p.AllowRules) == 0 {
		return nil, errors.New(`authz policy: "allow_rules" is not present`)
	}
	if err := p.AuditLoggingOptions.check(); err != nil {
		return nil, err
	}
	for _, rules := range []struct {
		name  string
		rules []Rule
	}{{"deny_rules", p.DenyRules}, {"allow_rules", p.AllowRules}} {
		for i := range rules.rules {
			r := &rules.rules[i]
			if r.Name == "" {
				return nil, fmt.Errorf(`authz policy: %q %d: "name" is not present`, rules.name, i)
			}
			for j := range r.Request.Headers {
				h := &r.Request.Headers[j]
				if h.Key == "" {
					return nil, fmt.Errorf(`authz policy: %q %d: "headers" %d: "key" is not present`, rules.name, i, j)
				}
				h.Key = strings.ToLower(h.Key)
				if unsupportedHeader(h.Key) {
					return nil, fmt.Errorf(`authz policy: %q %d: "headers" %d: unsupported "key"`, rules.name, i, j)
				}
				if len(h.Values) == 0 {
					return nil, fmt.Errorf(`authz policy: %q %d: "headers" %d: "values" is not present`, rules.name, i, j)
				}
			}
			p.principals = append(p.principals, r.Source.Principals...)
			p.headerRules = p.headerRules || len(r.Request.Headers) > 0
		}
		if err := uniqueRuleNames(rules.name, rules.rules); err != nil {
			return nil, err
		}
	}
	if err := p.buildAuditLoggers(); err != nil { // last: builders run only for a good policy
		return nil, err
	}
	return &p, nil
}

// uniqueRuleNames refuses two rules of one list with the same name. grpc-go's
// translator keys each list's rules by name, so the last rule of a name replaces the
// others and they never match; this evaluator would apply them all. A policy that two
// implementations read differently is refused rather than read either way: whoever
// wrote it meant one of the two, and only they know which. The same name in deny_rules
// and allow_rules is no conflict (grpc-go keeps the lists apart, and so do decisions).
// The error names the rules by position, as the other errors do, never by name.
func uniqueRuleNames(list string, rules []Rule) error {
	first := make(map[string]int, len(rules))
	for i, r := range rules {
		if j, ok := first[r.Name]; ok {
			return fmt.Errorf(`authz policy: %q %d and %d have the same "name" (grpc-go would keep only the last; rename or merge them)`, list, j, i)
		}
		first[r.Name] = i
	}
	return nil
}

// unsupportedHeader are the keys grpc-go's translator refuses: pseudo-headers, grpc-*
// and hop-by-hop headers, which a policy cannot rely on.
func unsupportedHeader(key string) bool {
	switch key {
	case "host", "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
		"te", "trailer", "transfer-encoding", "upgrade":
		return true
	}
	return key[0] == ':' || strings.HasPrefix(key, "grpc-")
}

// Decision is the outcome of a policy for one call.
type Decision struct {
	Allowed bool
	// Rule is the rule that decided: "deny_rules/NAME", "allow_rules/NAME", or "" when
	// no allow rule matched.
	Rule string
}

// Authorize decides a call to method (a full gRPC method name, "/pkg.Service/Method")
// by a caller known by names (nil for an unauthenticated caller), with its metadata.
func (p *Policy) Authorize(method string, names []string, md metadata.MD) Decision {
	for _, r := range p.DenyRules {
		if r.matches(method, names, md) {
			return Decision{Allowed: false, Rule: "deny_rules/" + r.Name}
		}
	}
	for _, r := range p.AllowRules {
		if r.matches(method, names, md) {
			return Decision{Allowed: true, Rule: "allow_rules/" + r.Name}
		}
	}
	return Decision{}
}

func (r *Rule) matches(method string, names []string, md metadata.MD) bool {
	if len(r.Source.Principals) > 0 && !anyPrincipal(r.Source.Principals, names) {
		return false
	}
	if len(r.Request.Paths) > 0 {
		ok := false
		for _, p := range r.Request.Paths {
			if ok = match(p, method); ok {
				break
			}
		}
		if !ok {
			return false
		}
	}
	for _, h := range r.Request.Headers {
		values := md.Get(h.Key)
		if len(values) == 0 {
			return false
		}
		joined := strings.Join(values, ",")
		ok := false
		for _, v := range h.Values {
			if ok = match(v, joined); ok {
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// anyPrincipal reports whether a principal matches one of an authenticated caller's
// names. An unauthenticated caller (no names) matches no principal, as in grpc-go.
func anyPrincipal(principals, names []string) bool {
	for _, p := range principals {
		for _, n := range names {
			if match(p, n) {
				return true
			}
		}
	}
	return false
}

// match is grpc-go's authz string matching: "*" is any non-empty value, "x*" a prefix,
// "*x" a suffix, anything else exact.
func match(pattern, s string) bool {
	switch {
	case pattern == "*":
		return s != ""
	case strings.HasSuffix(pattern, "*"):
		return strings.HasPrefix(s, pattern[:len(pattern)-1])
	case strings.HasPrefix(pattern, "*"):
		return strings.HasSuffix(s, pattern[1:])
	default:
		return s == pattern
	}
}

// Label names a caller for metrics out of a bounded set: the first of the policy's
// principals that one of its names matches, else "other". "*" is not a label: it
// would say nothing.
func (p *Policy) Label(names []string) string {
	if p == nil {
		return "other"
	}
	for _, pr := range p.principals {
		if pr == "*" {
			continue
		}
		for _, n := range names {
			if match(pr, n) {
				return pr
			}
		}
	}
	return "other"
}
