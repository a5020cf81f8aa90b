package app_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/app"
	"github.com/creditsessions/creditsessions/server"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

// requireStillServes checks that a well-behaved call still works after a hostile one.
func requireStillServes(t *testing.T, s *service) {
	t.Helper()
	_, err := s.grpc.CreditSessionsGet(context.Background(), &creditv1.CreditSessionsGetRequest{UserToken: "user-sandbox-example"})
	require.NoError(t, err)
	resp, body := s.post(t, "/credit/sessions/get", `{"user_token":"user-sandbox-example"}`)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
}

// rawCodec sends a message's wire bytes as they are, so a test can send what the
// protobuf library would refuse to encode.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.([]byte))}, nil
}
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}
func (rawCodec) Name() string { return "proto" }

func invalidField(t *testing.T, err error) *errdetails.BadRequest {
	t.Helper()
	st := status.Convert(err)
	require.Equal(t, codes.InvalidArgument, st.Code(), st.Message())
	var violations *errdetails.BadRequest
	var info *errdetails.ErrorInfo
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.BadRequest:
			violations = d
		case *errdetails.ErrorInfo:
			info = d
		}
	}
	require.NotNil(t, info)
	assert.Equal(t, "INVALID_FIELD", info.GetReason())
	require.NotNil(t, violations)
	return violations
}

func TestHostileUserTokensNeverReachPlaid(t *testing.T) {
	s := start(t, app.Config{})
	emu := s.app.Emulator()
	before := emu.Calls()

	t.Run("invalid UTF-8 over gRPC", func(t *testing.T) {
		msg := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "user-sandbox-example\xff")
		var out []byte
		err := s.conn.Invoke(context.Background(), creditv1.CreditService_CreditSessionsGet_FullMethodName, msg, &out,
			grpc.ForceCodecV2(rawCodec{}))
		violations := invalidField(t, err)
		assert.Equal(t, "user_token", violations.GetFieldViolations()[0].GetField())
	})
	t.Run("invalid UTF-8 over REST", func(t *testing.T) {
		resp, body := s.post(t, "/credit/sessions/get", "{\"user_token\":\"user-sandbox-example\xff\"}")
		assert.Equal(t, plaidAnswer{400, "INVALID_REQUEST", "INVALID_FIELD"}, answerOf(t, resp, body))
	})
	t.Run("a lone surrogate over REST", func(t *testing.T) {
		resp, body := s.post(t, "/credit/sessions/get", `{"user_token":"user-sandbox-example\udc00"}`)
		assert.Equal(t, plaidAnswer{400, "INVALID_REQUEST", "INVALID_FIELD"}, answerOf(t, resp, body))
	})
	t.Run("invalid UTF-8 on the REST watch", func(t *testing.T) {
		for _, body := range []string{"{\"user_token\":\"user-sandbox-example\xff\"}", `{"user_token":"user-sandbox-example\udc00"}`} {
			resp, got := s.post(t, "/credit/sessions/watch", body)
			assert.Equal(t, plaidAnswer{400, "INVALID_REQUEST", "INVALID_FIELD"}, answerOf(t, resp, got), "%q", body)
		}
	})
	long := strings.Repeat("u", server.MaxUserTokenBytes+1)
	t.Run("a token too long to be one, over gRPC", func(t *testing.T) {
		_, err := s.grpc.CreditSessionsGet(context.Background(), &creditv1.CreditSessionsGetRequest{UserToken: long})
		invalidField(t, err)
	})
	t.Run("a token too long to be one, over REST", func(t *testing.T) {
		resp, body := s.post(t, "/credit/sessions/get", `{"user_token":"`+long+`"}`)
		assert.Equal(t, plaidAnswer{400, "INVALID_REQUEST", "INVALID_FIELD"}, answerOf(t, resp, body))
	})
	megabyte := strings.Repeat("u", 1<<20)
	t.Run("a megabyte token over gRPC is refused before it is decoded", func(t *testing.T) {
		_, err := s.grpc.CreditSessionsGet(context.Background(), &creditv1.CreditSessionsGetRequest{UserToken: megabyte})
		assert.Equal(t, codes.ResourceExhausted, status.Code(err), "%v", err)
	})
	t.Run("a megabyte token over REST is refused while it is read", func(t *testing.T) {
		resp, body := s.post(t, "/credit/sessions/get", `{"user_token":"`+megabyte+`"}`)
		assert.Equal(t, plaidAnswer{400, "INVALID_REQUEST", "INVALID_BODY"}, answerOf(t, resp, body))
		assert.Contains(t, string(body), "exceeds the limit")
	})
	t.Run("a deeply nested REST body", func(t *testing.T) {
		resp, body := s.post(t, "/credit/sessions/get", `{"user_token":"u","x":`+strings.Repeat(`{"a":`, 20_000)+`1`+strings.Repeat(`}`, 20_000)+`}`)
		assert.Equal(t, plaidAnswer{400, "INVALID_REQUEST", "INVALID_BODY"}, answerOf(t, resp, body))
	})
	assert.Equal(t, before, emu.Calls(), "none of them reached the emulator")
	requireStillServes(t, s)
}

