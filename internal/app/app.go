// Package app wires the service together: the Plaid client (or the embedded emulator),
// the gRPC server, the REST mirror and their listeners. cmd/creditsessionsd and the
// end-to-end tests both run the service through it.
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/creditsessions/creditsessions/internal/audit"
	"github.com/creditsessions/creditsessions/internal/auth"
	"github.com/creditsessions/creditsessions/internal/cache"
	"github.com/creditsessions/creditsessions/internal/emulator"
	"github.com/creditsessions/creditsessions/internal/membudget"
	"github.com/creditsessions/creditsessions/internal/mirror"
	"github.com/creditsessions/creditsessions/internal/observe"
	"github.com/creditsessions/creditsessions/internal/plaid"
	"github.com/creditsessions/creditsessions/internal/resilience"
	"github.com/creditsessions/creditsessions/internal/watch"
	"github.com/creditsessions/creditsessions/internal/webhook"
	"github.com/creditsessions/creditsessions/server"

	"github.com/sony/gobreaker/v2"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
)

// Config is everything the service needs to run. Zero values mean the defaults.
type Config struct {
	// GRPCAddr is the gRPC listen address; default localhost:50051.
	GRPCAddr string
	// HTTPAddr is the REST mirror's listen address; default localhost:8080.
	HTTPAddr string
	// AdminAddr serves /metrics, /healthz, /readyz and pprof; default localhost:9090.
	AdminAddr string
	// Tracing, when set, traces the gRPC server, the REST mirror and the calls to Plaid,
	// continuing callers' W3C trace context up to Plaid. Nil means off, at no cost.
	Tracing *observe.Tracing
	// Plaid says where calls go. Its zero value means the embedded emulator.
	Plaid PlaidConfig
	// Resilience tunes retries, the circuit breaker, the concurrency cap and coalescing.
	Resilience resilience.Config
	// MaxResponseBytes bounds a response body from Plaid; 0 means
	// plaid.DefaultMaxResponseBytes.
	MaxResponseBytes int64
	// AnswerMemory bounds the bytes of large Plaid answers (LargeAnswerBytes or more)
	// that calls in flight hold at once, bodies and decoded messages (see
	// AnswerBytesPerBodyByte); calls past it wait for their turn before reading their
	// answers. 0 means DefaultAnswerMemory. An answer larger than the whole budget
	// takes all of it.
	AnswerMemory int64
	// ShutdownDrain is how long the service keeps serving after health turns
	// NOT_SERVING, so that load balancers stop sending before listeners close; default 0.
	ShutdownDrain time.Duration
	// ShutdownGrace bounds how long calls in flight may take to finish once the
	// listeners close; default 10s.
	ShutdownGrace time.Duration
	// HeaderTimeout bounds how long a client may take to send a REST request's headers
	// or to set up a gRPC connection; 0 means DefaultHeaderTimeout.
	HeaderTimeout time.Duration
	// Logger receives the service's logs; nil means slog.Default().
	Logger *slog.Logger
	// Interceptors run on every call, gRPC and REST, after the service's own.
	Interceptors []grpc.UnaryServerInterceptor
	// Security is TLS, caller authentication, the authorization policy and per-caller
	// quotas. Its zero value is none of them, which loopback addresses only allow.
	Security auth.Options
	// AllowInsecure lets the gRPC and REST listeners face a network without TLS and
	// caller authentication, and serves pprof on an admin address that is not loopback.
	AllowInsecure bool
	// StreamInterceptors run on every stream, gRPC and REST, after the service's own.
	StreamInterceptors []grpc.StreamServerInterceptor
	// Watch tunes WatchCreditSessions: poll interval, maximum duration, failure bound.
	// Its MaxWatches, when 0, follows the memory the process may use (MaxWatchesFor).
	Watch watch.Config
	// MemoryLimit is the memory the process may use, in bytes, for the watch cap;
	// 0 means GOMEMLIMIT or the cgroup's limit, whichever is smaller.
	MemoryLimit int64
	// RedisAddr, when set, makes the replicas sharing it one fleet for watches: one
	// poll per user for the whole fleet, webhooks reaching every replica. A host:port or
	// a redis:// or rediss:// URL.
	RedisAddr string
	// RedisPassword authenticates to Redis (with the user in RedisAddr's URL, if any).
	RedisPassword string
	// WebhookAddr, when set, is the listen address of Plaid's webhooks: POST
	// /webhooks/plaid and nothing else (no reflection, no metrics). Each verified webhook
	// about a user's credit sessions wakes that user's watches, on every replica with
	// RedisAddr. It faces Plaid, not internal callers: each webhook is authenticated by
	// Plaid's signature, so it may listen beyond loopback.
	WebhookAddr string
	// WebhookTrustedProxies are the proxies in front of the webhook listener whose
	// X-Forwarded-For names the sender; see webhook.Options.TrustedProxies.
	WebhookTrustedProxies []netip.Prefix
	// Audit is the data-access trail (docs/audit.md): where records go, and whether a
	// call whose record cannot be kept is refused. A zero Path keeps none.
	Audit audit.Options
	// Cache turns on and bounds the cache of Plaid's answers; its zero value is off.
	Cache CacheConfig
}

