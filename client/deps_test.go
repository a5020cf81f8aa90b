package client_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCallersImportNothingOfTheServer holds what a caller compiles when it imports this
// package and the generated stubs to gRPC, protobuf, the genproto types and the standard
// library: none of the server's dependencies (Plaid's Go client, OpenTelemetry,
// Prometheus, the test-only Kubernetes libraries) and none of its packages. One module
// for the service and its API keeps the build and CI simple; this test is what keeps
// callers' dependency set small.
func TestCallersImportNothingOfTheServer(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH: cannot list the import graph")
	}
	out, err := exec.Command(goTool, "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}",
		"github.com/creditsessions/creditsessions/client",
		"github.com/creditsessions/creditsessions/gen/plaid/credit/v1").CombinedOutput()
	require.NoError(t, err, "%s", out)

	allowed := []string{
		"github.com/creditsessions/creditsessions/client",
		"github.com/creditsessions/creditsessions/gen/",
		"google.golang.org/grpc",
		"google.golang.org/protobuf/",
		"google.golang.org/genproto/googleapis/",
		"github.com/grpc-ecosystem/grpc-gateway/v2/", // the generated gateway stubs in gen/
		"golang.org/x/net/",
		"golang.org/x/sys/",
		"golang.org/x/text/",
	}
	var packages []string
	for _, pkg := range strings.Fields(string(out)) {
		packages = append(packages, pkg)
		ok := false
		for _, prefix := range allowed {
			ok = ok || pkg == prefix || strings.HasPrefix(pkg, prefix)
		}
		assert.True(t, ok, "a caller of the client would compile %s", pkg)
	}
	t.Logf("a caller compiles %d packages outside the standard library", len(packages))
	for _, forbidden := range []string{"plaid-go", "go.opentelemetry.io", "prometheus", "/internal/app", "/internal/plaid",
		"creditsessions/server", "k8s.io", "kustomize"} {
		for _, pkg := range packages {
			assert.NotContains(t, pkg, forbidden)
		}
	}
}
