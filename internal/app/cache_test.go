package app_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/app"
	"github.com/creditsessions/creditsessions/server"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// cached is one CreditSessionsGet answer and what the cache said of it.
type cached struct {
	requestID string
	sessions  int
	age       string // "" when the answer did not come from the cache
	err       error
}

// getGRPC calls CreditSessionsGet over gRPC with the metadata pairs md.
func getGRPC(t *testing.T, s *service, token string, md ...string) cached {
	t.Helper()
	ctx := metadata.AppendToOutgoingContext(context.Background(), md...)
	var header metadata.MD
	resp, err := s.grpc.CreditSessionsGet(ctx, &creditv1.CreditSessionsGetRequest{UserToken: token}, grpc.Header(&header))
	if err != nil {
		return cached{err: err}
	}
	age := ""
	if v := header.Get("age"); len(v) > 0 {
		age = v[0]
	}
	assert.Equal(t, []string{resp.GetRequestId()}, header.Get(server.RequestIDHeader), "the request id header names the answer's")
	return cached{requestID: resp.GetRequestId(), sessions: len(resp.GetSessions()), age: age}
}

// getREST calls POST /credit/sessions/get with the header pairs h.
func getREST(t *testing.T, s *service, token string, h ...string) cached {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.rest+"/credit/sessions/get", strings.NewReader(`{"user_token":"`+token+`"}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(h); i += 2 {
		req.Header.Add(h[i], h[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var body struct {
		RequestID string            `json:"request_id"`
		Sessions  []json.RawMessage `json:"sessions"`
		ErrorCode string            `json:"error_code"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	if resp.StatusCode != http.StatusOK {
		return cached{err: status.Error(codes.Unknown, body.ErrorCode)}
	}
	assert.Equal(t, body.RequestID, resp.Header.Get("Plaid-Request-Id"))
	return cached{requestID: body.RequestID, sessions: len(body.Sessions), age: resp.Header.Get("Age")}
}

type getter func(t *testing.T, s *service, token string, md ...string) cached

var transports = []struct {
	name string
	get  getter
}{{"grpc", getGRPC}, {"rest", getREST}}

func TestCacheAnswersMaxAgeWithoutAskingPlaid(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			s := start(t, app.Config{Cache: app.CacheConfig{MaxAge: time.Minute}})
			emu := s.app.Emulator()
			const token = "user-sandbox-example#cache-hit"
			calls := emu.Calls()
			first := tr.get(t, s, token, "cache-control", "max-age=60")
			require.NoError(t, first.err)
			assert.Empty(t, first.age, "fetched now: no Age")
			require.Equal(t, calls+1, emu.Calls())

			again := tr.get(t, s, token, "Cache-Control", "max-age=60")
			require.NoError(t, again.err)
			assert.Equal(t, calls+1, emu.Calls(), "answered from the cache: no Plaid request")
			assert.Equal(t, "0", again.age)
			assert.Equal(t, first.requestID, again.requestID, "the request_id of the answer it came from")
			assert.Equal(t, first.sessions, again.sessions)

			// Without Cache-Control, exactly as without a cache: Plaid is asked.
			plain := tr.get(t, s, token)
			require.NoError(t, plain.err)
			assert.Equal(t, calls+2, emu.Calls())
			assert.Empty(t, plain.age)

			// no-cache asks Plaid and refreshes the entry.
			fresh := tr.get(t, s, token, "cache-control", "no-cache, max-age=60")
			require.NoError(t, fresh.err)
			assert.Equal(t, calls+3, emu.Calls())
			assert.Empty(t, fresh.age)
			assert.NotEqual(t, first.requestID, fresh.requestID)
			after := tr.get(t, s, token, "cache-control", "max-age=60")
			assert.Equal(t, fresh.requestID, after.requestID, "the entry no-cache refreshed")
			assert.Equal(t, calls+3, emu.Calls())

			// A malformed directive is ignored: the call goes to Plaid, and succeeds.
			odd := tr.get(t, s, token, "cache-control", "max-age=soon")
			require.NoError(t, odd.err)
			assert.Equal(t, calls+4, emu.Calls())

			// Errors are not cached.
			for range 2 {
				assert.Error(t, tr.get(t, s, "user-sandbox-fault-garbage", "cache-control", "max-age=60").err)
			}
		})
	}
}

