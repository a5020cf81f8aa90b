package plaid_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/plaid"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// largeAnswer is a success body of about 1.5 MB, past the size from which bodies are
// read into the kept large buffers, whose every session names user.
func largeAnswer(user string) []byte {
	var b strings.Builder
	b.WriteString(`{"request_id":"` + user + `","sessions":[`)
	for i := range 12000 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"link_session_id":"%s-%d","session_start_time":"2024-05-01T12:00:00Z","results":{},"errors":[]}`, user, i)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

// checkOwnAnswer fails unless every session of resp is one of user's.
func checkOwnAnswer(t *testing.T, user string, resp *creditv1.CreditSessionsGetResponse) {
	t.Helper()
	require.Equal(t, user, resp.GetRequestId())
	require.Len(t, resp.GetSessions(), 12000)
	for i, s := range resp.GetSessions() {
		if want := user + "-" + strconv.Itoa(i); s.GetLinkSessionId() != want {
			require.Failf(t, "a session of another call's body", "session %d of %s is %q", i, user, s.GetLinkSessionId())
		}
	}
}

// Large bodies are read into buffers kept from call to call. Calls in flight together,
// with and without Content-Length, each get their own body, and a message keeps its
// sessions after its buffer has gone on to other calls' bodies. Run with -race.
func TestLargeBodyBuffersAreNeverShared(t *testing.T) {
	base := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			UserToken string `json:"user_token"`
		}
		if !assert.NoError(t, json.NewDecoder(r.Body).Decode(&req)) {
			return
		}
		body := largeAnswer(req.UserToken)
		w.Header().Set("Content-Type", "application/json")
		if strings.HasSuffix(req.UserToken, "chunked") {
			// Written in two pieces with a flush between: no Content-Length.
			_, _ = w.Write(body[:len(body)/2])
			http.NewResponseController(w).Flush()
			_, _ = w.Write(body[len(body)/2:])
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
	}))
	c := newClient(t, base)

	const workers, rounds = 6, 4
	type answer struct {
		user string
		resp *creditv1.CreditSessionsGetResponse
	}
	answers := make(chan answer, workers*rounds)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for r := range rounds {
				user := fmt.Sprintf("user-%d-%d", w, r)
				if (w+r)%3 == 0 {
					user += "-chunked"
				}
				ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
				resp, err := c.CreditSessionsGet(ctx, plaid.Request{UserToken: user})
				cancel()
				if !assert.NoError(t, err) {
					return
				}
				answers <- answer{user, resp}
			}
		})
	}
	wg.Wait()
	close(answers)
	n := 0
	for a := range answers {
		n++
		checkOwnAnswer(t, a.user, a.resp)
	}
	require.Equal(t, workers*rounds, n)
}

// A large error body also goes back to the kept buffers; the error keeps its own copy.
func TestLargeErrorBodyIsTheErrorsOwn(t *testing.T) {
	pad := strings.Repeat("x", 1<<20+1000)
	errBody := `{"error_type":"API_ERROR","error_code":"INTERNAL_SERVER_ERROR","error_message":"` + pad + `","request_id":"e"}`
	base := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			UserToken string `json:"user_token"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		w.Header().Set("Content-Type", "application/json")
		if req.UserToken == "fail" {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, errBody)
			return
		}
		_, _ = w.Write(largeAnswer(req.UserToken))
	}))
	c := newClient(t, base)
	_, err := c.CreditSessionsGet(t.Context(), plaid.Request{UserToken: "fail"})
	perr, ok := err.(*plaid.Error)
	require.Truef(t, ok, "want a *plaid.Error, got %v", err)
	for i := range 3 {
		resp, err := c.CreditSessionsGet(t.Context(), plaid.Request{UserToken: "user-" + strconv.Itoa(i)})
		require.NoError(t, err)
		checkOwnAnswer(t, "user-"+strconv.Itoa(i), resp)
	}
	require.JSONEq(t, errBody, string(perr.Body))
}
