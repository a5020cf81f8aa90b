package app_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/app"
	"github.com/creditsessions/creditsessions/internal/emulator"
	"github.com/creditsessions/creditsessions/server"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// watchEvent is one thing a watch's client saw: a message, or the end of the stream.
type watchEvent struct {
	reason    string // INITIAL, WEBHOOK, POLL; "" for the end
	sessions  int
	requestID string

	end        bool
	code       codes.Code     // gRPC: the status; REST: OK for a clean end, else Unknown
	retryInfo  bool           // gRPC: the status carried a RetryInfo
	errorLine  map[string]any // REST: the final error line's error
	httpStatus int            // REST: the response's status
}

// watchClient is a running watch, gRPC or REST, its events in a channel.
type watchClient struct {
	events chan watchEvent
	cancel context.CancelFunc
}

// next waits up to 5 s for the next event.
func (w *watchClient) next(t *testing.T) watchEvent {
	t.Helper()
	select {
	case ev := <-w.events:
		return ev
	case <-time.After(5 * time.Second):
		require.FailNow(t, "no watch event within 5s")
		return watchEvent{}
	}
}

// none checks that nothing arrived.
func (w *watchClient) none(t *testing.T) {
	t.Helper()
	select {
	case ev := <-w.events:
		require.FailNow(t, "unexpected watch event", "%+v", ev)
	default:
	}
}

func watchGRPC(t *testing.T, s *service, req *creditv1.WatchCreditSessionsRequest) *watchClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := s.grpc.WatchCreditSessions(ctx, req)
	require.NoError(t, err)
	w := &watchClient{events: make(chan watchEvent, 64), cancel: cancel}
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				ev := watchEvent{end: true, code: status.Code(err)}
				if errors.Is(err, io.EOF) {
					ev.code = codes.OK
				}
				for _, d := range status.Convert(err).Details() {
					if _, ok := d.(*errdetails.RetryInfo); ok {
						ev.retryInfo = true
					}
				}
				w.events <- ev
				return
			}
			w.events <- watchEvent{
				reason:    strings.TrimPrefix(m.GetReason().String(), "WATCH_CREDIT_SESSIONS_REASON_"),
				sessions:  len(m.GetResponse().GetSessions()),
				requestID: m.GetResponse().GetRequestId(),
			}
		}
	}()
	return w
}

func watchREST(t *testing.T, s *service, body string) (*watchClient, *http.Response) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.rest+"/credit/sessions/watch", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { _ = resp.Body.Close() })
	w := &watchClient{events: make(chan watchEvent, 64), cancel: cancel}
	go func() {
		if resp.StatusCode != http.StatusOK {
			var e map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&e)
			w.events <- watchEvent{end: true, code: codes.Unknown, errorLine: e, httpStatus: resp.StatusCode}
			return
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 16<<20)
		for sc.Scan() {
			var line struct {
				Reason   string `json:"reason"`
				Response struct {
					RequestID string           `json:"request_id"`
					Sessions  []map[string]any `json:"sessions"`
				} `json:"response"`
				Error map[string]any `json:"error"`
			}
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
				w.events <- watchEvent{end: true, code: codes.DataLoss}
				return
			}
			if line.Error != nil {
				w.events <- watchEvent{end: true, code: codes.Unknown, errorLine: line.Error, httpStatus: resp.StatusCode}
				// The error line is the last.
				assert.False(t, sc.Scan(), "a line after the error line")
				return
			}
			w.events <- watchEvent{reason: line.Reason, sessions: len(line.Response.Sessions), requestID: line.Response.RequestID}
		}
		code := codes.OK
		if sc.Err() != nil {
			code = codes.Canceled
		}
		w.events <- watchEvent{end: true, code: code, httpStatus: resp.StatusCode}
	}()
	return w, resp
}

// watchBoth starts the same watch over gRPC and REST.
func watchBoth(t *testing.T, s *service, token string) map[string]*watchClient {
	t.Helper()
	g := watchGRPC(t, s, &creditv1.WatchCreditSessionsRequest{UserToken: token})
	r, _ := watchREST(t, s, `{"user_token":"`+token+`"}`)
	return map[string]*watchClient{"grpc": g, "rest": r}
}