// DefaultAnswerMemory lets one 10,000-session answer (a 3 MB body, 9 MB with its
// decoded message) at a time be read, decoded and encoded, or two of 3,000: on two
// cores that costs no throughput, since the other calls' answers are meanwhile on their
// way to their callers (BENCHMARKS.md). Raise it with the cores, or for an upstream slow
// to send large bodies.
const DefaultAnswerMemory = 6 << 20

// LargeAnswerBytes is the body size from which an answer counts against AnswerMemory:
// about 800 sessions. Smaller answers never wait.
const LargeAnswerBytes = 256 << 10

// AnswerBytesPerBodyByte is what a large answer holds, against AnswerMemory, for each
// byte of Plaid's body: the body itself, and the message it decodes into, twice its
// size (6.1 MB for the 3.1 MB body of 10,000 sessions; TestAnswerCostEstimate checks
// the estimate against a real decode). Counting the body alone let 6 MiB admit two
// such answers, 18 MB, where it meant one.
const AnswerBytesPerBodyByte = 3

// reserveAnswer reserves, under ctx's hold, the memory a body of n bytes will hold
// once decoded.
func reserveAnswer(ctx context.Context, n int64) error {
	return membudget.Reserve(ctx, n*AnswerBytesPerBodyByte)
}

// MaxConnectionAge is how long a client connection lives before the server asks the
// client to move on (an HTTP/2 GOAWAY; grpc-go adds ±10% jitter so that clients do not
// all reconnect at once). A client re-resolves the service's name when a connection
// ends, so this is how soon callers start using replicas added by a scale-up: within
// five minutes, about as long as an autoscaler takes to decide. It costs one reconnect
// (a TLS handshake) per client and replica every five minutes, nothing next to the calls
// they carry; shorter would add handshakes for little, longer would leave new replicas
// idle through a load spike.
const MaxConnectionAge = 5 * time.Minute

// MaxConnectionAgeGrace is how long calls already running on a connection past its age
// may take to finish before it is closed: no new call starts there after the GOAWAY.
// Unary calls end within their deadlines (-upstream-call-timeout, 30s, without one);
// watch streams end themselves after at most 30 minutes, so that clients rebalance
// (Kubernetes does the same with its watches). A grace of 31 minutes lets the longest
// of them end on its own terms rather than be cut.
const MaxConnectionAgeGrace = 31 * time.Minute

// PlaidConfig locates the upstream Plaid API.
type PlaidConfig struct {
	// BaseURL of a Plaid-compatible API. Empty means the embedded emulator, in which
	// case Credentials must be empty too.
	BaseURL string
	// Credentials the service calls Plaid with.
	Credentials plaid.Credentials
	// ClientIDFile and SecretFile, when set, hold the client id and the secret instead
	// (the way Kubernetes mounts Secrets), re-read when they change.
	ClientIDFile, SecretFile string
	// CredentialsMode is server.ServiceKeys (the default) or server.CallerKeys. With
	// caller keys, Credentials may be empty.
	CredentialsMode string
}

// Embedded reports whether c asks for the embedded emulator.
func (c PlaidConfig) Embedded() bool {
	return c.BaseURL == "" && !c.anyCredentials()
}

func (c PlaidConfig) anyCredentials() bool {
	return c.Credentials != (plaid.Credentials{}) || c.ClientIDFile != "" || c.SecretFile != ""
}

func (c PlaidConfig) completeCredentials() bool {
	return (c.Credentials.ClientID != "" || c.ClientIDFile != "") && (c.Credentials.Secret != "" || c.SecretFile != "")
}

func (c PlaidConfig) callerKeys() bool { return c.CredentialsMode == server.CallerKeys }

