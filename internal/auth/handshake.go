package auth

import (
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc/credentials"
)

// A refused handshake is the only trace a caller without a certificate, with one from
// another CA or with an old TLS version leaves: its call never starts, so no call line
// is logged and no call metric moves. grpc-go reports it only to its own logger at
// info level, which the service does not show; net/http logs one line per refusal.
// Anyone who can reach a port can make refusals as fast as they can open connections,
// so the lines are rate-limited: a burst, then one a second, and the next line logged
// says how many were left out.
const (
	handshakeLogBurst = 10
	handshakeLogEvery = time.Second
)

// HandshakeLog logs TLS handshakes the listeners refused, rate-limited, one limit for
// all listeners.
type HandshakeLog struct {
	logger     *slog.Logger
	limit      *rate.Limiter
	suppressed atomic.Int64
}

// NewHandshakeLog logs to logger at level WARN.
func NewHandshakeLog(logger *slog.Logger) *HandshakeLog {
	return &HandshakeLog{logger: logger, limit: rate.NewLimiter(rate.Every(handshakeLogEvery), handshakeLogBurst)}
}

// Refused logs that the listener refused a handshake from remoteAddr for reason, unless
// the limit says to leave it out. The reason is crypto/tls's error: it names what was
// wrong (no certificate, an unknown authority, a version), never key material.
func (h *HandshakeLog) Refused(listener, remoteAddr, reason string) {
	if !h.limit.Allow() {
		h.suppressed.Add(1)
		return
	}
	attrs := []any{"listener", listener, "remote_addr", remoteAddr, "error", reason}
	if n := h.suppressed.Swap(0); n > 0 {
		attrs = append(attrs, "suppressed", n)
	}
	h.logger.Warn("TLS handshake refused", attrs...)
}

// GRPC wraps the gRPC server's transport credentials so that their refused handshakes
// are logged.
func (h *HandshakeLog) GRPC(c credentials.TransportCredentials) credentials.TransportCredentials {
	return loggedCredentials{TransportCredentials: c, log: h}
}

type loggedCredentials struct {
	credentials.TransportCredentials
	log *HandshakeLog
}

func (c loggedCredentials) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ServerHandshake(raw)
	// io.EOF is a connection closed before saying anything: a TCP port check or a load
	// balancer's probe, not a caller refused. grpc-go leaves it out of its own log too.
	if err != nil && !errors.Is(err, io.EOF) {
		c.log.Refused("grpc", raw.RemoteAddr().String(), err.Error())
	}
	return conn, info, err
}

func (c loggedCredentials) Clone() credentials.TransportCredentials {
	return loggedCredentials{TransportCredentials: c.TransportCredentials.Clone(), log: c.log}
}

// httpHandshakeError is how net/http's server words a refused handshake in its error
// log; the address and the reason follow.
const httpHandshakeError = "http: TLS handshake error from "

// HTTPErrorLog is an http.Server's ErrorLog for a TLS listener: its refused handshakes
// go through h (so one limit holds for every listener), its other messages to logger at
// level WARN as they are.
func (h *HandshakeLog) HTTPErrorLog(listener string, logger *slog.Logger) *log.Logger {
	return log.New(httpErrorWriter{listener: listener, log: h, other: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}, "", 0)
}

type httpErrorWriter struct {
	listener string
	log      *HandshakeLog
	other    *log.Logger
}

func (w httpErrorWriter) Write(p []byte) (int, error) {
	line := strings.TrimSuffix(string(p), "\n")
	if rest, ok := strings.CutPrefix(line, httpHandshakeError); ok {
		// "[::1]:1234: reason": an address holds colons but never ": ".
		if addr, reason, ok := strings.Cut(rest, ": "); ok {
			if reason != io.EOF.Error() {
				w.log.Refused(w.listener, addr, reason)
			}
			return len(p), nil
		}
	}
	w.other.Print(line)
	return len(p), nil
}
