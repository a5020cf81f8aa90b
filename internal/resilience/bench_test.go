package resilience_test

import (
	"context"
	"testing"
	"time"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/plaid"
	"github.com/creditsessions/creditsessions/internal/resilience"
)

type instantUpstream struct {
	resp *creditv1.CreditSessionsGetResponse
}

func (u instantUpstream) CreditSessionsGet(context.Context, plaid.Request) (*creditv1.CreditSessionsGetResponse, error) {
	return u.resp, nil
}

// BenchmarkGuard is what the resilience layer costs a call that Plaid answers at once:
// the isolation check, coalescing (the hand-off to a runner and back), the retry budget,
// the breaker, a place under the in-flight cap and the attempt's deadline. Without
// coalescing, the call stays on its goroutine; the difference is the hand-off's cost.
func BenchmarkGuard(b *testing.B) {
	u := instantUpstream{resp: &creditv1.CreditSessionsGetResponse{RequestId: "r"}}
	for _, bb := range []struct {
		name string
		cfg  resilience.Config
	}{
		{"coalescing", resilience.Config{}},
		{"no-coalescing", resilience.Config{DisableCoalescing: true}},
	} {
		b.Run(bb.name, func(b *testing.B) {
			g := resilience.New(u, bb.cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 100000*1e9)
			defer cancel()
			r := plaid.Request{UserToken: "user-sandbox-example"}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := g.CreditSessionsGet(ctx, r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestSuccessfulCallAllocationBudget holds the guard's allocations on a call Plaid
// answers at once to what BenchmarkGuard measured: the attempt's deadline and the
// in-flight slot's bookkeeping, nothing per error path. An errors.As target declared
// before a nil test once made every successful call pay one more.
func TestSuccessfulCallAllocationBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts")
	}
	u := instantUpstream{resp: &creditv1.CreditSessionsGetResponse{RequestId: "r"}}
	g := resilience.New(u, resilience.Config{DisableCoalescing: true})
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	r := plaid.Request{UserToken: "user-sandbox-example"}
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := g.CreditSessionsGet(ctx, r); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 4 {
		t.Errorf("a successful call allocates %.0f times, want at most 4", allocs)
	}
}
