package plaid

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// FuzzParseError feeds parseError what an upstream could answer a failed call with: a
// status, a Content-Type, a Retry-After and a body. It must always return one of the two
// typed errors; a Plaid error keeps the body byte for byte (the REST mirror answers with
// it) and a Retry-After within [0, MaxRetryAfter], whatever the header said.
func FuzzParseError(f *testing.F) {
	body := `{"display_message":null,"error_code":"RATE_LIMIT","error_message":"m","error_type":"RATE_LIMIT_EXCEEDED","request_id":"r"}`
	f.Add(uint16(429), "application/json", "2", []byte(body))
	f.Add(uint16(400), "application/json; charset=utf-8", "", []byte(body))
	f.Add(uint16(503), "application/json", "9999999999999", []byte(body))
	f.Add(uint16(503), "", "Wed, 21 Oct 2999 07:28:00 GMT", []byte(body))
	f.Add(uint16(500), "application/json", "-1", []byte(`{"error_type":"API_ERROR","error_code":"X","causes":[{"a":[1,2,{}]}]}`))
	f.Add(uint16(502), "text/html", "", []byte("<html><body>Bad Gateway</body></html>"))
	f.Add(uint16(400), "application/json", "", []byte(`{"error_type":1}`))
	f.Add(uint16(404), "application/json", "", []byte(`null`))
	f.Fuzz(func(t *testing.T, code uint16, contentType, retryAfter string, body []byte) {
		status := 100 + int(code)%500
		resp := &http.Response{StatusCode: status, Header: http.Header{
			"Content-Type": {contentType}, "Retry-After": {retryAfter},
		}}
		err := parseError(resp, body)
		require.Error(t, err)
		var pe *Error
		var proto *ProtocolError
		switch {
		case errors.As(err, &pe):
			require.Equal(t, status, pe.HTTPStatus)
			require.Equal(t, body, []byte(pe.Body), "the body is kept as sent")
			require.True(t, json.Valid(pe.Body))
			require.NotEmpty(t, pe.ErrorType)
			require.NotEmpty(t, pe.ErrorCode)
			require.GreaterOrEqual(t, pe.RetryAfter, time.Duration(0), "Retry-After %q", retryAfter)
			require.LessOrEqual(t, pe.RetryAfter, MaxRetryAfter, "Retry-After %q", retryAfter)
		case errors.As(err, &proto):
			require.Equal(t, status, proto.HTTPStatus)
		default:
			t.Fatalf("untyped error %T: %v", err, err)
		}
		_ = err.Error()
	})
}

// fuzzMaxBody is the response limit of FuzzTransportAnswer's client: small, so that the
// fuzzer reaches past it.
const fuzzMaxBody = 64 << 10

// FuzzTransportAnswer has a server answer a real call with arbitrary bytes, on a
// net.Pipe that stands in for the connection: the whole path a response takes (the
// Transport's head reading and pooling, body framing, the size limit, error bodies and
// the decoder). Whatever the bytes: no panic, an answer before the call's deadline (the
// server closes the connection after its bytes, so nothing may wait for more), a
// success only with a request id, a Plaid error only for a non-2xx, non-3xx status with
// Plaid's JSON, and memory bounded by the limits rather than by what the bytes claim.
func FuzzTransportAnswer(f *testing.F) {
	ok := `{"request_id":"r-1","sessions":[{"link_session_id":"l","results":{"item_add_results":[{"public_token":"p","item_id":"i","institution_id":"ins"}]}}]}`
	for _, seed := range []string{
		"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(ok)) + "\r\n\r\n" + ok,
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"req\r\n0\r\n\r\n",
		"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nRetry-After: 3\r\n\r\n" +
			`{"error_type":"INVALID_INPUT","error_code":"INVALID_USER_TOKEN","error_message":"m","request_id":"r"}`,
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
		"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n{",
		"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n",
		"HTTP/1.0 502 Bad Gateway\r\nContent-Type: text/html\r\n\r\n<html>nope</html>",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
		"HTTP/1.1 2000 OK\r\n\r\n",
		"garbage\r\n\r\n",
		"",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, answer []byte) {
		served := make(chan struct{})
		tr := &Transport{dialConn: func(context.Context, string) (net.Conn, error) {
			client, server := net.Pipe()
			go func() {
				defer close(served)
				defer server.Close()
				req, err := http.ReadRequest(bufio.NewReader(server))
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, req.Body)
				_, _ = server.Write(answer) // fails once the client has closed its end
			}()
			return client, nil
		}}
		c, err := NewClient(Config{
			BaseURL: "http://plaid.test", Credentials: Credentials{ClientID: "id", Secret: "secret"},
			HTTPClient: &http.Client{Transport: tr}, MaxResponseBytes: fuzzMaxBody,
		})
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()

		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		resp, err := c.CreditSessionsGet(ctx, Request{UserToken: "user-token"})
		runtime.ReadMemStats(&after)
		require.NoError(t, ctx.Err(), "the call waited for its deadline on %q", answer)
		tr.CloseIdleConnections() // a pooled connection unblocks the server's write
		<-served

		// A head may be 1 MiB and a body fuzzMaxBody; buffering and decoding take a few
		// times that. What the answer claims (a Content-Length of 99999999999) must not count.
		allocated := after.TotalAlloc - before.TotalAlloc
		require.Less(t, allocated, uint64(16<<20+8*len(answer)), "allocated %d bytes for a %d-byte answer", allocated, len(answer))

		if err == nil {
			require.NotEmpty(t, resp.GetRequestId())
			return
		}
		require.Nil(t, resp)
		require.True(t, strings.HasPrefix(err.Error(), "plaid: "), "error without the package's prefix: %v", err)
		var pe *Error
		if errors.As(err, &pe) {
			require.False(t, pe.HTTPStatus >= 200 && pe.HTTPStatus < 400, "a Plaid error for HTTP %d", pe.HTTPStatus)
			require.True(t, json.Valid(pe.Body))
			require.True(t, bytes.Contains(answer, pe.Body), "the error body is what the server sent")
		}
	})
}
