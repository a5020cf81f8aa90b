package deploy_test

import (
	"bufio"
	"context"
	"debug/buildinfo"
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// The final stage's files: where each comes from and where it goes.
const (
	binaryPath = "/creditsessionsd"
	caBundle   = "/etc/ssl/certs/ca-certificates.crt"
	passwdPath = "/etc/passwd"
	passwdFile = "deploy/image/passwd" // in the build context
)

// copyOf is one COPY of the final stage.
type copyOf struct {
	From, Src, Dst string // From "" is the build context
}

func finalCopies(t *testing.T, img image) []copyOf {
	t.Helper()
	var copies []copyOf
	for _, in := range img.Final.Instructions {
		switch in.Cmd {
		case "ADD":
			t.Errorf("ADD in the final stage: use COPY, whose effect is plain (%s)", in.Args)
		case "RUN":
			t.Errorf("RUN in the final stage: it has no shell (%s)", in.Args)
		case "COPY":
			fields := shellFields(t, in.Args)
			c := copyOf{}
			for len(fields) > 0 && strings.HasPrefix(fields[0], "--") {
				name, value, _ := strings.Cut(strings.TrimPrefix(fields[0], "--"), "=")
				require.Equal(t, "from", name, "COPY --%s: only --from is expected", name)
				c.From = value
				fields = fields[1:]
			}
			require.Len(t, fields, 2, "COPY: one source, one destination: %s", in.Args)
			c.Src, c.Dst = fields[0], fields[1]
			copies = append(copies, c)
		}
	}
	return copies
}

func TestDockerfileShipsAStaticBinaryAsANonRootUser(t *testing.T) {
	img := readImage(t)
	root := repoRoot(t)

	// The build: static, no local paths, the toolchain go.mod asks for.
	assert.Equal(t, "0", img.Build.Env["CGO_ENABLED"], "CGO_ENABLED=0: a static binary")
	assert.True(t, img.Build.has("-trimpath"), "go build -trimpath")
	assert.Equal(t, "./cmd/creditsessionsd", img.Build.Package)
	assert.NotEmpty(t, img.Build.Output)
	modBytes, err := os.ReadFile(filepath.Join(root, "go.mod"))
	require.NoError(t, err)
	goLine := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(modBytes)
	require.NotNil(t, goLine, "go.mod has a go line")
	stages := parseDockerfile(t, filepath.Join(root, "Dockerfile"))
	goImage := regexp.MustCompile(`^golang:(\d+\.\d+)(\.\d+)?(-[a-z0-9.]+)?$`).FindStringSubmatch(stages[0].From)
	require.NotNil(t, goImage, "the build stage is an official golang image with a version: %s", stages[0].From)
	assert.True(t, strings.HasPrefix(string(goLine[1]), goImage[1]), "go.mod says go %s, the image builds with %s", goLine[1], goImage[1])

	// Every base image pinned: a full version (a rebuild gets the same toolchain and
	// the same libraries, not whatever latest or 1.26 means that day) or a digest.
	pinned := regexp.MustCompile(`(:[^:/@]*\d+\.\d+\.\d+[^:/@]*|@sha256:[0-9a-f]{64})$`)
	for _, st := range stages {
		if st.From != "scratch" {
			assert.Regexp(t, pinned, st.From, "FROM %s: pinned by version or digest, not latest", st.From)
		}
	}

	// The final stage: nothing but what the service needs.
	assert.Contains(t, []string{"scratch", "gcr.io/distroless/static", "gcr.io/distroless/static-debian12:nonroot"}, img.Final.From)
	buildName := stages[0].Name
	require.NotEmpty(t, buildName, "the build stage is named, for COPY --from")
	want := []copyOf{
		{From: buildName, Src: caBundle, Dst: caBundle},
		{Src: passwdFile, Dst: passwdPath},
		{From: buildName, Src: img.Build.Output, Dst: binaryPath},
	}
	assert.ElementsMatch(t, want, finalCopies(t, img), "the final stage copies exactly the binary, the CA bundle and the passwd entry")

	// The user: numeric (so runAsNonRoot can check it), not root, and in the passwd file.
	users := img.Final.all("USER")
	require.Len(t, users, 1)
	uid, gid := parseUser(t, users[0].Args)
	assert.NotZero(t, uid, "not root")
	assert.NotZero(t, gid, "not root's group")
	passwd, err := os.ReadFile(filepath.Join(root, passwdFile))
	require.NoError(t, err)
	assert.Contains(t, string(passwd), ":x:"+strconv.Itoa(uid)+":"+strconv.Itoa(gid)+":", "the passwd entry names USER")

	// The entry point is the binary, and CMD only flags it accepts.
	assert.Equal(t, []string{binaryPath}, img.Entrypoint)
	flags := binaryFlags(t, serviceBinary(t))
	for _, arg := range img.Cmd {
		name, _ := flagName(t, arg)
		assert.Contains(t, flags, name, "CMD passes -%s, which the binary does not accept", name)
	}

	// EXPOSE: the ports CMD listens on, no more, no fewer.
	var exposed []string
	for _, in := range img.Final.all("EXPOSE") {
		exposed = append(exposed, strings.Fields(in.Args)...)
	}
	var listened []string
	for _, arg := range img.Cmd {
		if name, value := flagName(t, arg); strings.HasSuffix(name, "-addr") {
			_, port, ok := strings.Cut(value, ":")
			require.True(t, ok, "%s: host:port", arg)
			assert.True(t, strings.HasPrefix(value, ":"), "%s: all interfaces in a container", arg)
			listened = append(listened, port)
		}
	}
	sort.Strings(exposed)
	sort.Strings(listened)
	assert.Equal(t, listened, exposed)

	// OCI labels from build arguments.
	args := map[string]bool{}
	for _, in := range img.Final.all("ARG") {
		name, _, _ := strings.Cut(in.Args, "=")
		args[name] = true
	}
	labels := map[string]string{}
	for _, in := range img.Final.all("LABEL") {
		for _, kv := range shellFields(t, strings.ReplaceAll(in.Args, "$", "")) {
			k, v, _ := strings.Cut(kv, "=")
			labels[k] = v
		}
	}
	for label, arg := range map[string]string{"source": "SOURCE", "version": "VERSION", "revision": "REVISION"} {
		assert.Equal(t, "{"+arg+"}", labels["org.opencontainers.image."+label], "label %s from ARG %s", label, arg)
		assert.True(t, args[arg], "ARG %s in the final stage", arg)
	}
}

func parseUser(t *testing.T, s string) (uid, gid int) {
	t.Helper()
	u, g, ok := strings.Cut(s, ":")
	require.True(t, ok, "USER uid:gid, numeric: %s", s)
	uid, err := strconv.Atoi(u)
	require.NoError(t, err, "USER must be numeric, so that Kubernetes' runAsNonRoot can check it: %s", s)
	gid, err = strconv.Atoi(g)
	require.NoError(t, err, "USER's group must be numeric: %s", s)
	return uid, gid
}

// flagName splits "-name=value" (or "-name" alone).
func flagName(t *testing.T, arg string) (name, value string) {
	t.Helper()
	require.True(t, strings.HasPrefix(arg, "-"), "arguments are flags only (-name=value): %q", arg)
	name, value, _ = strings.Cut(strings.TrimLeft(arg, "-"), "=")
	return name, value
}

// binaryFlags lists the flags the binary accepts, from its own -h: what it accepts,
// not what a document says.
func binaryFlags(t *testing.T, bin string) []string {
	t.Helper()
	out, err := exec.Command(bin, "-h").CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		require.NoError(t, err)
	}
	var flags []string
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`).FindAllStringSubmatch(string(out), -1) {
		flags = append(flags, m[1])
	}
	require.NotEmpty(t, flags, "no flags in -h output:\n%s", out)
	return flags
}

func TestBinaryIsStaticAndBuiltAsTheDockerfileSays(t *testing.T) {
	img := readImage(t)
	bin := serviceBinary(t)
	f, err := elf.Open(bin)
	require.NoError(t, err)
	defer f.Close()
	for _, p := range f.Progs {
		assert.NotEqual(t, elf.PT_INTERP, p.Type, "a dynamic loader: not static")
	}
	libs, err := f.ImportedLibraries()
	require.NoError(t, err)
	assert.Empty(t, libs, "DT_NEEDED entries: not static")

	info, err := buildinfo.ReadFile(bin)
	require.NoError(t, err)
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	assert.Equal(t, "0", settings["CGO_ENABLED"])
	assert.Equal(t, "true", settings["-trimpath"])
	// -trimpath keeps -ldflags out of the build info (it may hold paths): check what
	// they did instead. The image's are -s -w: no symbol table, no DWARF.
	require.Equal(t, "-s -w", img.Build.LDFlags, "update this check with the Dockerfile's -ldflags")
	assert.Nil(t, f.Section(".symtab"), "-s: no symbol table")
	for _, sec := range f.Sections {
		assert.False(t, strings.HasPrefix(sec.Name, ".debug_") || strings.HasPrefix(sec.Name, ".zdebug_"), "-w: no DWARF, yet %s", sec.Name)
	}
}

// TestImageRunsInAnEmptyRoot runs the binary as the image would: in a root holding only
// what the final stage copies, as the image's user, with the image's arguments (their
// addresses moved to loopback), on the embedded emulator; and makes a call.
func TestImageRunsInAnEmptyRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chroot and changing user need root; CI runs as root")
	}
	img := readImage(t)
	bin := serviceBinary(t)
	root := repoRoot(t)
	users := img.Final.all("USER")
	require.Len(t, users, 1)
	uid, gid := parseUser(t, users[0].Args)

	fsRoot := t.TempDir()
	require.NoError(t, os.Chmod(fsRoot, 0o755)) // the root directory, as in an image
	for _, c := range finalCopies(t, img) {
		var src string
		switch {
		case c.From == "" && c.Src == passwdFile:
			src = filepath.Join(root, passwdFile)
		case c.Src == img.Build.Output:
			src = bin
		case c.Src == caBundle:
			src = caBundle // the build stage is Debian, as is this machine
			if _, err := os.Stat(src); err != nil {
				t.Skipf("no CA bundle at %s to put in the root", src)
			}
		default:
			t.Fatalf("the final stage copies %s, which this test does not know", c.Src)
		}
		installFile(t, src, filepath.Join(fsRoot, c.Dst))
	}

	var args []string
	for _, arg := range img.Cmd {
		name, _ := flagName(t, arg)
		if strings.HasSuffix(name, "-addr") {
			arg = "-" + name + "=127.0.0.1:0"
		}
		args = append(args, arg)
	}
	cmd := exec.Command(img.Entrypoint[0], append(args, "-log-format=json")...)
	cmd.Path = img.Entrypoint[0] // resolved inside the new root, not on this machine's PATH
	cmd.Dir = "/"
	cmd.Env = []string{} // the image sets no environment
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Chroot:     fsRoot,
		Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)},
		Pdeathsig:  syscall.SIGKILL,
	}
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	if err := cmd.Start(); err != nil {
		if errors.Is(err, syscall.EPERM) {
			t.Skipf("chroot is not permitted here (%v)", err)
		}
		require.NoError(t, err)
	}
	exited := make(chan error, 1)
	done := make(chan struct{})
	serving := make(chan map[string]any, 1)
	var logTail []string
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			logTail = append(logTail, line)
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == "serving" {
				serving <- rec
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			_ = cmd.Process.Kill()
			<-done
		}
	})

	var rec map[string]any
	select {
	case rec = <-serving:
	case err := <-exited:
		t.Fatalf("the service exited in the empty root: %v\n%s", err, strings.Join(logTail, "\n"))
	case <-time.After(30 * time.Second):
		t.Fatal("the service did not start within 30s")
	}

	conn, err := grpc.NewClient(rec["grpc_addr"].(string), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := creditv1.NewCreditServiceClient(conn).CreditSessionsGet(ctx, &creditv1.CreditSessionsGetRequest{UserToken: "user-sandbox-example"})
	require.NoError(t, err)
	assert.Len(t, resp.GetSessions(), 2)

	// As the user it runs as, in a root it cannot write to, with a clean stop.
	status, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(cmd.Process.Pid), "status"))
	require.NoError(t, err)
	assert.Regexp(t, `(?m)^Uid:\s+`+strconv.Itoa(uid)+`\s`, string(status))
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-exited:
		assert.NoError(t, err, "exit 0 on SIGTERM")
	case <-time.After(30 * time.Second):
		t.Fatal("the service did not stop within 30s of SIGTERM")
	}
}

// installFile copies src to dst, owned by root and read-only to everyone else, as an
// image's layers are.
func installFile(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Dir(dst), 0o755))
	info, err := os.Stat(src)
	require.NoError(t, err)
	mode := os.FileMode(0o444)
	if info.Mode()&0o111 != 0 {
		mode = 0o555
	}
	require.NoError(t, os.WriteFile(dst, data, mode))
}
