package plaid

import (
	"bytes"
	"sync"
)

// Bodies are read into buffers kept from call to call. A 10,000-session body is 2.9 MB:
// allocated fresh for every call, it was a fifth of a large call's garbage, and under
// load the garbage collector keeps what is allocated while it marks (allocate-black) and
// paces its next goal on that, so every megabyte of garbage a call makes shows in the
// service's peak resident memory, twice.
//
// Small buffers (up to smallBody) live in a sync.Pool, which costs nothing to hold.
// Large ones live in a free list bounded in bytes, largeBodies: a sync.Pool would keep
// as many as were ever in use at once until the next two collections, and twenty calls
// growing twenty 3 MB buffers is the memory this exists to save. A buffer is given
// back only once the body it held has been decoded; the decoded message does not keep
// the body's bytes (plaidjson copies what it keeps), and an error's Body is a copy.
const (
	smallBody = 1 << 20
	// largeBodies bounds the bytes of large buffers kept while no call uses them:
	// two 10,000-session bodies, what the default answer-memory budget (6 MiB) lets
	// be read at once.
	largeBodies = 8 << 20
)

var smallBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// freeBodies is the free list of large body buffers.
type freeBodies struct {
	mu    sync.Mutex
	free  []*bytes.Buffer
	bytes int // capacity of the buffers in free
	limit int
}

var largeBuffers = freeBodies{limit: largeBodies}

// get returns an empty buffer with room for n bytes, when n is known (otherwise n < 0).
func (f *freeBodies) get(n int64) *bytes.Buffer {
	if n > smallBody-bytes.MinRead {
		// The smallest buffer that holds n, so that a large one stays for a large body.
		f.mu.Lock()
		best := -1
		for i, b := range f.free {
			if int64(b.Cap()) >= n && (best < 0 || b.Cap() < f.free[best].Cap()) {
				best = i
			}
		}
		if best >= 0 {
			b := f.free[best]
			f.free[best] = f.free[len(f.free)-1]
			f.free[len(f.free)-1] = nil
			f.free = f.free[:len(f.free)-1]
			f.bytes -= b.Cap()
			f.mu.Unlock()
			return b
		}
		f.mu.Unlock()
	}
	return smallBuffers.Get().(*bytes.Buffer)
}

// put gives buf back for another call's body. Its contents are dead from here on: the
// caller must hold nothing that points into them.
func (f *freeBodies) put(buf *bytes.Buffer) {
	buf.Reset()
	if buf.Cap() <= smallBody {
		smallBuffers.Put(buf)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.bytes+buf.Cap() > f.limit {
		// Keep the larger buffers: a small one can be had cheaply from smallBuffers.
		smallest := -1
		for i, b := range f.free {
			if smallest < 0 || b.Cap() < f.free[smallest].Cap() {
				smallest = i
			}
		}
		if smallest < 0 || f.free[smallest].Cap() >= buf.Cap() || f.bytes-f.free[smallest].Cap()+buf.Cap() > f.limit {
			return // dropped: the garbage collector takes it
		}
		f.bytes -= f.free[smallest].Cap()
		f.free[smallest] = buf
		f.bytes += buf.Cap()
		return
	}
	f.free = append(f.free, buf)
	f.bytes += buf.Cap()
}

// pooled reports the bytes of large buffers kept now, for tests.
func (f *freeBodies) pooled() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bytes
}

func getBuffer(n int64) *bytes.Buffer { return largeBuffers.get(n) }

func putBuffer(buf *bytes.Buffer) { largeBuffers.put(buf) }
