package emulator

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Fault is one way to misbehave, for one call.
type Fault struct {
	Kind FaultKind

	// Error is, for FaultError, the Plaid error to answer with: an entry of Errors, or
	// ErrorFor(type, code). The zero ErrorSpec means API_ERROR/INTERNAL_SERVER_ERROR,
	// and a zero HTTPStatus is looked up in Errors (500 for an error it does not list).
	Error ErrorSpec

	// RetryAfter is, for FaultError, a Retry-After header in whole seconds, rounded up,
	// when > 0.
	RetryAfter time.Duration

	// Delay is, for FaultLatency, the time added before the normal answer; for
	// FaultStall, the longest stall (0: until the client goes away).
	Delay time.Duration
}

// FaultKind says how a call misbehaves.
type FaultKind int

const (
	// FaultNone answers normally. Scripted, it spares one call from random faults.
	FaultNone FaultKind = iota
	// FaultLatency answers normally after Delay, or not at all if the client goes away
	// first.
	FaultLatency
	// FaultError answers with Error, its HTTP status and Plaid body, and a Retry-After
	// header if RetryAfter > 0.
	FaultError
	// FaultReset resets the connection without answering: the client reads a TCP RST.
	FaultReset
	// FaultStall sends the headers of the normal answer with its full Content-Length and
	// about half its body, then stalls until the client goes away or Delay passes, and
	// closes the connection: the client sees a body cut short. Server.Close ends a stall
	// at once, where it lets other requests in flight finish.
	FaultStall
	// FaultGarbage answers 200 with Content-Type application/json and a body that is not
	// JSON.
	FaultGarbage
	// FaultHTML502 answers 502 with a load balancer's HTML error page.
	FaultHTML502
)

var faultKindNames = [...]string{"none", "latency", "error", "reset", "stall", "garbage", "html-502"}

// String is the kind's lower-case name, as logs show it.
func (k FaultKind) String() string {
	if k >= 0 && int(k) < len(faultKindNames) {
		return faultKindNames[k]
	}
	return "FaultKind(" + strconv.Itoa(int(k)) + ")"
}

// ErrorFor returns the entry of Errors for errorType/errorCode, and whether there is one.
func ErrorFor(errorType, errorCode string) (ErrorSpec, bool) {
	for _, s := range errorTable {
		if s.Type == errorType && s.Code == errorCode {
			return s, true
		}
	}
	return ErrorSpec{}, false
}

// Faults is an emulator's random misbehaviour. Scripted faults (Emulator.Script) come
// first; a call that takes none gets a random one. The rates are exclusive slices of
// one draw per call, in field order (error, rate limit, reset, stall, garbage), so they
// sum to at most 1; whatever is left is answered normally.
//
// Faults meet only requests that Plaid would route (POST /credit/sessions/get), after
// the request has been read and checked: a fault replaces whatever the call would have
// got, success or Plaid error, and a stall cuts short that same answer.
type Faults struct {
	// Latency is added to every call to the endpoint, faulted or not, on top of any
	// scripted FaultLatency.
	Latency time.Duration

	// ErrorRate is the fraction of calls answered with one of Errors, chosen uniformly;
	// Errors empty means API_ERROR/INTERNAL_SERVER_ERROR.
	ErrorRate float64
	Errors    []ErrorSpec

	// RetryAfter, when > 0, is sent as a Retry-After header with every random error and
	// rate-limit answer.
	RetryAfter time.Duration

	// RateLimitRate is the fraction of calls answered 429 RATE_LIMIT_EXCEEDED/RATE_LIMIT.
	RateLimitRate float64

	// ResetRate is the fraction of calls whose connection is reset (FaultReset).
	ResetRate float64

	// StallRate is the fraction of calls that stall (FaultStall) for StallFor at most,
	// 0 meaning until the client goes away.
	StallRate float64
	StallFor  time.Duration

	// GarbageRate is the fraction of calls answered 200 with a body that is not JSON.
	GarbageRate float64
}

// rateSumSlack absorbs float rounding, so that rates such as 0.1+0.2+0.7 count as 1.
const rateSumSlack = 1e-9

// Validate reports what, if anything, makes f unusable: a rate outside 0..1, rates that
// sum to more than 1, a negative duration, or an error without type, code or a 4xx/5xx
// status.
func (f Faults) Validate() error {
	rates := []struct {
		name string
		rate float64
	}{
		{"error rate", f.ErrorRate}, {"rate limit rate", f.RateLimitRate}, {"reset rate", f.ResetRate},
		{"stall rate", f.StallRate}, {"garbage rate", f.GarbageRate},
	}
	var sum float64
	for _, r := range rates {
		if math.IsNaN(r.rate) || r.rate < 0 || r.rate > 1 {
			return fmt.Errorf("emulator: %s %v is not between 0 and 1", r.name, r.rate)
		}
		sum += r.rate
	}
	if sum > 1+rateSumSlack {
		return fmt.Errorf("emulator: the fault rates sum to %v, more than 1", sum)
	}
	durations := []struct {
		name string
		d    time.Duration
	}{{"latency", f.Latency}, {"retry-after", f.RetryAfter}, {"stall-for", f.StallFor}}
	for _, d := range durations {
		if d.d < 0 {
			return fmt.Errorf("emulator: %s %v is negative", d.name, d.d)
		}
	}
	for _, s := range f.Errors {
		if s.Type == "" || s.Code == "" || s.HTTPStatus < 400 || s.HTTPStatus > 599 {
			return fmt.Errorf("emulator: error %s/%s with HTTP status %d: need a type, a code and a 4xx or 5xx status",
				s.Type, s.Code, s.HTTPStatus)
		}
	}
	return nil
}

