package mirror

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/creditsessions/creditsessions/internal/emulator"
	"github.com/creditsessions/creditsessions/internal/membudget"
	"github.com/creditsessions/creditsessions/internal/plaid"
	"github.com/creditsessions/creditsessions/server"
)

// seen is what the interceptor chain saw of one call.
type seen struct {
	md          metadata.MD
	hasDeadline bool
	method      string
	server      any
}

// recorder is an interceptor that records what it sees and sets header and trailer
// metadata of its own, as interceptors may; a call whose From header is "refuse" it
// refuses with a pushback, as a quota does.
type recorder struct {
	mu   sync.Mutex
	last *seen
}

func (rc *recorder) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	_, deadline := ctx.Deadline()
	rc.mu.Lock()
	rc.last = &seen{md: md, hasDeadline: deadline, method: info.FullMethod, server: info.Server}
	rc.mu.Unlock()
	if err := grpc.SetHeader(ctx, metadata.Pairs("x-extra", "one", "x-extra", "two")); err != nil {
		return nil, err
	}
	if err := grpc.SetTrailer(ctx, metadata.Pairs("x-trail", "t")); err != nil {
		return nil, err
	}
	if v := metadata.ValueFromIncomingContext(ctx, "grpcgateway-from"); len(v) > 0 && v[0] == "refuse" {
		st, _ := status.New(codes.ResourceExhausted, "quota exceeded").WithDetails(
			&errdetails.RetryInfo{RetryDelay: durationpb.New(1500 * time.Millisecond)})
		return nil, st.Err()
	}
	return next(ctx, req)
}

func (rc *recorder) take() *seen {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	s := rc.last
	rc.last = nil
	return s
}

// mirrors serves the same service through the hand-written route and through the
// gateway's, each on a real listener, against the emulator.
func mirrors(t *testing.T) (fast, gateway string, rec *recorder, svc *server.Service) {
	t.Helper()
	emu, err := emulator.Start("127.0.0.1:0", emulator.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, emu.Close()) })
	client, err := plaid.NewClient(plaid.Config{
		BaseURL:     emu.URL,
		Credentials: plaid.Credentials{ClientID: emu.Emulator.ClientID(), Secret: emu.Emulator.Secret()},
	})
	require.NoError(t, err)
	svc, err = server.New(client, server.ServiceKeys)
	require.NoError(t, err)
	rec = &recorder{}
	serve := func(viaGateway bool) string {
		h, err := New(svc, Options{Interceptor: rec.intercept, MaxRequestBytes: 4 << 10,
			AnswerMemory: membudget.New(64<<20, 1<<20)})
		require.NoError(t, err)
		h.(*handler).viaGateway = viaGateway
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		return srv.URL
	}
	return serve(false), serve(true), rec, svc
}

// exchange is what a client sees of one call, with what differs between any two calls
// (the date, request ids the service makes up) made equal.
type exchange struct {
	status           int
	header, trailer  http.Header
	body             string
	contentLength    int64
	transferEncoding []string
	seen             *seen
}

// requestIDs are the request ids in a body: Plaid's (the emulator's) and the service's
// own differ from call to call, and in length.
var requestIDs = regexp.MustCompile(`"request_id": ?"[^"]*"`)

