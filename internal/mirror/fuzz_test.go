package mirror_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/mirror"
	"github.com/creditsessions/creditsessions/internal/plaid"
	"github.com/creditsessions/creditsessions/server"
)

// answering is an upstream that answers every call at once, and checks what reaches it.
type answering struct{ t *testing.T }

func (u answering) CreditSessionsGet(_ context.Context, r plaid.Request) (*creditv1.CreditSessionsGetResponse, error) {
	if !utf8.ValidString(r.UserToken) || strings.ContainsRune(r.UserToken, utf8.RuneError) {
		u.t.Errorf("a user token that is not UTF-8 reached Plaid: %q", r.UserToken)
	}
	if len(r.UserToken) > server.MaxUserTokenBytes {
		u.t.Errorf("a user token of %d bytes reached Plaid", len(r.UserToken))
	}
	return &creditv1.CreditSessionsGetResponse{RequestId: "req-1"}, nil
}

// ourIDs are the request ids the service makes up for its own errors.
var ourIDs = regexp.MustCompile(server.RequestIDPrefix + `[A-Za-z0-9]*`)

// FuzzMirrorRequest sends the mirror any request net/http would parse: any method, path,
// headers (Content-Type, Grpc-Timeout, Grpc-Metadata-*, ...) and body. The answer is
// always a 200 with the response, or Plaid's error JSON with its four members set and a
// 4xx or 5xx status; nothing panics, and what reaches the upstream is a valid token. The
// same request through grpc-gateway's route for `POST /credit/sessions/get`, which the
// mirror's own handler replaced, gets the same answer.
func FuzzMirrorRequest(f *testing.F) {
	const post = "POST /credit/sessions/get HTTP/1.1\r\nContent-Type: application/json\r\n"
	for _, seed := range []struct{ head, body string }{
		{post, `{"user_token":"user-sandbox-example"}`},
		{post + "Grpc-Timeout: 2S\r\n", `{"user_token":"u","client_id":"c","secret":"s"}`},
		{post + "Grpc-Timeout: 99999999H\r\nGrpc-Metadata-X: y\r\n", `{"user_token":"u"}`},
		{"POST //credit/sessions/get HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n", ` {"user_token":"u"}`},
		{"POST /credit/sessions/get HTTP/1.1\r\nContent-Type: text/plain; charset=\"\r\n", `{"user_token":"u"}`},
		{post, "{\"user_token\":\"\xff\"}"},
		{post, `{"user_token":"` + strings.Repeat("u", 2000) + `"}`},
		{post, `{"user_token":"u","x":` + strings.Repeat("[", 2000) + `}`},
		{post, `[]`},
		{"GET /openapi.json HTTP/1.1\r\n", ``},
		{"PUT /credit/sessions/get?x=1 HTTP/1.1\r\n", `{}`},
		{"POST /nowhere/%zz HTTP/1.1\r\n", `{}`},
		{post + "Te: trailers\r\nAuthorization: Bearer x\r\nX-Forwarded-For: 1.2.3.4\r\n", `{"user_token":"u"}`},
		{post + "Grpc-Timeout: 5X\r\n", `{"user_token":"u"}`},
		{"POST /credit/sessions/g%65t HTTP/1.1\r\nContent-Type: application/JSON\r\n", `{"user_token":"u"}`},
		{"POST /credit/sessions/get HTTP/1.1\r\nContent-Type: application/json; charset=UTF-8\r\n", ``},
	} {
		f.Add(seed.head, []byte(seed.body))
	}
	f.Fuzz(func(t *testing.T, head string, body []byte) {
		raw := head + "Host: mirror.test\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + string(body)
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			return // net/http refuses it before any handler runs
		}
		svc, err := server.New(answering{t}, server.CallerKeys)
		require.NoError(t, err)
		h, err := mirror.New(svc, mirror.Options{MaxRequestBytes: 4 << 10})
		require.NoError(t, err)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)

		gw, err := mirror.New(svc, mirror.Options{MaxRequestBytes: 4 << 10})
		require.NoError(t, err)
		mirror.ViaGateway(gw)
		req, err = http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		require.NoError(t, err)
		want := httptest.NewRecorder()
		gw.ServeHTTP(want, req)
		require.Equal(t, want.Code, rec.Code, "status for %q", raw)
		require.Equal(t, ourIDs.ReplaceAllString(want.Body.String(), "id"), ourIDs.ReplaceAllString(rec.Body.String(), "id"),
			"body for %q", raw)
		want.Header().Del("Content-Length") // the length of a body with an id of the service's
		rec.Header().Del("Content-Length")
		require.Equal(t, want.Header(), rec.Header(), "header for %q", raw)

		if rec.Code == http.StatusOK {
			require.True(t, json.Valid(rec.Body.Bytes()), "a 200 that is not JSON: %q", rec.Body.Bytes())
			return
		}
		require.GreaterOrEqual(t, rec.Code, 400, "status %d for %q", rec.Code, raw)
		require.Less(t, rec.Code, 600)
		var answer map[string]any
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &answer), "an error that is not JSON for %q: %q", raw, rec.Body.Bytes())
		for _, member := range []string{"error_type", "error_code", "error_message", "request_id"} {
			v, _ := answer[member].(string)
			require.NotEmpty(t, v, "%s missing from %s for %q", member, rec.Body.Bytes(), raw)
		}
	})
}