// The errors that random faults answer with unless told otherwise.
var (
	defaultFaultError = *mustError("API_ERROR", "INTERNAL_SERVER_ERROR")
	rateLimitError    = *mustError("RATE_LIMIT_EXCEEDED", "RATE_LIMIT")
)

// SetFaults replaces the random faults; the script is left as it is. It is safe to call
// while the emulator serves. It panics if f.Validate fails: a programming error, which
// ParseFaults and the control API report as errors instead.
func (e *Emulator) SetFaults(f Faults) {
	if err := f.Validate(); err != nil {
		panic(err)
	}
	f.Errors = slices.Clone(f.Errors) // the caller's slice stays the caller's
	e.faults.mu.Lock()
	defer e.faults.mu.Unlock()
	e.faults.random = f
}

// Faults returns the random faults in force.
func (e *Emulator) Faults() Faults {
	e.faults.mu.Lock()
	defer e.faults.mu.Unlock()
	f := e.faults.random
	f.Errors = slices.Clone(f.Errors)
	return f
}

// Script queues faults for the next calls to the endpoint, one each, in order, after any
// already queued. A call that takes a scripted fault gets no random one (FaultNone
// spares a call); Faults.Latency still applies. It panics on a FaultKind it does not
// know or a negative duration.
func (e *Emulator) Script(faults ...Fault) {
	queued := make([]Fault, 0, len(faults))
	for _, f := range faults {
		if f.Kind < FaultNone || f.Kind > FaultGarbage {
			panic("emulator: Script: unknown fault kind " + f.Kind.String())
		}
		if f.Delay < 0 || f.RetryAfter < 0 {
			panic("emulator: Script: negative duration in a " + f.Kind.String() + " fault")
		}
		if f.Kind == FaultError {
			f.Error = completeError(f.Error)
		}
		queued = append(queued, f)
	}
	e.faults.mu.Lock()
	defer e.faults.mu.Unlock()
	e.faults.script = append(e.faults.script, queued...)
}

// completeError fills in what a scripted error leaves out.
func completeError(s ErrorSpec) ErrorSpec {
	if s.Type == "" && s.Code == "" {
		return defaultFaultError
	}
	if s.HTTPStatus == 0 {
		s.HTTPStatus = http.StatusInternalServerError
		if known, ok := ErrorFor(s.Type, s.Code); ok {
			s.HTTPStatus = known.HTTPStatus
		}
	}
	if s.Message == "" {
		s.Message = "an unexpected error occurred"
		if known, ok := ErrorFor(s.Type, s.Code); ok {
			s.Message = known.Message
		}
	}
	return s
}

// ClearFaults removes the random faults and empties the script: every call is answered
// normally again.
func (e *Emulator) ClearFaults() {
	e.faults.mu.Lock()
	defer e.faults.mu.Unlock()
	e.faults.random = Faults{}
	e.faults.script = nil
}

// Seed is the seed of the random fault choices: Config.Seed, or the one picked for it.
func (e *Emulator) Seed() uint64 { return e.faults.seed }

// faultState is an Emulator's faults and the one random source that picks among them.
type faultState struct {
	seed uint64 // set once by init, then only read

	mu     sync.Mutex
	rng    *rand.Rand
	random Faults
	script []Fault
}

