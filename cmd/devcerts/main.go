// Command devcerts writes a certificate authority, a server certificate and client
// certificates with SPIFFE IDs into a directory, and for the same clients a JWKS
// (jwks.json) and ES256 bearer tokens (token-NAME.jwt) whose sub is the client's SPIFFE
// ID: what the README's production quick start serves and calls with, by certificate or
// by token. For trying mTLS and JWTs out, not for production, whose certificates come
// from the organisation's CA, cert-manager or SPIRE, and tokens from its identity
// provider. The tokens' iss and aud are -jwt-issuer and -jwt-audience, the values the
// service's flags of the same names must be given.
//
//	go run ./cmd/devcerts -dir certs -clients underwriter=spiffe://example.org/ns/billing/sa/underwriter
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/creditsessions/creditsessions/internal/devcerts"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "devcerts:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("devcerts", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "certs", "`directory` to write into (created)")
	hosts := fs.String("hosts", "localhost,127.0.0.1,::1", "comma-separated DNS names and IPs of the server certificate")
	clients := fs.String("clients",
		"underwriter=spiffe://example.org/ns/billing/sa/underwriter,operator=spiffe://example.org/ns/ops/sa/operator,intruder=spiffe://example.org/ns/web/sa/frontend",
		"comma-separated name=SPIFFE-ID client certificates, written as client-NAME.crt/.key")
	validity := fs.Duration("validity", 30*24*time.Hour, "how long the certificates are valid")
	issuer := fs.String("jwt-issuer", DefaultIssuer, "the iss of the tokens (give creditsessionsd the same -jwt-issuer)")
	audience := fs.String("jwt-audience", DefaultAudience, "the aud of the tokens (give creditsessionsd the same -jwt-audience)")
	tokenTTL := fs.Duration("token-ttl", time.Hour, "how long the tokens are valid")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return errors.New("unexpected arguments")
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	ca, err := devcerts.NewCA("creditsessions example CA", *validity)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*dir, "ca.crt"), ca.CertPEM, 0o644); err != nil {
		return err
	}
	server := devcerts.Options{CommonName: "creditsessions", Server: true, NotAfter: time.Now().Add(*validity)}
	for _, h := range strings.Split(*hosts, ",") {
		if h = strings.TrimSpace(h); h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			server.IPs = append(server.IPs, ip)
		} else {
			server.DNSNames = append(server.DNSNames, h)
		}
	}
	leaf, err := ca.Issue(server)
	if err != nil {
		return err
	}
	if err := leaf.Write(*dir, "server"); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: ca.crt, server.crt, server.key (%s)\n", *dir, *hosts)
	tokens, err := devcerts.NewIssuer(*issuer, *audience)
	if err != nil {
		return err
	}
	jwks, err := tokens.JWKS()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*dir, "jwks.json"), jwks, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: jwks.json (iss %s, aud %s)\n", *dir, *issuer, *audience)
	for _, c := range strings.Split(*clients, ",") {
		name, id, ok := strings.Cut(strings.TrimSpace(c), "=")
		if !ok || name == "" || id == "" || strings.ContainsAny(name, `/\`) {
			return fmt.Errorf("-clients: %q is not name=SPIFFE-ID", c)
		}
		leaf, err := ca.Issue(devcerts.Options{CommonName: name, URIs: []string{id}, Client: true, NotAfter: time.Now().Add(*validity)})
		if err != nil {
			return err
		}
		if err := leaf.Write(*dir, "client-"+name); err != nil {
			return err
		}
		token, err := tokens.Token(id, *tokenTTL)
		if err != nil {
			return err
		}
		// A bearer token is a credential: readable by its owner only, as the keys are.
		if err := os.WriteFile(filepath.Join(*dir, "token-"+name+".jwt"), []byte(token+"\n"), 0o600); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: client-%s.crt, client-%s.key, token-%s.jwt (%s)\n", *dir, name, name, name, id)
	}
	return nil
}

// The tokens' iss and aud unless -jwt-issuer and -jwt-audience say otherwise.
const (
	DefaultIssuer   = "https://devcerts.creditsessions.example"
	DefaultAudience = "creditsessions"
)
