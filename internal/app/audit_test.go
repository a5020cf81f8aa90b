package app_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/app"
	"github.com/creditsessions/creditsessions/internal/audit"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	grpcaudit "google.golang.org/grpc/authz/audit"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// a59Recorder is an operator's own A59 logger, registered in grpc-go's registry.
type a59Recorder struct {
	mu     sync.Mutex
	events []grpcaudit.Event
}

func (r *a59Recorder) Name() string { return "app_test_recorder" }
func (r *a59Recorder) ParseLoggerConfig(json.RawMessage) (grpcaudit.LoggerConfig, error) {
	return nil, nil
}
func (r *a59Recorder) Build(grpcaudit.LoggerConfig) grpcaudit.Logger { return r }
func (r *a59Recorder) Log(e *grpcaudit.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, *e)
}

func (r *a59Recorder) take() []grpcaudit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.events
	r.events = nil
	return e
}

var a59 = &a59Recorder{}

func init() { grpcaudit.RegisterLoggerBuilder(a59) }

// trail reads an audit file as the auditor would, record by record.
type trail struct {
	t    *testing.T
	a    *app.App
	path string
	seen int
}

// next flushes the trail and returns the records written since the last call.
func (tr *trail) next() []audit.Record {
	tr.t.Helper()
	require.NoError(tr.t, tr.a.Audit().Flush())
	all := readTrail(tr.t, tr.path)
	out := all[tr.seen:]
	tr.seen = len(all)
	return out
}

func readTrail(t *testing.T, path string) []audit.Record {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var out []audit.Record
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r audit.Record
		require.NoError(t, json.Unmarshal(sc.Bytes(), &r), "%s", sc.Text())
		out = append(out, r)
	}
	require.NoError(t, sc.Err())
	return out
}

func verifyTrail(t *testing.T, path string) audit.Result {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	res, err := audit.Verify(f, audit.GenesisPrev)
	require.NoError(t, err)
	assert.Empty(t, res.Breaks, "the chain holds")
	return res
}

