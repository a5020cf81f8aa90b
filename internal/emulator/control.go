package emulator

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
)

// The control API: paths that are not Plaid's, under /emulator/, for a test or a soak
// tool to change the faults of a running emulator.
//
//	PUT    /emulator/faults  JSON Faults (see Faults.MarshalJSON) → 204; replaces the random faults
//	GET    /emulator/faults  → 200, the random faults in force
//	DELETE /emulator/faults  → 204; ClearFaults: no random faults, empty script
//	GET    /emulator/stats   → 200, {"calls":N} as Calls counts them
//	POST   /emulator/user    {"user_token"} → 200, {"user_id"}: the Plaid user_id of the user
//	                         the token names (Emulator.UserID), which webhooks about the user
//	                         carry and a watch needs to be woken by them; Plaid's own is what
//	                         /user/create returned with the token, which the emulator lacks
//
// A bad body gets 400 and a wrong method 405, each with {"error":"..."}. Every other
// path, under /emulator/ or not, is routed as Plaid routes it.
const (
	controlFaultsPath = "/emulator/faults"
	controlStatsPath  = "/emulator/stats"
	controlUserPath   = "/emulator/user"
)

// maxControlBodyBytes bounds a control request body; a Faults object is a few hundred bytes.
const maxControlBodyBytes = 64 << 10

// serveControl answers r if it is for the control API, and reports whether it was.
func (e *Emulator) serveControl(w http.ResponseWriter, r *http.Request) bool {
	path := collapseSlashes(r.URL.Path)
	if path != controlFaultsPath && path != controlStatsPath && path != controlUserPath {
		return false
	}
	status := e.control(w, r, path)
	if e.logger != nil {
		e.logger.LogAttrs(r.Context(), slog.LevelInfo, "plaid emulator control",
			slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Int("status", status))
	}
	return true
}

// control answers a request for a control path and returns the HTTP status sent.
func (e *Emulator) control(w http.ResponseWriter, r *http.Request, path string) int {
	switch {
	case path == controlStatsPath && r.Method == http.MethodGet:
		return writeControlJSON(w, http.StatusOK, struct {
			Calls int64 `json:"calls"`
		}{e.Calls()})
	case path == controlStatsPath:
		w.Header().Set("Allow", http.MethodGet)
		return writeControlError(w, http.StatusMethodNotAllowed, r.Method+" "+path+": use GET")

	case path == controlUserPath && r.Method == http.MethodPost:
		token, err := readUserToken(w, r)
		if err != nil {
			return writeControlError(w, http.StatusBadRequest, err.Error())
		}
		return writeControlJSON(w, http.StatusOK, struct {
			UserID string `json:"user_id"`
		}{e.UserID(token)})
	case path == controlUserPath:
		w.Header().Set("Allow", http.MethodPost)
		return writeControlError(w, http.StatusMethodNotAllowed, r.Method+" "+path+": use POST")

	case r.Method == http.MethodGet:
		return writeControlJSON(w, http.StatusOK, e.Faults())
	case r.Method == http.MethodDelete:
		e.ClearFaults()
		w.WriteHeader(http.StatusNoContent)
		return http.StatusNoContent
	case r.Method == http.MethodPut:
		f, err := readFaults(w, r)
		if err != nil {
			return writeControlError(w, http.StatusBadRequest, err.Error())
		}
		e.SetFaults(f) // readFaults validated f: SetFaults will not panic
		w.WriteHeader(http.StatusNoContent)
		return http.StatusNoContent
	default:
		w.Header().Set("Allow", "GET, PUT, DELETE")
		return writeControlError(w, http.StatusMethodNotAllowed, r.Method+" "+path+": use GET, PUT or DELETE")
	}
}

// readFaults reads a PUT body: exactly one JSON object.
func readFaults(w http.ResponseWriter, r *http.Request) (Faults, error) {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxControlBodyBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return Faults{}, errors.New("emulator: faults: body over " + strconv.Itoa(maxControlBodyBytes) + " bytes")
		}
		return Faults{}, errors.New("emulator: faults: body could not be read")
	}
	if trimmed := bytes.TrimSpace(raw); len(trimmed) == 0 || trimmed[0] != '{' {
		return Faults{}, errors.New("emulator: faults: the body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	var f Faults
	if err := dec.Decode(&f); err != nil {
		return Faults{}, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Faults{}, errors.New("emulator: faults: data after the JSON object")
	}
	return f, nil
}

// readUserToken reads a POST /emulator/user body: {"user_token"} naming a user the
// emulator knows, so that a typo gets an error rather than the user_id of nobody.
func readUserToken(w http.ResponseWriter, r *http.Request) (string, error) {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxControlBodyBytes))
	if err != nil {
		return "", errors.New("emulator: user: body could not be read")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var body struct {
		UserToken *string `json:"user_token"`
	}
	if trimmed := bytes.TrimSpace(raw); len(trimmed) == 0 || trimmed[0] != '{' {
		return "", errors.New(`emulator: user: the body must be a JSON object, {"user_token": "..."}`)
	}
	if err := dec.Decode(&body); err != nil {
		return "", errors.New("emulator: user: " + err.Error())
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return "", errors.New("emulator: user: data after the JSON object")
	}
	if body.UserToken == nil || *body.UserToken == "" {
		return "", errors.New("emulator: user: user_token is required")
	}
	// As fire_webhook: a token whose calls fail (an unknown one, an error token) names no
	// user whose sessions a webhook could change.
	if _, failure := lookupToken(*body.UserToken); failure != nil {
		return "", errors.New("emulator: user: user_token " + failure.Code + " (see the fixture users)")
	}
	return *body.UserToken, nil
}

func writeControlJSON(w http.ResponseWriter, status int, v any) int {
	b, err := json.Marshal(v)
	if err != nil { // Faults and counters only: cannot happen
		panic("emulator: encoding a control answer: " + err.Error())
	}
	b = append(b, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
	return status
}

func writeControlError(w http.ResponseWriter, status int, message string) int {
	return writeControlJSON(w, status, struct {
		Error string `json:"error"`
	}{message})
}
