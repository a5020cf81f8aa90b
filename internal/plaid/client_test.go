package plaid_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/testing/protocmp"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/emulator"
	"github.com/creditsessions/creditsessions/internal/plaid"
)

// emulatorClient returns a client for emu with the credentials it accepts.
func emulatorClient(t *testing.T, emu *emulator.Server) *plaid.Client {
	t.Helper()
	return newClient(t, emu.URL, func(cfg *plaid.Config) {
		cfg.Credentials = plaid.Credentials{ClientID: emu.Emulator.ClientID(), Secret: emu.Emulator.Secret()}
	})
}

func TestCreditSessionsGetExample(t *testing.T) {
	emu := startEmulator(t, emulator.Config{})
	c := emulatorClient(t, emu)

	resp, err := c.CreditSessionsGet(t.Context(), plaid.Request{UserToken: "user-sandbox-example"})
	require.NoError(t, err)

	assert.NotEmpty(t, resp.GetRequestId())
	assert.EqualValues(t, 1, emu.Emulator.Calls())
	sessions := resp.GetSessions()
	require.Len(t, sessions, 2)

	first := sessions[0]
	assert.Equal(t, "356dbb28-7f98-44d1-8e6d-0cec580f3171", first.GetLinkSessionId())
	assert.Equal(t, time.Date(2022, 9, 30, 23, 40, 30, 946225000, time.UTC), first.GetSessionStartTime().AsTime())
	require.Len(t, first.GetResults().GetItemAddResults(), 1)
	assert.Equal(t, "ins_56", first.GetResults().GetItemAddResults()[0].GetInstitutionId())
	require.Len(t, first.GetResults().GetBankIncomeResults(), 1)
	assert.Equal(t, creditv1.CreditSessionBankIncomeStatus_CREDIT_SESSION_BANK_INCOME_STATUS_APPROVED,
		first.GetResults().GetBankIncomeResults()[0].GetStatus())

	second := sessions[1]
	assert.Equal(t, "f742cae8-31e4-49cc-a621-6cafbdb26fb9", second.GetLinkSessionId())
	require.Len(t, second.GetResults().GetPayrollIncomeResults(), 1)
	payroll := second.GetResults().GetPayrollIncomeResults()[0]
	assert.EqualValues(t, 2, payroll.GetNumPaystubsRetrieved())
	assert.EqualValues(t, 1, payroll.GetNumW2SRetrieved())
}

// Every success user of the emulator, including the ones with fields and enum values
// this client does not know, decodes into a response.
func TestCreditSessionsGetEmulatorFixtures(t *testing.T) {
	emu := startEmulator(t, emulator.Config{})
	c := emulatorClient(t, emu)
	for _, f := range emulator.Fixtures() {
		t.Run(f.Token, func(t *testing.T) {
			resp, err := c.CreditSessionsGet(t.Context(), plaid.Request{UserToken: f.Token})
			require.NoError(t, err)
			assert.NotEmpty(t, resp.GetRequestId())
		})
	}
}

// sentRequest is what a recording server saw of one request.
type sentRequest struct {
	Method     string
	RequestURI string
	Header     http.Header
	Body       []byte
}

// recordRequests serves a recorder that answers every request with an empty success and
// reports what it received.
func recordRequests(t *testing.T) (baseURL string, received <-chan sentRequest) {
	t.Helper()
	reqs := make(chan sentRequest, 10)
	ok := reply(http.StatusOK, "application/json", `{"request_id":"recorded","sessions":[]}`)
	baseURL = serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		assert.NoError(t, err)
		reqs <- sentRequest{Method: r.Method, RequestURI: r.RequestURI, Header: r.Header.Clone(), Body: body}
		ok(w, r)
	}))
	return baseURL, reqs
}

