package loopback_test

import (
	"testing"

	"github.com/creditsessions/creditsessions/internal/loopback"

	"github.com/stretchr/testify/assert"
)

func TestCheck(t *testing.T) {
	for raw, ok := range map[string]bool{
		"http://127.0.0.1:8090":  true,
		"http://127.5.6.7:1":     true,
		"http://[::1]:8090":      true,
		"https://127.0.0.1:8090": false,
		"http://10.0.0.1:8090":   false,
		"http://192.168.1.2:80":  false,
		"http://localhost:8090":  false, // a name could resolve anywhere
		"http://8.8.8.8:53":      false,
		"http://127.0.0.1":       false, // no port
		"::not a url":            false,
	} {
		err := loopback.CheckURL(raw)
		assert.Equal(t, ok, err == nil, "%s: %v", raw, err)
	}
}
