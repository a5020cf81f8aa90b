package app_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The authorization policy applies to watches as to calls, on both paths: the test
// policy lets the operator use every CreditService method, the underwriter only
// CreditSessionsGet, and denies the frontend.
func TestWatchUnderTheAuthorizationPolicy(t *testing.T) {
	p := newPKI(t)
	s := start(t, secureConfig(p, false))
	grpcAddr, rest := s.app.GRPCAddr().String(), "https://"+s.app.HTTPAddr().String()
	req := &creditv1.WatchCreditSessionsRequest{UserToken: "user-sandbox-example"}
	restWatch := func(t *testing.T, c *http.Client) *http.Response {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		r, err := http.NewRequestWithContext(ctx, http.MethodPost, rest+"/credit/sessions/watch",
			strings.NewReader(`{"user_token":"user-sandbox-example"}`))
		require.NoError(t, err)
		r.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(r)
		require.NoError(t, err)
		t.Cleanup(func() { _ = resp.Body.Close() })
		return resp
	}

	t.Run("allowed", func(t *testing.T) {
		c, _ := p.grpcClient(t, grpcAddr, &p.operator)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		stream, err := c.WatchCreditSessions(ctx, req)
		require.NoError(t, err)
		first, err := stream.Recv()
		require.NoError(t, err)
		assert.Len(t, first.GetResponse().GetSessions(), 2)

		resp := restWatch(t, p.httpClient(t, &p.operator))
		require.Equal(t, http.StatusOK, resp.StatusCode)
		line, err := bufio.NewReader(resp.Body).ReadBytes('\n')
		require.NoError(t, err)
		var m struct{ Reason string }
		require.NoError(t, json.Unmarshal(line, &m))
		assert.Equal(t, "INITIAL", m.Reason)
	})
	for name, cert := range map[string]any{"allowed to get, not to watch": &p.underwriter, "denied by a deny rule": &p.intruder} {
		t.Run(name, func(t *testing.T) {
			calls := s.app.Emulator().Calls()
			cert := cert.(*tls.Certificate)
			c, _ := p.grpcClient(t, grpcAddr, cert)
			stream, err := c.WatchCreditSessions(context.Background(), req)
			require.NoError(t, err)
			_, err = stream.Recv()
			assert.Equal(t, codes.PermissionDenied, status.Code(err))
			resp := restWatch(t, p.httpClient(t, cert))
			assert.Equal(t, http.StatusForbidden, resp.StatusCode)
			assert.Equal(t, calls, s.app.Emulator().Calls(), "refused before Plaid hears of it")
		})
	}
}
