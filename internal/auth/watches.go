package auth

import "sync"

// watchCount counts each caller's open watches, so that one caller cannot hold every
// watch a replica has room for, nor make the replica poll Plaid for more users than its
// share: a watch polls at most one user, so a caller's cap on watches is a cap on the
// distinct users polled for it, and on its polls per -watch-poll-interval. Kubernetes'
// API server bounds each client's long-running requests the same way, apart from its
// limit on calls.
//
// A caller is counted only while it has a watch open, so the map holds at most one
// entry per open watch.
type watchCount struct {
	max int

	mu   sync.Mutex
	open map[string]int
}

func newWatchCount(max int) *watchCount { return &watchCount{max: max, open: make(map[string]int)} }

// acquire counts a new watch of caller, unless it has max open already.
func (w *watchCount) acquire(caller string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.open[caller] >= w.max {
		return false
	}
	w.open[caller]++
	return true
}

// release counts the end of one of caller's watches.
func (w *watchCount) release(caller string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if n := w.open[caller] - 1; n > 0 {
		w.open[caller] = n
	} else {
		delete(w.open, caller)
	}
}
