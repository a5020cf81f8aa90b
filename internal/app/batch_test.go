package app_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/app"
	"github.com/creditsessions/creditsessions/server"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func TestBatchAnswersEachTokenInOrder(t *testing.T) {
	s := start(t, app.Config{Cache: app.CacheConfig{MaxAge: time.Minute}})
	emu := s.app.Emulator()
	tokens := []string{
		"user-sandbox-sessions-3",
		"user-sandbox-example#batch",
		"user-sandbox-fault-garbage", // Plaid answers garbage: this one fails
		"user-sandbox-sessions-1",
		"user-sandbox-example#batch", // a duplicate: fetched once
		strings.Repeat("x", server.MaxUserTokenBytes+1),
	}
	calls := emu.Calls()
	resp, err := s.grpc.BatchGetCreditSessions(context.Background(), &creditv1.BatchGetCreditSessionsRequest{UserTokens: tokens})
	require.NoError(t, err)
	require.Len(t, resp.GetResults(), len(tokens))
	r := resp.GetResults()
	assert.Len(t, r[0].GetResponse().GetSessions(), 3)
	assert.Len(t, r[1].GetResponse().GetSessions(), 2)
	assert.Equal(t, int32(codes.Unavailable), r[2].GetError().GetCode(), "a partial failure: %v", r[2].GetError())
	assert.Len(t, r[3].GetResponse().GetSessions(), 1)
	assert.Equal(t, r[1].GetResponse().GetRequestId(), r[4].GetResponse().GetRequestId(), "a duplicate answered once")
	assert.Equal(t, int32(codes.InvalidArgument), r[5].GetError().GetCode())
	// Five distinct valid tokens; the garbage one may be retried by the resilience layer.
	assert.GreaterOrEqual(t, emu.Calls()-calls, int64(4))
	assert.LessOrEqual(t, emu.Calls()-calls, int64(4+3))

	// cache-control applies to every token: answered from the cache, with their ages.
	calls = emu.Calls()
	ctx := metadata.AppendToOutgoingContext(context.Background(), "cache-control", "max-age=60")
	_, err = s.grpc.BatchGetCreditSessions(ctx, &creditv1.BatchGetCreditSessionsRequest{UserTokens: tokens[:2]})
	require.NoError(t, err)
	assert.Equal(t, calls+2, emu.Calls(), "nothing was cached by a call that did not ask for it")
	again, err := s.grpc.BatchGetCreditSessions(ctx, &creditv1.BatchGetCreditSessionsRequest{UserTokens: tokens[:2]})
	require.NoError(t, err)
	assert.Equal(t, calls+2, emu.Calls(), "both from the cache")
	for _, res := range again.GetResults() {
		require.NotNil(t, res.Age)
	}
}

func TestBatchOverREST(t *testing.T) {
	s := start(t, app.Config{})
	resp, body := s.post(t, "/credit/sessions/batch_get",
		`{"user_tokens":["user-sandbox-sessions-2","user-sandbox-fault-garbage","user-sandbox-sessions-0"]}`)
	require.Equal(t, 200, resp.StatusCode, string(body))
	var got struct {
		Results []struct {
			Response *struct {
				RequestID string            `json:"request_id"`
				Sessions  []json.RawMessage `json:"sessions"`
			} `json:"response"`
			Error *struct {
				ErrorType string `json:"error_type"`
				ErrorCode string `json:"error_code"`
				RequestID string `json:"request_id"`
				Status    int    `json:"status"`
			} `json:"error"`
		} `json:"results"`
	}
	require.NoError(t, json.Unmarshal(body, &got), string(body))
	require.Len(t, got.Results, 3)
	require.NotNil(t, got.Results[0].Response)
	assert.Len(t, got.Results[0].Response.Sessions, 2)
	assert.NotEmpty(t, got.Results[0].Response.RequestID)
	require.NotNil(t, got.Results[1].Error, string(body))
	assert.Equal(t, "API_ERROR", got.Results[1].Error.ErrorType)
	assert.NotEmpty(t, got.Results[1].Error.ErrorCode)
	assert.GreaterOrEqual(t, got.Results[1].Error.Status, 500)
	require.NotNil(t, got.Results[2].Response)
	assert.Empty(t, got.Results[2].Response.Sessions)

	// The OpenAPI document shows the route.
	docResp, err := http.Get(s.rest + "/openapi.json")
	require.NoError(t, err)
	defer docResp.Body.Close()
	doc, err := io.ReadAll(docResp.Body)
	require.NoError(t, err)
	assert.Contains(t, string(doc), "/credit/sessions/batch_get")
}

