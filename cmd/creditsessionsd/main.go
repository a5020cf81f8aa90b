// Command creditsessionsd serves Plaid's credit sessions over gRPC and as Plaid-shaped
// JSON over HTTP.
//
// Upstream comes from the environment: PLAID_CLIENT_ID and PLAID_SECRET, with PLAID_ENV
// (sandbox or production) or PLAID_BASE_URL (any Plaid-compatible API; it wins over
// PLAID_ENV). With none of them set, it serves from an embedded Plaid emulator.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/creditsessions/creditsessions/internal/app"
	"github.com/creditsessions/creditsessions/internal/audit"
	"github.com/creditsessions/creditsessions/internal/auth"
	"github.com/creditsessions/creditsessions/internal/cache"
	"github.com/creditsessions/creditsessions/internal/emulator"
	"github.com/creditsessions/creditsessions/internal/logbuf"
	"github.com/creditsessions/creditsessions/internal/observe"
	"github.com/creditsessions/creditsessions/internal/plaid"
	"github.com/creditsessions/creditsessions/internal/resilience"
	"github.com/creditsessions/creditsessions/internal/watch"
	"github.com/creditsessions/creditsessions/server"

	"golang.org/x/term"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "creditsessionsd:", err)
		os.Exit(1)
	}
}

