// Package logbuf is a buffered writer for log lines: the service writes a JSON line per
// call, and one write(2) per line was a system call per call. Lines are gathered in
// memory and written together when the buffer fills, a short interval after the first
// line of a batch, and on Stop, which the process calls on its way out (SIGTERM
// included), so that lines are complete at exit.
//
// The bound on loss: a process that dies without calling Stop (SIGKILL, the OOM killer,
// a fatal runtime error, a panic that ends the process) loses the lines written within
// the last Interval at most, and never more than Size bytes of them. zap's
// BufferedWriteSyncer is the same design; its interval defaults to 30 s, this one to
// 100 ms.
package logbuf

import (
	"io"
	"sync"
	"time"
)

// Defaults of Options.
const (
	DefaultSize     = 256 << 10
	DefaultInterval = 100 * time.Millisecond
)

// Options tune a Writer. Zero values mean the defaults.
type Options struct {
	// Size is how many bytes are gathered before they are written at once.
	Size int
	// Interval is the longest a line waits in the buffer.
	Interval time.Duration
}

// Writer gathers what is written to it and writes it to the underlying writer in
// batches. Every Write is kept whole: a log handler's line never straddles two writes
// unless it is larger than the buffer, when it is written on its own. It is safe for
// concurrent use; writes after Stop go straight to the underlying writer.
type Writer struct {
	w        io.Writer
	size     int
	interval time.Duration

	mu      sync.Mutex
	buf     []byte
	timer   *time.Timer // armed while buf holds lines, so an idle process wakes for nothing
	armed   bool
	stopped bool
	err     error // the underlying writer's last error, returned by the next Write
}

// New returns a Writer in front of w.
func New(w io.Writer, opts Options) *Writer {
	if opts.Size <= 0 {
		opts.Size = DefaultSize
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	b := &Writer{w: w, size: opts.Size, interval: opts.Interval, buf: make([]byte, 0, opts.Size)}
	b.timer = time.AfterFunc(time.Hour, b.timed)
	b.timer.Stop()
	return b
}

// Write keeps p for a later batch, or writes the batch first when p would overflow it.
// It reports the underlying writer's error of a previous batch, once.
func (b *Writer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.err; err != nil {
		b.err = nil
		return 0, err
	}
	if b.stopped {
		return b.w.Write(p)
	}
	if len(b.buf)+len(p) > b.size {
		if err := b.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) > b.size {
			return b.w.Write(p)
		}
	}
	b.buf = append(b.buf, p...)
	if !b.armed {
		b.armed = true
		b.timer.Reset(b.interval)
	}
	return len(p), nil
}

// Flush writes what is buffered now.
func (b *Writer) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.flushLocked()
}

// Stop writes what is buffered and makes every later write go straight through.
func (b *Writer) Stop() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stopped = true
	b.timer.Stop()
	b.armed = false
	return b.flushLocked()
}

func (b *Writer) timed() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.armed = false
	if err := b.flushLocked(); err != nil {
		b.err = err
	}
}

func (b *Writer) flushLocked() error {
	if len(b.buf) == 0 {
		return nil
	}
	_, err := b.w.Write(b.buf)
	b.buf = b.buf[:0]
	return err
}
