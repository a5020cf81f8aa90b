package plaid

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The kept large buffers never exceed their bound in bytes, whatever is given back;
// a buffer handed out is out of the list until given back; and a body gets the
// smallest kept buffer that holds it.
func TestFreeBodiesBounded(t *testing.T) {
	f := &freeBodies{limit: 10 << 20}
	sized := func(n int) *bytes.Buffer { return bytes.NewBuffer(make([]byte, 0, n)) }

	small := sized(4 << 10)
	f.put(small)
	assert.Zero(t, f.pooled(), "small buffers go to the sync.Pool, not the bounded list")

	three, four, five := sized(3<<20), sized(4<<20), sized(5<<20)
	f.put(three)
	f.put(four)
	assert.Equal(t, 7<<20, f.pooled())
	f.put(five) // over the bound: replaces the smallest
	assert.Equal(t, 9<<20, f.pooled())
	f.put(sized(2 << 20)) // over the bound and smaller than all: dropped
	assert.Equal(t, 9<<20, f.pooled())
	f.put(sized(20 << 20)) // larger than the whole bound: dropped
	assert.Equal(t, 9<<20, f.pooled())

	got := f.get(3 << 20)
	require.Same(t, four, got, "the smallest kept buffer that holds the body")
	assert.Equal(t, 5<<20, f.pooled())
	again := f.get(3 << 20)
	require.Same(t, five, again)
	assert.Zero(t, f.pooled())
	other := f.get(3 << 20)
	assert.NotSame(t, four, other)
	assert.NotSame(t, five, other)

	four.WriteString("dirty")
	f.put(four)
	assert.Zero(t, f.get(1<<20).Len(), "a buffer comes back empty")
}
