package watch_test

import (
	"testing"

	"github.com/creditsessions/creditsessions/internal/watch"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRedisAddressesNeverCarryAPassword(t *testing.T) {
	_, err := watch.NewRedisFleet("redis://user:hunter2-secret@127.0.0.1:6379/0", "", nil)
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "hunter2-secret")
	_, err = watch.NewRedisFleet("redis://%zz:hunter2-secret@127.0.0.1:6379/0", "", nil)
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "hunter2-secret")

	for _, addr := range []string{"127.0.0.1:6379", "redis://user@127.0.0.1:6379/0", "rediss://127.0.0.1:6380"} {
		f, err := watch.NewRedisFleet(addr, "from-the-environment", nil)
		require.NoError(t, err, addr)
		assert.False(t, f.Up(), "not up before it has heard from Redis")
		require.NoError(t, f.Close())
	}
}
