package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// transport is how a call reaches the service.
type transport int

const (
	overGRPC transport = iota
	overREST
)

func (t transport) String() string {
	if t == overGRPC {
		return "gRPC"
	}
	return "REST"
}

// tokenClass is what kind of user a call asks about.
type tokenClass int

const (
	fixtureToken tokenClass = iota // one of the emulator's fixture users
	hotToken                       // the one token many calls share, so that they coalesce
	unknownToken                   // a user the emulator does not know: the caller's error
	uniqueToken                    // generated sessions, varied so that calls rarely coalesce
	failingToken                   // the one user whose every call fails (-failing-user-share)
)

// The call mix.
var (
	fixtureTokens = []string{"user-sandbox-example", "user-sandbox-full", "user-sandbox-zero", "user-sandbox-sessions-50"}
	hotUserToken  = "user-sandbox-sessions-200"
	// failingUserToken is a user Plaid answers API_ERROR/INTERNAL_SERVER_ERROR (HTTP 500)
	// on every call, while everybody else is served.
	failingUserToken = "user-sandbox-error-API_ERROR-INTERNAL_SERVER_ERROR"
)

const (
	fixtureShare = 0.55
	hotShare     = 0.20
	unknownShare = 0.15
	// uniqueShare is the rest, 0.10.
	maxUniqueSessions = 500
)

// call is one call to make.
type call struct {
	transport transport
	class     tokenClass
	token     string
}

// callMix draws calls. It is used by the dispatcher only, so it needs no lock.
type callMix struct {
	rng      *rand.Rand
	unknowns int
	failing  float64 // share of calls for failingUserToken, before the rest of the mix
}

func newCallMix(seed uint64, failingShare float64) *callMix {
	return &callMix{rng: rand.New(rand.NewPCG(seed, seed^0x5eed5eed5eed5eed)), failing: failingShare}
}

func (m *callMix) next() call {
	c := call{transport: transport(m.rng.IntN(2))}
	if m.failing > 0 && m.rng.Float64() < m.failing {
		c.class, c.token = failingToken, failingUserToken
		return c
	}
	switch p := m.rng.Float64(); {
	case p < fixtureShare:
		c.class, c.token = fixtureToken, fixtureTokens[m.rng.IntN(len(fixtureTokens))]
	case p < fixtureShare+hotShare:
		c.class, c.token = hotToken, hotUserToken
	case p < fixtureShare+hotShare+unknownShare:
		m.unknowns++
		c.class, c.token = unknownToken, "user-sandbox-nobody-"+strconv.Itoa(m.unknowns)
	default:
		c.class, c.token = uniqueToken, "user-sandbox-sessions-"+strconv.Itoa(m.rng.IntN(maxUniqueSessions+1))
	}
	return c
}

// result is what one call got.
type result struct {
	label   string // the outcome as the summary shows it, such as "gRPC NotFound INVALID_USER_TOKEN"
	ok      bool
	caller  bool // the unknown user's caller error: NotFound / HTTP 400 INVALID_USER_TOKEN
	transit bool // a transient error: what an upstream fault rightly turns into
	latency time.Duration
}

// clients reach the service.
type clients struct {
	grpc    creditv1.CreditServiceClient
	conn    *grpc.ClientConn
	http    *http.Client
	restURL string
}

func newClients(svc readyLine, concurrency int) (*clients, error) {
	conn, err := grpc.NewClient(svc.GRPC,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithNoProxy(), // loopback only, whatever HTTPS_PROXY says
	)
	if err != nil {
		return nil, fmt.Errorf("gRPC client: %w", err)
	}
	transport := &http.Transport{
		Proxy:               nil, // loopback only, whatever HTTP_PROXY says
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        concurrency,
		MaxIdleConnsPerHost: concurrency,
		IdleConnTimeout:     90 * time.Second,
	}
	return &clients{
		grpc:    creditv1.NewCreditServiceClient(conn),
		conn:    conn,
		http:    &http.Client{Transport: transport},
		restURL: "http://" + svc.HTTP + "/credit/sessions/get",
	}, nil
}