// run parses flags and environment, then serves until ctx is done.
// maxAttempts bounds -retry-max-attempts: past a few attempts retries only add load
// to a Plaid that is failing, and the backoff has long reached its ceiling.
const maxAttempts = 10

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	fs := flag.NewFlagSet("creditsessionsd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	grpcAddr := fs.String("grpc-addr", "localhost:50051", "gRPC listen `address`")
	httpAddr := fs.String("http-addr", "localhost:8080", "REST mirror listen `address`")
	adminAddr := fs.String("admin-addr", "localhost:9090", "admin listen `address`: /metrics, /healthz, /readyz, /debug/pprof/")
	drain := fs.Duration("shutdown-drain", 0, "how long to keep serving after health turns NOT_SERVING on shutdown")
	grace := fs.Duration("shutdown-grace", 10*time.Second, "how long calls in flight may take to finish once listeners close")
	var res resilience.Config
	fs.DurationVar(&res.AttemptTimeout, "upstream-attempt-timeout", 10*time.Second, "bound on one request to Plaid")
	fs.DurationVar(&res.CallTimeout, "upstream-call-timeout", 30*time.Second, "bound on a call whose caller set no deadline, retries included")
	fs.IntVar(&res.MaxAttempts, "retry-max-attempts", 3, "attempts per call, the first included (1 disables retries; at most 10)")
	fs.Float64Var(&res.RetryBudgetRatio, "retry-budget-ratio", 0.2, "retries each call earns: the most retries can add to Plaid traffic in an outage")
	fs.DurationVar(&res.BreakerOpenFor, "breaker-open-for", 5*time.Second, "how long calls fail fast once the circuit opens, before a probe")
	fs.IntVar(&res.MaxInFlight, "max-in-flight", 64, "cap on requests to Plaid in flight")
	fs.DurationVar(&res.MaxQueueWait, "max-queue-wait", 100*time.Millisecond, "longest wait for a place under -max-in-flight before ResourceExhausted")
	fs.DurationVar(&res.IsolateFor, "isolate-for", 10*time.Second, "how long a user whose calls keep failing (while others' succeed) is answered from memory, before one probe")
	fs.IntVar(&res.MaxRememberedUsers, "max-remembered-users", 10000, "users with recent failures the service remembers (bounds that memory)")
	coalesce := fs.Bool("coalesce", true, "share one Plaid request among identical calls in flight")
	maxResponse := fs.Int64("max-response-bytes", plaid.DefaultMaxResponseBytes, "largest response body accepted from Plaid")
	answerMemory := fs.Int64("answer-memory", app.DefaultAnswerMemory, "bytes of large Plaid answers (body and decoded message, 3 bytes a body byte) calls in flight may hold at once; past it, calls wait their turn")
	logFormat := fs.String("log-format", "auto", "log format: json, text, or auto (text on a terminal, JSON otherwise)")
	logFlush := fs.Duration("log-flush-interval", logbuf.DefaultInterval, "longest a log line waits to be written with others (one write for many lines; all are written at exit); 0: each line at once. A crash loses at most this long of lines")
	credentials := fs.String("plaid-credentials", server.ServiceKeys,
		"whose Plaid keys calls use: service (PLAID_CLIENT_ID/PLAID_SECRET; callers' keys are ignored) or caller (each call's own, passed through)")
	var sec auth.Options
	fs.StringVar(&sec.TLSCert, "tls-cert", "", "PEM `file` of the certificate (chain) both listeners serve; re-read when it changes")
	fs.StringVar(&sec.TLSKey, "tls-key", "", "PEM `file` of the certificate's private key; re-read when it changes")
	fs.StringVar(&sec.ClientCA, "client-ca", "", "PEM `file` of the CAs client certificates must chain to (mTLS); re-read when it changes")
	fs.StringVar(&sec.JWKS, "jwt-jwks", "", "JWKS `file` of the keys bearer JWTs are signed with; re-read when it changes")
	fs.StringVar(&sec.JWTIssuer, "jwt-issuer", "", "the iss bearer JWTs must carry")
	fs.StringVar(&sec.JWTAudience, "jwt-audience", "", "the aud bearer JWTs must carry")
	fs.StringVar(&sec.PolicyFile, "authz-policy", "", "authorization policy `file` (grpc-go authz JSON) for gRPC and REST; re-read when it changes")
	fs.Float64Var(&sec.CallerRate, "caller-rate", 0, "calls a second each caller may make (0: no quota)")
	fs.IntVar(&sec.CallerBurst, "caller-burst", 0, "calls a caller may make at once past -caller-rate (0: the rate, at least 1)")
	fs.IntVar(&sec.CallerMaxWatches, "caller-max-watches", 1000, "watches each caller may have open on one replica at once; past it, ResourceExhausted with a RetryInfo (0: no cap)")
	allowInsecure := fs.Bool("allow-insecure", false, "serve non-loopback addresses without TLS and caller authentication, and pprof on a non-loopback admin address")
	var watchCfg watch.Config
	fs.DurationVar(&watchCfg.PollInterval, "watch-poll-interval", time.Minute, "how often each watched user is polled (once for all its watches; once for the fleet with -redis-addr)")
	fs.DurationVar(&watchCfg.MaxDuration, "watch-max-duration", 30*time.Minute, "watches end (with OK: reconnect) after at most this long")
	fs.IntVar(&watchCfg.MaxWatches, "max-watches", 0, "watches one replica takes at once; past it, ResourceExhausted with a RetryInfo, so clients try another replica (0: as many as half of GOMEMLIMIT or the cgroup memory limit holds, at 24 KiB a watch)")
	fs.DurationVar(&watchCfg.WriteTimeout, "watch-write-timeout", 30*time.Second, "a watch whose reader has not taken a message after this long is ended (a reader that stops reading must not hold it)")
	webhookAddr := fs.String("webhook-addr", "", "listen `address` for Plaid's webhooks (POST /webhooks/plaid only; signature-verified, so it may face beyond loopback); empty: off, watches rely on polling")
	var webhookProxies prefixList
	fs.Var(&webhookProxies, "webhook-trusted-proxies", "comma-separated `CIDRs` of the proxies in front of -webhook-addr (an ingress) whose X-Forwarded-For names the sender; the limits on key fetches that made-up kids may cause are per sender; empty: the peer is the sender")
	redisAddr := fs.String("redis-addr", "", "Redis `address` (host:port or redis:// URL) shared by the replicas: one poll per user for the fleet, webhooks reach every replica; empty: each replica on its own")
	var auditOpts audit.Options
	fs.StringVar(&auditOpts.Path, "audit-log", "", "data-access audit trail: a `file` (appended, fsync'd in batches, rotated by size, re-opened on SIGHUP) or stdout; empty: none (docs/audit.md)")
	fs.BoolVar(&auditOpts.Required, "audit-required", true, "with -audit-log: refuse a call (Unavailable) whose audit record cannot be kept; false: serve it and count the loss in creditsessions_audit_records_lost_total")
	fs.Int64Var(&auditOpts.MaxBytes, "audit-log-max-bytes", audit.DefaultMaxBytes, "rotate the -audit-log file once it holds this many bytes (-1: never)")
	var cacheCfg app.CacheConfig
	fs.DurationVar(&cacheCfg.MaxAge, "cache-max-age", 0, "the oldest cached answer a caller may accept with Cache-Control: max-age (also the entries' time to live); 0: no cache, every call asks Plaid")
	fs.Int64Var(&cacheCfg.MaxBytes, "cache-max-bytes", cache.DefaultMaxBytes, "bound on the memory of one replica's cached answers (with -answer-memory, at most half of GOMEMLIMIT)")
	fs.StringVar(&cacheCfg.KeyFile, "cache-key-file", "", "`file` of the AES-256 keys sealing cache entries in Redis (one a line, base64 or hex; the first seals, all open); required with -redis-addr and -cache-max-age; re-read when it changes")
	if err := fs.Parse(args); err != nil {
		return err
	}
	res.DisableCoalescing = !*coalesce
	if res.MaxAttempts < 1 || res.MaxAttempts > maxAttempts {
		return fmt.Errorf("-retry-max-attempts %d: want 1 to %d (1 disables retries)", res.MaxAttempts, maxAttempts)
	}
	if res.IsolateFor <= 0 || res.MaxRememberedUsers < 1 {
		return errors.New("-isolate-for and -max-remembered-users must be positive")
	}
	if fs.NArg() > 0 {
		// Not echoed: a secret typed here by mistake must not reach a log.
		return fmt.Errorf("%d unexpected argument(s): configuration comes from flags and PLAID_* environment variables", fs.NArg())
	}
	if *logFlush < 0 {
		return errors.New("-log-flush-interval must not be negative")
	}
	logOut := stderr
	if *logFlush > 0 {
		// A line per call was a write(2) per call. Stopped on the way out, however run
		// ends, so that every line written is complete at exit.
		lw := logbuf.New(stderr, logbuf.Options{Interval: *logFlush})
		defer lw.Stop()
		logOut = lw
	}
	logger, err := newLogger(*logFormat, stderr, logOut)
	if err != nil {
		return err
	}
	upstream, err := plaidFromEnv(getenv, *credentials)
	if err != nil {
		return err
	}
	tracing, err := observe.TracingFromEnv(ctx, getenv)
	if err != nil {
		return err
	}
	a, err := app.New(app.Config{
		GRPCAddr:         *grpcAddr,
		HTTPAddr:         *httpAddr,
		AdminAddr:        *adminAddr,
		Tracing:          tracing,
		Plaid:            upstream,
		Resilience:       res,
		MaxResponseBytes: *maxResponse,
		AnswerMemory:     *answerMemory,
		ShutdownDrain:    *drain,
		ShutdownGrace:    *grace,
		Logger:           logger,
		Security:         sec,
		AllowInsecure:    *allowInsecure,
		Watch:            watchCfg,
		RedisAddr:        *redisAddr,
		RedisPassword:    getenv("REDIS_PASSWORD"),
		WebhookAddr:      *webhookAddr,

		WebhookTrustedProxies: webhookProxies,
		Audit:                 auditOpts,
		Cache:                 cacheCfg,
	})
	if err != nil {
		return err
	}
	if a.EmulatorURL() != "" {
		logger.Info("no Plaid credentials configured: serving from the embedded Plaid emulator", "emulator_url", a.EmulatorURL())
		if sec.TLSCert == "" {
			if lw, ok := logOut.(*logbuf.Writer); ok {
				_ = lw.Flush() // the line above comes first
			}
			printTryIt(stderr, a) // its commands are plaintext ones
		}
	} else {
		logger.Info("calling Plaid", "base_url", upstream.BaseURL, "client_id", upstream.Credentials.ClientID)
	}
	return a.Run(ctx)
}

