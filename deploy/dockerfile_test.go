package deploy_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// repoRoot is the repository's root, where the Dockerfile and go.mod are.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	require.FileExists(t, filepath.Join(root, "go.mod"))
	return root
}

// instruction is one Dockerfile instruction, continuation lines joined and comments
// dropped: comments say what someone meant, the instructions are what the build does.
type instruction struct {
	Cmd  string // upper case: FROM, RUN, COPY, ...
	Args string
}

type stage struct {
	From, Name   string
	Instructions []instruction
}

func (s stage) all(cmd string) []instruction {
	var out []instruction
	for _, in := range s.Instructions {
		if in.Cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// parseDockerfile reads the Dockerfile's stages. Instructions before the first FROM
// (global ARGs) are refused: this image has none, and the test would not resolve them.
func parseDockerfile(t *testing.T, path string) []stage {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var stages []stage
	var pending strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue // a comment or blank line, also between continuation lines
		}
		if strings.HasSuffix(line, `\`) {
			pending.WriteString(strings.TrimSuffix(line, `\`) + " ")
			continue
		}
		pending.WriteString(line)
		full := pending.String()
		pending.Reset()
		cmd, args, _ := strings.Cut(full, " ")
		in := instruction{Cmd: strings.ToUpper(cmd), Args: strings.TrimSpace(args)}
		if in.Cmd == "FROM" {
			fields := strings.Fields(in.Args)
			st := stage{From: fields[0]}
			if len(fields) == 3 && strings.EqualFold(fields[1], "AS") {
				st.Name = fields[2]
			}
			stages = append(stages, st)
			continue
		}
		require.NotEmpty(t, stages, "%s before the first FROM", in.Cmd)
		stages[len(stages)-1].Instructions = append(stages[len(stages)-1].Instructions, in)
	}
	require.NoError(t, sc.Err())
	require.Empty(t, pending.String(), "the Dockerfile ends inside a continuation")
	return stages
}

// execForm decodes ENTRYPOINT or CMD, which must be in exec (JSON) form: the shell form
// needs a shell the final stage does not have.
func execForm(t *testing.T, in instruction) []string {
	t.Helper()
	var argv []string
	require.NoError(t, json.Unmarshal([]byte(in.Args), &argv), "%s must be in exec form: %s", in.Cmd, in.Args)
	return argv
}

// shellFields splits a RUN line as a POSIX shell would split a simple command: quotes
// and backslashes, no expansion.
func shellFields(t *testing.T, s string) []string {
	t.Helper()
	var fields []string
	var cur strings.Builder
	inField := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			require.GreaterOrEqual(t, j, 0, "unterminated ' in %q", s)
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inField = true
		case c == '"':
			j := i + 1
			for ; j < len(s) && s[j] != '"'; j++ {
				if s[j] == '\\' && j+1 < len(s) {
					j++
				}
				cur.WriteByte(s[j])
			}
			require.Less(t, j, len(s), "unterminated \" in %q", s)
			i = j
			inField = true
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inField = true
		case c == ' ' || c == '\t':
			if inField {
				fields = append(fields, cur.String())
				cur.Reset()
				inField = false
			}
		case c == ';' || c == '&' || c == '|' || c == '$' || c == '`':
			t.Fatalf("RUN %q: the build command must be a simple command for this test to reproduce it", s)
		default:
			cur.WriteByte(c)
			inField = true
		}
	}
	if inField {
		fields = append(fields, cur.String())
	}
	return fields
}

// goBuild is the image's go build, as the Dockerfile runs it.
type goBuild struct {
	Env     map[string]string // from ENV and assignments before the command
	Flags   []string          // every flag before the package, in order
	LDFlags string
	Output  string // -o
	Package string
}

func (b goBuild) has(flag string) bool {
	for _, f := range b.Flags {
		if f == flag {
			return true
		}
	}
	return false
}