func tokenSHA(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

const (
	getMethod   = "/plaid.credit.v1.CreditService/CreditSessionsGet"
	watchMethod = "/plaid.credit.v1.CreditService/WatchCreditSessions"
	batchMethod = "/plaid.credit.v1.CreditService/BatchGetCreditSessions"
)

// Every read of a user's data and every refusal, over gRPC and REST, leaves exactly one
// record that says who, how, what and with what outcome; and the policy's A59 loggers
// hear the same calls as grpc-go's authz would tell them.
func TestEveryReadAndRefusalLeavesOneRecord(t *testing.T) {
	p := newPKI(t)
	p.policyFile = p.write(t, "policy.json", []byte(strings.TrimSuffix(strings.TrimSpace(testPolicy), "}")+
		`, "audit_logging_options": {"audit_condition": "ON_DENY_AND_ALLOW", "audit_loggers": [{"name": "app_test_recorder"}]}}`))
	cfg := secureConfig(p, true)
	cfg.Audit = audit.Options{Path: filepath.Join(t.TempDir(), "audit.log"), Required: true}
	s := start(t, cfg)
	tr := &trail{t: t, a: s.app, path: cfg.Audit.Path}
	grpcAddr, rest := s.app.GRPCAddr().String(), "https://"+s.app.HTTPAddr().String()
	clientID := s.app.Emulator().ClientID()
	ctx := context.Background()
	a59.take()

	one := func(t *testing.T) audit.Record {
		t.Helper()
		recs := tr.next()
		require.Len(t, recs, 1, "exactly one record")
		r := recs[0]
		assert.Equal(t, audit.SchemaVersion, r.V)
		assert.NotEmpty(t, r.Time)
		return r
	}
	want := func(caller, transport, method, code string) audit.Record {
		return audit.Record{Caller: caller, Transport: transport, Method: method, Code: code}
	}
	same := func(t *testing.T, w, r audit.Record) {
		t.Helper()
		assert.Equal(t, w, audit.Record{Caller: r.Caller, Transport: r.Transport, Method: r.Method, Code: r.Code})
	}

	t.Run("grpc: allowed get", func(t *testing.T) {
		c, _ := p.grpcClient(t, grpcAddr, &p.underwriter)
		resp, err := c.CreditSessionsGet(ctx, example)
		require.NoError(t, err)
		r := one(t)
		same(t, want(underwriterID, "grpc", getMethod, "OK"), r)
		assert.Equal(t, tokenSHA(example.GetUserToken()), r.UserTokenSHA256)
		assert.Equal(t, clientID, r.PlaidClientID)
		assert.Equal(t, resp.GetRequestId(), r.PlaidRequestID)
		assert.Equal(t, len(resp.GetSessions()), r.Sessions)
		assert.Empty(t, r.Refusal)
		assert.Equal(t, []grpcaudit.Event{{FullMethodName: getMethod, Principal: underwriterID, PolicyName: "creditsessions",
			MatchedRule: "creditsessions_underwriters", Authorized: true}}, a59.take())
	})
	t.Run("grpc: denied get", func(t *testing.T) {
		c, _ := p.grpcClient(t, grpcAddr, &p.intruder)
		_, err := c.CreditSessionsGet(ctx, example)
		require.Equal(t, codes.PermissionDenied, status.Code(err))
		r := one(t)
		same(t, want(intruderID, "grpc", getMethod, "PermissionDenied"), r)
		assert.Equal(t, audit.RefusedPermissionDenied, r.Refusal)
		assert.Equal(t, "deny_rules/no-frontend", r.AuthzRule)
		assert.Empty(t, r.UserTokenSHA256, "a refused call reads nobody's data")
		assert.Zero(t, r.Sessions)
		assert.Equal(t, []grpcaudit.Event{{FullMethodName: getMethod, Principal: intruderID, PolicyName: "creditsessions",
			MatchedRule: "creditsessions_no-frontend", Authorized: false}}, a59.take())
	})
	t.Run("grpc: watch", func(t *testing.T) {
		c, _ := p.grpcClient(t, grpcAddr, &p.operator)
		wctx, cancel := context.WithCancel(ctx)
		stream, err := c.WatchCreditSessions(wctx, &creditv1.WatchCreditSessionsRequest{UserToken: example.GetUserToken()})
		require.NoError(t, err)
		first, err := stream.Recv()
		require.NoError(t, err)
		cancel()
		_, err = stream.Recv()
		require.Equal(t, codes.Canceled, status.Code(err))
		var recs []audit.Record
		require.Eventually(t, func() bool { recs = append(recs, tr.next()...); return len(recs) > 0 }, 10*time.Second, time.Millisecond,
			"the watch's record, once the server sees it end")
		require.Len(t, recs, 1)
		r := recs[0]
		same(t, want(operatorID, "grpc", watchMethod, "Canceled"), r)
		require.NotNil(t, r.Messages)
		assert.Equal(t, 1, *r.Messages)
		assert.Equal(t, len(first.GetResponse().GetSessions()), r.Sessions)
		assert.Equal(t, first.GetResponse().GetRequestId(), r.PlaidRequestID)
		assert.Equal(t, tokenSHA(example.GetUserToken()), r.UserTokenSHA256)
		assert.NotEmpty(t, r.WatchStart)
		assert.NotEmpty(t, r.WatchEnd)
		assert.LessOrEqual(t, r.WatchStart, r.WatchEnd)
		a59.take()
	})
	t.Run("rest: watch", func(t *testing.T) {
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		req, err := http.NewRequestWithContext(wctx, http.MethodPost, rest+"/credit/sessions/watch",
			strings.NewReader(`{"user_token":"user-sandbox-example#rest-watch"}`))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		resp, err := p.httpClient(t, &p.operator).Do(req)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		_, err = bufio.NewReader(resp.Body).ReadBytes('\n')
		require.NoError(t, err)
		cancel()
		_ = resp.Body.Close()
		var recs []audit.Record
		require.Eventually(t, func() bool { recs = append(recs, tr.next()...); return len(recs) > 0 }, 10*time.Second, time.Millisecond,
			"the watch's record, once the server sees it end")
		require.Len(t, recs, 1)
		r := recs[0]
		assert.Equal(t, want(operatorID, "rest", watchMethod, r.Code), audit.Record{Caller: r.Caller, Transport: r.Transport, Method: r.Method, Code: r.Code})
		assert.Contains(t, []string{"Canceled", "Unavailable"}, r.Code, "the caller went away")
		require.NotNil(t, r.Messages)
		assert.Equal(t, 1, *r.Messages)
		assert.Equal(t, tokenSHA("user-sandbox-example#rest-watch"), r.UserTokenSHA256)
		assert.Positive(t, r.Sessions)
		a59.take()
	})
	t.Run("rest: allowed get", func(t *testing.T) {
		resp, body, err := restCall(p.httpClient(t, &p.underwriter), rest, "user-sandbox-example#rest", nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
		r := one(t)
		same(t, want(underwriterID, "rest", getMethod, "OK"), r)
		assert.Equal(t, tokenSHA("user-sandbox-example#rest"), r.UserTokenSHA256)
		assert.Equal(t, resp.Header.Get("Plaid-Request-Id"), r.PlaidRequestID)
		assert.Positive(t, r.Sessions)
		assert.Equal(t, []grpcaudit.Event{{FullMethodName: getMethod, Principal: underwriterID, PolicyName: "creditsessions",
			MatchedRule: "creditsessions_underwriters", Authorized: true}}, a59.take())
	})
	t.Run("rest: denied get", func(t *testing.T) {
		resp, _, err := restCall(p.httpClient(t, &p.dnsOnly), rest, "user-sandbox-example", nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusForbidden, resp.StatusCode)
		r := one(t)
		same(t, want("batch.billing.svc", "rest", getMethod, "PermissionDenied"), r)
		assert.Equal(t, audit.RefusedPermissionDenied, r.Refusal)
		assert.Empty(t, r.AuthzRule, "no allow rule matched")
		assert.Equal(t, []grpcaudit.Event{{FullMethodName: getMethod, PolicyName: "creditsessions"}}, a59.take(),
			"no SPIFFE ID in a DNS-only certificate: no principal, as in grpc-go")
	})
	// A batch reads many users: one record per distinct user, each with its own outcome,
	// so "who read this user?" finds batch reads as it finds single ones.
	batchTokens := []string{"user-sandbox-example#batch", "user-sandbox-empty#batch", "user-sandbox-example#batch", "nobody"}
	checkBatch := func(t *testing.T, transport string, recs []audit.Record) {
		t.Helper()
		require.Len(t, recs, 3, "one record per distinct user")
		byUser := map[string]audit.Record{}
		for _, r := range recs {
			same(t, want(operatorID, transport, batchMethod, r.Code), r)
			assert.Equal(t, clientID, r.PlaidClientID)
			byUser[r.UserTokenSHA256] = r
		}
		ok := byUser[tokenSHA(batchTokens[0])]
		assert.Equal(t, "OK", ok.Code)
		assert.Equal(t, 2, ok.Sessions)
		assert.NotEmpty(t, ok.PlaidRequestID)
		empty := byUser[tokenSHA(batchTokens[1])]
		assert.Equal(t, "OK", empty.Code)
		assert.Zero(t, empty.Sessions)
		unknown := byUser[tokenSHA("nobody")]
		assert.Equal(t, "NotFound", unknown.Code, "a token Plaid does not know")
		assert.Zero(t, unknown.Sessions)
	}
	t.Run("grpc: batch", func(t *testing.T) {
		c, _ := p.grpcClient(t, grpcAddr, &p.operator)
		resp, err := c.BatchGetCreditSessions(ctx, &creditv1.BatchGetCreditSessionsRequest{UserTokens: batchTokens})
		require.NoError(t, err)
		require.Len(t, resp.GetResults(), len(batchTokens))
		checkBatch(t, "grpc", tr.next())
		a59.take()
	})
	t.Run("rest: batch", func(t *testing.T) {
		body, err := json.Marshal(map[string]any{"user_tokens": batchTokens})
		require.NoError(t, err)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, rest+"/credit/sessions/batch_get", bytes.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		resp, err := p.httpClient(t, &p.operator).Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		checkBatch(t, "rest", tr.next())
		a59.take()
	})
	t.Run("grpc: a batch refused whole is one record", func(t *testing.T) {
		c, _ := p.grpcClient(t, grpcAddr, &p.operator)
		_, err := c.BatchGetCreditSessions(ctx, &creditv1.BatchGetCreditSessionsRequest{UserTokens: []string{"user-sandbox-example", ""}})
		require.Equal(t, codes.InvalidArgument, status.Code(err))
		r := one(t)
		same(t, want(operatorID, "grpc", batchMethod, "InvalidArgument"), r)
		assert.Empty(t, r.UserTokenSHA256, "nobody's data was read")
		a59.take()
	})
	good := token(t, p.rsaKey, "rsa-1", saClaims(saUnderwriter))
	forged := http.Header{
		"Grpc-Metadata-Authorization":           {"Bearer " + good},
		"Grpc-Metadata-X-Forwarded-Client-Cert": {"URI=" + underwriterID},
		"X-Forwarded-For":                       {"203.0.113.7"},
	}
	t.Run("rest: a forged identity is the intruder's own", func(t *testing.T) {
		resp, _, err := restCall(p.httpClient(t, &p.intruder), rest, "user-sandbox-example", forged)
		require.NoError(t, err)
		require.Equal(t, http.StatusForbidden, resp.StatusCode)
		r := one(t)
		same(t, want(intruderID, "rest", getMethod, "PermissionDenied"), r)
		assert.Equal(t, "deny_rules/no-frontend", r.AuthzRule)
		a59.take()
	})
	t.Run("rest: a forged identity without a credential is nobody", func(t *testing.T) {
		resp, _, err := restCall(p.httpClient(t, nil), rest, "user-sandbox-example", forged)
		require.NoError(t, err)
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
		r := one(t)
		same(t, want("", "rest", getMethod, "Unauthenticated"), r)
		assert.Equal(t, audit.RefusedUnauthenticated, r.Refusal)
		assert.Empty(t, a59.take(), "refused before the policy: no A59 event")
	})
	t.Run("rest: a token's caller", func(t *testing.T) {
		resp, body, err := restCall(p.httpClient(t, nil), rest, "user-sandbox-example", http.Header{"Authorization": {"Bearer " + good}})
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
		same(t, want(saUnderwriter, "rest", getMethod, "OK"), one(t))
		assert.Equal(t, []grpcaudit.Event{{FullMethodName: getMethod, Principal: saUnderwriter, PolicyName: "creditsessions",
			MatchedRule: "creditsessions_underwriters", Authorized: true}}, a59.take())
	})
	t.Run("health is not data access", func(t *testing.T) {
		_, conn := p.grpcClient(t, grpcAddr, &p.underwriter)
		_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		require.NoError(t, err)
		assert.Empty(t, tr.next())
	})
	data, err := os.ReadFile(cfg.Audit.Path)
	require.NoError(t, err)
	assert.NotContains(t, string(data), "user-sandbox-example", "user tokens never reach the trail")
	assert.NotContains(t, string(data), s.app.Emulator().Secret())
	verifyTrail(t, cfg.Audit.Path)
}

// metric reads one sample from the admin listener's /metrics.
func metric(t *testing.T, a *app.App, sample string) string {
	t.Helper()
	resp, err := http.Get("http://" + a.AdminAddr().String() + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			return v
		}
	}
	return ""
}

// A trail that cannot be written refuses calls for users' data with Unavailable when
// records are required (and writes their refusals once it can), and counts what it
// loses when they are not.
func TestAnUnwritableTrailFailsClosedOrCounts(t *testing.T) {
	ctx := context.Background()
	replaceByDirectory := func(t *testing.T, s *service, path string) func() {
		require.NoError(t, s.app.Audit().Flush())
		require.NoError(t, os.Rename(path, path+".moved"))
		require.NoError(t, os.Mkdir(path, 0o700))
		require.Error(t, s.app.Audit().Reopen(), "SIGHUP finds a directory")
		return func() {
			require.NoError(t, os.Remove(path))
			require.NoError(t, s.app.Audit().Reopen())
		}
	}
	t.Run("required: the file replaced by a directory", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "audit.log")
		s := start(t, app.Config{Audit: audit.Options{Path: path, Required: true}})
		_, err := s.grpc.CreditSessionsGet(ctx, example)
		require.NoError(t, err)
		restore := replaceByDirectory(t, s, path)

		_, err = s.grpc.CreditSessionsGet(ctx, example)
		assert.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
		resp, body := s.post(t, "/credit/sessions/get", `{"user_token":"user-sandbox-example"}`)
		assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "%s", body)
		assert.NotContains(t, string(body), "session_start_time", "no data without its record")
		assert.Equal(t, "2", metric(t, s.app, "creditsessions_audit_refused_calls_total"))
		assert.Equal(t, "1", metric(t, s.app, "creditsessions_audit_sink_failing"))

		restore()
		_, err = s.grpc.CreditSessionsGet(ctx, example)
		require.NoError(t, err, "serving again once the trail is")
		require.NoError(t, s.app.Audit().Flush())
		var refusals []string
		for _, r := range readTrail(t, path) {
			refusals = append(refusals, r.Transport+" "+r.Code+" "+r.Refusal)
		}
		assert.Equal(t, []string{"grpc Unavailable audit_unavailable", "rest Unavailable audit_unavailable", "grpc OK "}, refusals,
			"the refusals are on record once the trail is back")
	})
	t.Run("not required: served, and the loss counted", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "audit.log")
		s := start(t, app.Config{Audit: audit.Options{Path: path, Queue: 1}})
		replaceByDirectory(t, s, path)
		for range 3 {
			_, err := s.grpc.CreditSessionsGet(ctx, example)
			require.NoError(t, err)
		}
		assert.Equal(t, "2", metric(t, s.app, `creditsessions_audit_records_lost_total{reason="queue_full"}`),
			"one record held for the sink's return, two lost")
		assert.Equal(t, "1", metric(t, s.app, "creditsessions_audit_queue_records"))
	})
	t.Run("required: a full disk", func(t *testing.T) {
		dir := t.TempDir()
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", dir).CombinedOutput(); err != nil {
			t.Skipf("cannot mount a tiny tmpfs (needs root): %v: %s", err, out)
		}
		t.Cleanup(func() { _ = exec.Command("umount", dir).Run() })
		path := filepath.Join(dir, "audit.log")
		s := start(t, app.Config{Audit: audit.Options{Path: path, Required: true}})
		_, err := s.grpc.CreditSessionsGet(ctx, example)
		require.NoError(t, err)
		require.NoError(t, s.app.Audit().Flush())

		filler := filepath.Join(dir, "filler")
		f, err := os.Create(filler)
		require.NoError(t, err)
		_, err = f.Write(make([]byte, 1<<20))
		require.Error(t, err, "the disk is full")
		require.NoError(t, f.Close())

		// The file's last page has room for a few records yet; the call whose record
		// does not fit is served (the sink was fine when it ended), and its record held.
		calls := 1
		for {
			_, err = s.grpc.CreditSessionsGet(ctx, example)
			require.NoError(t, err)
			calls++
			if s.app.Audit().Flush() != nil {
				break
			}
			require.Less(t, calls, 100, "the disk never filled")
		}
		_, err = s.grpc.CreditSessionsGet(ctx, example)
		assert.Equal(t, codes.Unavailable, status.Code(err), "%v", err)

		require.NoError(t, os.Remove(filler))
		require.NoError(t, s.app.Audit().Flush())
		_, err = s.grpc.CreditSessionsGet(ctx, example)
		require.NoError(t, err)
		require.NoError(t, s.app.Audit().Flush())
		res := verifyTrail(t, path)
		assert.Equal(t, calls+2, res.Records, "every call on record, the refused one too, and no half-written batch in the chain")
	})
}

