package server

import (
	"context"
	"strconv"
	"time"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/audit"
	"github.com/creditsessions/creditsessions/internal/cache"
	"github.com/creditsessions/creditsessions/internal/plaid"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// Metadata keys of the cache.
const (
	// CacheControlHeader carries the caller's Cache-Control (RFC 9111) request
	// directives: max-age=N allows an answer up to N seconds old, no-cache forces a
	// Plaid call (and refreshes the cache), no-store keeps the call out of the cache.
	CacheControlHeader = "cache-control"
	// AgeHeader says, on an answer from the cache, how old it is, in seconds.
	AgeHeader = "age"
	// UserIDHeader names the call's user by Plaid's user_id, so that webhooks, which
	// name users that way, can evict the cached answer. Plaid's request has no such
	// field, so it travels beside the request, as metadata (REST: Plaid-User-Id).
	UserIDHeader = "plaid-user-id"
)

// EnableCache lets calls that allow it be answered from c. serviceScope names the
// service's own Plaid keys (their client id, as they are now), which a cache entry
// fetched with them is keyed by. Call it before serving.
func (s *Service) EnableCache(c *cache.Cache, serviceScope func() string) {
	s.cache, s.serviceScope = c, serviceScope
}

// cacheKey is the entry of call's answer: its user token and the Plaid keys it is made
// with, so that no caller reads an answer fetched with keys its call would not use.
func (s *Service) cacheKey(call plaid.Request) cache.Key {
	if s.callerKeys {
		return cache.KeyFor("caller:"+call.Credentials.ClientID, call.Credentials.Secret, call.UserToken)
	}
	scope := ""
	if s.serviceScope != nil {
		scope = s.serviceScope()
	}
	return cache.KeyFor("service:"+scope, "", call.UserToken)
}

// cacheRequest is what a call's metadata asks of the cache.
type cacheRequest struct {
	directives cache.Directives
	userID     string
}

func cacheRequestOf(ctx context.Context) cacheRequest {
	// Two lookups, not FromIncomingContext: that copies all of the call's metadata.
	return cacheRequest{directives: cache.ParseDirectives(metadata.ValueFromIncomingContext(ctx, CacheControlHeader)),
		userID: first(metadata.ValueFromIncomingContext(ctx, UserIDHeader))}
}

// uses reports whether the call reads or writes the cache at all: only when it asked
// for it, so a call without Cache-Control behaves exactly as without a cache.
func (r cacheRequest) uses() bool {
	return !r.directives.NoStore && (r.directives.HasMaxAge || r.directives.NoCache)
}

// cachedAnswer is an answer and, when it came from the cache, its age in seconds.
type cachedAnswer struct {
	resp   *creditv1.CreditSessionsGetResponse
	age    int64
	cached bool
}

// get answers call from the cache when cr allows it and an entry is young enough, else
// from Plaid, storing Plaid's answer for later calls. Its errors are gRPC statuses, and
// it sets no response metadata: the caller does.
func (s *Service) get(ctx context.Context, call plaid.Request, cr cacheRequest) (cachedAnswer, error) {
	if s.cache == nil || !cr.uses() {
		resp, err := s.upstreamGet(ctx, call)
		return cachedAnswer{resp: resp}, err
	}
	key := s.cacheKey(call)
	if cr.directives.HasMaxAge && !cr.directives.NoCache {
		if e, ok := s.cache.Get(ctx, key, cr.directives.MaxAge); ok {
			return cachedAnswer{resp: e.Response, age: e.Age(time.Now()), cached: true}, nil
		}
	}
	started := time.Now()
	resp, err := s.upstreamGet(ctx, call)
	if err != nil {
		return cachedAnswer{}, err // only successful answers are kept
	}
	s.cache.Put(ctx, key, cr.userID, resp, started)
	return cachedAnswer{resp: resp}, nil
}

// upstreamGet asks Plaid through the resilience layer; errors are gRPC statuses.
func (s *Service) upstreamGet(ctx context.Context, call plaid.Request) (*creditv1.CreditSessionsGetResponse, error) {
	resp, err := s.upstream.CreditSessionsGet(ctx, call)
	if err != nil {
		return nil, upstreamStatus(ctx, err, s.callerKeys)
	}
	return resp, nil
}

// cachedGet is CreditSessionsGet for a call that asked for the cache: an answer from the
// cache carries its age and the request_id of the Plaid call it came from.
func (s *Service) cachedGet(ctx context.Context, call plaid.Request, cr cacheRequest) (*creditv1.CreditSessionsGetResponse, error) {
	key := s.cacheKey(call)
	if cr.directives.HasMaxAge && !cr.directives.NoCache {
		if e, ok := s.cache.Get(ctx, key, cr.directives.MaxAge); ok {
			now := time.Now()
			setAge(ctx, e.Age(now))
			audit.NoteFrom(ctx).SetCache(true, max(now.Sub(e.Fetched), 0))
			s.noteRequestID(ctx, callInfoFrom(ctx), e.Response.GetRequestId())
			return e.Response, nil
		}
	}
	if cr.directives.HasMaxAge || cr.directives.NoCache {
		audit.NoteFrom(ctx).SetCache(false, 0) // the caller allowed the cache; Plaid answered
	}
	started := time.Now()
	resp, err := s.fetch(ctx, call)
	if err != nil {
		return nil, err // only successful answers are kept
	}
	s.cache.Put(ctx, key, cr.userID, resp, started)
	return resp, nil
}

// remember refreshes the cache with an answer a watch got, when caching is on: a watch's
// snapshots are as fresh as any call's.
func (s *Service) remember(call plaid.Request, userID string, resp *creditv1.CreditSessionsGetResponse, started time.Time) {
	if s.cache != nil && resp != nil {
		s.cache.Put(context.Background(), s.cacheKey(call), userID, resp, started)
	}
}

// setAge sends the age of an answer from the cache as response header metadata.
func setAge(ctx context.Context, age int64) {
	_ = grpc.SetHeader(ctx, metadata.MD{AgeHeader: {strconv.FormatInt(age, 10)}})
}
