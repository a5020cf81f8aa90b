package app

import (
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// WatchCost is what one idle watch costs a replica, rounded up from BENCHMARKS.md's
// measure (heap and goroutine stack about 17 KiB, resident about 21 KiB a watch).
const WatchCost = 24 << 10

// defaultMaxWatches is the cap on watches when the process has no memory limit to
// follow.
const defaultMaxWatches = 50000

// MaxWatchesFor is the watch cap that fits a process allowed limit bytes: watches may
// take half of it, the other half is left to calls, their answers (-answer-memory) and
// the runtime. At the cap a new watch is refused with ResourceExhausted and a
// RetryInfo (the client tries another replica), where past it the replica would be
// OOM-killed, taking every watch and call on it down. limit 0 means no limit.
func MaxWatchesFor(limit int64) int {
	if limit <= 0 {
		return defaultMaxWatches
	}
	return int(max(1, min(limit/2/WatchCost, defaultMaxWatches)))
}

// memoryLimit is the memory the process may use: the smaller of GOMEMLIMIT (as the
// runtime has it) and the cgroup's limit, or 0 when neither is set.
func memoryLimit() int64 {
	limit := debug.SetMemoryLimit(-1)
	if limit == math.MaxInt64 {
		limit = 0
	}
	if c := cgroupMemoryLimit(); c > 0 && (limit == 0 || c < limit) {
		limit = c
	}
	return limit
}

// cgroupMemoryLimit reads the container's memory limit: cgroup v2's memory.max, or
// v1's memory.limit_in_bytes (where "no limit" is a number near 2^63).
func cgroupMemoryLimit() int64 {
	for _, f := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
		if err != nil || n <= 0 || n >= 1<<60 { // "max", or v1's unlimited
			return 0
		}
		return n
	}
	return 0
}
