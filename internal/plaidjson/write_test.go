package plaidjson_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/plaidjson"
)

// chunks records each Write, and fails once it has taken failAfter bytes, if set.
type chunks struct {
	bytes.Buffer
	writes    int
	failAfter int
}

var errWriter = errors.New("the client went away")

func (c *chunks) Write(p []byte) (int, error) {
	if c.failAfter > 0 && c.Len()+len(p) > c.failAfter {
		return 0, errWriter
	}
	c.writes++
	return c.Buffer.Write(p)
}

func TestWriteResponseWritesWhatAppendResponseAppends(t *testing.T) {
	for _, n := range []int{0, 1, 2, 100, 1000} {
		m := benchResponse(n)
		want, err := plaidjson.AppendResponse(nil, m)
		require.NoError(t, err)
		for _, chunk := range []int{1, 1000, 32 << 10, 1 << 30} {
			var w chunks
			buf, written, err := plaidjson.WriteResponse(&w, m, make([]byte, 0, 64), chunk)
			require.NoError(t, err)
			assert.Equal(t, string(want), w.String(), "%d sessions, chunks of %d", n, chunk)
			assert.EqualValues(t, len(want), written)
			assert.Zero(t, len(buf), "the scratch buffer comes back empty")
			if chunk >= len(want) {
				assert.Equal(t, 1, w.writes, "an answer smaller than a chunk is one write")
			} else if n > 1 {
				assert.Greater(t, w.writes, len(want)/(chunk+2000), "about one write a chunk")
			}
		}
	}
}

func TestWriteResponseStopsAtTheFirstError(t *testing.T) {
	m := benchResponse(1000)
	var w chunks
	w.failAfter = 100 << 10
	_, written, err := plaidjson.WriteResponse(&w, m, nil, 32<<10)
	require.ErrorIs(t, err, errWriter)
	assert.EqualValues(t, w.Len(), written)
	assert.Positive(t, written)

	// A message that cannot be encoded: nothing reaches w when the bad session comes
	// before the first chunk is full, and what did reach it is counted when it comes after.
	bad := &timestamppb.Timestamp{Seconds: -1 << 62}
	early := benchResponse(10)
	early.Sessions[5].SessionStartTime = bad
	var none chunks
	_, written, err = plaidjson.WriteResponse(&none, early, nil, 32<<10)
	require.Error(t, err)
	assert.Zero(t, written)
	assert.Zero(t, none.Len())

	late := benchResponse(1000)
	late.Sessions[900].SessionStartTime = bad
	var some chunks
	_, written, err = plaidjson.WriteResponse(&some, late, nil, 32<<10)
	require.Error(t, err)
	assert.Positive(t, written)
	assert.EqualValues(t, some.Len(), written)
	var whole creditv1.CreditSessionsGetResponse
	assert.Error(t, plaidjson.UnmarshalResponse(some.Bytes(), &whole), "what was written is cut short")
}
