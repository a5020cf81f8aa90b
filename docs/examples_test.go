package docs

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The examples of README.md and docs/*.md run as their readers would run them, against
// binaries built from this checkout; examples.md describes the marking convention.

// stepTimeout bounds a step that runs to completion (a go mod tidy and build of the Go
// caller is the slowest); waitTimeout bounds waiting for a background step's addresses
// or an output.
const (
	stepTimeout = 3 * time.Minute
	waitTimeout = time.Minute
)

// wellKnown are the addresses the pages use, each moved to a free loopback port of its
// own for every example, so that examples run beside anything else on the machine.
var wellKnown = []string{"localhost:50051", "localhost:8080", "localhost:9090", "localhost:8090", "localhost:8081"}

// goRun is how a page starts one of the repository's commands; the test runs the binary
// it built instead, so that a step does not pay for a build.
var goRun = regexp.MustCompile(`go run \./cmd/([a-z-]+)`)

type example struct {
	page, name string
	steps      []block
}

// examples gathers the steps of every example, by page and name, in page order. An output
// block belongs to the example of the step before it.
func examples(t *testing.T) []*example {
	t.Helper()
	paths, err := pages()
	require.NoError(t, err)
	var all []*example
	for _, p := range paths {
		blocks, err := fencedBlocks(p)
		require.NoError(t, err)
		byName := map[string]*example{}
		var last *example
		for _, b := range blocks {
			if _, ok := b.attrs["output"]; ok {
				require.NotNil(t, last, "%s: an output block before any step", b)
				last.steps = append(last.steps, b)
				continue
			}
			name, ok := b.attrs["run"]
			if !ok {
				continue
			}
			require.NotEmpty(t, name, "%s: run= needs the example's name", b)
			ex := byName[name]
			if ex == nil {
				ex = &example{page: filepath.Base(p), name: name}
				byName[name] = ex
				all = append(all, ex)
			}
			ex.steps = append(ex.steps, b)
			last = ex
		}
	}
	return all
}

// TestExamplesAreMarked: the examples the issue tracker asked CI to run stay marked, so
// removing a marker by accident does not silently stop testing a page.
func TestExamplesAreMarked(t *testing.T) {
	got := map[string]bool{}
	for _, ex := range examples(t) {
		got[ex.page+"#"+ex.name] = true
	}
	for _, want := range []string{
		"README.md#quickstart", "README.md#production",
		"watching-and-webhooks.md#watch", "watching-and-webhooks.md#webhook",
		"calling-from-go.md#go",
	} {
		require.True(t, got[want], "example %s is not marked run= any more", want)
	}
}

func TestExamples(t *testing.T) {
	for _, tool := range []string{"bash", "grpcurl", "curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the examples need %s on PATH (grpcurl: go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.3)", tool)
		}
	}
	all := examples(t)
	bin := buildCommands(t, all)
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	for _, ex := range all {
		t.Run(strings.TrimSuffix(ex.page, ".md")+"/"+ex.name, func(t *testing.T) {
			runExample(t, ex, bin, root)
		})
	}
}

// buildCommands builds, once, every command the examples start with go run.
func buildCommands(t *testing.T, all []*example) string {
	t.Helper()
	var cmds []string
	for _, ex := range all {
		for _, s := range ex.steps {
			for _, m := range goRun.FindAllStringSubmatch(s.text, -1) {
				if !slices.Contains(cmds, m[1]) {
					cmds = append(cmds, m[1])
				}
			}
		}
	}
	bin := t.TempDir()
	args := []string{"build", "-o", bin + string(filepath.Separator)}
	for _, c := range cmds {
		args = append(args, "../cmd/"+c)
	}
	out, err := exec.Command("go", args...).CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

// run is one example's state: its working directory, its addresses and the background
// steps running.
type run struct {
	t          *testing.T
	dir, bin   string
	ports      map[string]string // well-known address → the free one used instead
	background map[string]*process
}

type process struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

func runExample(t *testing.T, ex *example, bin, root string) {
	// The pages run from a checkout: dir/creditsessions stands for it, a directory of
	// links to the repository's files, so that what the examples write (certs/,
	// policy.json) stays in the test's directory and the Go caller's module, beside the
	// checkout as a reader's would be, finds it as ../creditsessions.
	dir := filepath.Join(t.TempDir(), "creditsessions")
	require.NoError(t, os.Mkdir(dir, 0o755))
	entries, err := os.ReadDir(root)
	require.NoError(t, err)
	for _, e := range entries {
		switch e.Name() {
		case ".git", "certs", "policy.json":
			continue
		}
		require.NoError(t, os.Symlink(filepath.Join(root, e.Name()), filepath.Join(dir, e.Name())))
	}
	r := &run{t: t, dir: dir, bin: bin, ports: map[string]string{}, background: map[string]*process{}}
	for _, a := range wellKnown {
		r.ports[a] = freeAddress(t)
	}
	t.Cleanup(r.stopAll)

	var last *result
	for _, s := range ex.steps {
		switch {
		case s.attrs["file"] != "":
			path := filepath.Join(dir, filepath.FromSlash(s.attrs["file"]))
			require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
			require.NoError(t, os.WriteFile(path, []byte(r.expand(s.text)), 0o644), "%s", s)
		case hasAttr(s, "output"):
			target := last
			if id := s.attrs["output"]; id != "" {
				p := r.background[id]
				require.NotNil(t, p, "%s: output=%s names no background step running", s, id)
				target = &result{bg: p}
			}
			require.NotNil(t, target, "%s: no step before this output", s)
			r.expectOutput(s, target)
		case s.attrs["bg"] != "":
			id := s.attrs["bg"]
			if p := r.background[id]; p != nil {
				r.stop(p) // as a reader's Ctrl-C before starting it again
			}
			p := r.start(s)
			r.background[id] = p
			last = &result{bg: p}
		default:
			out, err := r.runToEnd(s)
			last = &result{out: out}
			if hasAttr(s, "fails") {
				require.Error(t, err, "%s should fail; it printed:\n%s", s, out)
			} else {
				require.NoError(t, err, "%s failed; it printed:\n%s", s, out)
			}
		}
	}
}

func hasAttr(b block, k string) bool { _, ok := b.attrs[k]; return ok }

type result struct {
	out string   // a step that ran to its end
	bg  *process // or one still running
}

// expand turns a page's command into the one the test runs: its own binaries, its own
// addresses. A creditsessionsd that names no listen address gets them inserted first, so
// the defaults move too (a flag given twice takes its last value).
func (r *run) expand(text string) string {
	text = goRun.ReplaceAllStringFunc(text, func(m string) string {
		name := goRun.FindStringSubmatch(m)[1]
		cmd := filepath.Join(r.bin, name)
		if name == "creditsessionsd" {
			cmd += " -grpc-addr localhost:50051 -http-addr localhost:8080 -admin-addr localhost:9090"
		}
		return cmd
	})
	for _, a := range wellKnown {
		text = strings.ReplaceAll(text, a, r.ports[a])
	}
	return text
}

func (r *run) command(ctx context.Context, s block) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", r.expand(s.text))
	cmd.Dir = r.dir
	cmd.Env = r.env()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Ending a step ends all it started (a pipeline, a server it ran in the background).
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// env is the test's environment without what would point the service at a real Plaid,
// and with -mod=mod so that the Go caller's module may complete its go.sum (offline, from
// the module cache, when GOPROXY says so).
func (r *run) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "PLAID_") || k == "GOFLAGS" || k == "REDIS_PASSWORD" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "GOFLAGS=-mod=mod", "GOWORK=off")
}

func (r *run) runToEnd(s block) (string, error) {
	ctx, cancel := context.WithTimeout(r.t.Context(), stepTimeout)
	defer cancel()
	cmd := r.command(ctx, s)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return string(out), fmt.Errorf("%s: did not end within %v", s, stepTimeout)
	}
	return string(out), err
}

// start runs a background step and waits until every address it names accepts
// connections: a server is then listening, a client has what it needs.
func (r *run) start(s block) *process {
	t := r.t
	cmd := r.command(context.Background(), s)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start(), "%s", s)
	p := &process{cmd: cmd, out: out, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()

	expanded := r.expand(s.text)
	deadline := time.Now().Add(waitTimeout)
	for _, a := range wellKnown {
		addr := r.ports[a]
		if !strings.Contains(expanded, addr) {
			continue
		}
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-p.done:
				t.Fatalf("%s ended before %s accepted connections:\n%s", s, addr, out.String())
			case <-time.After(20 * time.Millisecond): // polling a port: there is no event to wait on
			}
			require.True(t, time.Now().Before(deadline), "%s: %s not listening after %v:\n%s", s, addr, waitTimeout, out.String())
		}
	}
	return p
}

// stop interrupts a background step, as Ctrl-C would, and waits for it.
func (r *run) stop(p *process) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

func (r *run) stopAll() {
	for _, p := range r.background {
		r.stop(p)
	}
}

// expectOutput checks that each line of an output block appears in the step's output;
// "…" in a line stands for anything. A background step's output is waited for.
func (r *run) expectOutput(s block, target *result) {
	t := r.t
	want := wantedLines(r.expand(s.text))
	if target.bg == nil {
		missing := missingLines(want, target.out)
		require.Empty(t, missing, "%s: the step before printed:\n%s", s, target.out)
		return
	}
	deadline := time.Now().Add(waitTimeout)
	for {
		out := target.bg.out.String()
		missing := missingLines(want, out)
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: after %v, %q still missing from:\n%s", s, waitTimeout, missing, out)
		}
		select {
		case <-target.bg.out.changed():
		case <-time.After(time.Second):
		}
	}
}

func wantedLines(text string) [][]string {
	var want [][]string
	for line := range strings.SplitSeq(text, "\n") {
		var frags []string
		for f := range strings.SplitSeq(line, "…") {
			if f = strings.TrimSpace(f); f != "" {
				frags = append(frags, f)
			}
		}
		if len(frags) > 0 {
			want = append(want, frags)
		}
	}
	return want
}

// missingLines are the wanted lines no line of out holds, fragments in order.
func missingLines(want [][]string, out string) []string {
	lines := strings.Split(out, "\n")
	var missing []string
	for _, frags := range want {
		found := slices.ContainsFunc(lines, func(l string) bool {
			for _, f := range frags {
				i := strings.Index(l, f)
				if i < 0 {
					return false
				}
				l = l[i+len(f):]
			}
			return true
		})
		if !found {
			missing = append(missing, strings.Join(frags, "…"))
		}
	}
	return missing
}

// freeAddress is a loopback port nobody listened on a moment ago, as localhost:PORT.
func freeAddress(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return fmt.Sprintf("localhost:%d", ln.Addr().(*net.TCPAddr).Port)
}

// syncBuffer collects a background step's output while the test reads it.
type syncBuffer struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	notify chan struct{}
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.notify != nil {
		close(b.notify)
		b.notify = nil
	}
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// changed is closed at the next write.
func (b *syncBuffer) changed() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.notify == nil {
		b.notify = make(chan struct{})
	}
	return b.notify
}
