package emulator

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Fixture is a user token that the emulator answers with success, and what its answer
// holds.
type Fixture struct {
	Token       string
	Description string
}

// fixtureFiles holds one success body per static fixture user, named after its token:
// Plaid's response body without request_id.
//
//go:embed fixtures/*.json
var fixtureFiles embed.FS

// staticFixtures lists the users in fixtureFiles, in the order Fixtures gives them.
var staticFixtures = []Fixture{
	{Token: "user-sandbox-example", Description: "the two sessions of Plaid's OpenAPI example"},
	{Token: "user-sandbox-full", Description: "sessions that together set every field of the schema and every status"},
	{Token: "user-sandbox-zero", Description: "zero and empty values that are real answers: 0 counts, \"\", null, [], a bare session"},
	{Token: "user-sandbox-empty", Description: "a user with no sessions"},
	{Token: "user-sandbox-future", Description: "members and enum values Plaid might add tomorrow, beside today's fields"},
}

// Fixtures returns the success users, in a stable order, for logs and documentation.
// The last one stands for the whole user-sandbox-sessions-N family.
func Fixtures() []Fixture {
	return append(append([]Fixture(nil), staticFixtures...), Fixture{
		Token: generatedTokenPrefix + "100",
		Description: fmt.Sprintf("100 generated sessions; %sN serves N for any N from 0 to %d",
			generatedTokenPrefix, maxGeneratedSessions),
	})
}

// fixtureBodies maps each static fixture token to its body. The files are part of the
// binary, so one that is not a JSON object is a bug caught by the first test run.
var fixtureBodies = func() map[string]successBody {
	m := make(map[string]successBody, len(staticFixtures))
	for _, f := range staticFixtures {
		name := "fixtures/" + f.Token + ".json"
		raw, err := fixtureFiles.ReadFile(name)
		if err != nil {
			panic("emulator: " + err.Error())
		}
		body, err := newFixtureBody(raw)
		if err != nil {
			panic("emulator: " + name + ": " + err.Error())
		}
		m[f.Token] = body
	}
	return m
}()

// newFixtureBody prepares raw, a JSON object without request_id, to be served with a
// request_id inserted as its first member.
func newFixtureBody(raw []byte) (successBody, error) {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil || members == nil {
		return successBody{}, fmt.Errorf("not a JSON object: %v", err)
	}
	if _, ok := members["request_id"]; ok {
		return successBody{}, fmt.Errorf("has a request_id; the emulator adds its own")
	}
	open := bytes.IndexByte(raw, '{') + 1
	after := raw[open:]
	return successBody{
		open:   raw[:open],
		rest:   [][]byte{after},
		empty:  len(members) == 0,
		indent: bytes.HasPrefix(after, []byte("\n")),
	}, nil
}

// UserSeparator ends the part of a user token that selects the answer: what follows it
// names one more user with the same answer, so that a load run can send every call for a
// different user (user-sandbox-example#1, user-sandbox-example#2, ...), as real traffic
// does, and no two calls can share an answer in flight.
const UserSeparator = "#"

// ChunkedTokenPrefix, in place of "user-sandbox-", asks for the same answer sent
// chunked, without a Content-Length, as a proxy in front of Plaid may send it:
// user-sandbox-chunked-sessions-10000 is user-sandbox-sessions-10000's answer, chunked.
const ChunkedTokenPrefix = "user-sandbox-chunked-"

// userFaultTokens are users whose every call meets a fault, whatever the emulator's
// other faults: one user in trouble while everybody else is served. Each stands for
// user-sandbox-example when the fault lets an answer through.
var userFaultTokens = map[string]FaultKind{
	"user-sandbox-fault-garbage":  FaultGarbage, // 200 with a body that is not JSON
	"user-sandbox-fault-html-502": FaultHTML502, // a load balancer's HTML 502 page
	"user-sandbox-fault-stall":    FaultStall,   // half the body, then nothing until the client leaves
	"user-sandbox-fault-reset":    FaultReset,   // the connection reset
}

// lookupToken returns the answer for a user token that passed every other check.
func lookupToken(token string) (successBody, *ErrorSpec) {
	token, _, _ = strings.Cut(token, UserSeparator)
	if kind, ok := userFaultTokens[token]; ok {
		body := fixtureBodies["user-sandbox-example"]
		body.fault = kind
		return body, nil
	}
	if rest, ok := strings.CutPrefix(token, ChunkedTokenPrefix); ok {
		body, failure := lookupToken("user-sandbox-" + rest)
		body.chunked = true
		return body, failure
	}
	if body, ok := fixtureBodies[token]; ok {
		return body, nil
	}
	if s, ok := errorsByToken[token]; ok {
		return successBody{}, s
	}
	if n, ok := strings.CutPrefix(token, generatedTokenPrefix); ok {
		// Only the canonical decimal form: no sign, no leading zeros.
		if count, err := strconv.Atoi(n); err == nil && strconv.Itoa(count) == n &&
			count >= 0 && count <= maxGeneratedSessions {
			return generatedBody(count), nil
		}
	}
	return successBody{}, errInvalidToken
}
