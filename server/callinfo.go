package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// callInfo is what the service learns during a call that the log line wants: filled by
// the handler, read by logCalls once the call ends.
type callInfo struct {
	requestID string // Plaid's
	tokenHash string // never the token itself
	clientID  string // the Plaid client id the call used, in caller-keys mode
	caller    string // the authenticated caller's identity
	// upstreamError is why the upstream call failed, in full: addresses, TLS details,
	// bytes of the answer. The log line has it; the caller gets a fixed message.
	upstreamError string
}

type callInfoKey struct{}

func withCallInfo(ctx context.Context) (context.Context, *callInfo) {
	ci := &callInfo{}
	return context.WithValue(ctx, callInfoKey{}, ci), ci
}

func callInfoFrom(ctx context.Context) *callInfo {
	ci, _ := ctx.Value(callInfoKey{}).(*callInfo)
	return ci
}

// NoteCaller names the call's authenticated caller (a SPIFFE ID, a DNS name, a
// certificate subject or a token's sub) for its log line.
func NoteCaller(ctx context.Context, identity string) {
	if ci := callInfoFrom(ctx); ci != nil {
		ci.caller = identity
	}
}

// TokenHash is a short, stable, one-way name for a user token, so logs can tell calls
// for the same user apart without holding the token.
func TokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:6])
}

type transportKey struct{}

// WithTransport marks a call that did not arrive over gRPC, such as "rest", for the logs.
func WithTransport(ctx context.Context, transport string) context.Context {
	return context.WithValue(ctx, transportKey{}, transport)
}

func transportOf(ctx context.Context) string {
	if t, ok := ctx.Value(transportKey{}).(string); ok {
		return t
	}
	return "grpc"
}

// callerOf names the caller for the logs: its address and user agent. REST calls carry
// them as grpc-gateway's x-forwarded-for and grpcgateway-user-agent metadata; on a gRPC
// call those keys are the caller's own invention, and not believed.
func callerOf(ctx context.Context) (addr, userAgent string) {
	// ValueFromIncomingContext, not FromIncomingContext: that copies all the metadata.
	rest := transportOf(ctx) == "rest"
	var forwarded []string
	if rest {
		forwarded = metadata.ValueFromIncomingContext(ctx, "x-forwarded-for")
	}
	if len(forwarded) > 0 {
		addr = forwarded[0]
	} else if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		if tcp, ok := p.Addr.(*net.TCPAddr); ok && tcp.Zone == "" {
			// The host alone: TCPAddr.String would join the port on for the split
			// below to take off again, three allocations a call instead of one.
			return tcp.IP.String(), userAgentOf(ctx, rest)
		}
		addr = p.Addr.String()
	}
	if host, _, err := net.SplitHostPort(addr); err == nil {
		addr = host
	}
	return addr, userAgentOf(ctx, rest)
}

func userAgentOf(ctx context.Context, rest bool) string {
	if rest {
		if v := metadata.ValueFromIncomingContext(ctx, "grpcgateway-user-agent"); len(v) > 0 {
			return v[0]
		}
	}
	return first(metadata.ValueFromIncomingContext(ctx, "user-agent"))
}