func TestCacheOffIgnoresMaxAge(t *testing.T) {
	s := start(t, app.Config{})
	emu := s.app.Emulator()
	calls := emu.Calls()
	for range 2 {
		got := getGRPC(t, s, "user-sandbox-example", "cache-control", "max-age=60")
		require.NoError(t, got.err)
		assert.Empty(t, got.age)
	}
	assert.Equal(t, calls+2, emu.Calls())
}

func TestCacheNeverServesAnswersFetchedWithOtherKeys(t *testing.T) {
	s := start(t, app.Config{Plaid: app.PlaidConfig{CredentialsMode: server.CallerKeys}, Cache: app.CacheConfig{MaxAge: time.Minute}})
	emu := s.app.Emulator()
	other := "another-secret-of-the-same-client"
	emu.AcceptSecrets(emu.Secret(), other)
	keys := func(secret string) []string {
		return []string{"plaid-client-id", emu.ClientID(), "plaid-secret", secret, "cache-control", "max-age=60"}
	}
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			token := "user-sandbox-example#keys-" + tr.name
			require.NoError(t, tr.get(t, s, token, keys(emu.Secret())...).err)
			hit := tr.get(t, s, token, keys(emu.Secret())...)
			require.NoError(t, hit.err)
			require.NotEmpty(t, hit.age, "same keys: a hit")

			// Other (valid) keys: their own Plaid call.
			calls := emu.Calls()
			miss := tr.get(t, s, token, keys(other)...)
			require.NoError(t, miss.err)
			assert.Empty(t, miss.age)
			assert.Equal(t, calls+1, emu.Calls())

			// Wrong keys: Plaid refuses them, the cache never answers for them.
			wrong := tr.get(t, s, token, keys("not-the-secret")...)
			assert.Error(t, wrong.err)
		})
	}
}

func TestCacheRefreshedByWatchesAndEvictedByWebhooks(t *testing.T) {
	s := start(t, app.Config{WebhookAddr: "127.0.0.1:0", Cache: app.CacheConfig{MaxAge: time.Minute}})
	emu := s.app.Emulator()
	const token = "user-sandbox-example#watched"
	userID := emu.UserID(token)

	// A plain get with the user's user_id fills the cache.
	first := getGRPC(t, s, token, "cache-control", "max-age=60", "plaid-user-id", userID)
	require.NoError(t, first.err)
	require.Equal(t, 2, first.sessions)

	// A watch's snapshots refresh it: its first fetch is the newest answer.
	w := watchGRPC(t, s, &creditv1.WatchCreditSessionsRequest{UserToken: token, UserId: &userID})
	require.Equal(t, "INITIAL", w.next(t).reason)
	calls := emu.Calls()
	refreshed := getGRPC(t, s, token, "cache-control", "max-age=60")
	require.NoError(t, refreshed.err)
	assert.NotEmpty(t, refreshed.age)
	assert.NotEqual(t, first.requestID, refreshed.requestID, "the watch's answer")
	assert.Equal(t, calls, emu.Calls())

	// A webhook evicts the user's entry, and the watch's fetch on it puts the new
	// sessions in the cache: the next max-age read has them without asking Plaid.
	_, err := emu.AddSession(token)
	require.NoError(t, err)
	url := "http://" + s.app.WebhookAddr().String() + "/webhooks/plaid"
	require.NoError(t, emu.FireWebhook(context.Background(), url, token, "INCOME", "BANK_INCOME_COMPLETE"))
	ev := w.next(t)
	require.Equal(t, "WEBHOOK", ev.reason)
	calls = emu.Calls()
	after := getGRPC(t, s, token, "cache-control", "max-age=60")
	require.NoError(t, after.err)
	assert.Equal(t, 3, after.sessions)
	assert.NotEmpty(t, after.age)
	assert.Equal(t, calls, emu.Calls())
	assert.Equal(t, 1.0, s.scrape(t)["creditsessions_cache_evictions_total"]["cause=webhook"])
}