func TestCreditSessionsGetSends(t *testing.T) {
	other := plaid.Credentials{ClientID: "per-call-client-id", Secret: "per-call-secret"}
	tests := []struct {
		name          string
		basePath      string // appended to the server's URL to make the base URL
		clientCreds   plaid.Credentials
		callCreds     plaid.Credentials
		userAgent     string
		wantURI       string
		wantCreds     plaid.Credentials
		wantUserAgent string
	}{
		{name: "bare host", wantURI: "/credit/sessions/get",
			clientCreds: testCredentials, wantCreds: testCredentials, wantUserAgent: "creditsessions"},
		{name: "bare host with a trailing slash", basePath: "/", wantURI: "/credit/sessions/get",
			clientCreds: testCredentials, wantCreds: testCredentials, wantUserAgent: "creditsessions"},
		{name: "path prefix", basePath: "/plaid", wantURI: "/plaid/credit/sessions/get",
			clientCreds: testCredentials, wantCreds: testCredentials, wantUserAgent: "creditsessions"},
		{name: "path prefix with a trailing slash", basePath: "/plaid/", wantURI: "/plaid/credit/sessions/get",
			clientCreds: testCredentials, wantCreds: testCredentials, wantUserAgent: "creditsessions"},
		{name: "custom user agent", wantURI: "/credit/sessions/get", userAgent: "acme-lending/1.2",
			clientCreds: testCredentials, wantCreds: testCredentials, wantUserAgent: "acme-lending/1.2"},
		{name: "per-call credentials override the client's", wantURI: "/credit/sessions/get",
			clientCreds: testCredentials, callCreds: other, wantCreds: other, wantUserAgent: "creditsessions"},
		{name: "per-call credentials on a client without any", wantURI: "/credit/sessions/get",
			callCreds: other, wantCreds: other, wantUserAgent: "creditsessions"},
		{name: "half per-call credentials (client id) are ignored", wantURI: "/credit/sessions/get",
			clientCreds: testCredentials, callCreds: plaid.Credentials{ClientID: other.ClientID},
			wantCreds: testCredentials, wantUserAgent: "creditsessions"},
		{name: "half per-call credentials (secret) are ignored", wantURI: "/credit/sessions/get",
			clientCreds: testCredentials, callCreds: plaid.Credentials{Secret: other.Secret},
			wantCreds: testCredentials, wantUserAgent: "creditsessions"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			baseURL, received := recordRequests(t)
			c := newClient(t, baseURL+tt.basePath, func(cfg *plaid.Config) {
				cfg.Credentials = tt.clientCreds
				cfg.UserAgent = tt.userAgent
			})

			resp, err := c.CreditSessionsGet(t.Context(), plaid.Request{UserToken: testUserToken, Credentials: tt.callCreds})
			require.NoError(t, err)
			assert.Equal(t, "recorded", resp.GetRequestId())

			got := receive(t, received)
			assert.Equal(t, http.MethodPost, got.Method)
			assert.Equal(t, tt.wantURI, got.RequestURI)
			h := got.Header
			assert.Equal(t, []string{tt.wantCreds.ClientID}, h.Values("PLAID-CLIENT-ID"))
			assert.Equal(t, []string{tt.wantCreds.Secret}, h.Values("PLAID-SECRET"))
			assert.Equal(t, []string{"2020-09-14"}, h.Values("Plaid-Version"))
			assert.Equal(t, []string{"application/json"}, h.Values("Content-Type"))
			assert.Equal(t, []string{"application/json"}, h.Values("Accept"))
			assert.Equal(t, []string{tt.wantUserAgent}, h.Values("User-Agent"))
			// The credentials travel in the headers only: Plaid takes either, and one place
			// is one place to redact.
			assert.Equal(t, `{"user_token":"`+testUserToken+`"}`, string(got.Body))
		})
	}
}

// A user token that JSON must escape still arrives as itself, alone in the body.
func TestCreditSessionsGetEscapesUserToken(t *testing.T) {
	for _, token := range []string{`quote"back\slash`, "tab\tnew\nline", "<html>&amp;", "ünïcødé ✓", "\u2028\u2029", ""} {
		t.Run(token, func(t *testing.T) {
			baseURL, received := recordRequests(t)
			c := newClient(t, baseURL)
			_, err := c.CreditSessionsGet(t.Context(), plaid.Request{UserToken: token})
			require.NoError(t, err)

			var body map[string]any
			require.NoError(t, json.Unmarshal(receive(t, received).Body, &body))
			assert.Equal(t, map[string]any{"user_token": token}, body)
		})
	}
}

func TestCreditSessionsGetConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	deadAddr := ln.Addr().String()
	require.NoError(t, ln.Close())

	c := newClient(t, "http://"+deadAddr+"/tenant-7f3a")
	resp, err := call(t, c)
	require.Error(t, err)
	assert.Nil(t, resp)

	netErr, ok := errors.AsType[net.Error](err)
	require.Truef(t, ok, "want a net.Error, got %T: %v", err, err)
	assert.False(t, netErr.Timeout())
	assert.ErrorIs(t, err, syscall.ECONNREFUSED)
	_, isProtocol := errors.AsType[*plaid.ProtocolError](err)
	assert.False(t, isProtocol, "a transport failure is not a protocol error")
	_, isPlaid := errors.AsType[*plaid.Error](err)
	assert.False(t, isPlaid, "a transport failure is not a Plaid error")
	// The client drops the URL from transport errors.
	assert.NotContains(t, err.Error(), "tenant-7f3a")
	assertNoSecrets(t, err)
}