func (c *clients) close() {
	_ = c.conn.Close()
	c.http.CloseIdleConnections()
}

func (c *clients) do(ctx context.Context, cl call, timeout time.Duration) result {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	var r result
	if cl.transport == overGRPC {
		r = c.doGRPC(ctx, cl.token)
	} else {
		r = c.doREST(ctx, cl.token)
	}
	r.latency = time.Since(start)
	return r
}

func (c *clients) doGRPC(ctx context.Context, token string) result {
	_, err := c.grpc.CreditSessionsGet(ctx, &creditv1.CreditSessionsGetRequest{UserToken: token})
	if err == nil {
		return result{label: "gRPC OK", ok: true}
	}
	st := status.Convert(err)
	label := "gRPC " + st.Code().String()
	reason := ""
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			reason = info.GetReason()
			label += " " + reason + origin(info.GetDomain() == "plaid.com")
			break
		}
	}
	switch st.Code() {
	case codes.NotFound:
		return result{label: label, caller: reason == "INVALID_USER_TOKEN"}
	case codes.Unavailable, codes.ResourceExhausted, codes.DeadlineExceeded:
		return result{label: label, transit: true}
	}
	return result{label: label}
}

// origin marks an error as Plaid's, passed through, or the service's own.
func origin(plaids bool) string {
	if plaids {
		return " (Plaid's)"
	}
	return " (the service's)"
}

// maxRESTBody bounds what is read of an answer; the largest in the mix is well under.
const maxRESTBody = 16 << 20

func (c *clients) doREST(ctx context.Context, token string) result {
	body, _ := json.Marshal(map[string]string{"user_token": token})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.restURL, bytes.NewReader(body))
	if err != nil {
		return result{label: "REST request not built: " + err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return result{label: "REST client deadline exceeded", transit: true}
		}
		return result{label: "REST transport error"}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxRESTBody+1))
	switch {
	case err != nil && errors.Is(err, context.DeadlineExceeded):
		return result{label: fmt.Sprintf("REST %d, client deadline exceeded in the body", resp.StatusCode), transit: true}
	case err != nil:
		return result{label: fmt.Sprintf("REST %d, body cut short", resp.StatusCode)}
	case len(raw) > maxRESTBody:
		return result{label: fmt.Sprintf("REST %d, body over %d bytes", resp.StatusCode, maxRESTBody)}
	case !json.Valid(raw):
		return result{label: fmt.Sprintf("REST %d, body not JSON", resp.StatusCode)}
	}
	if resp.StatusCode == http.StatusOK {
		return result{label: "REST 200", ok: true}
	}
	var plaidErr struct {
		ErrorType string `json:"error_type"`
		ErrorCode string `json:"error_code"`
		RequestID string `json:"request_id"`
	}
	_ = json.Unmarshal(raw, &plaidErr)
	// The service's own errors carry its own request id; Plaid's pass through.
	fromPlaid := !strings.HasPrefix(plaidErr.RequestID, "creditsessions-")
	label := fmt.Sprintf("REST %d %s/%s%s", resp.StatusCode, plaidErr.ErrorType, plaidErr.ErrorCode, origin(fromPlaid))
	switch {
	case resp.StatusCode == http.StatusBadRequest:
		return result{label: label, caller: plaidErr.ErrorCode == "INVALID_USER_TOKEN"}
	case resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode == http.StatusBadGateway,
		resp.StatusCode == http.StatusServiceUnavailable, resp.StatusCode == http.StatusGatewayTimeout:
		return result{label: label, transit: true}
	case resp.StatusCode >= 500 && fromPlaid && plaidErr.ErrorType == "API_ERROR":
		// Plaid's own API_ERROR, which the mirror passes through with Plaid's status;
		// gRPC callers get Unavailable for it.
		return result{label: label, transit: true}
	}
	return result{label: label}
}

