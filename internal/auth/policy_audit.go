package auth

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"strings"

	"google.golang.org/grpc/authz/audit"
	"google.golang.org/protobuf/types/known/structpb"

	// grpc-go's stdout_logger, which a policy may name, registers itself.
	_ "google.golang.org/grpc/authz/audit/stdout"
)

// This file is gRFC A59 in the policy: "audit_logging_options", read as grpc-go's authz
// translator reads it (the same types, so the same JSON is accepted and refused), with
// loggers from grpc-go's registry (google.golang.org/grpc/authz/audit), where an
// operator's own builder registers the way grpc-go's stdout_logger does, and the same
// events grpc-go's authz interceptors would send them.

// auditLoggingOptions is grpc-go's authz auditLoggingOptions, field for field.
type auditLoggingOptions struct {
	AuditCondition string         `json:"audit_condition"`
	AuditLoggers   []*auditLogger `json:"audit_loggers"`
}

// auditLogger is grpc-go's: config is decoded into a structpb.Struct by encoding/json,
// quirks and all, and handed to the builder as that Struct's encoding/json encoding.
type auditLogger struct {
	Name       string           `json:"name"`
	Config     *structpb.Struct `json:"config"`
	IsOptional bool             `json:"is_optional"`
}

// Audit conditions (the policy's; grpc-go maps them onto its deny and allow engines).
const (
	auditNone           = "NONE"
	auditOnDeny         = "ON_DENY"
	auditOnAllow        = "ON_ALLOW"
	auditOnDenyAndAllow = "ON_DENY_AND_ALLOW"
)

// policyAudit is a parsed policy's audit logging: grpc-go builds the loggers once for
// its deny engine (when there are deny rules) and once for its allow engine.
type policyAudit struct {
	condition    string
	denyLoggers  []audit.Logger
	allowLoggers []audit.Logger
}

// checkAuditOptions refuses what grpc-go's translator refuses, before the rules are
// read, as it does.
func (o *auditLoggingOptions) check() error {
	switch o.AuditCondition {
	case "", auditNone, auditOnDeny, auditOnAllow, auditOnDenyAndAllow:
	default:
		return fmt.Errorf(`authz policy: "audit_condition" %q: want NONE, ON_DENY, ON_ALLOW or ON_DENY_AND_ALLOW`, o.AuditCondition)
	}
	for i, l := range o.AuditLoggers {
		if l == nil || l.Name == "" {
			return fmt.Errorf(`authz policy: "audit_loggers" %d: "name" is not present`, i)
		}
	}
	return nil
}

// buildAuditLoggers builds the policy's loggers from grpc-go's registry, once the rest
// of the policy is known to be good: a logger that is not registered fails the policy
// unless it is optional.
func (p *Policy) buildAuditLoggers() error {
	o := &p.AuditLoggingOptions
	p.a59 = policyAudit{condition: o.AuditCondition}
	if p.a59.condition == "" {
		p.a59.condition = auditNone
	}
	build := func() ([]audit.Logger, error) {
		var loggers []audit.Logger
		for i, l := range o.AuditLoggers {
			b := audit.GetLoggerBuilder(l.Name)
			if b == nil {
				if l.IsOptional {
					continue
				}
				return nil, fmt.Errorf(`authz policy: "audit_loggers" %d: no logger %q is registered`, i, l.Name)
			}
			cfg := json.RawMessage("{}")
			if l.Config != nil {
				var err error
				if cfg, err = json.Marshal(l.Config); err != nil {
					return nil, fmt.Errorf(`authz policy: "audit_loggers" %d: "config": %w`, i, scrub(err))
				}
			}
			parsed, err := b.ParseLoggerConfig(cfg)
			if err != nil {
				// The builder's words may quote the config: not repeated here.
				return nil, fmt.Errorf(`authz policy: "audit_loggers" %d: logger %q refuses its "config"`, i, l.Name)
			}
			loggers = append(loggers, b.Build(parsed))
		}
		return loggers, nil
	}
	var err error
	if len(p.DenyRules) > 0 {
		if p.a59.denyLoggers, err = build(); err != nil {
			return err
		}
	}
	p.a59.allowLoggers, err = build()
	return err
}

// audits reports whether the policy sends any audit events.
func (p *Policy) audits() bool {
	return p.a59.condition != auditNone && (len(p.a59.denyLoggers) > 0 || len(p.a59.allowLoggers) > 0)
}

// audit sends the events grpc-go's authz would for decision d of a call to method: its
// deny engine logs a call a deny rule matched (on ON_DENY and ON_DENY_AND_ALLOW); its
// allow engine logs a call no allow rule matched (on the same) and a call one did (on
// ON_ALLOW and ON_DENY_AND_ALLOW). The matched rule is named as grpc-go names it:
// "POLICY_RULE".
func (p *Policy) audit(method, principal string, d Decision) {
	onDeny := p.a59.condition == auditOnDeny || p.a59.condition == auditOnDenyAndAllow
	onAllow := p.a59.condition == auditOnAllow || p.a59.condition == auditOnDenyAndAllow
	var loggers []audit.Logger
	var rule string
	switch {
	case strings.HasPrefix(d.Rule, "deny_rules/"):
		loggers, rule = p.a59.denyLoggers, p.Name+"_"+strings.TrimPrefix(d.Rule, "deny_rules/")
		if !onDeny {
			return
		}
	case d.Allowed:
		loggers, rule = p.a59.allowLoggers, p.Name+"_"+strings.TrimPrefix(d.Rule, "allow_rules/")
		if !onAllow {
			return
		}
	default:
		loggers = p.a59.allowLoggers
		if !onDeny {
			return
		}
	}
	e := &audit.Event{FullMethodName: method, Principal: principal, PolicyName: p.Name, MatchedRule: rule, Authorized: d.Allowed}
	for _, l := range loggers {
		l.Log(e)
	}
}

// a59Principal is the caller as an audit event names it. grpc-go names the SPIFFE ID
// of the peer's certificate (none unless it has exactly one URI SAN, a valid SPIFFE
// ID), which REST callers' certificates get too; a caller proven by a bearer token,
// which grpc-go does not know, is named by the token's sub.
func a59Principal(state *tls.ConnectionState, c *caller) string {
	if c != nil && c.token {
		return c.id
	}
	if state == nil || len(state.PeerCertificates) == 0 {
		return ""
	}
	cert := state.PeerCertificates[0]
	id := ""
	for _, u := range cert.URIs {
		if u == nil || u.Scheme != "spiffe" || u.Opaque != "" || (u.User != nil && u.User.Username() != "") {
			continue
		}
		if len(u.String()) > 2048 || len(u.Host) == 0 || len(u.Path) == 0 || len(u.Host) > 255 || len(cert.URIs) > 1 {
			return ""
		}
		id = u.String()
	}
	return id
}
