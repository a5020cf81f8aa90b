package plaid_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/creditsessions/creditsessions/internal/emulator"
	"github.com/creditsessions/creditsessions/internal/plaid"
)

// BenchmarkCreditSessionsGet is one small call through the client, over loopback to a
// server answering two sessions: building the request, the exchange, reading and
// decoding the answer. The server's allocations count too (it is in the process); the
// lean transport's BenchmarkRoundTrip gives the exchange alone.
func BenchmarkCreditSessionsGet(b *testing.B) {
	answer := []byte(`{"request_id":"bench","sessions":[{"link_session_id":"a","session_start_time":"2024-05-01T12:00:00Z",` +
		`"results":{"item_add_results":[{"public_token":"p","item_id":"i","institution_id":"ins_1"}]},"errors":[]},` +
		`{"link_session_id":"b","session_start_time":"2024-05-02T12:00:00Z","results":{},"errors":[]}]}`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(answer)
	}))
	defer srv.Close()
	c, err := plaid.NewClient(plaid.Config{BaseURL: srv.URL, Credentials: plaid.Credentials{ClientID: "id", Secret: testSecret}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			ctx, cancel := context.WithCancel(context.Background())
			if _, err := c.CreditSessionsGet(ctx, plaid.Request{UserToken: "user-sandbox-example"}); err != nil {
				b.Fatal(err)
			}
			cancel()
		}
	})
}

// BenchmarkCreditSessionsGetLarge is one 10,000-session call (a 3 MB body) from the
// emulator over loopback: the body's buffer is kept from call to call, so a call's
// garbage is its decoded message. The emulator's own allocations count too.
func BenchmarkCreditSessionsGetLarge(b *testing.B) {
	emu, err := emulator.Start("127.0.0.1:0", emulator.Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = emu.Close() }()
	c, err := plaid.NewClient(plaid.Config{BaseURL: emu.URL, Credentials: plaid.Credentials{
		ClientID: emu.Emulator.ClientID(), Secret: emu.Emulator.Secret()}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		resp, err := c.CreditSessionsGet(context.Background(), plaid.Request{UserToken: "user-sandbox-sessions-10000"})
		if err != nil || len(resp.GetSessions()) != 10000 {
			b.Fatal(err)
		}
	}
}
