package observe_test

import (
	"testing"

	"github.com/creditsessions/creditsessions/internal/membudget"
	"github.com/creditsessions/creditsessions/internal/observe"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A vector nobody has used yet is absent from a scrape but must be in FamilyNames, or
// the monitoring drift check would call a rule on it a typo.
func TestFamilyNamesListsMetricsBeforeFirstUse(t *testing.T) {
	m := observe.NewMetrics()
	m.ObserveAnswerMemory(membudget.New(1<<20, 1<<10))

	families, err := m.Registry.Gather()
	require.NoError(t, err)
	for _, f := range families {
		assert.NotEqual(t, "creditsessions_upstream_requests_total", f.GetName(), "precondition: unused, so not scraped")
	}

	names, err := m.FamilyNames()
	require.NoError(t, err)
	for _, want := range []string{
		"creditsessions_upstream_requests_total", "creditsessions_upstream_request_duration_seconds",
		"creditsessions_answer_memory_bytes", "grpc_server_handled_total", "grpc_server_handling_seconds",
		"go_goroutines", "process_resident_memory_bytes",
	} {
		assert.Contains(t, names, want)
	}
	assert.IsNonDecreasing(t, names)
}
