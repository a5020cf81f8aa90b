// Package loopback guards the project's load tools: the traffic they generate must stay
// on this host, so every address they are handed is checked to be a loopback one.
package loopback

import (
	"fmt"
	"net/netip"
	"net/url"
)

// CheckURL accepts only http://IP:port on a loopback address.
func CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if u.Scheme != "http" {
		return fmt.Errorf("%q: want an http:// URL on a loopback address", raw)
	}
	return CheckAddr(u.Host)
}

// CheckAddr accepts only a loopback ip:port.
func CheckAddr(hostPort string) error {
	ap, err := netip.ParseAddrPort(hostPort)
	if err != nil {
		return fmt.Errorf("%q is not ip:port: %w", hostPort, err)
	}
	if !ap.Addr().IsLoopback() {
		return fmt.Errorf("%s is not a loopback address", hostPort)
	}
	return nil
}