// A call ends when its context does, whatever the upstream is doing, and says why.
func TestCreditSessionsGetStopsWithContext(t *testing.T) {
	tests := []struct {
		name     string
		midBody  bool // the server sends the headers and part of the body before it stalls
		deadline bool // a deadline ends the call rather than a cancel
		want     error
	}{
		{name: "cancel before the headers", want: context.Canceled},
		{name: "cancel in the middle of the body", midBody: true, want: context.Canceled},
		{name: "deadline before the headers", deadline: true, want: context.DeadlineExceeded},
		{name: "deadline in the middle of the body", midBody: true, deadline: true, want: context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			arrived := make(chan struct{}, 1)
			baseURL := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				// Read the body, so the server notices when the client goes away.
				_, _ = io.Copy(io.Discard, r.Body)
				if tt.midBody {
					w.Header().Set("Content-Type", "application/json")
					w.Header().Set("Content-Length", "1000")
					w.WriteHeader(http.StatusOK)
					_, _ = io.WriteString(w, `{"request_id":"stalled","sessions":[`)
					assert.NoError(t, http.NewResponseController(w).Flush())
				}
				arrived <- struct{}{}
				<-r.Context().Done()
			}))
			c := newClient(t, baseURL)

			ctx, cancel := context.WithCancel(t.Context())
			const deadline = 200 * time.Millisecond
			if tt.deadline {
				ctx, cancel = context.WithTimeout(t.Context(), deadline)
			}
			defer cancel()
			type result struct {
				resp *creditv1.CreditSessionsGetResponse
				err  error
			}
			done := make(chan result, 1)
			start := time.Now()
			go func() {
				resp, err := c.CreditSessionsGet(ctx, plaid.Request{UserToken: testUserToken})
				done <- result{resp, err}
			}()

			var got result
			if tt.deadline {
				got = receive(t, done)
				assert.Less(t, time.Since(start), deadline+5*time.Second, "the call outlived its deadline")
			} else {
				receive(t, arrived)
				cancelled := time.Now()
				cancel()
				got = receive(t, done)
				assert.Less(t, time.Since(cancelled), 5*time.Second, "the call outlived its cancel")
			}
			assert.Nil(t, got.resp)
			require.ErrorIs(t, got.err, tt.want)
			_, isProtocol := errors.AsType[*plaid.ProtocolError](got.err)
			assert.False(t, isProtocol, "the caller's cancel is not the upstream's fault: %v", got.err)
			assertNoSecrets(t, got.err)
		})
	}
}

// One client serves many goroutines at once; run with -race.
func TestClientConcurrentUse(t *testing.T) {
	emu := startEmulator(t, emulator.Config{})
	// The emulator's graceful Close waits for connections that have not carried a request
	// yet; a pool that raced to dial more than it needed leaves some. Close them first.
	hc := plaid.NewHTTPClient()
	t.Cleanup(hc.CloseIdleConnections)
	c := newClient(t, emu.URL, func(cfg *plaid.Config) {
		cfg.Credentials = plaid.Credentials{ClientID: emu.Emulator.ClientID(), Secret: emu.Emulator.Secret()}
		cfg.HTTPClient = hc
	})
	want, err := c.CreditSessionsGet(t.Context(), plaid.Request{UserToken: "user-sandbox-example"})
	require.NoError(t, err)

	const workers = 50
	rateLimited := emulator.ErrorToken("RATE_LIMIT_EXCEEDED", "RATE_LIMIT")
	type result struct {
		failing bool
		resp    *creditv1.CreditSessionsGetResponse
		err     error
	}
	results := make(chan result, workers)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
			defer cancel()
			// Every fifth call fails, so success and error bodies share the pooled buffers.
			failing := i%5 == 4
			token := "user-sandbox-example"
			if failing {
				token = rateLimited
			}
			resp, err := c.CreditSessionsGet(ctx, plaid.Request{UserToken: token})
			results <- result{failing, resp, err}
		})
	}
	wg.Wait()
	close(results)

	n := 0
	for r := range results {
		n++
		if r.failing {
			perr, ok := errors.AsType[*plaid.Error](r.err)
			if assert.Truef(t, ok, "want a *plaid.Error, got %v", r.err) {
				assert.Equal(t, "RATE_LIMIT", perr.ErrorCode)
				assert.Equal(t, http.StatusTooManyRequests, perr.HTTPStatus)
				assert.True(t, json.Valid(perr.Body), "body %q", perr.Body)
			}
			continue
		}
		if !assert.NoError(t, r.err) {
			continue
		}
		assert.NotEmpty(t, r.resp.GetRequestId())
		assert.Empty(t, cmp.Diff(want, r.resp, protocmp.Transform(),
			protocmp.IgnoreFields(&creditv1.CreditSessionsGetResponse{}, "request_id")))
	}
	assert.Equal(t, workers, n)
	assert.EqualValues(t, workers+1, emu.Emulator.Calls())
}