// Validate reports a configuration that cannot work, in words an operator can act on.
func (c PlaidConfig) Validate() error {
	if c.Embedded() {
		return nil
	}
	if c.BaseURL == "" {
		return errors.New("credentials are set but no Plaid API is: set PLAID_ENV or PLAID_BASE_URL")
	}
	if _, err := plaid.ParseBaseURL(c.BaseURL); err != nil {
		return err
	}
	if !c.anyCredentials() && c.callerKeys() {
		return nil // every call brings its own
	}
	if !c.completeCredentials() {
		return errors.New("credentials are half set: set both PLAID_CLIENT_ID (or PLAID_CLIENT_ID_FILE) and PLAID_SECRET (or PLAID_SECRET_FILE)")
	}
	return nil
}

// App is the running service.
type App struct {
	cfg          Config
	logger       *slog.Logger
	guard        *resilience.Guard
	security     *auth.Security
	metrics      *observe.Metrics
	grpc         *server.GRPC
	http         *http.Server
	admin        *http.Server
	webhooks     *http.Server
	grpcLn       net.Listener
	httpLn       net.Listener
	adminLn      net.Listener
	webhookLn    net.Listener
	emulator     *emulator.Server
	hub          *watch.Hub
	fleet        *watch.RedisFleet
	audit        *audit.Log
	cache        *cache.Cache
	shuttingDown atomic.Bool
}

