package emulator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// ParseFaults reads Faults from a flag value: comma-separated key=value items, such as
//
//	error=0.2,ratelimit=0.05,reset=0.01,stall=0.01,stall-for=2s,garbage=0.01,latency=20ms,retry-after=1s,errors=API_ERROR/INTERNAL_SERVER_ERROR+API_ERROR/PLANNED_MAINTENANCE
//
// Rates (error, ratelimit, reset, stall, garbage) are fractions from 0 to 1 that sum to
// at most 1; latency, retry-after and stall-for are Go durations; errors is a
// +-separated list of TYPE/CODE pairs from Errors. Each key may appear once. "" and
// "none" mean no faults. Faults.String gives the same syntax back.
func ParseFaults(spec string) (Faults, error) {
	var f Faults
	spec = strings.TrimSpace(spec)
	if spec == "" || spec == "none" {
		return f, nil
	}
	seen := map[string]bool{}
	for item := range strings.SplitSeq(spec, ",") {
		key, value, ok := strings.Cut(strings.TrimSpace(item), "=")
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if !ok || key == "" {
			return Faults{}, fmt.Errorf("emulator: faults: %q is not key=value", strings.TrimSpace(item))
		}
		if seen[key] {
			return Faults{}, fmt.Errorf("emulator: faults: %s given twice", key)
		}
		seen[key] = true
		var err error
		switch key {
		case "error":
			f.ErrorRate, err = parseRate(value)
		case "ratelimit":
			f.RateLimitRate, err = parseRate(value)
		case "reset":
			f.ResetRate, err = parseRate(value)
		case "stall":
			f.StallRate, err = parseRate(value)
		case "garbage":
			f.GarbageRate, err = parseRate(value)
		case "latency":
			f.Latency, err = parseDuration(value)
		case "retry-after":
			f.RetryAfter, err = parseDuration(value)
		case "stall-for":
			f.StallFor, err = parseDuration(value)
		case "errors":
			f.Errors, err = parseErrorList(strings.Split(value, "+"))
		default:
			return Faults{}, fmt.Errorf("emulator: faults: unknown key %q; known: "+
				"error, ratelimit, reset, stall, garbage, latency, retry-after, stall-for, errors", key)
		}
		if err != nil {
			return Faults{}, fmt.Errorf("emulator: faults: %s: %w", key, err)
		}
	}
	if err := f.Validate(); err != nil {
		return Faults{}, err
	}
	return f, nil
}

func parseRate(s string) (float64, error) {
	r, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	if !(r >= 0 && r <= 1) { // also catches NaN
		return 0, fmt.Errorf("%s is not a rate between 0 and 1", s)
	}
	return r, nil
}

func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration such as 250ms or 2s", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("%s is negative", s)
	}
	return d, nil
}

// parseErrorList looks up TYPE/CODE pairs in Errors.
func parseErrorList(pairs []string) ([]ErrorSpec, error) {
	specs := make([]ErrorSpec, 0, len(pairs))
	for _, pair := range pairs {
		errorType, errorCode, _ := strings.Cut(strings.TrimSpace(pair), "/")
		spec, ok := ErrorFor(errorType, errorCode)
		if !ok {
			return nil, fmt.Errorf("%q is not a TYPE/CODE pair from the emulator's Errors", pair)
		}
		specs = append(specs, spec)
	}
	return specs, nil
}

// String gives f in ParseFaults syntax, leaving out what is zero; "none" for no faults.
func (f Faults) String() string {
	var items []string
	rate := func(key string, r float64) {
		if r != 0 {
			items = append(items, key+"="+strconv.FormatFloat(r, 'g', -1, 64))
		}
	}
	duration := func(key string, d time.Duration) {
		if d != 0 {
			items = append(items, key+"="+d.String())
		}
	}
	rate("error", f.ErrorRate)
	if len(f.Errors) > 0 {
		items = append(items, "errors="+strings.Join(errorPairs(f.Errors), "+"))
	}
	rate("ratelimit", f.RateLimitRate)
	rate("reset", f.ResetRate)
	rate("stall", f.StallRate)
	duration("stall-for", f.StallFor)
	rate("garbage", f.GarbageRate)
	duration("latency", f.Latency)
	duration("retry-after", f.RetryAfter)
	if len(items) == 0 {
		return "none"
	}
	return strings.Join(items, ",")
}

func errorPairs(specs []ErrorSpec) []string {
	pairs := make([]string, len(specs))
	for i, s := range specs {
		pairs[i] = s.Type + "/" + s.Code
	}
	return pairs
}

// faultsJSON is Faults as the control API reads and writes it: durations as Go duration
// strings, errors as TYPE/CODE pairs from Errors.
type faultsJSON struct {
	ErrorRate     float64  `json:"error_rate"`
	Errors        []string `json:"errors"`
	RateLimitRate float64  `json:"rate_limit_rate"`
	ResetRate     float64  `json:"reset_rate"`
	StallRate     float64  `json:"stall_rate"`
	StallFor      string   `json:"stall_for"`
	GarbageRate   float64  `json:"garbage_rate"`
	Latency       string   `json:"latency"`
	RetryAfter    string   `json:"retry_after"`
}

// MarshalJSON writes f as the control API's PUT /emulator/faults takes it, every member
// present. An error that Errors does not list is written as its TYPE/CODE all the same,
// which UnmarshalJSON will refuse.
func (f Faults) MarshalJSON() ([]byte, error) {
	return json.Marshal(faultsJSON{
		ErrorRate:     f.ErrorRate,
		Errors:        errorPairs(f.Errors),
		RateLimitRate: f.RateLimitRate,
		ResetRate:     f.ResetRate,
		StallRate:     f.StallRate,
		StallFor:      f.StallFor.String(),
		GarbageRate:   f.GarbageRate,
		Latency:       f.Latency.String(),
		RetryAfter:    f.RetryAfter.String(),
	})
}

// UnmarshalJSON reads f as MarshalJSON writes it. Members left out are zero; unknown
// members, bad durations, unknown errors and invalid rates (see Validate) are errors.
func (f *Faults) UnmarshalJSON(data []byte) error {
	if bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
		return nil // as encoding/json does for a null into a struct
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var j faultsJSON
	if err := dec.Decode(&j); err != nil {
		return fmt.Errorf("emulator: faults: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("emulator: faults: data after the JSON object")
	}
	got := Faults{
		ErrorRate:     j.ErrorRate,
		RateLimitRate: j.RateLimitRate,
		ResetRate:     j.ResetRate,
		StallRate:     j.StallRate,
		GarbageRate:   j.GarbageRate,
	}
	durations := []struct {
		name  string
		value string
		into  *time.Duration
	}{{"stall_for", j.StallFor, &got.StallFor}, {"latency", j.Latency, &got.Latency}, {"retry_after", j.RetryAfter, &got.RetryAfter}}
	for _, d := range durations {
		if d.value == "" {
			continue
		}
		v, err := parseDuration(d.value)
		if err != nil {
			return fmt.Errorf("emulator: faults: %s: %w", d.name, err)
		}
		*d.into = v
	}
	if len(j.Errors) > 0 {
		specs, err := parseErrorList(j.Errors)
		if err != nil {
			return fmt.Errorf("emulator: faults: errors: %w", err)
		}
		got.Errors = specs
	}
	if err := got.Validate(); err != nil {
		return err
	}
	*f = got
	return nil
}