func TestEnvironmentURL(t *testing.T) {
	tests := []struct {
		name    string
		want    string
		wantErr bool
	}{
		{name: "sandbox", want: "https://sandbox.plaid.com"},
		{name: "production", want: "https://production.plaid.com"},
		{name: "", wantErr: true},
		{name: "Sandbox", wantErr: true},
		{name: " sandbox", wantErr: true},
		{name: "development", wantErr: true}, // Plaid retired it
		{name: "https://sandbox.plaid.com", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := plaid.EnvironmentURL(tt.name)
			if tt.wantErr {
				require.Error(t, err)
				assert.Contains(t, err.Error(), "unknown environment")
				assert.Empty(t, got)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			_, err = plaid.ParseBaseURL(got)
			assert.NoError(t, err, "an environment's URL must be a valid base URL")
		})
	}
}

func TestParseBaseURL(t *testing.T) {
	const password = "pw-5f4dcc3b"
	tests := []struct {
		in      string
		want    string // the parsed URL, printed
		wantErr string // a part of the error, when in is rejected
	}{
		{in: "https://sandbox.plaid.com", want: "https://sandbox.plaid.com"},
		{in: "https://production.plaid.com/", want: "https://production.plaid.com/"},
		{in: "http://127.0.0.1:8080/plaid", want: "http://127.0.0.1:8080/plaid"},
		{in: "http://[::1]:8080", want: "http://[::1]:8080"},
		{in: "HTTPS://sandbox.plaid.com", want: "https://sandbox.plaid.com"},
		{in: "https://sandbox.plaid.com#", want: "https://sandbox.plaid.com"}, // an empty fragment is no fragment

		{in: "", wantErr: "scheme must be http or https"},
		{in: "sandbox.plaid.com", wantErr: "scheme must be http or https"},
		{in: "ftp://sandbox.plaid.com", wantErr: "scheme must be http or https"},
		{in: "ws://sandbox.plaid.com", wantErr: "scheme must be http or https"},
		{in: "https://", wantErr: "no host"},
		{in: "https:///credit", wantErr: "no host"},
		{in: "https://:443", wantErr: "no host"},
		{in: "http:sandbox.plaid.com", wantErr: "no host"},
		{in: "https://sandbox.plaid.com?x=1", wantErr: "query"},
		{in: "https://sandbox.plaid.com/plaid?", wantErr: "query"},
		{in: "https://sandbox.plaid.com#frag", wantErr: "fragment"},
		{in: "https://user@sandbox.plaid.com", wantErr: "user info"},
		{in: "https://user:" + password + "@sandbox.plaid.com", wantErr: "user info"},
		{in: "ftp://user:" + password + "@sandbox.plaid.com", wantErr: "scheme must be http or https"},
		{in: "https://user:" + password + "@sandbox.plaid.com?x=1", wantErr: "user info"},
		{in: "http://[::1", wantErr: "base URL"},
		{in: " https://sandbox.plaid.com", wantErr: "base URL"},
		{in: "https://sandbox.plaid.com/\n", wantErr: "base URL"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := plaid.ParseBaseURL(tt.in)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Nil(t, got)
				assert.Contains(t, err.Error(), tt.wantErr)
				assert.NotContains(t, err.Error(), password, "the error repeats the URL's password")

				c, err := plaid.NewClient(plaid.Config{BaseURL: tt.in, Credentials: testCredentials})
				assert.Error(t, err, "NewClient must reject what ParseBaseURL rejects")
				assert.Nil(t, c)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got.String())
		})
	}
}

