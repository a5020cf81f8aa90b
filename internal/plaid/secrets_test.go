package plaid_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/creditsessions/creditsessions/internal/plaid"
)

// Credentials, and everything that holds them, print without the secret however they
// are printed, and still show the client id, so the redaction is not just silence.
func TestCredentialsNeverPrintTheSecret(t *testing.T) {
	client, err := plaid.NewClient(plaid.Config{BaseURL: "https://sandbox.plaid.com", Credentials: testCredentials})
	require.NoError(t, err)
	cfg := plaid.Config{BaseURL: "https://sandbox.plaid.com", Credentials: testCredentials}
	values := map[string]any{
		"Credentials":  testCredentials,
		"*Credentials": &testCredentials,
		"Config":       cfg,
		"*Config":      &cfg,
		"Request":      plaid.Request{UserToken: "user", Credentials: testCredentials},
		"*Client":      client,
	}
	for name, v := range values {
		t.Run(name+"/fmt", func(t *testing.T) {
			for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
				out := fmt.Sprintf(verb, v)
				assert.NotContains(t, out, testSecret, verb)
				assert.Contains(t, out, testClientID, verb)
			}
		})
		t.Run(name+"/slog", func(t *testing.T) {
			for handler, newHandler := range map[string]func(*bytes.Buffer) slog.Handler{
				"text": func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
				"json": func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
			} {
				var buf bytes.Buffer
				slog.New(newHandler(&buf)).Info("calling Plaid", "value", v)
				assert.NotContains(t, buf.String(), testSecret, handler)
				if name != "*Client" { // a Client's fields are its own; it need not log them
					assert.Contains(t, buf.String(), testClientID, handler)
				}
			}
		})
	}
}

// The structured form keeps the client id as an attribute of its own.
func TestCredentialsLogValue(t *testing.T) {
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("calling Plaid", "creds", testCredentials)
	var line struct {
		Creds map[string]string `json:"creds"`
	}
	require.NoError(t, json.Unmarshal(buf.Bytes(), &line))
	assert.Equal(t, map[string]string{"client_id": testClientID, "secret": "REDACTED"}, line.Creds)
}

func TestCredentialsComplete(t *testing.T) {
	assert.True(t, plaid.Credentials{ClientID: "id", Secret: "s"}.Complete())
	assert.False(t, plaid.Credentials{ClientID: "id"}.Complete())
	assert.False(t, plaid.Credentials{Secret: "s"}.Complete())
	assert.False(t, plaid.Credentials{}.Complete())
}
