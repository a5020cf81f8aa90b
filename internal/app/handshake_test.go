package app_test

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// handshakeLine is a "TLS handshake refused" log line.
type handshakeLine struct {
	Level      string `json:"level"`
	Listener   string `json:"listener"`
	RemoteAddr string `json:"remote_addr"`
	Error      string `json:"error"`
	Suppressed int64  `json:"suppressed"`
}

func handshakeLines(t *testing.T, logs *syncBuffer) []handshakeLine {
	t.Helper()
	var out []handshakeLine
	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	for sc.Scan() {
		var l struct {
			Msg string `json:"msg"`
			handshakeLine
		}
		require.NoError(t, json.Unmarshal(sc.Bytes(), &l), "%s", sc.Text())
		if l.Msg == "TLS handshake refused" {
			out = append(out, l.handshakeLine)
		}
	}
	return out
}

// handshake opens one connection to addr and tries a TLS handshake with cfg (nil: it
// writes the start of a plaintext HTTP/2 connection instead), then reads until the
// server ends the connection. It returns the client's address, which the server logs.
func handshake(t *testing.T, addr string, cfg *tls.Config) string {
	t.Helper()
	raw, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer raw.Close()
	require.NoError(t, raw.SetDeadline(time.Now().Add(10*time.Second)))
	if cfg == nil {
		_, err = io.WriteString(raw, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, raw)
		return raw.LocalAddr().String()
	}
	cfg = cfg.Clone()
	cfg.ServerName, _, err = net.SplitHostPort(addr)
	require.NoError(t, err)
	c := tls.Client(raw, cfg)
	// With TLS 1.3 the client's handshake ends before the server has checked the
	// client's certificate: the refusal comes as an alert on the first read.
	err = c.Handshake()
	if cfg.MinVersion >= tls.VersionTLS12 {
		require.NoError(t, err, "the client trusts the server; the server refuses the client")
	}
	if err == nil {
		_, err = c.Read(make([]byte, 1))
		require.Error(t, err, "the server refuses this handshake")
	}
	return raw.LocalAddr().String()
}

func TestListenersLogEachRefusedHandshakeOnce(t *testing.T) {
	p := newPKI(t)
	s := start(t, secureConfig(p, false))
	h2 := func(cert *tls.Certificate) *tls.Config {
		c := p.clientTLS(nil)
		c.NextProtos = []string{"h2"}
		if cert != nil {
			// Present it even when the server asks for certificates of another CA (Go's
			// client, grpcurl's too, would otherwise send none).
			c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
		}
		return c
	}
	oldVersion := h2(&p.underwriter)
	oldVersion.MinVersion, oldVersion.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	cases := []struct {
		name   string
		client *tls.Config
		reason string
	}{
		{"no client certificate", h2(nil), "certificate"},
		{"a certificate from another CA", h2(&p.foreign), "unknown authority"},
		{"an expired certificate", h2(&p.expired), "expired"},
		{"TLS 1.1", oldVersion, "unsupported versions"},
		{"plaintext", nil, "does not look like a TLS handshake"},
	}
	for _, listener := range []struct{ name, addr string }{
		{"grpc", s.app.GRPCAddr().String()}, {"rest", s.app.HTTPAddr().String()},
	} {
		for _, tc := range cases {
			t.Run(listener.name+": "+tc.name, func(t *testing.T) {
				from := handshake(t, listener.addr, tc.client)
				var mine []handshakeLine
				require.Eventually(t, func() bool {
					mine = mine[:0]
					for _, l := range handshakeLines(t, s.logs) {
						if l.RemoteAddr == from {
							mine = append(mine, l)
						}
					}
					return len(mine) > 0
				}, 5*time.Second, 5*time.Millisecond, "a log line for the handshake from %s", from)
				require.Len(t, mine, 1, "one line per refused handshake")
				assert.Equal(t, "WARN", mine[0].Level)
				assert.Equal(t, listener.name, mine[0].Listener)
				assert.Contains(t, mine[0].Error, tc.reason)
			})
		}
	}
	t.Run("an allowed caller is not logged", func(t *testing.T) {
		c, _ := p.grpcClient(t, s.app.GRPCAddr().String(), &p.underwriter)
		_, err := c.CreditSessionsGet(t.Context(), example)
		require.NoError(t, err)
		assert.Len(t, handshakeLines(t, s.logs), 2*len(cases))
	})
}

func TestRefusedHandshakeFloodLogsABoundedNumberOfLines(t *testing.T) {
	p := newPKI(t)
	s := start(t, secureConfig(p, false))
	addr := s.app.GRPCAddr().String()
	noCert := p.clientTLS(nil)
	noCert.NextProtos = []string{"h2"}

	const flood = 200
	var attempts atomic.Int64
	began := time.Now()
	for range flood {
		handshake(t, addr, noCert)
		attempts.Add(1)
	}
	// The flood is over; keep refusing handshakes until the limit lets one of them
	// through, whose line says how many were left out.
	probes := map[string]bool{}
	var last handshakeLine
	require.Eventually(t, func() bool {
		probes[handshake(t, addr, noCert)] = true
		attempts.Add(1)
		for _, l := range handshakeLines(t, s.logs) {
			if probes[l.RemoteAddr] {
				last = l
				return true
			}
		}
		return false
	}, 10*time.Second, 50*time.Millisecond, "a line after the flood")
	elapsed := time.Since(began)

	lines := handshakeLines(t, s.logs)
	var reported int64
	for _, l := range lines {
		reported += l.Suppressed
	}
	// A burst of 10, then one a second.
	bound := 10 + int(elapsed/time.Second) + 1
	assert.LessOrEqual(t, len(lines), bound, "%d refused handshakes in %v", attempts.Load(), elapsed)
	assert.Less(t, len(lines), flood)
	assert.Positive(t, last.Suppressed, "the line after the flood says lines were left out")
	assert.GreaterOrEqual(t, reported+int64(len(lines)), int64(flood), "what was left out is counted, not lost")
}
