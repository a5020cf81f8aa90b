package mirror

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/emulator"
	"github.com/creditsessions/creditsessions/internal/membudget"
	"github.com/creditsessions/creditsessions/internal/plaid"
	"github.com/creditsessions/creditsessions/internal/plaidjson"
	"github.com/creditsessions/creditsessions/server"
)

// canned answers every call with the emulator's example answer, at once.
type canned struct {
	resp *creditv1.CreditSessionsGetResponse
}

func (c canned) CreditSessionsGet(context.Context, plaid.Request) (*creditv1.CreditSessionsGetResponse, error) {
	return c.resp, nil
}

func exampleAnswer(tb testing.TB) *creditv1.CreditSessionsGetResponse {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/credit/sessions/get", strings.NewReader(
		`{"client_id":"`+emulator.DefaultClientID+`","secret":"`+emulator.DefaultSecret+`","user_token":"user-sandbox-example"}`))
	req.Header.Set("Content-Type", "application/json")
	emulator.New(emulator.Config{}).ServeHTTP(rec, req)
	require.Equal(tb, http.StatusOK, rec.Code, rec.Body.String())
	resp := &creditv1.CreditSessionsGetResponse{}
	require.NoError(tb, plaidjson.UnmarshalResponse(rec.Body.Bytes(), resp))
	return resp
}

// discard is a ResponseWriter that keeps nothing but its header map, reused.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(int)             {}

// BenchmarkGet is one small REST call in-process, through the service with a
// pass-through interceptor and the answer-memory hold, against a canned upstream:
// grpc-gateway's route against the hand-written one.
func BenchmarkGet(b *testing.B) {
	svc, err := server.New(canned{exampleAnswer(b)}, server.ServiceKeys)
	require.NoError(b, err)
	pass := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
		return next(ctx, req)
	}
	body := []byte(`{"user_token":"user-sandbox-example"}`)
	for _, bc := range []struct {
		name       string
		viaGateway bool
	}{{"gateway", true}, {"handwritten", false}} {
		b.Run(bc.name, func(b *testing.B) {
			h, err := New(svc, Options{Interceptor: pass, AnswerMemory: membudget.New(64<<20, 1<<20)})
			require.NoError(b, err)
			h.(*handler).viaGateway = bc.viaGateway
			w := &discard{h: http.Header{}}
			r := httptest.NewRequest(http.MethodPost, "/credit/sessions/get", nil)
			r.RemoteAddr = "127.0.0.1:40000"
			r.Header = http.Header{"Content-Type": {"application/json"}, "User-Agent": {"Go-http-client/1.1"},
				"Accept-Encoding": {"gzip"}, "Content-Length": {"37"}}
			rd := bytes.NewReader(body)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				rd.Reset(body)
				r.Body = io.NopCloser(rd)
				clear(w.h)
				h.ServeHTTP(w, r)
			}
		})
	}
}
