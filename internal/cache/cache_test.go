package cache

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

func answer(id string) *creditv1.CreditSessionsGetResponse {
	return &creditv1.CreditSessionsGetResponse{RequestId: id}
}

func TestEntriesLiveAtMostMaxAge(t *testing.T) {
	clk := &clock{now: time.Unix(1000, 0)}
	c := New(Config{MaxAge: 30 * time.Second, Now: clk.Now})
	ctx := context.Background()
	k := KeyFor("service:a", "", "user-1")
	c.Put(ctx, k, "", answer("r1"), clk.now)

	clk.now = clk.now.Add(10 * time.Second)
	_, ok := c.Get(ctx, k, 5*time.Second)
	assert.False(t, ok, "older than the caller allows")
	e, ok := c.Get(ctx, k, time.Hour)
	require.True(t, ok, "the operator's bound, not the caller's hour")
	assert.Equal(t, int64(10), e.Age(clk.now))

	clk.now = clk.now.Add(21 * time.Second)
	_, ok = c.Get(ctx, k, time.Hour)
	assert.False(t, ok, "past the operator's max-age")
	assert.Zero(t, c.Len())
}

func TestKeysSeparateCredentials(t *testing.T) {
	keys := map[Key]string{}
	for _, k := range []struct{ scope, secret, token string }{
		{"service:a", "", "t"}, {"service:b", "", "t"}, {"caller:a", "s1", "t"}, {"caller:a", "s2", "t"}, {"caller:a", "s1", "u"},
		{"caller:a\x00s1", "", "t"}, // no ambiguity from concatenation
	} {
		key := KeyFor(k.scope, k.secret, k.token)
		_, dup := keys[key]
		require.False(t, dup, "%v", k)
		keys[key] = k.token
	}
}

func TestCapacityEvictsTheLeastRecentlyUsed(t *testing.T) {
	one := entrySize(answer("r"))
	c := New(Config{MaxAge: time.Minute, MaxBytes: 10 * one})
	ctx := context.Background()
	now := time.Now()
	for i := range 10 {
		c.Put(ctx, KeyFor("s", "", strconv.Itoa(i)), "", answer("r"), now)
	}
	_, ok := c.Get(ctx, KeyFor("s", "", "0"), time.Minute) // 0 is now the most recent
	require.True(t, ok)
	c.Put(ctx, KeyFor("s", "", "new"), "", answer("r"), now)
	assert.LessOrEqual(t, c.Bytes(), 10*one)
	_, ok = c.Get(ctx, KeyFor("s", "", "1"), time.Minute)
	assert.False(t, ok, "the least recently used went")
	_, ok = c.Get(ctx, KeyFor("s", "", "0"), time.Minute)
	assert.True(t, ok)

	// An answer too large for its share is not kept at all.
	big := &creditv1.CreditSessionsGetResponse{RequestId: strings.Repeat("x", int(10*one))}
	c.Put(ctx, KeyFor("s", "", "big"), "", big, now)
	_, ok = c.Get(ctx, KeyFor("s", "", "big"), time.Minute)
	assert.False(t, ok)
}

func TestEvictUserDropsItsEntriesAndRefusesOlderAnswers(t *testing.T) {
	clk := &clock{now: time.Unix(1000, 0)}
	c := New(Config{MaxAge: time.Minute, Now: clk.Now})
	ctx := context.Background()
	a, b, other := KeyFor("s", "", "a"), KeyFor("caller:x", "y", "a"), KeyFor("s", "", "b")
	c.Put(ctx, a, "user-a", answer("1"), clk.now)
	c.Put(ctx, b, "user-a", answer("2"), clk.now)
	c.Put(ctx, other, "user-b", answer("3"), clk.now)
	started := clk.now // a fetch in flight while the webhook arrives
	clk.now = clk.now.Add(time.Second)
	c.EvictUser(ctx, "user-a")
	for _, k := range []Key{a, b} {
		_, ok := c.Get(ctx, k, time.Minute)
		assert.False(t, ok)
	}
	_, ok := c.Get(ctx, other, time.Minute)
	assert.True(t, ok, "another user's entry stays")

	c.Put(ctx, a, "user-a", answer("stale"), started)
	_, ok = c.Get(ctx, a, time.Minute)
	assert.False(t, ok, "an answer fetched before the webhook may predate the change")
	clk.now = clk.now.Add(time.Second)
	c.Put(ctx, a, "user-a", answer("fresh"), clk.now)
	e, ok := c.Get(ctx, a, time.Minute)
	require.True(t, ok)
	assert.Equal(t, "fresh", e.Response.GetRequestId())
}

func TestSealedValuesAreBoundToTheirName(t *testing.T) {
	kr, err := ParseKeyring([]byte(strings.Repeat("ab", 32)))
	require.NoError(t, err)
	s := &sealer{current: func() Keyring { return kr }, grace: time.Minute, now: time.Now}
	v := s.seal([]byte("secret answer"), "name-1")
	plain, err := s.open(v, "name-1")
	require.NoError(t, err)
	assert.Equal(t, "secret answer", string(plain))
	_, err = s.open(v, "name-2")
	assert.Error(t, err, "copied under another name")
	v[len(v)-1] ^= 1
	_, err = s.open(v, "name-1")
	assert.Error(t, err, "tampered")
}

func TestParseKeyringRefusesBadKeys(t *testing.T) {
	for _, bad := range []string{"", "# only a comment\n", "short", strings.Repeat("ab", 16), strings.Repeat("zz", 32)} {
		_, err := ParseKeyring([]byte(bad))
		assert.Error(t, err, "%q", bad)
	}
}
