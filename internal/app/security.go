package app

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/creditsessions/creditsessions/internal/auth"
	"github.com/creditsessions/creditsessions/internal/plaid"

	"golang.org/x/net/http/httpguts"
)

// checkExposure refuses to serve callers on a network without TLS and a way for them to
// prove who they are, unless told to: anyone who could reach the ports would read any
// user's credit sessions. Loopback plaintext stays the zero-configuration default.
func checkExposure(cfg Config) error {
	if cfg.Security.Secure() || cfg.AllowInsecure {
		return nil
	}
	// Not WebhookAddr: it serves Plaid's webhooks only, each authenticated by Plaid's
	// signature, so it may face the internet without TLS here (TLS usually ends at the
	// ingress in front of it) and without client certificates.
	for _, addr := range []string{cfg.GRPCAddr, cfg.HTTPAddr} {
		if !isLoopback(addr) {
			return fmt.Errorf("refusing to serve on %s without TLS and caller authentication: "+
				"set -tls-cert and -tls-key with -client-ca or -jwt-jwks, listen on loopback, or pass -allow-insecure", addr)
		}
	}
	return nil
}

// isLoopback reports whether a listen address can only be reached from this machine:
// "localhost" or a loopback IP. An empty host (every interface) or any other name is
// not.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// withoutPprof answers 404 under /debug/pprof/ when off: profiles and goroutine dumps
// show what the process holds, and an admin address that Prometheus and probes reach
// from the pod network is no place for them.
func withoutPprof(h http.Handler, off bool) http.Handler {
	if !off {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/debug/pprof") {
			http.NotFound(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// secretFiles returns the source of the credentials when some come from files (re-read
// when they change), or nil when they all come from the environment.
func secretFiles(c PlaidConfig, every time.Duration, logger *slog.Logger, obs auth.Observer, track func(interface{ Refresh() })) (func() plaid.Credentials, error) {
	if c.ClientIDFile == "" && c.SecretFile == "" {
		return nil, nil
	}
	clientID := func() string { return c.Credentials.ClientID }
	secret := func() string { return c.Credentials.Secret }
	if c.ClientIDFile != "" {
		f, err := auth.WatchFile(auth.FilePlaidClientID, []string{c.ClientIDFile}, every, logger, obs, parseSecret)
		if err != nil {
			return nil, fmt.Errorf("PLAID_CLIENT_ID_FILE: %w", err)
		}
		track(f)
		clientID = f.Get
	}
	if c.SecretFile != "" {
		f, err := auth.WatchFile(auth.FilePlaidSecret, []string{c.SecretFile}, every, logger, obs, parseSecret)
		if err != nil {
			return nil, fmt.Errorf("PLAID_SECRET_FILE: %w", err)
		}
		track(f)
		secret = f.Get
	}
	return func() plaid.Credentials {
		return plaid.Credentials{ClientID: clientID(), Secret: secret()}
	}, nil
}

// parseSecret takes a file's content without surrounding white space (an editor's or
// echo's final newline). The error never quotes it.
func parseSecret(contents [][]byte) (string, error) {
	v := strings.TrimSpace(string(contents[0]))
	switch {
	case v == "":
		return "", errors.New("the file is empty")
	case !httpguts.ValidHeaderFieldValue(v):
		return "", errors.New("the file holds characters a header field cannot carry")
	}
	return v, nil
}
