package webhook

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

const (
	defaultSourceFetchEvery = time.Minute
	defaultSourceFetchBurst = 2
	// trustFor is how long a source that delivered a verified webhook may draw on the
	// allowance kept for Plaid: Plaid sends from a few addresses, day after day.
	trustFor = 24 * time.Hour
	// maxSources bounds the sources remembered. Past it, strangers are forgotten before
	// sources that delivered verified webhooks.
	maxSources = 4096
)

// fetchBudget decides whether a webhook naming a kid the cache has never seen valid may
// make the handler ask Plaid for it. Anyone can make up kids, and each made-up kid would
// cost a call to Plaid, so such fetches are limited; but a limit that any sender can
// spend would let junk starve the kid Plaid starts signing with after a rotation. So:
//
//   - each source (client address; an IPv6 /64) has an allowance of its own, which its
//     junk spends and nobody else's;
//   - strangers together share one more allowance, the bound on what they can make the
//     handler ask of Plaid;
//   - sources that delivered a webhook that verified within trustFor (Plaid's
//     addresses, learnt) draw first on an allowance of their own, which strangers
//     cannot touch.
type fetchBudget struct {
	sourceEvery time.Duration
	sourceBurst int

	mu       sync.Mutex
	shared   *rate.Limiter
	reserved *rate.Limiter
	sources  map[netip.Prefix]*source
}

type source struct {
	limiter      *rate.Limiter
	trustedUntil time.Time
	lastSeen     time.Time
}

func newFetchBudget(every time.Duration, burst int, sourceEvery time.Duration, sourceBurst int) *fetchBudget {
	if every <= 0 {
		every = defaultKeyFetchEvery
	}
	if burst <= 0 {
		burst = defaultKeyFetchBurst
	}
	if sourceEvery <= 0 {
		sourceEvery = defaultSourceFetchEvery
	}
	if sourceBurst <= 0 {
		sourceBurst = defaultSourceFetchBurst
	}
	return &fetchBudget{
		sourceEvery: sourceEvery, sourceBurst: sourceBurst,
		shared:   rate.NewLimiter(rate.Every(every), burst),
		reserved: rate.NewLimiter(rate.Every(every), burst),
		sources:  make(map[netip.Prefix]*source),
	}
}

// allow reports whether from may cause one fetch now, and spends it if so.
func (b *fetchBudget) allow(from netip.Prefix, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.source(from, now)
	if now.Before(s.trustedUntil) && b.reserved.AllowN(now, 1) {
		return true
	}
	// A source's own allowance first: a source past it spends nothing that is shared.
	return s.limiter.AllowN(now, 1) && b.shared.AllowN(now, 1)
}

// trust records that from delivered a webhook that verified.
func (b *fetchBudget) trust(from netip.Prefix, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.source(from, now).trustedUntil = now.Add(trustFor)
}

// source returns from's record, making room for it if new. Under b.mu.
func (b *fetchBudget) source(from netip.Prefix, now time.Time) *source {
	s := b.sources[from]
	if s == nil {
		if len(b.sources) >= maxSources {
			b.forgetOne(now)
		}
		s = &source{limiter: rate.NewLimiter(rate.Every(b.sourceEvery), b.sourceBurst)}
		b.sources[from] = s
	}
	s.lastSeen = now
	return s
}

// forgetOne drops the stranger seen longest ago, or, when every source is trusted, the
// source seen longest ago. Under b.mu.
func (b *fetchBudget) forgetOne(now time.Time) {
	var victim netip.Prefix
	var worst *source
	for p, s := range b.sources {
		trusted, worstTrusted := now.Before(s.trustedUntil), worst != nil && now.Before(worst.trustedUntil)
		if worst == nil || (worstTrusted && !trusted) || (trusted == worstTrusted && s.lastSeen.Before(worst.lastSeen)) {
			victim, worst = p, s
		}
	}
	delete(b.sources, victim)
}

// sourceOf is the sender of r, as a prefix: its address (IPv4) or /64 (IPv6, where one
// host has many). When the peer is one of trusted (a proxy in front of the listener),
// the sender is the last address in X-Forwarded-For that is not a trusted proxy.
func sourceOf(r *http.Request, trusted []netip.Prefix) netip.Prefix {
	addr := peerAddr(r.RemoteAddr)
	if inAny(addr, trusted) {
		hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
		for i := len(hops) - 1; i >= 0; i-- {
			hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
			if err != nil {
				break // unparsable: trust nothing further left
			}
			addr = hop.Unmap()
			if !inAny(addr, trusted) {
				break
			}
		}
	}
	bits := 32
	if addr.Is6() {
		bits = 64
	}
	p, err := addr.Prefix(bits)
	if err != nil {
		return netip.Prefix{} // no address: every such request is one source
	}
	return p
}

func peerAddr(remote string) netip.Addr {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return addr.Unmap()
}

func inAny(addr netip.Addr, prefixes []netip.Prefix) bool {
	for _, p := range prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}