func TestThousandsOfHeadersAreRefused(t *testing.T) {
	s := start(t, app.Config{})

	t.Run("REST", func(t *testing.T) {
		header := http.Header{}
		for i := range 5000 {
			header.Set(fmt.Sprintf("X-Header-%d", i), "value")
		}
		resp, _ := send(t, http.MethodPost, s.rest+"/credit/sessions/get", "application/json", `{"user_token":"user-sandbox-example"}`, header)
		assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode)
	})
	t.Run("gRPC", func(t *testing.T) {
		// grpc-go's client refuses to send more than the server's advertised limit, so
		// a raw connection sends them: one HEADERS and as many CONTINUATIONs as it takes.
		c := dialH2(t, s.app.GRPCAddr().String())
		assert.Equal(t, uint32(app.MaxHeaderBytes), c.settings[http2.SettingMaxHeaderListSize], "advertised")
		var block bytes.Buffer
		enc := hpack.NewEncoder(&block)
		for _, f := range grpcRequestHeaders() {
			require.NoError(t, enc.WriteField(f))
		}
		for i := range 5000 {
			require.NoError(t, enc.WriteField(hpack.HeaderField{Name: fmt.Sprintf("x-header-%d", i), Value: "value"}))
		}
		const frag = 16 << 10
		data := block.Bytes()
		// The server may refuse the block before it has all of it, and close the
		// connection while the frames are still being written: also an answer. Whether
		// it has by then is the scheduler's choice (a busy machine saw a broken pipe).
		closedByServer := func(err error) bool {
			if errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) {
				return true
			}
			require.NoError(t, err)
			return false
		}
		if !closedByServer(c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: data[:frag], EndStream: true})) {
			for data = data[frag:]; len(data) > 0; {
				n := min(frag, len(data))
				if closedByServer(c.fr.WriteContinuation(1, n == len(data), data[:n])) {
					break
				}
				data = data[n:]
			}
		}
		// The stream ends with an error, and the call never runs.
		calls := s.app.Emulator().Calls()
		defer func() { assert.Equal(t, calls, s.app.Emulator().Calls(), "the call reached Plaid") }()
		for {
			f, err := c.fr.ReadFrame()
			if err != nil {
				break // the server closed the connection: also an answer
			}
			if rst, ok := f.(*http2.RSTStreamFrame); ok && rst.StreamID == 1 {
				break
			}
			if h, ok := f.(*http2.MetaHeadersFrame); ok && h.StreamID == 1 {
				if code := h.PseudoValue("status"); code != "" && code != "200" {
					break
				}
				grpcStatus := ""
				for _, field := range h.RegularFields() {
					if field.Name == "grpc-status" {
						grpcStatus = field.Value
					}
				}
				if grpcStatus != "" {
					require.NotEqual(t, "0", grpcStatus, "the call succeeded")
					break
				}
			}
		}
	})
	requireStillServes(t, s)
}

func TestSlowClientsAreCutOff(t *testing.T) {
	const headerTimeout = 300 * time.Millisecond
	s := start(t, app.Config{HeaderTimeout: headerTimeout})

	// trickle writes a byte at a time, every 20 ms, until the server closes the
	// connection; it reports how long that took and whether it got through.
	trickle := func(t *testing.T, addr string, data string) time.Duration {
		t.Helper()
		nc, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		defer nc.Close()
		closed := make(chan struct{})
		go func() {
			_, _ = io.Copy(io.Discard, nc) // returns when the server closes
			close(closed)
		}()
		begin := time.Now()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		limit := time.NewTimer(10 * time.Second)
		defer limit.Stop()
		for i := 0; ; i++ {
			select {
			case <-closed:
				return time.Since(begin)
			case <-tick.C:
				if i < len(data) {
					_, _ = nc.Write([]byte{data[i]})
				}
			case <-limit.C:
				t.Fatal("the server kept a trickling client's connection for 10 s")
			}
		}
	}
	t.Run("REST headers", func(t *testing.T) {
		head := "POST /credit/sessions/get HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-Slow: a\r\n", 100) + "\r\n"
		took := trickle(t, s.app.HTTPAddr().String(), head)
		assert.Less(t, took, time.Duration(len(head))*20*time.Millisecond/2, "cut off long before the head ended")
	})
	t.Run("gRPC connection preface", func(t *testing.T) {
		// Half the preface, then nothing: the server waits for the rest until its bound.
		took := trickle(t, s.app.GRPCAddr().String(), http2.ClientPreface[:12])
		assert.Less(t, took, 5*time.Second)
	})
	requireStillServes(t, s)
}

