// Package membudget bounds the memory that large answers hold at once.
//
// A call holding a large answer holds several copies of it: Plaid's body, the decoded
// message, and the encoded answer on its way out. Twenty 3 MB answers in flight are
// several hundred megabytes. On a service with a few cores, decoding twenty of them at
// once is no faster than decoding a few at a time, so the budget lets a few through and
// has the others wait their turn, before their bodies are read: the bytes wait in the
// socket, not in memory.
//
// A call takes a Hold when it starts; the Plaid client Reserves what each large body
// will hold (the service counts the body and the message it decodes into) under it once
// the size is known and before reading it; the hold gives everything back
// when the call ends, once its answer is encoded and handed to the connection (a gRPC
// stats handler and the REST mirror's front handler hold it, not an interceptor, which
// would let go before the answer is encoded). Bodies under the threshold pass free, so small calls never wait
// and cost one context lookup.
package membudget

import (
	"context"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/semaphore"
)

// Budget is a number of bytes of large answers that calls in flight may hold at once.
type Budget struct {
	sem       *semaphore.Weighted
	size      int64
	threshold int64

	inUse, waits atomic.Int64
}

// New returns a budget of size bytes, for bodies of threshold bytes or more.
func New(size, threshold int64) *Budget {
	return &Budget{sem: semaphore.NewWeighted(size), size: size, threshold: threshold}
}

// Size is the budget's size in bytes.
func (b *Budget) Size() int64 { return b.size }

// InUse is the number of bytes held now.
func (b *Budget) InUse() int64 { return b.inUse.Load() }

// Waits counts reservations that had to wait for bytes to come back.
func (b *Budget) Waits() int64 { return b.waits.Load() }

type holdKey struct{}

// hold is one call's share of a budget.
type hold struct {
	b      *Budget
	mu     sync.Mutex
	n      int64 // bytes reserved
	free   int64 // bytes passed free while the call's total stayed under the threshold
	closed bool
}

// Hold returns ctx carrying a hold on b, and the function that ends it, giving back
// every byte reserved under ctx. End must be called once the call no longer holds its
// answers. When ctx carries a hold on b already, that one stays in charge and end does
// nothing: the outermost hold, the one that lasts longest, counts.
func (b *Budget) Hold(ctx context.Context) (_ context.Context, end func()) {
	if h, _ := ctx.Value(holdKey{}).(*hold); h != nil && h.b == b {
		return ctx, func() {}
	}
	h := &hold{b: b}
	return context.WithValue(ctx, holdKey{}, h), h.end
}

func (h *hold) end() {
	h.mu.Lock()
	n := h.n
	h.n, h.closed = 0, true
	h.mu.Unlock()
	h.b.give(n)
}

func (b *Budget) give(n int64) {
	if n > 0 {
		b.inUse.Add(-n)
		b.sem.Release(n)
	}
}

// Reserve takes n bytes from the budget of ctx's hold, waiting while others hold it
// all, until ctx ends. It returns at once, with nil, when ctx has no hold or the call's
// bytes so far, n included, are under the threshold: so a body read a piece at a time
// (its size not announced) is counted from the piece that takes the call over the
// threshold, those before it included. A call never holds more than the whole budget:
// a body larger than it takes all of it.
func Reserve(ctx context.Context, n int64) error {
	h, _ := ctx.Value(holdKey{}).(*hold)
	if h == nil || n <= 0 {
		return nil
	}
	b := h.b
	h.mu.Lock()
	if h.n == 0 && h.free+n < b.threshold {
		h.free += n
		h.mu.Unlock()
		return nil
	}
	if h.n == 0 {
		n += h.free
		h.free = 0
	}
	n = min(n, b.size-h.n)
	h.mu.Unlock()
	if n <= 0 {
		return nil
	}
	if !b.sem.TryAcquire(n) {
		b.waits.Add(1)
		// Waiting while holding part of the budget invites deadlock: calls reading bodies
		// a piece at a time, each holding some and all waiting for more. Give back what
		// this call holds, and wait for all of it at once.
		h.mu.Lock()
		held := h.n
		h.n = 0
		h.mu.Unlock()
		b.give(held)
		n += held
		if err := b.sem.Acquire(ctx, n); err != nil {
			return err
		}
	}
	b.inUse.Add(n)
	h.mu.Lock()
	if h.closed {
		// The call ended while this reservation waited (a shared upstream call
		// outliving the caller that started it): nobody will give these back.
		h.mu.Unlock()
		b.give(n)
		return nil
	}
	h.n += n
	h.mu.Unlock()
	return nil
}