// tally counts outcomes as calls end. Safe for concurrent use.
type tally struct {
	mu       sync.Mutex
	outcomes map[string]*outcomeCount
	byTrans  [2]int64

	good, goodFailed                       int64
	failing, failingFast                   int64
	unknown, unknownCaller, unknownTransit int64
	goodLatencies, goodSuccessLatencies    []time.Duration
}

type outcomeCount struct {
	label         string
	good, unknown int64
	// expectedForUnknown: the caller error, or a transient error an upstream fault explains.
	expectedForUnknown bool
}

func newTally() *tally { return &tally{outcomes: map[string]*outcomeCount{}} }

func (t *tally) record(c call, r result) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.byTrans[c.transport]++
	if c.class == failingToken {
		// Neither a good token nor a caller error: counted apart, so that the good-token
		// figures compare with a run without this user.
		t.failing++
		if r.latency < 10*time.Millisecond {
			t.failingFast++
		}
		return
	}
	o := t.outcomes[r.label]
	if o == nil {
		o = &outcomeCount{label: r.label, expectedForUnknown: r.caller || r.transit}
		t.outcomes[r.label] = o
	}
	if c.class == unknownToken {
		o.unknown++
		t.unknown++
		switch {
		case r.caller:
			t.unknownCaller++
		case r.transit:
			t.unknownTransit++
		}
		return
	}
	o.good++
	t.good++
	t.goodLatencies = append(t.goodLatencies, r.latency)
	if r.ok {
		t.goodSuccessLatencies = append(t.goodSuccessLatencies, r.latency)
	} else {
		t.goodFailed++
	}
}

// progress is a running count for progress lines.
type progress struct {
	calls, goodFailed, good, unknownWrong int64
}

func (t *tally) progress() progress {
	t.mu.Lock()
	defer t.mu.Unlock()
	return progress{
		calls: t.good + t.unknown, good: t.good, goodFailed: t.goodFailed,
		unknownWrong: t.unknown - t.unknownCaller - t.unknownTransit,
	}
}

// loadResult is how the load phase went.
type loadResult struct {
	issued, dropped int64
	elapsed         time.Duration
	stoppedBy       string // "-duration", "-max-calls" or "interrupted"
}

// sendLoad paces calls at cfg.Rate for cfg.Duration, or until cfg.MaxCalls or ctx ends,
// over cfg.Concurrency workers, and returns once every call has ended. A tick that finds
// every worker busy is dropped, not queued.
func sendLoad(ctx context.Context, cfg config, cl *clients, t *tally) loadResult {
	work := make(chan call) // unbuffered: a send succeeds only into an idle worker
	var wg sync.WaitGroup
	for range cfg.Concurrency {
		wg.Go(func() {
			for c := range work {
				// Calls get their own deadline, not ctx: an interrupted soak lets the calls
				// in flight end on their own so that their outcomes count.
				t.record(c, cl.do(context.WithoutCancel(ctx), c, cfg.CallTimeout))
			}
		})
	}

	mix := newCallMix(cfg.Seed, cfg.FailingShare)
	tick := max(time.Second/time.Duration(cfg.Rate), time.Millisecond)
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	timer := time.NewTimer(cfg.Duration)
	defer timer.Stop()
	start := time.Now()
	var res loadResult
	var due int64 // ticks handled so far, dispatched or dropped
dispatch:
	for {
		select {
		case <-ctx.Done():
			res.stoppedBy = "interrupted"
			break dispatch
		case <-timer.C:
			res.stoppedBy = "-duration"
			break dispatch
		case now := <-ticker.C:
			// Catch up on what is due by now, so that pacing holds whatever the tick.
			for target := int64(now.Sub(start).Seconds() * float64(cfg.Rate)); due < target; due++ {
				if res.issued >= cfg.MaxCalls {
					res.stoppedBy = "-max-calls"
					break dispatch
				}
				c := mix.next()
				select {
				case work <- c:
					res.issued++
				default:
					res.dropped++
				}
			}
		}
	}
	res.elapsed = time.Since(start)
	close(work)
	wg.Wait()
	return res
}
