// Command devcerts writes a certificate authority, a server certificate and client
// certificates with SPIFFE IDs into a directory: what the README's "Running in
// production" example serves and calls with. For trying mTLS out, not for production,
// whose certificates come from the organisation's CA, cert-manager or SPIRE.
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
		fmt.Fprintf(stdout, "%s: client-%s.crt, client-%s.key (%s)\n", *dir, name, name, id)
	}
	return nil
}
