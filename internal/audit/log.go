package audit

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
)

// writeChunk is how many bytes of a batch go to the sink in one write.
const writeChunk = 256 << 10

// Stdout is the Options.Path that writes records to the process's standard output.
const Stdout = "stdout"

// Defaults for Options' zero values.
const (
	DefaultMaxBytes   = 100 << 20
	DefaultFlushEvery = 100 * time.Millisecond
	DefaultQueue      = 16384
)

// Options configure Open.
type Options struct {
	// Path is the file records are appended to, or Stdout. "" means no trail.
	Path string
	// Required refuses a call (Unavailable) whose record cannot be kept: the sink
	// fails, or the queue is full. Otherwise such calls are served and the lost records
	// counted.
	Required bool
	// MaxBytes rotates the file once it holds this many bytes (it may pass them by one
	// batch); 0 means DefaultMaxBytes, below 0 never.
	MaxBytes int64
	// FlushEvery is how often queued records are written and fsync'd: at most this much
	// of the trail is at risk in a crash; 0 means DefaultFlushEvery.
	FlushEvery time.Duration
	// Queue bounds the records held in memory, not yet written; 0 means DefaultQueue.
	Queue int
	// ServiceClientID names the Plaid client id calls use when the caller brings none.
	ServiceClientID func() string
	// Metrics, when set, counts records written and lost.
	Metrics *Metrics
	// Logger hears of sink failures and rotations.
	Logger *slog.Logger
	// Stdout is where Path Stdout writes; nil means os.Stdout.
	Stdout io.Writer
}

// entry is a call's record as the call leaves it: the writer turns it into a Record, off
// the call's path.
type entry struct {
	note      Note
	method    string
	transport string
	code      codes.Code
	start     time.Time
	end       time.Time
	watch     bool
	messages  int
}

// Log is the trail: a bounded queue, and one goroutine that writes it out.
type Log struct {
	opts Options

	mu      sync.Mutex
	queue   []entry // waiting for the writer
	held    int     // queued, plus taken by the writer and not yet written
	closed  bool
	failing atomic.Bool

	closeOnce sync.Once
	closeErr  error

	kick    chan struct{}   // the queue is filling: write now
	flushes chan chan error // Flush: write what is queued, then answer
	reopen  chan chan error // Reopen: open the path anew before the next write
	done    chan struct{}   // closed by Close
	stopped chan struct{}   // closed by the writer as it returns

	// The writer's own.
	w       io.Writer
	f       *os.File
	size    int64
	prev    [sha256.Size]byte
	genesis bool
	buf     []byte
	pending []entry // taken from the queue, not yet written
}

// Open starts the trail opts describe; nil, nil when opts.Path is "".
func Open(opts Options) (*Log, error) {
	if opts.Path == "" {
		return nil, nil
	}
	if opts.MaxBytes == 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.FlushEvery <= 0 {
		opts.FlushEvery = DefaultFlushEvery
	}
	if opts.Queue <= 0 {
		opts.Queue = DefaultQueue
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.ServiceClientID == nil {
		opts.ServiceClientID = func() string { return "" }
	}
	l := &Log{
		opts:    opts,
		kick:    make(chan struct{}, 1),
		flushes: make(chan chan error),
		reopen:  make(chan chan error),
		done:    make(chan struct{}),
		stopped: make(chan struct{}),
		genesis: true,
	}
	if opts.Path == Stdout {
		l.w = opts.Stdout
		if l.w == nil {
			l.w = os.Stdout
		}
	} else if err := l.openFile(true); err != nil {
		return nil, err
	}
	opts.Metrics.observe(l)
	go l.run()
	return l, nil
}

// openFile opens the path for appending. At start (resume), the chain continues from
// the file's last record; on a re-open, from the last record written, wherever it went.
func (l *Log) openFile(resume bool) error {
	f, err := os.OpenFile(l.opts.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("audit log: %w", err)
	}
	if !st.Mode().IsRegular() {
		_ = f.Close()
		return fmt.Errorf("audit log %s: not a regular file", l.opts.Path)
	}
	l.f, l.w, l.size = f, f, st.Size()
	if resume && st.Size() > 0 {
		last, torn, err := lastLine(l.opts.Path, st.Size())
		if err != nil {
			return fmt.Errorf("audit log: reading its last record: %w", err)
		}
		if torn {
			// A write cut short by a crash: end that line, so the next record starts its own.
			if _, err := f.Write([]byte{'\n'}); err != nil {
				return fmt.Errorf("audit log: %w", err)
			}
			l.size++
		}
		l.prev, l.genesis = sha256.Sum256(last), false
	}
	return nil
}

// lastLine reads the file's last line (without its newline), and whether it lacks one.
func lastLine(path string, size int64) (_ []byte, torn bool, _ error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	const most = maxLine + 1
	from := max(0, size-most)
	data := make([]byte, size-from)
	if _, err := f.ReadAt(data, from); err != nil {
		return nil, false, err
	}
	torn = data[len(data)-1] != '\n'
	data = bytes.TrimSuffix(data, []byte{'\n'})
	if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
		data = data[i+1:]
	}
	return data, torn, nil
}

