package plaid

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// maxWebhookKeyBytes bounds the answer of `/webhook_verification_key/get`: one JWK, a few
// hundred bytes.
const maxWebhookKeyBytes = 64 << 10

// WebhookVerificationKey is the JWK Plaid signs its webhooks with, as
// `/webhook_verification_key/get` returns it. It is a public key: nothing in it is secret.
type WebhookVerificationKey struct {
	Alg string `json:"alg"` // ES256
	Crv string `json:"crv"` // P-256
	Kid string `json:"kid"`
	Kty string `json:"kty"` // EC
	Use string `json:"use"` // sig
	X   string `json:"x"`   // unpadded base64url
	Y   string `json:"y"`   // unpadded base64url
	// CreatedAt is when the key was created, in Unix seconds.
	CreatedAt int64 `json:"created_at"`
	// ExpiredAt is when the key expired, in Unix seconds; nil while the key is valid.
	ExpiredAt *int64 `json:"expired_at"`
	// RequestID is Plaid's identifier of the call that returned the key.
	RequestID string `json:"-"`
}

// WebhookVerificationKeyGet calls `POST /webhook_verification_key/get` with the client's
// own credentials (a webhook concerns the service, never one caller) and returns the
// key named keyID. Errors are as for CreditSessionsGet: a *Error when Plaid answered
// with one (an unknown key id is INVALID_INPUT/INVALID_WEBHOOK_VERIFICATION_KEY_ID), a
// *ProtocolError for an answer that is not Plaid's protocol.
func (c *Client) WebhookVerificationKeyGet(ctx context.Context, keyID string) (*WebhookVerificationKey, error) {
	const op = "plaid: webhook verification key get"
	body, err := json.Marshal(struct {
		KeyID string `json:"key_id"`
	}{keyID})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	// The client holds the full URL of /credit/sessions/get; its sibling shares the base.
	endpoint := strings.TrimSuffix(c.endpoint, "/credit/sessions/get") + "/webhook_verification_key/get"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	h := req.Header
	h["Content-Type"] = []string{"application/json"}
	h["Accept"] = []string{"application/json"}
	h["User-Agent"] = []string{c.userAgent}
	h["Plaid-Version"] = []string{APIVersion}
	creds := c.credentials()
	h["Plaid-Client-Id"] = []string{creds.ClientID}
	h["Plaid-Secret"] = []string{creds.Secret}

	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, scrubURLError(err))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxWebhookKeyBytes+1))
	if err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("%s: reading the response: %w", op, err)
		}
		return nil, &ProtocolError{HTTPStatus: resp.StatusCode, Reason: "the response body was cut short", Err: fmt.Errorf("%w: %w", ErrCutShort, err)}
	}
	if len(raw) > maxWebhookKeyBytes {
		return nil, &ProtocolError{HTTPStatus: resp.StatusCode, Reason: fmt.Sprintf("a body over the %d-byte limit", maxWebhookKeyBytes), Err: ErrTooLarge}
	}
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		var out struct {
			Key       *WebhookVerificationKey `json:"key"`
			RequestID string                  `json:"request_id"`
		}
		if err := json.Unmarshal(raw, &out); err != nil {
			return nil, &ProtocolError{HTTPStatus: resp.StatusCode, Reason: "the success body is not a webhook verification key response", Err: err}
		}
		if out.Key == nil || out.Key.Kid == "" {
			return nil, &ProtocolError{HTTPStatus: resp.StatusCode, Reason: "the success body has no key"}
		}
		if out.RequestID == "" {
			return nil, &ProtocolError{HTTPStatus: resp.StatusCode, Reason: "the success body has no request_id"}
		}
		out.Key.RequestID = out.RequestID
		return out.Key, nil
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return nil, &ProtocolError{HTTPStatus: resp.StatusCode, Reason: "redirect not followed (it would resend the credentials)"}
	default:
		return nil, parseError(resp, raw)
	}
}