// New builds the service and opens its listeners, so that their addresses are known
// (and a port in use is reported) before Run.
func New(cfg Config) (_ *App, err error) {
	if cfg.GRPCAddr == "" {
		cfg.GRPCAddr = "localhost:50051"
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = "localhost:8080"
	}
	if cfg.AdminAddr == "" {
		cfg.AdminAddr = "localhost:9090"
	}
	if cfg.ShutdownGrace <= 0 {
		cfg.ShutdownGrace = 10 * time.Second
	}
	if cfg.HeaderTimeout <= 0 {
		cfg.HeaderTimeout = DefaultHeaderTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := cfg.Plaid.Validate(); err != nil {
		return nil, err
	}
	if err := checkExposure(cfg); err != nil {
		return nil, err
	}
	a := &App{cfg: cfg, logger: cfg.Logger, metrics: observe.NewMetrics()}
	securityMetrics := auth.NewMetrics(a.metrics.Registry)
	securityMetrics.SetInsecure(cfg.AllowInsecure)
	security, err := auth.New(cfg.Security, a.logger, securityMetrics)
	if err != nil {
		return nil, err
	}
	security.OnCaller = func(ctx context.Context, identity string) {
		server.NoteCaller(ctx, identity)
		audit.NoteCaller(ctx, identity)
	}
	security.OnRefused = audit.NoteRefusal
	auditMetrics := audit.NewMetrics(a.metrics.Registry) // registered with or without a trail
	a.security = security
	defer func() {
		if err != nil {
			a.close()
		}
	}()

	upstream := cfg.Plaid
	if upstream.Embedded() {
		if a.emulator, err = emulator.Start("127.0.0.1:0", emulator.Config{}); err != nil {
			return nil, fmt.Errorf("starting the embedded Plaid emulator: %w", err)
		}
		upstream.BaseURL = a.emulator.URL
		upstream.Credentials = plaid.Credentials{ClientID: a.emulator.Emulator.ClientID(), Secret: a.emulator.Emulator.Secret()}
	}
	httpClient := plaid.NewHTTPClient()
	if cfg.Tracing != nil {
		httpClient.Transport = otelhttp.NewTransport(httpClient.Transport,
			otelhttp.WithTracerProvider(cfg.Tracing.Provider), otelhttp.WithPropagators(cfg.Tracing.Propagator))
	}
	answerMemory := cfg.AnswerMemory
	if answerMemory <= 0 {
		answerMemory = DefaultAnswerMemory
	}
	budget := membudget.New(answerMemory, LargeAnswerBytes*AnswerBytesPerBodyByte)
	credentialSource, err := secretFiles(upstream, cfg.Security.ReloadEvery, a.logger, securityMetrics, security.Track)
	if err != nil {
		return nil, err
	}
	auditOpts := cfg.Audit
	auditOpts.Metrics, auditOpts.Logger = auditMetrics, a.logger
	auditOpts.ServiceClientID = func() string {
		if credentialSource != nil {
			return credentialSource().ClientID
		}
		return upstream.Credentials.ClientID
	}
	if a.audit, err = audit.Open(auditOpts); err != nil {
		return nil, err
	}
	client, err := plaid.NewClient(plaid.Config{
		BaseURL: upstream.BaseURL, Credentials: upstream.Credentials, CredentialSource: credentialSource,
		HTTPClient: httpClient, MaxResponseBytes: cfg.MaxResponseBytes,
		Admit: reserveAnswer,
	})
	if err != nil {
		return nil, err
	}

	a.guard = resilience.New(a.metrics.InstrumentUpstream(client), cfg.Resilience)
	a.guard.OnStateChange = func(from, to gobreaker.State) {
		a.logger.Warn("circuit breaker to Plaid changed state", "from", from.String(), "to", to.String())
	}
	a.metrics.ObserveGuard(a.guard)
	a.metrics.ObserveAnswerMemory(budget)
	svc, err := server.New(a.guard, cfg.Plaid.CredentialsMode)
	if err != nil {
		return nil, err
	}
	watchCfg := cfg.Watch
	watchCfg.Logger = a.logger
	if watchCfg.MaxWatches <= 0 {
		limit := cfg.MemoryLimit
		if limit <= 0 {
			limit = memoryLimit()
		}
		watchCfg.MaxWatches = MaxWatchesFor(limit)
	}
	if cfg.RedisAddr != "" {
		if a.fleet, err = watch.NewRedisFleet(cfg.RedisAddr, cfg.RedisPassword, a.logger); err != nil {
			return nil, err
		}
		watchCfg.Fleet = a.fleet
		a.metrics.ObserveRedis(a.fleet.Up)
	}
	a.hub = watch.New(watchCfg)
	if a.fleet != nil {
		a.fleet.Attach(a.hub)
	}
	svc.EnableWatch(a.hub)
	if err := a.startCache(svc, upstream, credentialSource, answerMemory, securityMetrics); err != nil {
		return nil, err
	}
	a.metrics.ObserveWatch(a.hub)
	serverOptions := append(grpcLimits(cfg.HeaderTimeout), grpc.StatsHandler(server.HoldMemory(budget)), grpc.InTapHandle(server.WatchTap))
	serverOptions = append(serverOptions, grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionAge: MaxConnectionAge, MaxConnectionAgeGrace: MaxConnectionAgeGrace}))
	var handshakes *auth.HandshakeLog
	if security.TLS != nil {
		handshakes = auth.NewHandshakeLog(a.logger)
		serverOptions = append(serverOptions, grpc.Creds(handshakes.GRPC(credentials.NewTLS(security.TLS.Config("h2")))))
	}
	if cfg.Tracing != nil {
		serverOptions = append(serverOptions, grpc.StatsHandler(otelgrpc.NewServerHandler(
			otelgrpc.WithTracerProvider(cfg.Tracing.Provider), otelgrpc.WithPropagators(cfg.Tracing.Propagator))))
	}
	unary := []grpc.UnaryServerInterceptor{a.metrics.UnaryServerInterceptor()}
	stream := []grpc.StreamServerInterceptor{a.metrics.GRPC.StreamServerInterceptor()}
	if a.audit != nil { // outside security, to record its refusals
		unary, stream = append(unary, a.audit.Unary(auth.Transport)), append(stream, a.audit.Stream(auth.Transport))
	}
	a.grpc = server.NewGRPCServer(svc, server.Options{
		Logger:             a.logger,
		Interceptors:       append(append(unary, security.Unary()), cfg.Interceptors...),
		StreamInterceptors: append(append(stream, security.Stream()), cfg.StreamInterceptors...),
		ServerOptions:      serverOptions,
	})
	a.metrics.GRPC.InitializeMetrics(a.grpc.Server)
	rest, err := mirror.New(a.grpc.Service(), mirror.Options{
		Interceptor: a.grpc.Interceptor, StreamInterceptor: a.grpc.StreamInterceptor, AnswerMemory: budget,
	})
	if err != nil {
		return nil, err
	}
	rest = security.HTTP(rest)
	if cfg.Tracing != nil {
		rest = otelhttp.NewHandler(rest, "rest",
			otelhttp.WithTracerProvider(cfg.Tracing.Provider), otelhttp.WithPropagators(cfg.Tracing.Propagator),
			otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method + " " + r.URL.Path }))
	}
	a.http = restServer(rest, a.logger, cfg.HeaderTimeout)
	if handshakes != nil {
		a.http.ErrorLog = handshakes.HTTPErrorLog("rest", a.logger)
	}
	if cfg.WebhookAddr != "" {
		if !upstream.completeCredentials() {
			return nil, errors.New("-webhook-addr: verifying Plaid's webhooks needs the service's own Plaid keys (PLAID_CLIENT_ID, PLAID_SECRET or their _FILE variables)")
		}
		hookOpts := webhook.Options{
			Keys: client, Notifier: a.webhookNotifier(), Logger: a.logger, Metrics: a.metrics.Registry,
			TrustedProxies: cfg.WebhookTrustedProxies,
		}
		if a.fleet != nil {
			hookOpts.SharedReplays = webhook.RedisReplays{Client: a.fleet.Client()}
		}
		hooks, err := webhook.NewHandler(hookOpts)
		if err != nil {
			return nil, err
		}
		a.webhooks = &http.Server{
			Handler:           hooks,
			ReadHeaderTimeout: cfg.HeaderTimeout,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    16 << 10,
			ErrorLog:          slog.NewLogLogger(a.logger.Handler(), slog.LevelWarn),
		}
	}
	a.admin = &http.Server{
		Handler:           withoutPprof(observe.AdminHandler(a.metrics, a.ready), !cfg.AllowInsecure && !isLoopback(cfg.AdminAddr)),
		ReadHeaderTimeout: cfg.HeaderTimeout,
		IdleTimeout:       restIdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(a.logger.Handler(), slog.LevelWarn),
	}
	if a.grpcLn, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
		return nil, fmt.Errorf("gRPC listener: %w", err)
	}
	if a.httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return nil, fmt.Errorf("HTTP listener: %w", err)
	}
	if security.TLS != nil {
		a.httpLn = tls.NewListener(a.httpLn, security.TLS.Config("h2", "http/1.1"))
	}
	if a.adminLn, err = net.Listen("tcp", cfg.AdminAddr); err != nil {
		return nil, fmt.Errorf("admin listener: %w", err)
	}
	if a.webhooks != nil {
		if a.webhookLn, err = net.Listen("tcp", cfg.WebhookAddr); err != nil {
			return nil, fmt.Errorf("webhook listener: %w", err)
		}
	}
	return a, nil
}

