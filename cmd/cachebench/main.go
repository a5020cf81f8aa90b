// Command cachebench measures what the cache of Plaid's answers saves: it runs the
// service on loopback in front of the emulator answering at a Plaid-like latency, sends
// a Zipf-distributed read mix over many users (a fraction of the reads allowing
// Cache-Control: max-age), once with the cache off and once with it on, and prints
// Plaid requests per call and latency percentiles for hits and misses (BENCHMARKS.md).
// Bounded in calls; loopback only.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/app"
	"github.com/creditsessions/creditsessions/internal/emulator"
	"github.com/creditsessions/creditsessions/internal/plaid"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "cachebench:", err)
		os.Exit(1)
	}
}

type options struct {
	calls       int
	concurrency int
	users       uint64
	zipfS       float64
	cachedShare float64
	maxAge      int
	latency     time.Duration
	seed        uint64
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("cachebench", flag.ContinueOnError)
	var o options
	fs.IntVar(&o.calls, "calls", 4000, "calls per run (bounded: at most 20,000)")
	fs.IntVar(&o.concurrency, "concurrency", 64, "calls in flight")
	fs.Uint64Var(&o.users, "users", 10000, "distinct users")
	fs.Float64Var(&o.zipfS, "zipf-s", 1.1, "Zipf exponent of user popularity (> 1)")
	fs.Float64Var(&o.cachedShare, "cached-share", 0.2, "fraction of reads sending Cache-Control: max-age")
	fs.IntVar(&o.maxAge, "max-age", 30, "the max-age those reads send, in seconds")
	fs.DurationVar(&o.latency, "latency", 300*time.Millisecond, "the emulator's added latency per request")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the read mix")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.calls < 1 || o.calls > 20000 || o.concurrency < 1 || o.users < 1 || o.zipfS <= 1 {
		return errors.New("want 1 to 20,000 calls, concurrency and users of at least 1, and -zipf-s above 1")
	}
	fmt.Fprintf(out, "%d calls, %d in flight, %d users (Zipf s=%.2f), %.0f%% with max-age=%d, Plaid latency %v\n\n",
		o.calls, o.concurrency, o.users, o.zipfS, 100*o.cachedShare, o.maxAge, o.latency)
	fmt.Fprintln(out, "| cache | Plaid requests per call | hits | hit p50 | hit p99 | misses | miss p50 | miss p99 |")
	fmt.Fprintln(out, "|---|---|---|---|---|---|---|---|")
	for _, maxAge := range []time.Duration{0, time.Duration(o.maxAge) * time.Second} {
		r, err := measure(o, maxAge)
		if err != nil {
			return err
		}
		name := "off"
		if maxAge > 0 {
			name = "-cache-max-age=" + maxAge.String()
		}
		fmt.Fprintf(out, "| %s | %.3f | %d | %s | %s | %d | %s | %s |\n", name, float64(r.plaidCalls)/float64(o.calls),
			len(r.hits), pct(r.hits, 50), pct(r.hits, 99), len(r.misses), pct(r.misses, 50), pct(r.misses, 99))
	}
	return nil
}

type result struct {
	plaidCalls   int64
	hits, misses []time.Duration
}

func measure(o options, maxAge time.Duration) (result, error) {
	emu, err := emulator.Start("127.0.0.1:0", emulator.Config{})
	if err != nil {
		return result{}, err
	}
	defer emu.Close()
	emu.Emulator.SetFaults(emulator.Faults{Latency: o.latency})
	cfg := app.Config{
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		Plaid: app.PlaidConfig{BaseURL: emu.URL, Credentials: plaid.Credentials{
			ClientID: emu.Emulator.ClientID(), Secret: emu.Emulator.Secret()}},
		Cache:  app.CacheConfig{MaxAge: maxAge},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	cfg.Resilience.MaxInFlight = max(64, o.concurrency)
	cfg.Resilience.MaxQueueWait = time.Minute
	a, err := app.New(cfg)
	if err != nil {
		return result{}, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	conn, err := grpc.NewClient(a.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return result{}, err
	}
	defer conn.Close()
	client := creditv1.NewCreditServiceClient(conn)

	// The same read mix for both runs.
	rng := rand.New(rand.NewPCG(o.seed, o.seed))
	zipf := rand.NewZipf(rng, o.zipfS, 1, o.users-1)
	type read struct {
		token  string
		cached bool
	}
	reads := make([]read, o.calls)
	for i := range reads {
		reads[i] = read{token: "user-sandbox-example#" + strconv.FormatUint(zipf.Uint64(), 10), cached: rng.Float64() < o.cachedShare}
	}
	cacheControl := "max-age=" + strconv.Itoa(o.maxAge)

	var mu sync.Mutex
	var r result
	var firstErr error
	next := make(chan read)
	var wg sync.WaitGroup
	for range o.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for rd := range next {
				cctx := context.Background()
				if rd.cached {
					cctx = metadata.AppendToOutgoingContext(cctx, "cache-control", cacheControl)
				}
				var header metadata.MD
				began := time.Now()
				_, err := client.CreditSessionsGet(cctx, &creditv1.CreditSessionsGetRequest{UserToken: rd.token}, grpc.Header(&header))
				took := time.Since(began)
				mu.Lock()
				switch {
				case err != nil:
					if firstErr == nil {
						firstErr = err
					}
				case len(header.Get("age")) > 0:
					r.hits = append(r.hits, took)
				default:
					r.misses = append(r.misses, took)
				}
				mu.Unlock()
			}
		}()
	}
	calls := emu.Emulator.Calls()
	for _, rd := range reads {
		next <- rd
	}
	close(next)
	wg.Wait()
	r.plaidCalls = emu.Emulator.Calls() - calls
	return r, firstErr
}

func pct(d []time.Duration, p int) string {
	if len(d) == 0 {
		return "-"
	}
	s := slices.Clone(d)
	slices.Sort(s)
	v := s[min(len(s)-1, len(s)*p/100)]
	if v < time.Millisecond {
		return fmt.Sprintf("%.0f µs", float64(v)/float64(time.Microsecond))
	}
	return fmt.Sprintf("%.0f ms", float64(v)/float64(time.Millisecond))
}
