package app

import (
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestMaxWatchesFor(t *testing.T) {
	for _, tc := range []struct {
		limit int64
		want  int
	}{
		{0, defaultMaxWatches},
		{230 << 20, 4906}, // the Deployment's GOMEMLIMIT: about 115 MiB of watches
		{256 << 20, 5461},
		{1 << 10, 1},
		{1 << 40, defaultMaxWatches},
	} {
		assert.Equal(t, tc.want, MaxWatchesFor(tc.limit), "limit %d", tc.limit)
	}
}

// GOMEMLIMIT, as the runtime has it, bounds the memory the watch cap follows.
func TestMemoryLimitFollowsGOMEMLIMIT(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })
	debug.SetMemoryLimit(1 << 40) // far above any cgroup limit this machine may have
	unset := memoryLimit()
	debug.SetMemoryLimit(64 << 20)
	assert.Equal(t, int64(64<<20), memoryLimit())
	if c := cgroupMemoryLimit(); c > 0 {
		assert.Equal(t, c, unset, "the cgroup's limit, below GOMEMLIMIT")
	} else {
		assert.Equal(t, int64(1<<40), unset)
	}
}
