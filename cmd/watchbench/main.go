// Command watchbench measures what idle watches cost the service: it runs the service
// (on its embedded emulator) as a child process, so that the service's memory is measured
// alone, opens -watches WatchCreditSessions streams over loopback, one user each, waits
// for every first message, and reads the service's own metrics: heap and goroutine
// stacks per watch after a GC, goroutines, and CPU over -idle with every watch open and
// nothing changing. Polls are set an hour apart, so that "idle" means idle.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/app"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

const roleEnv = "WATCHBENCH_ROLE"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch {
	case os.Getenv(roleEnv) == "service":
		err = serve(ctx)
	case len(os.Args) > 1 && os.Args[1] == "-tenants":
		err = tenants(ctx, os.Args[2:])
	default:
		err = run(ctx, os.Args[1:])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "watchbench:", err)
		os.Exit(1)
	}
}

// ready is the child's first line on stdout.
type ready struct {
	GRPC  string `json:"grpc"`
	Admin string `json:"admin"`
}

// serve is the child: the service on loopback until its parent closes stdin.
func serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cfg := app.Config{
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	cfg.Watch.PollInterval = time.Hour
	cfg.Watch.MaxDuration = 24 * time.Hour
	a, err := app.New(cfg)
	if err != nil {
		return err
	}
	line, _ := json.Marshal(ready{GRPC: a.GRPCAddr().String(), Admin: a.AdminAddr().String()})
	fmt.Println(string(line))
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); cancel() }()
	return a.Run(ctx)
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("watchbench", flag.ContinueOnError)
	watches := fs.Int("watches", 10000, "idle watches to open, one user each")
	conns := fs.Int("conns", 100, "gRPC connections to spread them over (at most 128 streams each are allowed on a hardened server)")
	idle := fs.Duration("idle", 20*time.Second, "how long to measure CPU with every watch open")
	heapProfile := fs.String("heapprofile", "", "write the service's heap profile, with every watch open, to this `file`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *watches < 1 || *watches > 50000 || *conns < 1 || *conns > 100 {
		return errors.New("-watches must be 1..50000 and -conns 1..100")
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), roleEnv+"=service")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = stdin.Close(); _ = cmd.Wait() }()
	var addrs ready
	if err := json.NewDecoder(bufio.NewReader(stdout)).Decode(&addrs); err != nil {
		return fmt.Errorf("reading the service's addresses: %w", err)
	}
	admin := "http://" + addrs.Admin

	before, err := sample(admin)
	if err != nil {
		return err
	}
	streamCtx, cancelStreams := context.WithCancel(ctx)
	defer cancelStreams()
	clients := make([]creditv1.CreditServiceClient, *conns)
	for i := range clients {
		conn, err := grpc.NewClient(addrs.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer conn.Close()
		clients[i] = creditv1.NewCreditServiceClient(conn)
	}
	opened := time.Now()
	var g errgroup.Group
	g.SetLimit(64)
	var mu sync.Mutex
	var streams []grpc.ServerStreamingClient[creditv1.WatchCreditSessionsResponse]
	for i := range *watches {
		g.Go(func() error {
			s, err := clients[i%*conns].WatchCreditSessions(streamCtx, &creditv1.WatchCreditSessionsRequest{
				UserToken: "user-sandbox-example#watchbench-" + strconv.Itoa(i)})
			if err != nil {
				return err
			}
			if _, err := s.Recv(); err != nil {
				return fmt.Errorf("watch %d: %w", i, err)
			}
			mu.Lock()
			streams = append(streams, s)
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	fmt.Printf("opened %d watches over %d connections in %v\n", len(streams), *conns, time.Since(opened).Round(time.Millisecond))
	// Let what opening them left behind go: the resilience layer's warm goroutines
	// (100 ms) and idle connections to the emulator are not the watches' cost.
	select {
	case <-time.After(2 * time.Second):
	case <-ctx.Done():
		return ctx.Err()
	}
	open, err := sample(admin)
	if err != nil {
		return err
	}
	if *heapProfile != "" {
		if err := saveProfile(admin+"/debug/pprof/heap", *heapProfile); err != nil {
			return err
		}
	}
	select {
	case <-time.After(*idle):
	case <-ctx.Done():
		return ctx.Err()
	}
	after, err := sample(admin)
	if err != nil {
		return err
	}
	n := float64(len(streams))
	perWatch := (open.heap + open.stack - before.heap - before.stack) / n
	fmt.Printf("service before: heap %.1f MiB, stacks %.1f MiB, %0.f goroutines\n", before.heap/(1<<20), before.stack/(1<<20), before.goroutines)
	fmt.Printf("service with %d watches: heap %.1f MiB, stacks %.1f MiB, %0.f goroutines, RSS %.1f MiB, creditsessions_watches %0.f\n",
		len(streams), open.heap/(1<<20), open.stack/(1<<20), open.goroutines, open.rss/(1<<20), open.watches)
	fmt.Printf("per watch: %.1f KiB (heap %.1f KiB + stack %.1f KiB), %.2f goroutines\n", perWatch/1024,
		(open.heap-before.heap)/n/1024, (open.stack-before.stack)/n/1024, (open.goroutines-before.goroutines)/n)
	fmt.Printf("idle CPU over %v: %.2f%% of one core\n", *idle, 100*(after.cpu-open.cpu)/idle.Seconds())
	return nil
}

// vitals are the service's own figures, after a GC.
type vitals struct {
	heap, stack, goroutines, rss, cpu, watches float64
}

// sample asks the service for a GC (pprof's heap profile with gc=1), then reads its
// metrics.
func sample(admin string) (vitals, error) {
	client := &http.Client{Timeout: 30 * time.Second}
	for range 2 {
		resp, err := client.Get(admin + "/debug/pprof/heap?gc=1")
		if err != nil {
			return vitals{}, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	resp, err := client.Get(admin + "/metrics")
	if err != nil {
		return vitals{}, err
	}
	defer resp.Body.Close()
	var v vitals
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		f, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		switch name {
		case "go_memstats_heap_inuse_bytes":
			v.heap = f
		case "go_memstats_stack_inuse_bytes":
			v.stack = f
		case "go_goroutines":
			v.goroutines = f
		case "process_resident_memory_bytes":
			v.rss = f
		case "process_cpu_seconds_total":
			v.cpu = f
		case "creditsessions_watches":
			v.watches = f
		}
	}
	return v, sc.Err()
}

func saveProfile(url, file string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return os.WriteFile(file, data, 0o644)
}