// buildOf finds the one RUN go build of the stage and what it builds.
func buildOf(t *testing.T, st stage) goBuild {
	t.Helper()
	b := goBuild{Env: map[string]string{}}
	found := 0
	for _, in := range st.Instructions {
		switch in.Cmd {
		case "ENV":
			for _, kv := range shellFields(t, in.Args) {
				k, v, ok := strings.Cut(kv, "=")
				require.True(t, ok, "ENV %s: use KEY=value", in.Args)
				b.Env[k] = v
			}
		case "RUN":
			fields := shellFields(t, in.Args)
			i := 0
			inline := map[string]string{}
			for ; i < len(fields) && strings.Contains(fields[i], "=") && !strings.HasPrefix(fields[i], "-"); i++ {
				k, v, _ := strings.Cut(fields[i], "=")
				inline[k] = v
			}
			if len(fields) < i+2 || fields[i] != "go" || fields[i+1] != "build" {
				continue
			}
			found++
			for k, v := range inline {
				b.Env[k] = v
			}
			args := fields[i+2:]
			for j := 0; j < len(args); j++ {
				a := args[j]
				if !strings.HasPrefix(a, "-") {
					require.Equal(t, len(args)-1, j, "go build: one package, last: %q", args)
					b.Package = a
					break
				}
				name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
				switch name {
				case "o", "ldflags", "tags", "gcflags":
					if !hasValue {
						require.Less(t, j+1, len(args), "go build %s needs a value", a)
						j++
						value = args[j]
					}
					switch name {
					case "o":
						b.Output = value
					case "ldflags":
						b.LDFlags = value
					default:
						b.Flags = append(b.Flags, "-"+name+"="+value)
					}
				default:
					b.Flags = append(b.Flags, a)
				}
			}
		}
	}
	require.Equal(t, 1, found, "the build stage runs go build exactly once")
	return b
}

// image is what the Dockerfile says about the image the tests must reproduce.
type image struct {
	Build      goBuild
	Final      stage
	Entrypoint []string
	Cmd        []string
}

func readImage(t *testing.T) image {
	t.Helper()
	stages := parseDockerfile(t, filepath.Join(repoRoot(t), "Dockerfile"))
	require.GreaterOrEqual(t, len(stages), 2, "multi-stage: a build stage and a final stage")
	final := stages[len(stages)-1]
	var build *stage
	for i := range stages[:len(stages)-1] {
		for _, in := range stages[i].all("RUN") {
			if strings.Contains(in.Args, "go build") {
				build = &stages[i]
			}
		}
	}
	require.NotNil(t, build, "a stage runs go build")
	img := image{Build: buildOf(t, *build), Final: final}
	entry, cmd := final.all("ENTRYPOINT"), final.all("CMD")
	require.Len(t, entry, 1, "one ENTRYPOINT")
	require.Len(t, cmd, 1, "one CMD")
	img.Entrypoint, img.Cmd = execForm(t, entry[0]), execForm(t, cmd[0])
	return img
}

var (
	buildOnce sync.Once
	builtPath string
	buildErr  error
	buildDir  string
)

// serviceBinary builds cmd/creditsessionsd once per test run, as the Dockerfile builds
// it: same package, same environment, same flags.
func serviceBinary(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the go command is not on PATH: cannot build the binary")
	}
	img := readImage(t)
	root := repoRoot(t)
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "creditsessions-image-")
		if buildErr != nil {
			return
		}
		builtPath = filepath.Join(buildDir, "creditsessionsd")
		args := append([]string{"build"}, img.Build.Flags...)
		args = append(args, "-ldflags="+img.Build.LDFlags, "-o", builtPath, img.Build.Package)
		cmd := exec.Command("go", args...)
		cmd.Dir = root
		cmd.Env = os.Environ()
		for k, v := range img.Build.Env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
		}
	})
	require.NoError(t, buildErr)
	return builtPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}