func (s *faultState) init(seed uint64) {
	for seed == 0 {
		seed = rand.Uint64()
	}
	s.seed = seed
	s.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// next takes the fault for one call, and the latency to add before it.
func (s *faultState) next() (Fault, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.random
	if len(s.script) > 0 {
		scripted := s.script[0]
		s.script = s.script[1:]
		if len(s.script) == 0 {
			s.script = nil // let the backing array go
		}
		return scripted, f.Latency
	}
	if f.ErrorRate+f.RateLimitRate+f.ResetRate+f.StallRate+f.GarbageRate == 0 {
		return Fault{}, f.Latency
	}
	draw, edge := s.rng.Float64(), 0.0
	slice := func(rate float64) bool {
		edge += rate
		return draw < edge
	}
	switch {
	case slice(f.ErrorRate):
		spec := defaultFaultError
		if len(f.Errors) > 0 {
			spec = f.Errors[s.rng.IntN(len(f.Errors))]
		}
		return Fault{Kind: FaultError, Error: spec, RetryAfter: f.RetryAfter}, f.Latency
	case slice(f.RateLimitRate):
		return Fault{Kind: FaultError, Error: rateLimitError, RetryAfter: f.RetryAfter}, f.Latency
	case slice(f.ResetRate):
		return Fault{Kind: FaultReset}, f.Latency
	case slice(f.StallRate):
		return Fault{Kind: FaultStall, Delay: f.StallFor}, f.Latency
	case slice(f.GarbageRate):
		return Fault{Kind: FaultGarbage}, f.Latency
	}
	return Fault{}, f.Latency
}

// garbageBody is what FaultGarbage sends: a proxy's error page, the kind of non-JSON a
// client really meets behind a misconfigured gateway.
const garbageBody = "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>\n"

// misbehave answers a routed request under its fault: body or failure is the normal
// answer. It returns the HTTP status sent (0 for none), the Plaid error sent if any, and
// the fault applied.
func (e *Emulator) misbehave(w http.ResponseWriter, r *http.Request, requestID string,
	body successBody, failure *ErrorSpec) (int, *ErrorSpec, FaultKind) {
	fault, wait := e.faults.next()
	if body.fault != FaultNone {
		fault = Fault{Kind: body.fault} // this user's own trouble
	}
	if fault.Kind == FaultLatency {
		wait += fault.Delay
	}
	if wait > 0 || fault.Kind == FaultStall {
		// The server's ReadTimeout would otherwise cancel the request context mid-wait,
		// as if the client had gone; once the body is read, only the client's going
		// away should end a wait.
		rc := http.NewResponseController(w)
		_ = rc.SetReadDeadline(time.Time{})
		if wait > 0 {
			_ = rc.SetWriteDeadline(time.Now().Add(wait + writeTimeout))
		}
	}
	if wait > 0 && !sleep(r.Context(), wait) {
		return 0, nil, fault.Kind // the client went away: no one to answer
	}

	switch fault.Kind {
	case FaultError:
		if fault.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.FormatInt(wholeSeconds(fault.RetryAfter), 10))
		}
		writeError(w, requestID, fault.Error)
		return fault.Error.HTTPStatus, &fault.Error, fault.Kind
	case FaultReset:
		resetConnection(w)
		return 0, nil, fault.Kind
	case FaultStall:
		return stall(w, r, requestID, body, failure, fault.Delay), failure, fault.Kind
	case FaultGarbage:
		h := w.Header()
		h.Set("Content-Type", contentType)
		h.Set("Content-Length", strconv.Itoa(len(garbageBody)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(garbageBody))
		return http.StatusOK, nil, fault.Kind
	case FaultHTML502:
		h := w.Header()
		h.Set("Content-Type", "text/html")
		h.Set("Content-Length", strconv.Itoa(len(garbageBody)))
		w.WriteHeader(http.StatusBadGateway)
		_, _ = w.Write([]byte(garbageBody))
		return http.StatusBadGateway, nil, fault.Kind
	}
	return writeAnswer(w, requestID, body, failure), failure, fault.Kind
}

// wholeSeconds is d in seconds, rounded up.
func wholeSeconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}

// sleep waits for d, or less if ctx ends first, and reports whether it waited all of d.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// resetConnection closes the connection under w with SO_LINGER 0, so that the kernel
// sends a TCP RST instead of a FIN.
func resetConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// An HTTP/2 stream, or a writer that cannot hand over its connection: aborting
		// the handler closes an HTTP/1 connection and resets an HTTP/2 stream, which is
		// the nearest thing.
		panic(http.ErrAbortHandler)
	}
	if tcp, ok := conn.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0)
	}
	_ = conn.Close()
}

// stall sends the normal answer's status and headers, with its full Content-Length, and
// the first half of its body; then it waits for the client to go away, for maxStall (0:
// no limit) or for Server.Close, and closes the connection. It returns the status sent.
func stall(w http.ResponseWriter, r *http.Request, requestID string, body successBody,
	failure *ErrorSpec, maxStall time.Duration) int {
	var normal bufferedResponse
	status := writeAnswer(&normal, requestID, body, failure)
	h := w.Header()
	for k, v := range normal.header {
		h[k] = v
	}
	w.WriteHeader(status)
	raw := normal.body.Bytes()
	_, _ = w.Write(raw[:len(raw)/2])
	rc := http.NewResponseController(w)
	_ = rc.Flush() // the half must reach the client before the stall, not after it

	var limit <-chan time.Time // nil, which never fires, for a stall without limit
	if maxStall > 0 {
		timer := time.NewTimer(maxStall)
		defer timer.Stop()
		limit = timer.C
	}
	select {
	case <-limit:
	case <-r.Context().Done(): // the client went away
	case <-shutdownSignal(r.Context()): // Server.Close began
	}
	// Closing now, rather than leaving it to the server, makes the cut the same whatever
	// the server does with a short body.
	if conn, _, err := rc.Hijack(); err == nil {
		_ = conn.Close()
	}
	return status
}

// bufferedResponse is an http.ResponseWriter that keeps the response in memory.
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header {
	if b.header == nil {
		b.header = http.Header{}
	}
	return b.header
}

func (b *bufferedResponse) WriteHeader(status int) {
	if b.status == 0 {
		b.status = status
	}
}

func (b *bufferedResponse) Write(p []byte) (int, error) {
	b.WriteHeader(http.StatusOK)
	return b.body.Write(p)
}
