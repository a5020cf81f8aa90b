package auth

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// ServerTLS serves the certificate in a pair of PEM files, and requires or verifies
// client certificates against a CA bundle, each re-read when it changes.
type ServerTLS struct {
	cert     *File[*tls.Certificate]
	clientCA *File[*x509.CertPool]
	// clientAuth is tls.RequireAndVerifyClientCert when certificates are the only way
	// in, tls.VerifyClientCertIfGiven when a bearer token is another, and
	// tls.NoClientCert without a CA.
	clientAuth tls.ClientAuthType
}

// NewServerTLS loads certFile and keyFile, and caFile when it is not empty. With
// bearerToo, a client without a certificate gets through the handshake to present a
// token; a certificate a client does present must still chain to the CA.
func NewServerTLS(certFile, keyFile, caFile string, bearerToo bool, every time.Duration, logger *slog.Logger, obs Observer) (*ServerTLS, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("-tls-cert and -tls-key go together")
	}
	s := &ServerTLS{clientAuth: tls.NoClientCert}
	var err error
	s.cert, err = WatchFile(FileTLSCert, []string{certFile, keyFile}, every, logger, obs, parseKeyPair)
	if err != nil {
		return nil, err
	}
	if caFile != "" {
		if s.clientCA, err = WatchFile(FileClientCA, []string{caFile}, every, logger, obs, parseCAs); err != nil {
			return nil, err
		}
		s.clientAuth = tls.RequireAndVerifyClientCert
		if bearerToo {
			s.clientAuth = tls.VerifyClientCertIfGiven
		}
	}
	return s, nil
}

// Config returns a server configuration offering protocols by ALPN ("h2" for gRPC;
// "h2" and "http/1.1" for the REST mirror). Each handshake gets the files' current
// contents, so a rotated certificate or CA bundle applies to new connections without
// a restart, while connections already open keep theirs.
func (s *ServerTLS) Config(protocols ...string) *tls.Config {
	base := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: protocols}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: protocols,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			c := base.Clone()
			c.Certificates = []tls.Certificate{*s.cert.Get()}
			c.ClientAuth = s.clientAuth
			if s.clientCA != nil {
				c.ClientCAs = s.clientCA.Get()
			}
			return c, nil
		},
	}
}

func parseKeyPair(contents [][]byte) (*tls.Certificate, error) {
	cert, err := tls.X509KeyPair(contents[0], contents[1])
	if err != nil {
		// crypto/tls's errors name what is wrong, never the key's bytes.
		return nil, fmt.Errorf("certificate and key: %w", err)
	}
	return &cert, nil
}

func parseCAs(contents [][]byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(contents[0]) {
		return nil, errors.New("no PEM certificate in the client CA bundle")
	}
	return pool, nil
}

// CertIdentities are the names of a certificate that a policy's principals match, in
// grpc-go's authz order: its URI SANs if it has any, else its DNS SANs, else its
// subject. The first is the caller's identity.
func CertIdentities(cert *x509.Certificate) []string {
	if len(cert.URIs) > 0 {
		names := make([]string, len(cert.URIs))
		for i, u := range cert.URIs {
			names[i] = u.String()
		}
		return names
	}
	if len(cert.DNSNames) > 0 {
		return cert.DNSNames
	}
	return []string{cert.Subject.String()}
}
