// Package client dials creditsessions from Go with the settings the service is built
// for: round-robin over every replica the name resolves to, health checking so that a
// replica shutting down is left before it closes, retries of UNAVAILABLE with backoff
// and the server's pushback, retry throttling, and keepalive the server accepts. It
// also reads what the service puts in its errors and metadata.
//
// A caller imports this package and the generated stubs
// (github.com/creditsessions/creditsessions/gen/plaid/credit/v1) and nothing of the
// server: a test holds the package's imports to gRPC, protobuf and the stubs.
//
// In Kubernetes, dial the headless Service through DNS so that every pod is an address:
//
//	c, err := client.Dial("dns:///creditsessions-grpc.NAMESPACE.svc.cluster.local:50051",
//		grpc.WithTransportCredentials(credentials.NewTLS(tlsConfig)))
package client

import (
	"context"
	"fmt"
	"strconv"
	"time"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	_ "google.golang.org/grpc/health" // the client side of healthCheckConfig
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// ServiceConfig is the service config Dial installs; a config the name resolver offers
// (DNS TXT records can) is ignored, so that callers get what this package documents:
//
//   - round_robin: every replica gets calls, not just the first address. The service is
//     stateless, so any replica answers any call.
//   - healthCheckConfig: the client watches each replica's gRPC health service and
//     stops sending to one that reports NOT_SERVING, which a replica does as soon as it
//     starts shutting down, while it still serves for -shutdown-drain.
//   - retryPolicy: UNAVAILABLE (a replica going away, Plaid down for a moment) is tried
//     up to 4 times in all, with exponential backoff from 100ms to 2s, unless the server
//     sends a grpc-retry-pushback-ms trailer, which wins: the service asks for the delay
//     of its RetryInfo, or for no retry at all. Only UNAVAILABLE: RESOURCE_EXHAUSTED is a
//     rate limit (retrying it adds to the load that caused it) and the rest are answers.
//   - retryThrottling: retries stop when more than half of recent calls failed (tokens
//     below maxTokens/2), and come back at a tenth of a token per success, so that an
//     outage is not met with four times the traffic.
const ServiceConfig = `{
  "loadBalancingConfig": [{"round_robin": {}}],
  "healthCheckConfig": {"serviceName": "plaid.credit.v1.CreditService"},
  "methodConfig": [{
    "name": [{"service": "plaid.credit.v1.CreditService"}],
    "retryPolicy": {
      "maxAttempts": 4,
      "initialBackoff": "0.1s",
      "maxBackoff": "2s",
      "backoffMultiplier": 2,
      "retryableStatusCodes": ["UNAVAILABLE"]
    }
  }],
  "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1}
}`

// keepaliveParams pings an idle connection every 30s, and drops it if no answer comes
// within 10s, so a replica that vanished (a node lost, a network partition) is noticed
// before a call waits on it. The server allows pings every 20s, with or without calls in
// flight; pinging more often would get the connection closed with ENHANCE_YOUR_CALM.
var keepaliveParams = keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}

// RequestIDKey is the metadata key of Plaid's request id: response header metadata on a
// successful call, trailer metadata on a failed one (a failed call's answer is
// trailers-only, so that it can be retried).
const RequestIDKey = "plaid-request-id"

// Client is a connection to the service and the generated client on it.
type Client struct {
	creditv1.CreditServiceClient
	conn *grpc.ClientConn
}