func grpcRequestHeaders() []hpack.HeaderField {
	return []hpack.HeaderField{
		{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
		{Name: ":path", Value: creditv1.CreditService_CreditSessionsGet_FullMethodName},
		{Name: ":authority", Value: "x"}, {Name: "content-type", Value: "application/grpc"}, {Name: "te", Value: "trailers"},
	}
}

// h2conn is a raw HTTP/2 connection to the gRPC server, for what no well-behaved client
// does.
type h2conn struct {
	nc       net.Conn
	fr       *http2.Framer
	settings map[http2.SettingID]uint32
}

func dialH2(t *testing.T, addr string) *h2conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = nc.Close() })
	require.NoError(t, nc.SetDeadline(time.Now().Add(20*time.Second)))
	_, err = io.WriteString(nc, http2.ClientPreface)
	require.NoError(t, err)
	c := &h2conn{nc: nc, fr: http2.NewFramer(nc, bufio.NewReader(nc)), settings: map[http2.SettingID]uint32{}}
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	require.NoError(t, c.fr.WriteSettings())
	for { // the server's SETTINGS, then acknowledge them
		f, err := c.fr.ReadFrame()
		require.NoError(t, err)
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			require.NoError(t, sf.ForeachSetting(func(s http2.Setting) error { c.settings[s.ID] = s.Val; return nil }))
			require.NoError(t, c.fr.WriteSettingsAck())
			return c
		}
	}
}

func TestThousandsOfStreamsOnOneConnection(t *testing.T) {
	s := start(t, app.Config{})
	c := dialH2(t, s.app.GRPCAddr().String())
	assert.Equal(t, uint32(app.MaxConcurrentStreams), c.settings[http2.SettingMaxConcurrentStreams], "advertised")

	// Streams whose request never comes: each would hold a handler waiting for it.
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	const streams = 1000
	for i := range streams {
		block.Reset()
		for _, f := range grpcRequestHeaders() {
			require.NoError(t, enc.WriteField(f))
		}
		require.NoError(t, c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), BlockFragment: block.Bytes(), EndHeaders: true}))
	}
	refused := 0
	for refused < streams-app.MaxConcurrentStreams {
		f, err := c.fr.ReadFrame()
		require.NoError(t, err, "after %d refused streams", refused)
		if rst, ok := f.(*http2.RSTStreamFrame); ok {
			require.Equal(t, http2.ErrCodeRefusedStream, rst.ErrCode)
			refused++
		}
		require.NotEqual(t, http2.FrameGoAway, f.Header().Type, "the server gave up on the connection")
	}
	assert.Equal(t, streams-app.MaxConcurrentStreams, refused)
	require.NoError(t, c.nc.Close())
	requireStillServes(t, s)
}

func TestPingFloodGetsGoAway(t *testing.T) {
	s := start(t, app.Config{})
	c := dialH2(t, s.app.GRPCAddr().String())
	for i := range 10 {
		require.NoError(t, c.fr.WritePing(false, [8]byte{byte(i)}))
	}
	for {
		f, err := c.fr.ReadFrame()
		require.NoError(t, err, "the connection ended without a GOAWAY")
		if ga, ok := f.(*http2.GoAwayFrame); ok {
			assert.Equal(t, http2.ErrCodeEnhanceYourCalm, ga.ErrCode)
			assert.Equal(t, "too_many_pings", string(ga.DebugData()))
			break
		}
	}
	requireStillServes(t, s)
}

// agreedClientKeepalive is what the Go client package sends with; the server's policy
// must let it be.
var agreedClientKeepalive = keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}

func TestKeepalivePolicyAllowsTheAgreedClient(t *testing.T) {
	assert.Equal(t, keepalive.EnforcementPolicy{MinTime: 20 * time.Second, PermitWithoutStream: true}, app.KeepalivePolicy())
	assert.GreaterOrEqual(t, agreedClientKeepalive.Time, app.KeepalivePolicy().MinTime)
	if testing.Short() {
		t.Skip("takes two of the client's 30 s keepalive intervals")
	}
	t.Parallel()
	s := start(t, app.Config{})
	conn, err := grpc.NewClient(s.app.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithKeepaliveParams(agreedClientKeepalive))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	client := creditv1.NewCreditServiceClient(conn)
	_, err = client.CreditSessionsGet(context.Background(), &creditv1.CreditSessionsGetRequest{UserToken: "user-sandbox-example"})
	require.NoError(t, err)
	require.Equal(t, connectivity.Ready, conn.GetState())

	// Two pings, 30 s apart, idle: a GOAWAY too_many_pings would take the connection
	// out of READY (grpc-go reconnects, and doubles its interval).
	ctx, cancel := context.WithTimeout(context.Background(), 2*agreedClientKeepalive.Time+5*time.Second)
	defer cancel()
	changed := conn.WaitForStateChange(ctx, connectivity.Ready)
	assert.False(t, changed, "the connection left READY: %v", conn.GetState())
	assert.True(t, errors.Is(ctx.Err(), context.DeadlineExceeded))
	_, err = client.CreditSessionsGet(context.Background(), &creditv1.CreditSessionsGetRequest{UserToken: "user-sandbox-example"})
	require.NoError(t, err)
}