// Shutting down (what SIGTERM does: Run's context ends) under load, while the trail
// rotates by size and is moved away and re-opened as logrotate does, loses no record:
// every call whose answer a caller got is in the trail, once, and the files chain from
// the first to the last.
func TestShutdownUnderLoadLosesNoRecord(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	s := start(t, app.Config{Audit: audit.Options{Path: path, Required: true, MaxBytes: 16 << 10}})
	var mu sync.Mutex
	answered := map[string]bool{} // token hashes of calls answered OK
	enough, rotate := make(chan struct{}), make(chan struct{})
	var once, rotateOnce sync.Once
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				tok := fmt.Sprintf("user-sandbox-example#%d-%d", g, i)
				var err error
				if g%2 == 0 {
					_, err = s.grpc.CreditSessionsGet(context.Background(), &creditv1.CreditSessionsGetRequest{UserToken: tok})
				} else {
					var resp *http.Response
					resp, err = postQuietly(s.rest, tok)
					if err == nil && resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					return // the service is going away
				}
				mu.Lock()
				answered[tokenSHA(tok)] = true
				n := len(answered)
				mu.Unlock()
				if n == 150 {
					rotateOnce.Do(func() { close(rotate) })
				}
				if n == 400 {
					once.Do(func() { close(enough) })
				}
			}
		})
	}
	<-rotate
	require.NoError(t, os.Rename(path, filepath.Join(dir, "moved-by-logrotate")))
	require.NoError(t, s.app.Audit().Reopen())
	<-enough
	require.NoError(t, s.stopFn(), "SIGTERM: a clean shutdown")
	wg.Wait()

	files, err := filepath.Glob(filepath.Join(dir, "*"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(files), 2, "moved away by logrotate, and rotated by size")
	byFirst := map[string]string{}
	recorded := map[string]int{}
	for _, f := range files {
		res := func() audit.Result {
			fh, err := os.Open(f)
			require.NoError(t, err)
			defer fh.Close()
			res, err := audit.Verify(fh, "")
			require.NoError(t, err)
			assert.Empty(t, res.Breaks, f)
			return res
		}()
		if res.Records == 0 {
			continue
		}
		byFirst[res.First] = f
		for _, r := range readTrail(t, f) {
			if r.Code == "OK" {
				recorded[r.UserTokenSHA256]++
			}
		}
	}
	// The files chain: from the genesis record, each file's last links to the next's first.
	link, chained := audit.GenesisPrev, 0
	for {
		f, ok := byFirst[link]
		if !ok {
			break
		}
		chained++
		fh, err := os.Open(f)
		require.NoError(t, err)
		res, err := audit.Verify(fh, link)
		_ = fh.Close()
		require.NoError(t, err)
		link = res.Last
	}
	assert.Equal(t, len(byFirst), chained, "every file is a link of one chain")

	mu.Lock()
	defer mu.Unlock()
	require.GreaterOrEqual(t, len(answered), 400)
	for h := range answered {
		assert.Equal(t, 1, recorded[h], "an answered call has exactly one record")
	}
	t.Logf("%d calls answered, %d OK records, %d files", len(answered), len(recorded), len(files))
}

func postQuietly(base, token string) (*http.Response, error) {
	resp, err := http.Post(base+"/credit/sessions/get", "application/json", strings.NewReader(`{"user_token":"`+token+`"}`))
	if err != nil {
		return nil, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp, nil
}