// Healthy reports whether the last write to the sink succeeded.
func (l *Log) Healthy() bool { return !l.failing.Load() }

// Required reports whether calls are refused when their record cannot be kept.
func (l *Log) Required() bool { return l.opts.Required }

// add queues a call's record; false when it cannot be kept (the queue is full, or the
// log is closed), which it counts as lost.
func (l *Log) add(e *entry) bool {
	l.mu.Lock()
	if l.closed || l.held >= l.opts.Queue {
		closed := l.closed
		l.mu.Unlock()
		reason := lostQueueFull
		if closed {
			reason = lostClosed
		}
		l.opts.Metrics.lose(reason, 1)
		return false
	}
	l.queue = append(l.queue, *e)
	l.held++
	kick := l.held == l.opts.Queue/4
	l.mu.Unlock()
	if kick {
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
	return true
}

// Flush writes every record queued so far, and reports whether they are on disk.
func (l *Log) Flush() error {
	ch := make(chan error, 1)
	select {
	case l.flushes <- ch:
		return <-ch
	case <-l.stopped:
		return errors.New("audit log closed")
	}
}

// Reopen opens the file path anew, for logrotate after it moved the file away (SIGHUP).
// The new file's first record links to the last one written to the old.
func (l *Log) Reopen() error {
	if l.opts.Path == Stdout { // l.f is the writer's: not read here
		return nil
	}
	ch := make(chan error, 1)
	select {
	case l.reopen <- ch:
		return <-ch
	case <-l.stopped:
		return errors.New("audit log closed")
	}
}

// Close writes every record queued, and stops taking more: a record added after Close
// is counted lost. Call it once the servers have stopped.
func (l *Log) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		close(l.done)
		<-l.stopped
		if n := len(l.pending); n > 0 {
			l.opts.Metrics.lose(lostSinkFailing, n)
			l.closeErr = fmt.Errorf("audit log: %d records could not be written", n)
		}
	})
	return l.closeErr
}

func (l *Log) run() {
	defer close(l.stopped)
	tick := time.NewTicker(l.opts.FlushEvery)
	defer tick.Stop()
	for {
		var answer chan error
		select {
		case <-tick.C:
		case <-l.kick:
		case answer = <-l.flushes:
		case answer = <-l.reopen:
			err := l.reopenFile()
			answer <- err
			continue
		case <-l.done:
			err := l.write()
			if l.f != nil {
				if cerr := l.f.Close(); err == nil && cerr != nil {
					l.opts.Logger.Error("audit log: closing", "error", cerr)
				}
			}
			if err != nil {
				l.opts.Logger.Error("audit log: records not written at shutdown", "records", len(l.pending), "error", err)
			}
			return
		}
		err := l.write()
		if answer != nil {
			answer <- err
		}
	}
}