// GRPCAddr is the address the gRPC server listens on.
func (a *App) GRPCAddr() net.Addr { return a.grpcLn.Addr() }

// HTTPAddr is the address the REST mirror listens on.
func (a *App) HTTPAddr() net.Addr { return a.httpLn.Addr() }

// EmulatorURL is the embedded emulator's base URL, or "" when calls go to Plaid.
func (a *App) EmulatorURL() string {
	if a.emulator == nil {
		return ""
	}
	return a.emulator.URL
}

// Emulator is the embedded emulator, or nil when calls go to Plaid.
func (a *App) Emulator() *emulator.Emulator {
	if a.emulator == nil {
		return nil
	}
	return a.emulator.Emulator
}

// WebhookAddr is the address of the webhook listener, or nil when there is none.
func (a *App) WebhookAddr() net.Addr {
	if a.webhookLn == nil {
		return nil
	}
	return a.webhookLn.Addr()
}

// AdminAddr is the address of the admin server: metrics, health probes, pprof.
func (a *App) AdminAddr() net.Addr { return a.adminLn.Addr() }

// ready reports whether the service takes calls: not shutting down, and serving.
func (a *App) ready() bool { return !a.shuttingDown.Load() }

// Hub holds the replica's watches.
func (a *App) Hub() *watch.Hub { return a.hub }

// MetricFamilies names every metric family the admin listener's /metrics can serve,
// including those no call has touched yet: the list monitoring rules and dashboards are
// checked against.
func (a *App) MetricFamilies() ([]string, error) { return a.metrics.FamilyNames() }

// Audit is the data-access trail, or nil when none is kept.
func (a *App) Audit() *audit.Log { return a.audit }

// Guard is the resilience layer in front of Plaid, for its stats.
func (a *App) Guard() *resilience.Guard { return a.guard }

