package webhook

import (
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestTheSenderIsThePeerUnlessAProxyWeTrustSaysOtherwise(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	for _, tc := range []struct {
		name, remote, forwarded, want string
	}{
		{"a direct sender", "203.0.113.7:4711", "", "203.0.113.7/32"},
		{"a direct sender cannot name another", "203.0.113.7:4711", "198.51.100.1", "203.0.113.7/32"},
		{"through the ingress", "10.1.2.3:80", "198.51.100.1", "198.51.100.1/32"},
		{"a sender prepending a lie", "10.1.2.3:80", "192.0.2.9, 198.51.100.1", "198.51.100.1/32"},
		{"through two proxies", "10.1.2.3:80", "198.51.100.1, 10.9.9.9", "198.51.100.1/32"},
		{"the ingress with nothing forwarded", "10.1.2.3:80", "", "10.1.2.3/32"},
		{"garbage forwarded", "10.1.2.3:80", "not-an-address", "10.1.2.3/32"},
		{"IPv6, by /64", "[2001:db8:1:2:3:4:5:6]:443", "", "2001:db8:1:2::/64"},
		{"IPv4 in IPv6", "[::ffff:203.0.113.7]:443", "", "203.0.113.7/32"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", Path, nil)
			r.RemoteAddr = tc.remote
			if tc.forwarded != "" {
				r.Header.Set("X-Forwarded-For", tc.forwarded)
			}
			assert.Equal(t, tc.want, sourceOf(r, proxies).String())
		})
	}
}

func TestStrangersCannotSpendWhatPlaidsAddressesHave(t *testing.T) {
	now := time.Unix(1e9, 0)
	b := newFetchBudget(time.Hour, 2, time.Hour, 1)
	plaid := netip.MustParsePrefix("192.0.2.1/32")
	stranger := func(i int) netip.Prefix {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)}), 32)
	}
	b.trust(plaid, now)
	// Strangers, each with an allowance of one, share two.
	granted := 0
	for i := range 10 {
		if b.allow(stranger(i), now) {
			granted++
		}
	}
	assert.Equal(t, 2, granted)
	assert.True(t, b.allow(plaid, now), "Plaid's own allowance is untouched")

	// More strangers than are remembered never push Plaid's address out.
	for i := range maxSources + 10 {
		b.allow(stranger(1000+i), now.Add(time.Duration(i)))
	}
	assert.LessOrEqual(t, len(b.sources), maxSources)
	assert.True(t, now.Before(b.sources[plaid].trustedUntil))
}