func TestBatchLimitsRefuseTheWholeBatch(t *testing.T) {
	s := start(t, app.Config{})
	many := make([]string, server.MaxBatchTokens+1)
	for i := range many {
		many[i] = "user-sandbox-example#" + strconv.Itoa(i)
	}
	for _, tc := range []struct {
		name   string
		tokens []string
	}{
		{"none", nil},
		{"over the limit", many},
		{"an empty token", []string{"user-sandbox-example", ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := s.app.Emulator().Calls()
			_, err := s.grpc.BatchGetCreditSessions(context.Background(), &creditv1.BatchGetCreditSessionsRequest{UserTokens: tc.tokens})
			assert.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
			body, _ := json.Marshal(map[string]any{"user_tokens": tc.tokens})
			resp, data := s.post(t, "/credit/sessions/batch_get", string(body))
			assert.Equal(t, 400, resp.StatusCode, string(data))
			assert.Equal(t, calls, s.app.Emulator().Calls(), "nothing reached Plaid")
		})
	}
	// The limit itself is fine.
	resp, err := s.grpc.BatchGetCreditSessions(context.Background(), &creditv1.BatchGetCreditSessionsRequest{UserTokens: many[:server.MaxBatchTokens]})
	require.NoError(t, err)
	assert.Len(t, resp.GetResults(), server.MaxBatchTokens)
	for i, r := range resp.GetResults() {
		assert.NotNil(t, r.GetResponse(), "token %d", i)
	}
}

func TestBatchChargesTheQuotaPerToken(t *testing.T) {
	cfg := app.Config{}
	cfg.Security.CallerRate = 0.001 // no refill during the test
	cfg.Security.CallerBurst = 5
	s := start(t, cfg)
	three := []string{"user-sandbox-example#q1", "user-sandbox-example#q2", "user-sandbox-example#q3"}
	_, err := s.grpc.BatchGetCreditSessions(context.Background(), &creditv1.BatchGetCreditSessionsRequest{UserTokens: three})
	require.NoError(t, err)
	_, err = s.grpc.BatchGetCreditSessions(context.Background(), &creditv1.BatchGetCreditSessionsRequest{UserTokens: three})
	assert.Equal(t, codes.ResourceExhausted, status.Code(err), "3 + 3 tokens exceed a burst of 5")
	for i := range 2 {
		_, err = s.grpc.CreditSessionsGet(context.Background(), &creditv1.CreditSessionsGetRequest{UserToken: "user-sandbox-example"})
		require.NoError(t, err, "call %d of the 5", 4+i)
	}
	_, err = s.grpc.CreditSessionsGet(context.Background(), &creditv1.CreditSessionsGetRequest{UserToken: "user-sandbox-example"})
	assert.Equal(t, codes.ResourceExhausted, status.Code(err))
}

func TestBatchIsAuthorizedAsItsOwnMethod(t *testing.T) {
	p := newPKI(t)
	s := start(t, secureConfig(p, false))
	grpcAddr, rest := s.app.GRPCAddr().String(), "https://"+s.app.HTTPAddr().String()
	batch := &creditv1.BatchGetCreditSessionsRequest{UserTokens: []string{"user-sandbox-example"}}
	body := strings.NewReader(`{"user_tokens":["user-sandbox-example"]}`)

	// The underwriters' rule names CreditSessionsGet only: the batch is not theirs.
	underwriter, _ := p.grpcClient(t, grpcAddr, &p.underwriter)
	_, err := underwriter.BatchGetCreditSessions(context.Background(), batch)
	assert.Equal(t, codes.PermissionDenied, status.Code(err))
	resp, err := p.httpClient(t, &p.underwriter).Post(rest+"/credit/sessions/batch_get", "application/json", body)
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)

	// The operators' rule names the whole service.
	operator, _ := p.grpcClient(t, grpcAddr, &p.operator)
	got, err := operator.BatchGetCreditSessions(context.Background(), batch)
	require.NoError(t, err)
	assert.Len(t, got.GetResults(), 1)
}