// Admit hears each body's size before the body is read, or after it when the size is not
// announced, and its error ends the call.
func TestCreditSessionsGetAdmitsBodies(t *testing.T) {
	emu := startEmulator(t, emulator.Config{})
	var sizes []int64
	admitErr := error(nil)
	admit := func(ctx context.Context, n int64) error {
		require.NoError(t, ctx.Err())
		sizes = append(sizes, n)
		return admitErr
	}
	c, err := plaid.NewClient(plaid.Config{BaseURL: emu.URL, Credentials: plaid.Credentials{
		ClientID: emu.Emulator.ClientID(), Secret: emu.Emulator.Secret()}, Admit: admit})
	require.NoError(t, err)

	resp, err := c.CreditSessionsGet(t.Context(), plaid.Request{UserToken: "user-sandbox-sessions-1000"})
	require.NoError(t, err)
	require.Len(t, resp.GetSessions(), 1000)
	require.Len(t, sizes, 1)
	assert.Greater(t, sizes[0], int64(200_000), "the announced size of a 1,000-session body")

	errFull := errors.New("the budget is spent")
	admitErr = errFull
	_, err = c.CreditSessionsGet(t.Context(), plaid.Request{UserToken: "user-sandbox-example"})
	require.ErrorIs(t, err, errFull)
	assert.Len(t, sizes, 2)

	// A small chunked body announces no size and fits the first buffer: nothing to admit.
	admitErr = nil
	chunked := serve(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"request_id":"r1",`)
		w.(http.Flusher).Flush()
		_, _ = io.WriteString(w, `"sessions":[]}`)
	}))
	c, err = plaid.NewClient(plaid.Config{BaseURL: chunked, Credentials: testCredentials, Admit: admit})
	require.NoError(t, err)
	_, err = c.CreditSessionsGet(t.Context(), plaid.Request{UserToken: testUserToken})
	require.NoError(t, err)
	assert.Len(t, sizes, 2)
}

// A large body of unannounced size is admitted as it arrives, before each doubling of
// the buffer, and never past the size limit.
func TestCreditSessionsGetAdmitsChunkedBodiesAsTheyArrive(t *testing.T) {
	const pad = 1 << 20
	admitted := make(chan int64, 100)
	chunked := serve(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"request_id":"r1","sessions":[],"pad":"`+strings.Repeat("x", 300<<10))
		w.(http.Flusher).Flush()
		// The rest only once the client admitted more than its first piece: the budget
		// applies while the body arrives, not after.
		select {
		case <-admitted:
		case <-time.After(5 * time.Second):
			return
		}
		_, _ = io.WriteString(w, strings.Repeat("x", pad-300<<10)+`"}`)
	}))
	var sizes []int64
	admit := func(_ context.Context, n int64) error {
		sizes = append(sizes, n)
		select {
		case admitted <- n:
		default:
		}
		return nil
	}
	c, err := plaid.NewClient(plaid.Config{BaseURL: chunked, Credentials: testCredentials, Admit: admit})
	require.NoError(t, err)
	resp, err := c.CreditSessionsGet(t.Context(), plaid.Request{UserToken: testUserToken})
	require.NoError(t, err)
	assert.Equal(t, "r1", resp.GetRequestId())
	var total int64
	for _, n := range sizes {
		total += n
	}
	assert.GreaterOrEqual(t, total, int64(pad), "every byte held was admitted")
	assert.LessOrEqual(t, total, int64(pad+256<<10+1024), "at most one 256 KiB piece past the body")

	// The limit holds however the body arrives.
	c, err = plaid.NewClient(plaid.Config{BaseURL: chunked, Credentials: testCredentials, Admit: admit, MaxResponseBytes: 512 << 10})
	require.NoError(t, err)
	sizes = nil
	_, err = c.CreditSessionsGet(t.Context(), plaid.Request{UserToken: testUserToken})
	require.ErrorIs(t, err, plaid.ErrTooLarge)
	total = 0
	for _, n := range sizes {
		total += n
	}
	assert.LessOrEqual(t, total, int64(512<<10+1), "never admitted past the limit")

	// An Admit that gives up ends the call with ErrWaitingForMemory.
	errFull := errors.New("the budget is spent")
	c, err = plaid.NewClient(plaid.Config{BaseURL: chunked, Credentials: testCredentials,
		Admit: func(context.Context, int64) error { return errFull }})
	require.NoError(t, err)
	_, err = c.CreditSessionsGet(t.Context(), plaid.Request{UserToken: testUserToken})
	require.ErrorIs(t, err, errFull)
	require.ErrorIs(t, err, plaid.ErrWaitingForMemory)
}