func fastWatch(cfg app.Config) app.Config {
	if cfg.Watch.PollInterval == 0 {
		cfg.Watch.PollInterval = 20 * time.Millisecond
	}
	return cfg
}

func TestWatchSendsTheCurrentSessionsFirst(t *testing.T) {
	s := start(t, app.Config{})
	g := watchGRPC(t, s, &creditv1.WatchCreditSessionsRequest{UserToken: "user-sandbox-example"})
	ev := g.next(t)
	assert.Equal(t, "INITIAL", ev.reason)
	assert.Equal(t, 2, ev.sessions)
	assert.NotEmpty(t, ev.requestID)

	r, resp := watchREST(t, s, `{"user_token":"user-sandbox-example"}`)
	assert.Equal(t, "application/x-ndjson", resp.Header.Get("Content-Type"))
	assert.NotEmpty(t, resp.Header.Get("Plaid-Request-Id"))
	ev = r.next(t)
	assert.Equal(t, "INITIAL", ev.reason)
	assert.Equal(t, 2, ev.sessions)
	assert.Equal(t, resp.Header.Get("Plaid-Request-Id"), ev.requestID)

	// Counted once sent, which may be a moment after the client has it.
	require.Eventually(t, func() bool {
		return s.scrape(t)["creditsessions_watch_messages_total"]["reason=initial"] == 2
	}, 5*time.Second, 5*time.Millisecond)
	metrics := s.scrape(t)
	assert.Equal(t, 2.0, metrics["creditsessions_watches"][""])
	// The stream interceptors ran, for both transports.
	assert.Equal(t, 2.0, metrics["grpc_server_started_total"]["grpc_method=WatchCreditSessions,grpc_service=plaid.credit.v1.CreditService,grpc_type=server_stream"])
}

func TestWatchSendsNothingWhenPollsFindNothingNew(t *testing.T) {
	s := start(t, fastWatch(app.Config{}))
	watches := watchBoth(t, s, "user-sandbox-full")
	for _, w := range watches {
		require.Equal(t, "INITIAL", w.next(t).reason)
	}
	// Both watches share one user, so one poll: wait for several to have happened.
	calls := s.app.Emulator().Calls()
	require.Eventually(t, func() bool { return s.app.Emulator().Calls() >= calls+5 },
		5*time.Second, 5*time.Millisecond)
	for name, w := range watches {
		t.Run(name, func(t *testing.T) { w.none(t) })
	}
	assert.Equal(t, 1, s.app.Hub().Users(), "one shared poll for both watches")
}

func TestWatchEndsWithTheCallersError(t *testing.T) {
	s := start(t, fastWatch(app.Config{}))
	t.Run("at the start", func(t *testing.T) {
		g := watchGRPC(t, s, &creditv1.WatchCreditSessionsRequest{UserToken: "nobody"})
		ev := g.next(t)
		assert.True(t, ev.end)
		assert.Equal(t, codes.NotFound, ev.code)

		r, resp := watchREST(t, s, `{"user_token":"nobody"}`)
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
		ev = r.next(t)
		assert.Equal(t, "INVALID_USER_TOKEN", ev.errorLine["error_code"])

		r, resp = watchREST(t, s, `{"user_token":"x","color":"blue"}`)
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
		assert.Equal(t, "UNKNOWN_FIELDS", r.next(t).errorLine["error_code"])
		r, resp = watchREST(t, s, `{}`)
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
		assert.Equal(t, "MISSING_FIELDS", r.next(t).errorLine["error_code"])
		get, body := send(t, http.MethodGet, s.rest+"/credit/sessions/watch", "", "", nil)
		assert.Equal(t, http.StatusBadRequest, get.StatusCode)
		assert.Equal(t, "POST", get.Header.Get("Allow"))
		assert.Contains(t, string(body), `"error_code":"NOT_FOUND"`)
		xml, body := send(t, http.MethodPost, s.rest+"/credit/sessions/watch", "text/xml", `<user_token/>`, nil)
		assert.Equal(t, http.StatusBadRequest, xml.StatusCode)
		assert.Contains(t, string(body), `"error_code":"INVALID_BODY"`)
	})
	t.Run("while watching", func(t *testing.T) {
		watches := watchBoth(t, s, "user-sandbox-example#caller-error")
		for _, w := range watches {
			require.Equal(t, "INITIAL", w.next(t).reason)
		}
		// Plaid now says the user is gone: the next poll ends both watches.
		s.app.Emulator().Script(plaidFault(t, "INVALID_INPUT", "INVALID_USER_TOKEN", 0))
		ev := watches["grpc"].next(t)
		assert.True(t, ev.end)
		assert.Equal(t, codes.NotFound, ev.code)
		ev = watches["rest"].next(t)
		assert.True(t, ev.end)
		assert.Equal(t, "INVALID_USER_TOKEN", ev.errorLine["error_code"], "%+v", ev)
	})
}

