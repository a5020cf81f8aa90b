package docs

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// helpFlags runs the built creditsessionsd -h and returns each flag with its default
// ("" when -h shows none).
func helpFlags(t *testing.T) map[string]string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "creditsessionsd")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/creditsessionsd").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	out, _ = exec.Command(bin, "-h").CombinedOutput() // -h exits 2 after printing the flags
	flagLine := regexp.MustCompile(`^  (-[a-z0-9-]+)`)
	defaultOf := regexp.MustCompile(`\(default (.*)\)$`)
	flags := map[string]string{}
	var current string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		line := sc.Text()
		if m := flagLine.FindStringSubmatch(line); m != nil {
			current = m[1]
			flags[current] = ""
			continue
		}
		if m := defaultOf.FindStringSubmatch(line); m != nil && current != "" {
			flags[current] = strings.Trim(m[1], `"`)
		}
	}
	require.NotEmpty(t, flags, "no flags in -h:\n%s", out)
	return flags
}

// tableNames reads configuration.md's table: every backticked flag or variable of each
// row's first cell, with the row's default cell.
func tableNames(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile("configuration.md")
	require.NoError(t, err)
	name := regexp.MustCompile("`([-A-Z][-A-Za-z0-9_]*)`")
	rows := map[string]string{}
	for line := range strings.SplitSeq(string(raw), "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(line, "|")
		require.GreaterOrEqual(t, len(cells), 4, "row %q", line)
		for _, m := range name.FindAllStringSubmatch(cells[1], -1) {
			_, dup := rows[m[1]]
			require.False(t, dup, "%s is in the table twice", m[1])
			rows[m[1]] = strings.TrimSpace(cells[2])
		}
	}
	return rows
}

// TestConfigurationTableIsTheHelp: the one table of docs/configuration.md names every
// flag of creditsessionsd -h, with -h's default, and no flag -h lacks.
func TestConfigurationTableIsTheHelp(t *testing.T) {
	help := helpFlags(t)
	table := tableNames(t)
	for flag, def := range help {
		cell, ok := table[flag]
		if !assert.True(t, ok, "%s is in -h but not in docs/configuration.md", flag) {
			continue
		}
		if def != "" {
			assert.Contains(t, cell, "`"+def+"`", "%s: -h says the default is %q; the table says %q", flag, def, cell)
		}
	}
	for name := range table {
		if strings.HasPrefix(name, "-") {
			_, ok := help[name]
			assert.True(t, ok, "docs/configuration.md names %s, which -h does not have", name)
		}
	}
}

// TestConfigurationTableHasEveryVariable: every environment variable the service reads
// itself is in the table, and every PLAID_ or REDIS_ variable the table names is read.
// (The OTEL_ variables the table lists are read by OpenTelemetry's SDK, not only here.)
func TestConfigurationTableHasEveryVariable(t *testing.T) {
	table := tableNames(t)
	read := map[string]bool{}
	getenv := regexp.MustCompile(`getenv\("([A-Z][A-Z0-9_]*)"\)`)
	for _, dir := range []string{"../cmd/creditsessionsd", "../internal/observe"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		require.NoError(t, err)
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			src, err := os.ReadFile(f)
			require.NoError(t, err)
			for _, m := range getenv.FindAllStringSubmatch(string(src), -1) {
				read[m[1]] = true
			}
		}
	}
	require.NotEmpty(t, read)
	for v := range read {
		_, ok := table[v]
		assert.True(t, ok, "the service reads %s; docs/configuration.md does not list it", v)
	}
	var listed []string
	for name := range table {
		if !strings.HasPrefix(name, "-") && !strings.HasPrefix(name, "OTEL_") {
			listed = append(listed, name)
			assert.True(t, read[name], "docs/configuration.md lists %s, which the service does not read", name)
		}
	}
	slices.Sort(listed)
	assert.Contains(t, listed, "PLAID_SECRET_FILE")
}
