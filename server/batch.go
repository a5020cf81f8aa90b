package server

import (
	"context"
	"strconv"
	"sync"
	"time"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/audit"
	"github.com/creditsessions/creditsessions/internal/plaid"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// MaxBatchTokens is the most user tokens one BatchGetCreditSessions may name.
const MaxBatchTokens = 100

// BatchParallelism is how many of a batch's tokens are fetched at once. The fetches go
// through the same resilience layer as single calls, so they take places under
// -max-in-flight like any call; a batch holding at most eight of them leaves the rest to
// single calls and other batches, rather than queueing everybody behind its hundred.
const BatchParallelism = 8

// BatchGetCreditSessions answers CreditSessionsGet for each token, in order. See the
// proto for its contract.
func (s *Service) BatchGetCreditSessions(ctx context.Context, req *creditv1.BatchGetCreditSessionsRequest) (*creditv1.BatchGetCreditSessionsResponse, error) {
	tokens := req.GetUserTokens()
	switch {
	case len(tokens) == 0:
		return nil, missingFields(codes.InvalidArgument, "user_tokens")
	case len(tokens) > MaxBatchTokens:
		return nil, serviceError(codes.InvalidArgument, "INVALID_REQUEST", "INVALID_FIELD", 400, 0,
			"user_tokens may name at most "+strconv.Itoa(MaxBatchTokens)+" users; got "+strconv.Itoa(len(tokens))).Err()
	}
	for _, t := range tokens {
		if t == "" {
			return nil, invalidField(codes.InvalidArgument, "user_tokens")
		}
	}
	// The keys (in caller-keys mode) are checked once for the whole batch, as a single
	// call's would be; the placeholder token is valid, so only they can fail.
	base, err := s.plaidRequest(ctx, "batch", req.GetClientId(), req.GetSecret())
	if err != nil {
		return nil, err
	}
	if ci := callInfoFrom(ctx); ci != nil {
		ci.tokenHash = "" // a batch names many users: none in its log line
	}
	audit.NoteFrom(ctx).ClearUser() // the placeholder's; each user read gets a record of its own
	cr := cacheRequest{}
	if s.cache != nil {
		cr = cacheRequestOf(ctx)
		cr.userID = "" // one user_id cannot name many users
	}

	// Duplicates are fetched once: index of each distinct token's first place.
	distinct := make(map[string]int, len(tokens))
	order := make([]string, 0, len(tokens))
	for _, t := range tokens {
		if _, ok := distinct[t]; !ok {
			distinct[t] = len(order)
			order = append(order, t)
		}
	}
	results := make([]*creditv1.BatchGetCreditSessionsResult, len(order))
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(BatchParallelism, len(order)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				results[i] = s.batchOne(ctx, base, order[i], cr)
			}
		}()
	}
	for i := range order {
		work <- i
	}
	close(work)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, status.FromContextError(err).Err()
	}
	if note := audit.NoteFrom(ctx); note != nil {
		note.SetBatch(batchUsers(order, results, base.Credentials.ClientID, cr.uses()))
	}
	out := &creditv1.BatchGetCreditSessionsResponse{Results: make([]*creditv1.BatchGetCreditSessionsResult, len(tokens))}
	for i, t := range tokens {
		out.Results[i] = results[distinct[t]]
	}
	return out, nil
}

// batchOne answers one token of a batch: its sessions, or the status a single call would
// have ended with.
func (s *Service) batchOne(ctx context.Context, base plaid.Request, token string, cr cacheRequest) *creditv1.BatchGetCreditSessionsResult {
	if !validUserToken(token) {
		return &creditv1.BatchGetCreditSessionsResult{Outcome: &creditv1.BatchGetCreditSessionsResult_Error{
			Error: status.Convert(invalidField(codes.InvalidArgument, "user_tokens")).Proto()}}
	}
	call := base
	call.UserToken = token
	ans, err := s.get(ctx, call, cr)
	if err != nil {
		return &creditv1.BatchGetCreditSessionsResult{Outcome: &creditv1.BatchGetCreditSessionsResult_Error{
			Error: status.Convert(err).Proto()}}
	}
	r := &creditv1.BatchGetCreditSessionsResult{Outcome: &creditv1.BatchGetCreditSessionsResult_Response{Response: ans.resp}}
	if ans.cached {
		r.Age = &ans.age
	}
	return r
}

// batchUsers is what each distinct user of a batch got, for the audit trail: one record
// per user read.
func batchUsers(tokens []string, results []*creditv1.BatchGetCreditSessionsResult, clientID string, cacheUsed bool) []audit.BatchUser {
	users := make([]audit.BatchUser, len(tokens))
	for i, r := range results {
		u := audit.BatchUser{UserToken: tokens[i], ClientID: clientID, CacheUsed: cacheUsed}
		if st := r.GetError(); st != nil {
			u.Code = codes.Code(st.GetCode())
		} else {
			u.RequestID = r.GetResponse().GetRequestId()
			u.Sessions = len(r.GetResponse().GetSessions())
			if r.Age != nil {
				u.Cached, u.Age = true, time.Duration(r.GetAge())*time.Second
			}
		}
		users[i] = u
	}
	return users
}
