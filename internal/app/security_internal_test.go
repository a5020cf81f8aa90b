package app

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"localhost:8080": true, "LOCALHOST:1": true, "127.0.0.1:0": true, "127.1.2.3:80": true, "[::1]:50051": true,
		":8080": false, "0.0.0.0:8080": false, "[::]:1": false, "10.0.0.1:80": false, "example.com:80": false,
		"localhost.example.com:80": false, "garbage": false,
	} {
		assert.Equal(t, want, isLoopback(addr), addr)
	}
}

func TestPprofIsOffWhenTold(t *testing.T) {
	inner := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) })
	for path, want := range map[string]int{"/debug/pprof/": 404, "/debug/pprof/heap": 404, "/debug/pprofx": 404, "/metrics": 418} {
		rec := httptest.NewRecorder()
		withoutPprof(inner, true).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		assert.Equal(t, want, rec.Code, path)
	}
	rec := httptest.NewRecorder()
	withoutPprof(inner, false).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/pprof/", nil))
	assert.Equal(t, http.StatusTeapot, rec.Code)
}

// The webhook listener faces Plaid: the rule that refuses insecure exposure lets it
// listen beyond loopback, while the internal listeners stay refused.
func TestTheWebhookListenerMayFaceTheNetwork(t *testing.T) {
	cfg := Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", WebhookAddr: ":8081"}
	assert.NoError(t, checkExposure(cfg))
	cfg.HTTPAddr = ":8080"
	assert.Error(t, checkExposure(cfg))
}
