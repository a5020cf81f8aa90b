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

// A body read a piece at a time is counted from the piece that takes its call over the
// threshold, the pieces before included.
func TestPiecesAreCountedOnceTheyAddUpToTheThreshold(t *testing.T) {
	b := New(100, 10)
	ctx, end := b.Hold(context.Background())
	require.NoError(t, Reserve(ctx, 4))
	require.NoError(t, Reserve(ctx, 4))
	assert.Zero(t, b.InUse(), "8 bytes so far: under the threshold")
	require.NoError(t, Reserve(ctx, 4))
	assert.EqualValues(t, 12, b.InUse())
	require.NoError(t, Reserve(ctx, 200))
	assert.EqualValues(t, 100, b.InUse(), "never more than the whole budget")
	end()
	assert.Zero(t, b.InUse())
}

// Calls that grow their reservations piece by piece never deadlock holding part of the
// budget each: one that must wait gives back what it holds first.
func TestGrowingReservationsDoNotDeadlock(t *testing.T) {
	b := New(100, 10)
	first, endFirst := b.Hold(context.Background())
	second, endSecond := b.Hold(context.Background())
	require.NoError(t, Reserve(first, 60))
	require.NoError(t, Reserve(second, 40))
	secondDone := make(chan error, 1)
	go func() { secondDone <- Reserve(second, 20) }() // gives back its 40, waits for 60
	require.Eventually(t, func() bool { return b.Waits() == 1 }, 5*time.Second, time.Millisecond)
	firstDone := make(chan error, 1)
	go func() { firstDone <- Reserve(first, 40) }() // gives back its 60, waits for 100
	require.NoError(t, <-secondDone, "the second call got what the first gave back")
	assert.EqualValues(t, 60, b.InUse())
	endSecond()
	require.NoError(t, <-firstDone)
	assert.EqualValues(t, 100, b.InUse())
	endFirst()
	assert.Zero(t, b.InUse())
}