func do(t *testing.T, c *http.Client, rec *recorder, base string, tc diffCase) exchange {
	t.Helper()
	path := tc.path
	if path == "" {
		path = "/credit/sessions/get"
	}
	req, err := http.NewRequest(http.MethodPost, base+path, strings.NewReader(tc.body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	for k, vs := range tc.header {
		req.Header.Del(k)
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	resp.Header.Del("Date")
	// The length of a body stands in for the body's length with the ids replaced.
	if resp.ContentLength >= 0 {
		require.EqualValues(t, len(body), resp.ContentLength)
		require.Equal(t, []string{strconv.Itoa(len(body))}, resp.Header["Content-Length"])
		resp.Header["Content-Length"] = []string{"the body's"}
		resp.ContentLength = -2
	}
	if ids := resp.Header["Plaid-Request-Id"]; len(ids) == 1 {
		require.Contains(t, string(body), ids[0])
		resp.Header["Plaid-Request-Id"] = []string{"the body's"}
	}
	return exchange{
		status: resp.StatusCode, header: resp.Header, trailer: resp.Trailer,
		body:          requestIDs.ReplaceAllString(string(body), `"request_id":"id"`),
		contentLength: resp.ContentLength, transferEncoding: resp.TransferEncoding,
		seen: rec.take(),
	}
}

type diffCase struct {
	name   string
	path   string
	header http.Header
	body   string
}

// TestHotRouteAnswersAsTheGateway sends the same requests through the hand-written
// `POST /credit/sessions/get` and through grpc-gateway's handler for it, and requires
// the same answers, byte for byte, and the same metadata, deadline and method for the
// interceptors and the service.
func TestHotRouteAnswersAsTheGateway(t *testing.T) {
	fast, gateway, rec, svc := mirrors(t)
	const example = `{"user_token":"user-sandbox-example"}`
	cases := []diffCase{
		{name: "good", body: example},
		{name: "keys in the body", body: `{"user_token":"user-sandbox-example","client_id":"c","secret":"s"}`},
		{name: "charset and white space", body: " \n" + example,
			header: http.Header{"Content-Type": {"application/json; charset=utf-8"}}},
		{name: "curl's content type", body: example,
			header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}},
		{name: "doubled slash", path: "//credit/sessions/get", body: example},
		{name: "not JSON", body: `{"user_token":`},
		{name: "unknown field", body: `{"user_token":"u","colour":"blue"}`},
		{name: "wrong type", body: `{"user_token":5}`},
		{name: "array", body: `[]`},
		{name: "empty body", body: ``},
		{name: "too large", body: `{"user_token":"` + strings.Repeat("u", 5<<10) + `"}`},
		{name: "wrong content type", body: example, header: http.Header{"Content-Type": {"text/plain"}}},
		{name: "missing token", body: `{}`},
		{name: "empty token", body: `{"user_token":""}`},
		{name: "caller metadata", body: example, header: http.Header{
			"Plaid-Client-Id": {"client"}, "Plaid-Secret": {"secret"}, "Plaid-User-Id": {"user-1"},
			"Cache-Control": {"no-cache", "max-age=10"}, "User-Agent": {"plaid-go/1.0"},
			"Accept": {"application/json"}, "Accept-Language": {"en"}, "Cookie": {"a=b"},
			"Origin": {"https://example.test"}, "Pragma": {"no-cache"}, "X-Custom": {"dropped"},
			"Grpc-Timeout": {"30S"},
		}},
		{name: "Grpc-Metadata headers", body: example, header: http.Header{
			"Grpc-Metadata-Foo": {"bar"}, "Grpc-Metadata-Authorization": {"Bearer forged"},
			"Grpc-Metadata-X-Forwarded-For": {"6.6.6.6"},
		}},
		{name: "authorization", body: example, header: http.Header{"Authorization": {"Bearer abc", "Basic xyz"}}},
		{name: "forwarded", body: example, header: http.Header{
			"X-Forwarded-For": {"1.2.3.4", "b\u00e9d", "5.6.7.8"}, "X-Forwarded-Host": {"api.example.test"},
		}},
		{name: "invalid forwarded host", body: example, header: http.Header{"X-Forwarded-Host": {"h\u00e9"}}},
		{name: "non-ASCII values", body: example, header: http.Header{
			"User-Agent": {"caf\u00e9"}, "Authorization": {"Bearer \u00e9"}, "Plaid-User-Id": {"ok", "n\u00f6"},
		}},
		{name: "zero timeout", body: example, header: http.Header{"Grpc-Timeout": {"0S"}}},
		{name: "huge timeout", body: example, header: http.Header{"Grpc-Timeout": {"99999999H"}}},
		{name: "bad timeout", body: example, header: http.Header{"Grpc-Timeout": {"5X"}}},
		{name: "short timeout", body: example, header: http.Header{"Grpc-Timeout": {"5"}}},
		{name: "trailers", body: example, header: http.Header{"Te": {"trailers"}}},
		{name: "large answer", body: `{"user_token":"user-sandbox-sessions-300"}`},
		{name: "large answer with trailers", body: `{"user_token":"user-sandbox-sessions-130"}`,
			header: http.Header{"Te": {"trailers"}}},
		{name: "just below streaming", body: `{"user_token":"user-sandbox-sessions-127"}`},
		{name: "no sessions", body: `{"user_token":"user-sandbox-empty"}`},
		{name: "every field", body: `{"user_token":"user-sandbox-full"}`},
		{name: "upstream error", body: `{"user_token":"user-sandbox-error-RATE_LIMIT_EXCEEDED-CREDITS_EXHAUSTED"}`},
		{name: "upstream input error", body: `{"user_token":"user-sandbox-error-INVALID_INPUT-INVALID_USER_TOKEN"}`},
		{name: "upstream garbage", body: `{"user_token":"user-sandbox-fault-garbage"}`},
		{name: "upstream 502", body: `{"user_token":"user-sandbox-fault-html-502"}`},
		{name: "refused with pushback", body: example, header: http.Header{"From": {"refuse"}}},
	}
	c := &http.Client{Timeout: 30 * time.Second}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := do(t, c, rec, gateway, tc)
			got := do(t, c, rec, fast, tc)
			if want.seen != nil && got.seen != nil {
				// Both were called; the address each came from and the host each was
				// called at differ only by port.
				for _, md := range []metadata.MD{want.seen.md, got.seen.md} {
					require.Len(t, md["x-forwarded-host"], 1)
					md["x-forwarded-host"] = []string{strings.Split(md["x-forwarded-host"][0], ":")[0]}
				}
				require.Same(t, svc, got.seen.server)
			}
			assert.Equal(t, want, got)
		})
	}
}

// TestMetadataKeysAreTheGatewayMatchers checks the hot route's table of header names
// against the mirror's incomingHeader matcher, as grpc-gateway applies it, for every
// header it passes on and some it does not.
func TestMetadataKeysAreTheGatewayMatchers(t *testing.T) {
	names := append([]string{"Plaid-Client-Id", "Plaid-Secret", "Plaid-User-Id", "Grpc-Metadata-Foo",
		"X-Forwarded-For", "X-Forwarded-Host", "X-Custom", "Te", "Grpc-Timeout", "Content-Length", "Connection"},
		permanentHeaders...)
	for _, name := range names {
		want, wantOK := incomingHeader(name)
		got, gotOK := incomingKey(name)
		switch name {
		case "X-Forwarded-For", "X-Forwarded-Host":
			wantOK = false // the gateway derives these itself; so does serveGet
		}
		assert.Equal(t, wantOK, gotOK, name)
		if wantOK {
			assert.Equal(t, strings.ToLower(want), got, name)
		}
	}
}
