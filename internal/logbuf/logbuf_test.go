package logbuf_test

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creditsessions/creditsessions/internal/logbuf"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sink records each write it gets, as stderr would get them.
type sink struct {
	mu     sync.Mutex
	writes []string
	err    error
}

func (s *sink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return 0, s.err
	}
	s.writes = append(s.writes, string(p))
	return len(p), nil
}

func (s *sink) got() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.writes...)
}

func TestLinesAreWrittenTogether(t *testing.T) {
	tests := []struct {
		name  string
		opts  logbuf.Options
		lines []string
		// then: what happens before the writes are checked
		then func(*logbuf.Writer)
		want []string
	}{
		{name: "stop writes what is buffered, in one write",
			opts: logbuf.Options{Interval: time.Hour}, lines: []string{"a\n", "b\n", "c\n"},
			then: func(w *logbuf.Writer) { require.NoError(t, w.Stop()) }, want: []string{"a\nb\nc\n"}},
		{name: "a full buffer is written before the line that would overflow it",
			opts: logbuf.Options{Size: 4, Interval: time.Hour}, lines: []string{"ab\n", "cd\n"},
			then: func(w *logbuf.Writer) { require.NoError(t, w.Stop()) }, want: []string{"ab\n", "cd\n"}},
		{name: "a line larger than the buffer goes whole, on its own",
			opts: logbuf.Options{Size: 4, Interval: time.Hour}, lines: []string{"a\n", "longer than four\n", "b\n"},
			then: func(w *logbuf.Writer) { require.NoError(t, w.Stop()) }, want: []string{"a\n", "longer than four\n", "b\n"}},
		{name: "flush writes now",
			opts: logbuf.Options{Interval: time.Hour}, lines: []string{"a\n"},
			then: func(w *logbuf.Writer) { require.NoError(t, w.Flush()) }, want: []string{"a\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &sink{}
			w := logbuf.New(s, tt.opts)
			t.Cleanup(func() { _ = w.Stop() })
			for _, l := range tt.lines {
				n, err := w.Write([]byte(l))
				require.NoError(t, err)
				assert.Equal(t, len(l), n)
			}
			tt.then(w)
			assert.Equal(t, tt.want, s.got())
		})
	}
}

// The bound on what a crash loses: a line reaches the underlying writer within the
// interval of its write, with no further write or call to push it.
func TestLinesWaitNoLongerThanTheInterval(t *testing.T) {
	s := &sink{}
	w := logbuf.New(s, logbuf.Options{Interval: 20 * time.Millisecond})
	t.Cleanup(func() { _ = w.Stop() })
	written := time.Now()
	_, err := w.Write([]byte("line\n"))
	require.NoError(t, err)
	assert.Empty(t, s.got(), "buffered, not written at once")
	require.Eventually(t, func() bool { return len(s.got()) == 1 }, 5*time.Second, time.Millisecond)
	assert.Less(t, time.Since(written), 5*time.Second)
	assert.Equal(t, []string{"line\n"}, s.got())

	// A second batch gets a timer of its own.
	_, err = w.Write([]byte("again\n"))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(s.got()) == 2 }, 5*time.Second, time.Millisecond)
}

func TestWritesAfterStopGoStraightThrough(t *testing.T) {
	s := &sink{}
	w := logbuf.New(s, logbuf.Options{Interval: time.Hour})
	require.NoError(t, w.Stop())
	_, err := w.Write([]byte("late\n"))
	require.NoError(t, err)
	assert.Equal(t, []string{"late\n"}, s.got())
}

// A failing underlying writer is reported, to the next writer if the failure was the
// timer's, and lines are not kept to grow without bound.
func TestUnderlyingErrorsAreReported(t *testing.T) {
	s := &sink{err: errors.New("disk full")}
	w := logbuf.New(s, logbuf.Options{Size: 8, Interval: time.Hour})
	_, err := w.Write([]byte("12345\n"))
	require.NoError(t, err)
	_, err = w.Write([]byte("678901\n"))
	require.ErrorContains(t, err, "disk full")
	_, err = w.Write([]byte("x\n"))
	require.NoError(t, err, "buffered again")
	assert.ErrorContains(t, w.Stop(), "disk full")
}

func TestConcurrentLinesStayWhole(t *testing.T) {
	var out bytes.Buffer
	var mu sync.Mutex
	w := logbuf.New(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return out.Write(p)
	}), logbuf.Options{Size: 100, Interval: time.Millisecond})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 200 {
				_, _ = w.Write([]byte(strings.Repeat(string(rune('a'+i)), 9) + "\n"))
			}
		})
	}
	wg.Wait()
	require.NoError(t, w.Stop())
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	require.Len(t, lines, 8*200)
	for _, l := range lines {
		assert.Len(t, l, 9)
		assert.Equal(t, strings.Repeat(l[:1], 9), l)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