// plaidFromEnv reads the upstream configuration. It names the variable at fault.
func plaidFromEnv(getenv func(string) string, credentialsMode string) (app.PlaidConfig, error) {
	cfg := app.PlaidConfig{
		BaseURL:         getenv("PLAID_BASE_URL"),
		Credentials:     plaid.Credentials{ClientID: getenv("PLAID_CLIENT_ID"), Secret: getenv("PLAID_SECRET")},
		ClientIDFile:    getenv("PLAID_CLIENT_ID_FILE"),
		SecretFile:      getenv("PLAID_SECRET_FILE"),
		CredentialsMode: credentialsMode,
	}
	for _, v := range []string{"PLAID_CLIENT_ID", "PLAID_SECRET"} {
		if getenv(v) != "" && getenv(v+"_FILE") != "" {
			return cfg, fmt.Errorf("%s and %s_FILE are both set: set one", v, v)
		}
	}
	if credentialsMode != server.ServiceKeys && credentialsMode != server.CallerKeys {
		return cfg, fmt.Errorf("-plaid-credentials %q: want %s or %s", credentialsMode, server.ServiceKeys, server.CallerKeys)
	}
	if env := getenv("PLAID_ENV"); env != "" {
		u, err := plaid.EnvironmentURL(env)
		if err != nil {
			return cfg, fmt.Errorf("PLAID_ENV: %w", err)
		}
		if cfg.BaseURL == "" {
			cfg.BaseURL = u
		}
	}
	if cfg.BaseURL != "" {
		if _, err := plaid.ParseBaseURL(cfg.BaseURL); err != nil {
			return cfg, fmt.Errorf("PLAID_BASE_URL: %w", err)
		}
		if cfg.Credentials == (plaid.Credentials{}) && cfg.ClientIDFile == "" && cfg.SecretFile == "" && credentialsMode == server.ServiceKeys {
			return cfg, errors.New("PLAID_CLIENT_ID and PLAID_SECRET are required with PLAID_ENV or PLAID_BASE_URL (or PLAID_CLIENT_ID_FILE and PLAID_SECRET_FILE)")
		}
	}
	return cfg, cfg.Validate()
}