func TestWatchRidesOutTransientFailuresUpToABound(t *testing.T) {
	cfg := fastWatch(app.Config{})
	cfg.Resilience.MaxAttempts = 1
	cfg.Watch.FailAfter = 300 * time.Millisecond
	s := start(t, cfg)
	watches := watchBoth(t, s, "user-sandbox-example#transient")
	for _, w := range watches {
		require.Equal(t, "INITIAL", w.next(t).reason)
	}
	// Two polls fail, the next ones work: nothing to tell.
	s.app.Emulator().Script(apiError(t), apiError(t))
	calls := s.app.Emulator().Calls()
	require.Eventually(t, func() bool { return s.app.Emulator().Calls() >= calls+4 }, 5*time.Second, 5*time.Millisecond)
	for _, w := range watches {
		w.none(t)
	}
	// Plaid keeps failing: past FailAfter, the watches end with Plaid's status.
	s.app.Emulator().SetFaults(emulator.Faults{ErrorRate: 1})
	ev := watches["grpc"].next(t)
	assert.True(t, ev.end)
	assert.Equal(t, codes.Unavailable, ev.code)
	ev = watches["rest"].next(t)
	assert.Equal(t, "API_ERROR", ev.errorLine["error_type"])
}

func TestWatchesDrainOnShutdown(t *testing.T) {
	s := start(t, app.Config{})
	watches := watchBoth(t, s, "user-sandbox-example")
	for _, w := range watches {
		require.Equal(t, "INITIAL", w.next(t).reason)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- s.stopFn() }()
	ev := watches["grpc"].next(t)
	assert.True(t, ev.end)
	assert.Equal(t, codes.Unavailable, ev.code)
	assert.True(t, ev.retryInfo, "a RetryInfo tells the client to reconnect")
	ev = watches["rest"].next(t)
	assert.True(t, ev.end)
	assert.Equal(t, "API_ERROR", ev.errorLine["error_type"])
	select {
	case err := <-stopped:
		assert.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("shutdown did not finish")
	}
}

func TestWatchEndsAfterItsMaximumDuration(t *testing.T) {
	cfg := app.Config{}
	cfg.Watch.MaxDuration = 200 * time.Millisecond
	s := start(t, cfg)
	started := time.Now()
	watches := watchBoth(t, s, "user-sandbox-example")
	for name, w := range watches {
		t.Run(name, func(t *testing.T) {
			require.Equal(t, "INITIAL", w.next(t).reason)
			ev := w.next(t)
			assert.True(t, ev.end)
			assert.Equal(t, codes.OK, ev.code, "a clean end: reconnect")
			assert.Nil(t, ev.errorLine)
		})
	}
	assert.GreaterOrEqual(t, time.Since(started), 180*time.Millisecond)
	require.Eventually(t, func() bool { return s.app.Hub().Watches() == 0 }, 5*time.Second, 5*time.Millisecond)
}