// Dial connects to target, a gRPC name such as
// "dns:///creditsessions-grpc.NAMESPACE.svc.cluster.local:50051", with ServiceConfig
// and keepalive pings every 30s (10s to answer; the server accepts one every 20s). opts come after the defaults, so they may replace them; they must
// include transport credentials (grpc.WithTransportCredentials): there is no default,
// so that nothing goes out in plaintext by accident. Like grpc.NewClient, Dial does not
// connect: the first call does.
func Dial(target string, opts ...grpc.DialOption) (*Client, error) {
	all := append([]grpc.DialOption{
		grpc.WithDefaultServiceConfig(ServiceConfig),
		grpc.WithDisableServiceConfig(),
		grpc.WithKeepaliveParams(keepaliveParams),
	}, opts...)
	conn, err := grpc.NewClient(target, all...)
	if err != nil {
		return nil, fmt.Errorf("client: dial %s: %w", target, err)
	}
	return &Client{CreditServiceClient: creditv1.NewCreditServiceClient(conn), conn: conn}, nil
}

// Conn is the underlying connection, for other services on it (such as health).
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Close closes the connection; calls in flight fail with Canceled.
func (c *Client) Close() error { return c.conn.Close() }

// ErrorInfo returns the google.rpc.ErrorInfo of an error from the service, or nil. Every
// error the service returns has exactly one: Reason is Plaid's error_code, Domain
// "plaid.com" (Plaid answered with it) or "creditsessions" (it started in the service),
// and Metadata holds "errorType", "httpStatus" and, from Plaid, "requestId".
func ErrorInfo(err error) *errdetails.ErrorInfo {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info
		}
	}
	return nil
}

// RetryDelay returns the delay of the google.rpc.RetryInfo of an error from the service,
// and whether it had one: only errors where retrying is the right move do. A client
// built by Dial has already retried UNAVAILABLE after this delay by the time it returns
// the error.
func RetryDelay(err error) (time.Duration, bool) {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.RetryInfo); ok && info.GetRetryDelay() != nil {
			return info.GetRetryDelay().AsDuration(), true
		}
	}
	return 0, false
}

// RequestID returns Plaid's request id from a call's header or trailer metadata
// (collected with grpc.Header and grpc.Trailer), or "" when the call did not reach
// Plaid. Quote it to Plaid about that call.
func RequestID(header, trailer metadata.MD) string {
	for _, md := range []metadata.MD{header, trailer} {
		if v := md.Get(RequestIDKey); len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

// Metadata keys of the service's cache.
const (
	// CacheControlKey is the request metadata that lets the service answer from its
	// cache (see MaxAge).
	CacheControlKey = "cache-control"
	// AgeKey is the response header metadata of an answer from the cache: its age in
	// whole seconds.
	AgeKey = "age"
	// UserIDKey is the request metadata naming the user's Plaid user_id, so that
	// Plaid's webhooks about the user evict the answer from the cache.
	UserIDKey = "plaid-user-id"
)

// MaxAge returns ctx with `cache-control: max-age=N` (N the whole seconds of d): calls
// made with it accept an answer up to d old from the service's cache, when the
// service's -cache-max-age allows that much. A zero d asks Plaid and refreshes the cache
// (`no-cache`). It applies to each token of a BatchGetCreditSessions.
func MaxAge(ctx context.Context, d time.Duration) context.Context {
	if d <= 0 {
		return metadata.AppendToOutgoingContext(ctx, CacheControlKey, "no-cache")
	}
	return metadata.AppendToOutgoingContext(ctx, CacheControlKey, "max-age="+strconv.FormatInt(int64(d/time.Second), 10))
}

// WithUserID returns ctx naming the call's user by Plaid's user_id (which Plaid's
// /user/create returns with the user token), so that a webhook about the user evicts
// what the call puts in the cache. Without it, a cached answer lives until its max-age.
func WithUserID(ctx context.Context, userID string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, UserIDKey, userID)
}

// Age reads the age of an answer from the cache out of a call's response header
// metadata (grpc.Header), and reports false for an answer fetched from Plaid by the call.
func Age(header metadata.MD) (time.Duration, bool) {
	v := header.Get(AgeKey)
	if len(v) == 0 {
		return 0, false
	}
	secs, err := strconv.ParseInt(v[0], 10, 64)
	if err != nil || secs < 0 {
		return 0, false
	}
	return time.Duration(secs) * time.Second, true
}