// newLogger returns a logger writing to out in format; auto looks at whether stderr,
// which out writes to, is a terminal.
func newLogger(format string, stderr, out io.Writer) (*slog.Logger, error) {
	w := out
	if format == "auto" {
		format = "json"
		if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			format = "text"
		}
	}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, nil)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, nil)), nil
	default:
		return nil, fmt.Errorf("-log-format %q: want json, text or auto", format)
	}
}

// printTryIt prints ready-to-paste commands against the emulator's example user. They
// are plain lines, not log records, so that their quotes survive.
func printTryIt(w io.Writer, a *app.App) {
	token := emulator.Fixtures()[0].Token
	fmt.Fprintf(w, `
  Serving from the embedded Plaid emulator. Try:
    grpcurl -plaintext -d '{"user_token":"%[1]s"}' %[2]s plaid.credit.v1.CreditService/CreditSessionsGet
    curl -s -H 'Content-Type: application/json' -d '{"user_token":"%[1]s"}' http://%[3]s/credit/sessions/get
    grpcurl -plaintext -d '{"user_token":"%[1]s"}' %[2]s plaid.credit.v1.CreditService/WatchCreditSessions

`, token, a.GRPCAddr(), a.HTTPAddr())
}

// prefixList is a flag of comma-separated CIDRs (a bare address is its own /32 or /128).
type prefixList []netip.Prefix

func (p *prefixList) String() string {
	if p == nil {
		return ""
	}
	parts := make([]string, len(*p))
	for i, prefix := range *p {
		parts[i] = prefix.String()
	}
	return strings.Join(parts, ",")
}

func (p *prefixList) Set(s string) error {
	*p = nil
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		prefix, err := netip.ParsePrefix(part)
		if err != nil {
			addr, aerr := netip.ParseAddr(part)
			if aerr != nil {
				return fmt.Errorf("%q is not a CIDR or an address", part)
			}
			prefix = netip.PrefixFrom(addr, addr.BitLen())
		}
		*p = append(*p, prefix.Masked())
	}
	return nil
}
