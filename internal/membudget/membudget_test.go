package membudget

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSmallBodiesAndCallsWithoutAHoldPassFree(t *testing.T) {
	b := New(100, 10)
	ctx, end := b.Hold(context.Background())
	defer end()
	require.NoError(t, Reserve(ctx, 9))
	require.NoError(t, Reserve(context.Background(), 1000), "no hold: not this budget's business")
	assert.Zero(t, b.InUse())
}

func TestAReservationWaitsUntilAHoldEnds(t *testing.T) {
	b := New(100, 10)
	first, endFirst := b.Hold(context.Background())
	require.NoError(t, Reserve(first, 60))
	require.NoError(t, Reserve(first, 30))
	assert.EqualValues(t, 90, b.InUse())

	second, endSecond := b.Hold(context.Background())
	defer endSecond()
	short, cancel := context.WithTimeout(second, 20*time.Millisecond)
	defer cancel()
	err := Reserve(short, 20)
	require.ErrorIs(t, err, context.DeadlineExceeded, "20 more bytes do not fit while 90 of 100 are held")
	assert.EqualValues(t, 90, b.InUse(), "a reservation that gave up holds nothing")
	assert.EqualValues(t, 1, b.Waits())

	reserved := make(chan error, 1)
	go func() { reserved <- Reserve(second, 20) }()
	endFirst()
	require.NoError(t, <-reserved)
	assert.EqualValues(t, 20, b.InUse())
	endSecond()
	assert.Zero(t, b.InUse())
}

func TestABodyLargerThanTheBudgetTakesAllOfIt(t *testing.T) {
	b := New(100, 10)
	ctx, end := b.Hold(context.Background())
	require.NoError(t, Reserve(ctx, 1000))
	assert.EqualValues(t, 100, b.InUse())
	end()
	assert.Zero(t, b.InUse())
}

func TestAReservationAfterTheHoldEndedIsGivenBack(t *testing.T) {
	b := New(100, 10)
	ctx, end := b.Hold(context.Background())
	end()
	require.NoError(t, Reserve(ctx, 50))
	assert.Zero(t, b.InUse())
	// The whole budget is still there.
	other, endOther := b.Hold(context.Background())
	defer endOther()
	require.NoError(t, Reserve(other, 100))
}

func TestTheOutermostHoldCounts(t *testing.T) {
	b := New(100, 10)
	outer, endOuter := b.Hold(context.Background())
	inner, endInner := b.Hold(outer)
	require.NoError(t, Reserve(inner, 50))
	endInner()
	assert.EqualValues(t, 50, b.InUse(), "the inner hold ended, the outer one holds on")
	endOuter()
	assert.Zero(t, b.InUse())

	// A hold on another budget is another matter.
	other := New(100, 10)
	ctx, endOther := other.Hold(outer)
	require.NoError(t, Reserve(ctx, 30))
	assert.EqualValues(t, 30, other.InUse())
	assert.Zero(t, b.InUse())
	endOther()
	assert.Zero(t, other.InUse())
}
