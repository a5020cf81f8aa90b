package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/app"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// tenants is the two-caller soak: one replica (in this process, on its embedded
// emulator), an abusive caller and a normal one. The abusive caller, from 127.0.0.2,
// opens far more watches than -caller-max-watches allows and keeps asking for more,
// and floods the webhook listener with junk webhooks (unknown kids, bad signatures).
// The normal caller, from 127.0.0.1, holds its watches and makes unary calls, while
// every one of its users' sessions changes every few poll intervals. It reports how
// soon the normal caller's watches saw each change (every change must arrive within one
// poll interval, as polls alone find them here) and whether its calls failed.
func tenants(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("watchbench -tenants", flag.ContinueOnError)
	duration := fs.Duration("duration", 30*time.Second, "how long the abuse and the changes last")
	poll := fs.Duration("poll", 2*time.Second, "-watch-poll-interval of the replica")
	capPerCaller := fs.Int("caller-max-watches", 100, "-caller-max-watches of the replica")
	abusive := fs.Int("abusive-watches", 2000, "watches the abusive caller tries to hold")
	normal := fs.Int("normal-watches", 50, "watches the normal caller holds, one user each")
	callRate := fs.Int("normal-calls", 20, "unary calls a second the normal caller makes")
	quota := fs.Float64("caller-rate", 50, "-caller-rate of the replica (README's example); 0: none")
	junkRate := fs.Int("junk-webhooks", 200, "junk webhooks a second the abusive caller posts")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *duration <= 0 || *duration > 10*time.Minute || *abusive > 20000 || *normal > 1000 || *junkRate > 2000 || *callRate > 1000 {
		return errors.New("-duration up to 10m, -abusive-watches up to 20000, -normal-watches up to 1000, -junk-webhooks up to 2000, -normal-calls up to 1000")
	}
	cfg := app.Config{
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", WebhookAddr: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	cfg.Watch.PollInterval = *poll
	cfg.Security.CallerMaxWatches = *capPerCaller
	cfg.Security.CallerRate = *quota
	a, err := app.New(cfg)
	if err != nil {
		return err
	}
	runCtx, stopService := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- a.Run(runCtx) }()
	defer func() { stopService(); <-served }()
	emu := a.Emulator()

	dial := func(local string) (*grpc.ClientConn, error) {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
		return grpc.NewClient(a.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithNoProxy(),
			grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }))
	}
	var abusers []creditv1.CreditServiceClient
	for range 10 {
		conn, err := dial("127.0.0.2")
		if err != nil {
			return err
		}
		defer conn.Close()
		abusers = append(abusers, creditv1.NewCreditServiceClient(conn))
	}
	conn, err := dial("127.0.0.1")
	if err != nil {
		return err
	}
	defer conn.Close()
	normalClient := creditv1.NewCreditServiceClient(conn)

	soakCtx, endSoak := context.WithTimeout(ctx, *duration)
	defer endSoak()
	var wg sync.WaitGroup
	defer wg.Wait()
	streamsCtx, closeStreams := context.WithCancel(ctx)
	defer closeStreams()

	// The normal caller's watches: each records when it saw each session count.
	type seen struct {
		sessions int
		at       time.Time
	}
	tokens := make([]string, *normal)
	seenBy := make([]chan seen, *normal)
	for i := range tokens {
		tokens[i] = "user-sandbox-example#tenant-normal-" + strconv.Itoa(i)
		seenBy[i] = make(chan seen, 1024)
		s, err := normalClient.WatchCreditSessions(streamsCtx, &creditv1.WatchCreditSessionsRequest{UserToken: tokens[i]})
		if err != nil {
			return err
		}
		first, err := s.Recv()
		if err != nil {
			return fmt.Errorf("the normal caller's watch %d: %w", i, err)
		}
		seenBy[i] <- seen{len(first.GetResponse().GetSessions()), time.Now()}
		wg.Go(func() {
			for {
				m, err := s.Recv()
				if err != nil {
					close(seenBy[i])
					return
				}
				seenBy[i] <- seen{len(m.GetResponse().GetSessions()), time.Now()}
			}
		})
	}

	// The abusive caller: as many watches as it can get, then asking for more.
	var abuseAccepted, abuseRefused, abuseOther atomic.Int64
	sem := make(chan struct{}, 64)
	for i := range *abusive {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			s, err := abusers[i%len(abusers)].WatchCreditSessions(streamsCtx,
				&creditv1.WatchCreditSessionsRequest{UserToken: "user-sandbox-example#tenant-abuse-" + strconv.Itoa(i)})
			if err == nil {
				_, err = s.Recv()
			}
			switch status.Code(err) {
			case codes.OK:
				abuseAccepted.Add(1)
			case codes.ResourceExhausted:
				abuseRefused.Add(1)
			default:
				abuseOther.Add(1)
			}
		})
	}
	wg.Go(func() { // and keeps asking, 50 times a second
		if *abusive == 0 {
			return // the baseline: no abusive caller
		}
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-soakCtx.Done():
				return
			case <-tick.C:
			}
			s, err := abusers[i%len(abusers)].WatchCreditSessions(streamsCtx,
				&creditv1.WatchCreditSessionsRequest{UserToken: "user-sandbox-example#tenant-abuse-more-" + strconv.Itoa(i)})
			if err == nil {
				_, err = s.Recv()
			}
			switch status.Code(err) {
			case codes.OK:
				abuseAccepted.Add(1)
			case codes.ResourceExhausted:
				abuseRefused.Add(1)
			default:
				abuseOther.Add(1)
			}
		}
	})
	// Junk webhooks: well-formed JWTs with random kids and signatures.
	var junkSent atomic.Int64
	junkCodes := make(map[int]int)
	var junkMu sync.Mutex
	hookURL := "http://" + a.WebhookAddr().String() + "/webhooks/plaid"
	wg.Go(func() {
		if *junkRate == 0 {
			return
		}
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 16,
			DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}).DialContext}}
		tick := time.NewTicker(time.Second / time.Duration(max(1, *junkRate)))
		defer tick.Stop()
		for {
			select {
			case <-soakCtx.Done():
				return
			case <-tick.C:
			}
			req, _ := http.NewRequest(http.MethodPost, hookURL, strings.NewReader(`{"webhook_type":"INCOME","webhook_code":"BANK_INCOME_COMPLETE","user_id":"x"}`))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Plaid-Verification", junkJWT())
			resp, err := client.Do(req)
			code := 0
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				code = resp.StatusCode
			}
			junkSent.Add(1)
			junkMu.Lock()
			junkCodes[code]++
			junkMu.Unlock()
		}
	})
	// The normal caller's unary calls.
	var calls, callFailures atomic.Int64
	var failMu sync.Mutex
	failCodes := map[string]int{}
	wg.Go(func() {
		tick := time.NewTicker(time.Second / time.Duration(max(1, *callRate)))
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-soakCtx.Done():
				return
			case <-tick.C:
			}
			callCtx, cancel := context.WithTimeout(soakCtx, 5*time.Second)
			_, err := normalClient.CreditSessionsGet(callCtx, &creditv1.CreditSessionsGetRequest{UserToken: tokens[i%len(tokens)]})
			cancel()
			if soakCtx.Err() != nil {
				return
			}
			calls.Add(1)
			if err != nil {
				callFailures.Add(1)
				failMu.Lock()
				failCodes[status.Code(err).String()+": "+status.Convert(err).Message()]++
				failMu.Unlock()
			}
		}
	})

	// The changes: every user of the normal caller gets a new session every two and a
	// half poll intervals, spread over the interval; each change's time is recorded.
	changes := make([][]time.Time, *normal) // by user: when its session count went up, in order
	began := time.Now()
	period := *poll * 5 / 2
	for round := 0; ; round++ {
		if soakCtx.Err() != nil {
			break
		}
		for i, token := range tokens {
			at := began.Add(time.Duration(round)*period + period*time.Duration(i)/time.Duration(len(tokens)))
			select {
			case <-soakCtx.Done():
			case <-time.After(time.Until(at)):
				if _, err := emu.AddSession(token); err != nil {
					return err
				}
				changes[i] = append(changes[i], time.Now())
			}
			if soakCtx.Err() != nil {
				break
			}
		}
	}
	// Let the last changes arrive, then end the watches.
	select {
	case <-time.After(*poll + time.Second):
	case <-ctx.Done():
		return ctx.Err()
	}
	watchesOpen, usersPolled := a.Hub().Watches(), a.Hub().Users()
	closeStreams()
	endSoak()
	wg.Wait()

	// Each change is the session count 2+k for the k-th change (a fixture of two).
	var latencies []time.Duration
	missed, made := 0, 0
	for i := range tokens {
		firstSeen := map[int]time.Time{}
		for s := range seenBy[i] {
			if _, ok := firstSeen[s.sessions]; !ok {
				firstSeen[s.sessions] = s.at
			}
		}
		for k, at := range changes[i] {
			made++
			// A later count seen first also carries this change.
			var got time.Time
			for n, seenAt := range firstSeen {
				if n >= 2+k+1 && (got.IsZero() || seenAt.Before(got)) {
					got = seenAt
				}
			}
			if got.IsZero() {
				missed++
				continue
			}
			latencies = append(latencies, got.Sub(at))
		}
	}
	slices.Sort(latencies)
	pct := func(p float64) time.Duration {
		if len(latencies) == 0 {
			return 0
		}
		return latencies[min(len(latencies)-1, int(p*float64(len(latencies))))]
	}
	late := 0
	for _, l := range latencies {
		if l > *poll {
			late++
		}
	}
	fmt.Printf("two tenants for %v, poll interval %v, -caller-max-watches %d, -caller-rate %g\n", *duration, *poll, *capPerCaller, *quota)
	fmt.Printf("abusive caller: %d watches tried at once then 50 more a second: %d accepted, %d refused (ResourceExhausted), %d other; %d junk webhooks answered %v\n",
		*abusive, abuseAccepted.Load(), abuseRefused.Load(), abuseOther.Load(), junkSent.Load(), junkCodes)
	fmt.Printf("normal caller: %d watches; %d changes made, %d seen, %d missed; change to message p50 %v, p99 %v, max %v; %d later than one poll interval\n",
		*normal, made, len(latencies), missed, pct(0.5).Round(time.Millisecond), pct(0.99).Round(time.Millisecond),
		pct(1).Round(time.Millisecond), late)
	fmt.Printf("normal caller: %d unary calls, %d failed %v\n", calls.Load(), callFailures.Load(), failCodes)
	fmt.Printf("replica at the end: %d watches open, %d users polled\n", watchesOpen, usersPolled)
	return nil
}

// junkJWT is a compact JWS of the shape Plaid signs webhooks with, its kid random and
// its signature junk: what anyone can post to the webhook listener.
func junkJWT() string {
	kid := make([]byte, 16)
	_, _ = rand.Read(kid)
	enc := base64.RawURLEncoding
	header := enc.EncodeToString([]byte(`{"alg":"ES256","kid":"` + fmt.Sprintf("%x", kid) + `","typ":"JWT"}`))
	claims := enc.EncodeToString([]byte(`{"iat":` + strconv.FormatInt(time.Now().Unix(), 10) + `,"request_body_sha256":"00"}`))
	sig := make([]byte, 64)
	_, _ = rand.Read(sig)
	return header + "." + claims + "." + enc.EncodeToString(sig)
}