func TestWatchPushesAChangeWithinASecondOfAWebhook(t *testing.T) {
	cfg := app.Config{WebhookAddr: "127.0.0.1:0"}
	cfg.Watch.PollInterval = time.Hour // only the webhook can tell
	s := start(t, cfg)
	emu := s.app.Emulator()
	const token = "user-sandbox-example#webhook"
	userID := emu.UserID(token)
	g := watchGRPC(t, s, &creditv1.WatchCreditSessionsRequest{UserToken: token, UserId: &userID})
	r, _ := watchREST(t, s, `{"user_token":"`+token+`","user_id":"`+userID+`"}`)
	for _, w := range []*watchClient{g, r} {
		ev := w.next(t)
		require.Equal(t, "INITIAL", ev.reason)
		require.Equal(t, 2, ev.sessions)
	}

	_, err := emu.AddSession(token)
	require.NoError(t, err)
	fired := time.Now()
	url := "http://" + s.app.WebhookAddr().String() + "/webhooks/plaid"
	require.NoError(t, emu.FireWebhook(context.Background(), url, token, "INCOME", "BANK_INCOME_COMPLETE"))
	for name, w := range map[string]*watchClient{"grpc": g, "rest": r} {
		ev := w.next(t)
		assert.Equal(t, "WEBHOOK", ev.reason, name)
		assert.Equal(t, 3, ev.sessions, name)
		assert.Less(t, time.Since(fired), time.Second, name)
	}
	// A webhook that concerns nothing watched changes nothing; a verified one about the
	// user that finds nothing new sends nothing.
	calls := emu.Calls()
	require.NoError(t, emu.FireWebhook(context.Background(), url, token, "LINK", "SESSION_FINISHED"))
	require.Eventually(t, func() bool { return emu.Calls() > calls }, 5*time.Second, 5*time.Millisecond)
	g.none(t)
	r.none(t)
	// Counted once sent, which may be a moment after the client has it.
	require.Eventually(t, func() bool {
		return s.scrape(t)["creditsessions_watch_messages_total"]["reason=webhook"] == 2
	}, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, 2.0, s.scrape(t)["creditsessions_webhooks_total"]["result=accepted"])

	// The webhook listener serves that route only.
	resp, err := http.Get("http://" + s.app.WebhookAddr().String() + "/metrics")
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
}

func TestWatchPushesAChangeFoundByAPoll(t *testing.T) {
	s := start(t, fastWatch(app.Config{}))
	const token = "user-sandbox-example#poll"
	watches := watchBoth(t, s, token)
	for _, w := range watches {
		require.Equal(t, "INITIAL", w.next(t).reason)
	}
	_, err := s.app.Emulator().AddSession(token)
	require.NoError(t, err)
	for name, w := range watches {
		ev := w.next(t)
		assert.Equal(t, "POLL", ev.reason, name)
		assert.Equal(t, 3, ev.sessions, name)
	}
	for _, w := range watches {
		w.none(t)
	}
}

func TestWatchLogsNeverHoldTokensOrSecrets(t *testing.T) {
	s := start(t, app.Config{Plaid: app.PlaidConfig{CredentialsMode: server.CallerKeys}})
	id, secret := s.app.Emulator().ClientID(), s.app.Emulator().Secret()
	const token = "user-sandbox-example#watch-logs"
	ctx := metadata.AppendToOutgoingContext(context.Background(), "plaid-client-id", id, "plaid-secret", secret)
	stream, err := s.grpc.WatchCreditSessions(ctx, &creditv1.WatchCreditSessionsRequest{UserToken: token})
	require.NoError(t, err)
	first, err := stream.Recv()
	require.NoError(t, err)
	assert.Len(t, first.GetResponse().GetSessions(), 2)
	r, resp := watchREST(t, s, `{"user_token":"`+token+`","client_id":"`+id+`","secret":"`+secret+`"}`)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "INITIAL", r.next(t).reason)
	_, resp = watchREST(t, s, `{"user_token":"`+token+`"}`)
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode, "caller keys are required in caller-keys mode")
	require.NoError(t, s.stopFn())

	logs := s.logs.String()
	for _, leak := range []string{secret, token} {
		assert.NotContains(t, logs, leak)
	}
	assert.Contains(t, logs, `"method":"/plaid.credit.v1.CreditService/WatchCreditSessions","transport":"grpc"`)
	assert.Contains(t, logs, `"method":"/plaid.credit.v1.CreditService/WatchCreditSessions","transport":"rest"`)
	assert.Contains(t, logs, `"user_token_sha256":"`+server.TokenHash(token)+`"`)
}