// Run serves until ctx is done, then shuts down gracefully: health turns NOT_SERVING,
// new calls are refused, calls in flight get ShutdownGrace to finish. It returns nil
// after a clean shutdown.
func (a *App) Run(ctx context.Context) error {
	defer a.close()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := a.grpc.Serve(a.grpcLn); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("gRPC server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := a.http.Serve(a.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("HTTP server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := a.admin.Serve(a.adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("admin server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		a.security.Watch(gctx) // files that rotate: certificates, keys, policy, secrets
		return nil
	})
	a.logSecurity()
	if a.audit != nil {
		g.Go(func() error {
			a.reopenAuditOnHangup(gctx)
			return nil
		})
	}
	if a.webhooks != nil {
		g.Go(func() error {
			if err := a.webhooks.Serve(a.webhookLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("webhook server: %w", err)
			}
			return nil
		})
		a.logger.Info("receiving Plaid's webhooks", "webhook_addr", a.WebhookAddr().String(), "path", webhook.Path)
	}
	a.logger.Info("serving", "grpc_addr", a.GRPCAddr().String(), "http_addr", a.HTTPAddr().String(),
		"admin_addr", a.AdminAddr().String(), "tracing", a.cfg.Tracing != nil)
	g.Go(func() error {
		<-gctx.Done()
		a.shutdown()
		return nil
	})
	return g.Wait()
}

// logSecurity says at start which controls are on, and warns of what is off on purpose.
func (a *App) logSecurity() {
	sec := a.cfg.Security
	a.logger.Info("security", "tls", sec.TLSCert != "", "client_certificates", sec.ClientCA != "",
		"bearer_tokens", sec.JWKS != "", "authz_policy", sec.PolicyFile != "",
		"caller_rate", sec.CallerRate, "caller_max_watches", sec.CallerMaxWatches,
		"max_watches", a.hub.Config().MaxWatches, "allow_insecure", a.cfg.AllowInsecure)
	if a.cfg.AllowInsecure {
		a.logger.Warn("-allow-insecure: the listeners may face a network without TLS or caller authentication, and pprof is served on the admin address")
	}
	if sec.Authenticates() && sec.PolicyFile == "" {
		a.logger.Warn("no -authz-policy: every authenticated caller may call every method")
	}
}

// reopenAuditOnHangup re-opens the audit file on SIGHUP, as logrotate expects after it
// moved the file away.
func (a *App) reopenAuditOnHangup(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if err := a.audit.Reopen(); err != nil {
				a.logger.Error("SIGHUP: re-opening the audit log", "error", err)
			}
		}
	}
}

func (a *App) shutdown() {
	a.logger.Info("shutting down", "drain", a.cfg.ShutdownDrain, "grace", a.cfg.ShutdownGrace)
	a.shuttingDown.Store(true) // /readyz fails from now on
	a.grpc.Health.Shutdown()   // every service NOT_SERVING, so balancers stop sending
	if a.cfg.ShutdownDrain > 0 {
		time.Sleep(a.cfg.ShutdownDrain) // still serving, while balancers notice
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownGrace)
	defer cancel()
	// Watches never end by themselves: end them now, with Unavailable and a RetryInfo,
	// so their clients reconnect to another replica, before the listeners close and
	// GracefulStop waits for calls in flight.
	a.hub.Drain(nil)

	stopped := make(chan struct{})
	go func() {
		a.grpc.GracefulStop()
		close(stopped)
	}()
	if a.webhooks != nil {
		// Plaid retries a webhook that is not answered; nothing waits on this one.
		if err := a.webhooks.Shutdown(ctx); err != nil {
			_ = a.webhooks.Close()
		}
	}
	if err := a.http.Shutdown(ctx); err != nil {
		a.logger.Warn("REST mirror: calls still running at the end of the grace period", "error", err)
		_ = a.http.Close()
	}
	select {
	case <-stopped:
	case <-ctx.Done():
		a.logger.Warn("gRPC: calls still running at the end of the grace period; stopping them")
		a.grpc.Stop()
		<-stopped
	}
	// Every call has ended: every record is queued. Written before the process exits.
	if a.audit != nil {
		if err := a.audit.Close(); err != nil {
			a.logger.Error("audit log", "error", err)
		}
	}
	// The admin server last, so metrics can be scraped while calls drain.
	_ = a.admin.Shutdown(ctx)
	if err := a.cfg.Tracing.Shutdown(ctx); err != nil {
		a.logger.Warn("flushing traces", "error", err)
	}
	a.logger.Info("stopped")
}

// close releases what New opened, for a New that failed or a Run that ended.
func (a *App) close() {
	for _, ln := range []net.Listener{a.grpcLn, a.httpLn, a.adminLn, a.webhookLn} {
		if ln != nil {
			_ = ln.Close()
		}
	}
	if a.hub != nil {
		a.hub.Close() // releases this replica's poll leases
	}
	if a.cache != nil {
		a.cache.Close() // before the fleet, whose Redis client it uses
	}
	if a.fleet != nil {
		_ = a.fleet.Close()
	}
	if a.emulator != nil {
		_ = a.emulator.Close()
	}
	if a.audit != nil {
		_ = a.audit.Close() // after a failed New; a second Close does nothing
	}
}
