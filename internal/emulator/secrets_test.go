package emulator

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
)

// During a rotation Plaid accepts the old secret and the new one; then only the new.
func TestTheEmulatorAcceptsTheSecretsOfARotation(t *testing.T) {
	srv := startServer(t, Config{})
	c := newClient(t)
	call := func(secret string) int {
		return send(t, c, srv.URL, request{
			headers: map[string]string{"PLAID-CLIENT-ID": DefaultClientID, "PLAID-SECRET": secret},
			body:    tokenBody("user-sandbox-example"),
		}).status
	}
	assert.Equal(t, http.StatusOK, call(DefaultSecret))
	assert.Equal(t, http.StatusBadRequest, call("new-secret"))

	srv.Emulator.AcceptSecrets(DefaultSecret, "new-secret")
	assert.Equal(t, http.StatusOK, call(DefaultSecret))
	assert.Equal(t, http.StatusOK, call("new-secret"))

	srv.Emulator.AcceptSecrets("new-secret")
	assert.Equal(t, http.StatusBadRequest, call(DefaultSecret), "the old secret is retired")
	assert.Equal(t, http.StatusOK, call("new-secret"))

	srv.Emulator.AcceptSecrets()
	assert.Equal(t, http.StatusOK, call(DefaultSecret), "none: the one it started with")
}
