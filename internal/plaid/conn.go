package plaid

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// conn is one connection. It belongs to one exchange at a time, or to the idle pool
// (transport.go). This file is the exchange: writing a request, reading its answer, and
// the rules by which the connection goes back to the pool.
type conn struct {
	t        *Transport
	key      connKey
	nc       net.Conn
	tlsState *tls.ConnectionState
	wire     wire
	br       *bufio.Reader
	bw       *bufio.Writer
	abort    func() // moves the deadline to the past; run when a request's context ends
	reused   bool   // it came from the idle pool
	idleAt   time.Time
}

func (c *conn) close() { _ = c.nc.Close() }

// wire sits between the connection and its buffers. It bounds what a response head may
// read, and tells a failed write on the connection from a failed read of the request body.
type wire struct {
	nc       net.Conn
	headLeft int  // bytes the response head may still read, while limited
	limited  bool // reading a response head
	writeErr error
}

func (w *wire) Read(p []byte) (int, error) {
	if !w.limited {
		return w.nc.Read(p)
	}
	if w.headLeft <= 0 {
		return 0, errHeadTooLarge
	}
	if len(p) > w.headLeft {
		p = p[:w.headLeft]
	}
	n, err := w.nc.Read(p)
	w.headLeft -= n
	return n, err
}

func (w *wire) Write(p []byte) (int, error) {
	n, err := w.nc.Write(p)
	if err != nil {
		w.writeErr = err
	}
	return n, err
}

// roundTrip sends req on c and reads the response head. On failure c is closed, and
// stale reports that the failure is what a connection the server had already closed
// gives: the write failed, or the connection ended before any byte of a response.
//
// A reset (ECONNRESET) after the request went out is not stale: an idle connection the
// server reset fails the write instead, so this is a server that got the request and
// dropped it. Sending it again would hide that from the caller's retry policy and
// circuit breaker, which count attempts, and make Plaid see more requests than they did.
func (c *conn) roundTrip(req *http.Request) (resp *http.Response, stale bool, err error) {
	ctx := req.Context()
	stop := context.AfterFunc(ctx, c.abort)
	fail := func(err error, stale bool, doing string) (*http.Response, bool, error) {
		stop()
		c.close()
		return nil, stale && ctx.Err() == nil, contextOr(ctx, err, doing)
	}

	c.wire.writeErr = nil
	err = req.Write(c.bw) // closes req.Body
	if err == nil {
		err = c.bw.Flush()
	}
	if err != nil {
		return fail(err, c.wire.writeErr != nil, "writing the request")
	}

	c.wire.limited, c.wire.headLeft = true, maxResponseHead
	if _, err := c.br.Peek(1); err != nil {
		closed := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
		return fail(err, closed, "reading the response")
	}
	for {
		resp, err = http.ReadResponse(c.br, req)
		if err != nil {
			return fail(err, false, "reading the response head")
		}
		// 100 Continue, 103 Early Hints and the like: the response is still to come.
		if resp.StatusCode < 100 || resp.StatusCode > 199 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
	}
	c.wire.limited = false
	resp.TLS = c.tlsState

	// A 101 would hand the connection to another protocol, which nothing here speaks.
	reuse := !resp.Close && !wantsClose(req) && resp.StatusCode != http.StatusSwitchingProtocols
	if resp.Body == http.NoBody {
		c.release(stop, reuse)
		return resp, false, nil
	}
	resp.Body = &body{rc: resp.Body, c: c, ctx: ctx, stop: stop, reuse: reuse}
	return resp, false, nil
}

// release pools c if reuse allows and its context's hook could be stopped before it
// ran (after which its deadline may be in the past), and closes it otherwise.
func (c *conn) release(stop func() bool, reuse bool) {
	if stop() && reuse {
		c.t.putIdle(c)
		return
	}
	c.close()
}

// body is a response body read straight from its connection. At io.EOF the connection
// goes back to the pool (or closes); closed before, the connection closes, unread.
type body struct {
	rc    io.ReadCloser // http.ReadResponse's body, reading from c.br
	c     *conn
	ctx   context.Context
	stop  func() bool
	reuse bool

	mu     sync.Mutex
	closed bool  // Close was called
	done   bool  // the connection was released: pooled or closed
	err    error // what Read returns once done and not closed
}

func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	if b.closed || b.done {
		err := b.err
		if b.closed {
			err = errBodyClosed
		}
		b.mu.Unlock()
		return 0, err
	}
	b.mu.Unlock()

	n, err := b.rc.Read(p)
	if err == nil {
		return n, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed { // Close ran meanwhile and closed the connection under the read
		return n, errBodyClosed
	}
	b.done = true
	if err == io.EOF {
		b.err = io.EOF
		b.c.release(b.stop, b.reuse)
		return n, io.EOF
	}
	b.stop()
	b.c.close()
	if ctxErr := b.ctx.Err(); ctxErr != nil {
		err = ctxErr
	}
	b.err = err
	return n, err
}

// Close closes the connection unless the body was read to the end; it does not drain.
func (b *body) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	if !b.done {
		b.done = true
		b.stop()
		b.c.close()
	}
	return nil
}
