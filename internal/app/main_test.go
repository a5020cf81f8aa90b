package app_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: servers, shared
// upstream calls, retries and timers must all end with the test that started them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