func (l *Log) reopenFile() error {
	if l.f != nil {
		_ = l.f.Close()
		l.f = nil
	}
	err := l.openFile(false)
	if err != nil {
		l.fail(err)
		return err
	}
	l.opts.Logger.Info("audit log re-opened", "path", l.opts.Path)
	return l.write() // records held while it failed; and whether it is healthy again

}

// write writes what is queued, in one write and one fsync, after any it could not
// write before. On failure the records stay pending (the queue's bound counts them) and
// the next tick tries again, on the path opened anew.
func (l *Log) write() error {
	l.mu.Lock()
	if len(l.pending) == 0 { // the usual case: swap, no copy
		l.pending, l.queue = l.queue, l.pending[:0]
	} else {
		l.pending = append(l.pending, l.queue...)
		l.queue = l.queue[:0]
	}
	l.mu.Unlock()
	if len(l.pending) == 0 {
		return nil
	}
	if l.w == nil { // a failed re-open: try again
		if err := l.openFile(false); err != nil {
			l.fail(err)
			return err
		}
	}
	if err := l.rotateIfFull(); err != nil {
		l.fail(err)
		return err
	}
	buf := l.buf[:0]
	prev, genesis := l.prev, l.genesis
	var n int
	var err error
	for i := range l.pending {
		start := len(buf)
		buf = l.appendRecord(buf, &l.pending[i], prev, genesis)
		prev, genesis = sha256.Sum256(buf[start:]), false
		buf = append(buf, '\n')
		// Written in chunks of a buffer that is kept: one write per chunk, one fsync per
		// batch, and no large buffer grown and dropped per batch.
		if len(buf) >= writeChunk || i == len(l.pending)-1 {
			var w int
			w, err = l.w.Write(buf)
			n += w
			buf = buf[:0]
			if err != nil {
				break
			}
		}
	}
	l.buf = buf
	if err == nil && l.f != nil {
		err = l.f.Sync()
	}
	if err != nil {
		if l.f != nil {
			// Take back a batch written in part, so the retry does not leave half a line
			// in the chain; then open the path anew for the retry.
			_ = l.f.Truncate(l.size)
			_ = l.f.Close()
			l.f, l.w = nil, nil
		}
		l.fail(fmt.Errorf("audit log: writing %d records: %w", len(l.pending), err))
		return err
	}
	l.size += int64(n)
	l.prev, l.genesis = prev, genesis
	written := len(l.pending)
	l.pending = l.pending[:0]
	l.mu.Lock()
	l.held -= written
	l.mu.Unlock()
	l.opts.Metrics.wrote(written)
	if l.failing.Swap(false) {
		l.opts.Logger.Info("audit log: writing again", "path", l.opts.Path)
	}
	return nil
}

func (l *Log) fail(err error) {
	if !l.failing.Swap(true) {
		l.opts.Logger.Error("audit log: the sink fails; records are held in memory until it is back", "error", err)
	}
}

// rotateIfFull moves a full file aside as PATH.YYYYMMDDTHHMMSS.NNNNNNNNNZ (UTC) and
// starts a new one at PATH, whose first record links to the moved file's last.
func (l *Log) rotateIfFull() error {
	if l.f == nil || l.opts.MaxBytes < 0 || l.size < l.opts.MaxBytes {
		return nil
	}
	if err := l.f.Close(); err != nil {
		return err
	}
	l.f, l.w = nil, nil
	aside := RotatedName(l.opts.Path, time.Now())
	if err := os.Rename(l.opts.Path, aside); err != nil {
		return fmt.Errorf("audit log: rotating: %w", err)
	}
	l.opts.Logger.Info("audit log rotated", "path", l.opts.Path, "rotated_to", aside)
	return l.openFile(false)
}

// RotatedName is the name a file rotated at t gets: its path, a dot and the UTC time,
// so that the rotated files of one path sort in the order they were written.
func RotatedName(path string, t time.Time) string {
	return path + "." + t.UTC().Format("20060102T150405.000000000Z")
}
