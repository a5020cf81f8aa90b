package deploy_test

import (
	"bufio"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

// fencedBlocks returns the contents of the page's fenced code blocks of one language.
func fencedBlocks(t *testing.T, page, lang string) []string {
	t.Helper()
	f, err := os.Open(page)
	require.NoError(t, err)
	defer f.Close()
	var blocks []string
	var cur *strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case cur == nil && trimmed == "```"+lang:
			cur = &strings.Builder{}
		case cur != nil && trimmed == "```":
			blocks = append(blocks, cur.String())
			cur = nil
		case cur != nil:
			cur.WriteString(line + "\n")
		}
	}
	require.NoError(t, sc.Err())
	return blocks
}

// shellCommands joins continuation lines and drops comments.
func shellCommands(block string) [][]string {
	var out [][]string
	joined := strings.ReplaceAll(block, "\\\n", " ")
	for line := range strings.SplitSeq(joined, "\n") {
		line, _, _ = strings.Cut(line, "#")
		if f := strings.Fields(line); len(f) > 0 {
			out = append(out, f)
		}
	}
	return out
}

// TestDeployingDocMatchesTheManifests: the commands docs/deploying.md gives for a first
// install name the namespace the example overlay deploys into, create it before anything
// goes into it, and create the Secrets and ConfigMap the Deployment mounts, with the keys
// its flags read; the replacements it tells overlays to copy are the ones overlays/full
// uses. A renamed Secret or key fails here, not in a cluster.
func TestDeployingDocMatchesTheManifests(t *testing.T) {
	root := repoRoot(t)
	page := filepath.Join(root, "docs", "deploying.md")
	example := render(t, "kubernetes/overlays/example")
	require.Len(t, example.Namespaces, 1)
	ns := example.Namespaces[0].Name
	c := example.Deployments[0].Spec.Template.Spec.Containers[0]
	volumes := map[string]string{} // Secret or ConfigMap name -> mount path
	for _, vm := range c.VolumeMounts {
		for _, v := range example.Deployments[0].Spec.Template.Spec.Volumes {
			switch {
			case v.Name != vm.Name:
			case v.Secret != nil:
				volumes["secret/"+v.Secret.SecretName] = vm.MountPath
			case v.ConfigMap != nil:
				volumes["configmap/"+v.ConfigMap.Name] = vm.MountPath
			}
		}
	}
	// The files the container reads: flag values and *_FILE variables.
	files := map[string]bool{}
	for _, arg := range c.Args {
		if _, v, ok := strings.Cut(arg, "="); ok && strings.HasPrefix(v, "/") {
			files[v] = true
		}
	}
	for _, e := range c.Env {
		if strings.HasSuffix(e.Name, "_FILE") {
			files[e.Value] = true
		}
	}

	var install [][]string
	for _, b := range fencedBlocks(t, page, "sh") {
		for _, cmd := range shellCommands(b) {
			if cmd[0] == "kubectl" {
				install = append(install, cmd)
			}
		}
	}
	require.NotEmpty(t, install, "docs/deploying.md gives the install commands")

	namespaceCreated, applied := -1, -1
	created := map[string]bool{}
	for i, cmd := range install {
		line := strings.Join(cmd, " ")
		switch {
		case len(cmd) >= 4 && cmd[1] == "apply" && cmd[2] == "-f":
			require.FileExists(t, filepath.Join(root, cmd[3]), line)
			data, err := os.ReadFile(filepath.Join(root, cmd[3]))
			require.NoError(t, err)
			var obj struct {
				Kind     string
				Metadata struct{ Name string }
			}
			require.NoError(t, yaml.Unmarshal(data, &obj))
			if obj.Kind == "Namespace" && obj.Metadata.Name == ns {
				namespaceCreated = i
			}
		case len(cmd) >= 4 && cmd[1] == "apply" && cmd[2] == "-k":
			assert.Equal(t, "deploy/kubernetes/overlays/example", cmd[3], line)
			applied = i
		case len(cmd) >= 6 && cmd[1] == "-n" && cmd[3] == "create":
			assert.Equal(t, ns, cmd[2], "%s: the example's namespace", line)
			assert.Greater(t, i, namespaceCreated, "%s: after the namespace is created", line)
			assert.True(t, namespaceCreated >= 0, "%s: the namespace is created first", line)
			kind, name := cmd[4], cmd[5]
			if kind == "secret" {
				kind, name = "secret", cmd[6] // secret generic NAME, secret tls NAME
			}
			mount, ok := volumes[kind+"/"+name]
			if !assert.True(t, ok, "%s: the Deployment mounts no %s %s", line, kind, name) {
				continue
			}
			created[kind+"/"+name] = true
			var keys []string
			for _, arg := range cmd {
				if v, ok := strings.CutPrefix(arg, "--from-file="); ok {
					key, _, ok := strings.Cut(v, "=")
					require.True(t, ok, "%s: --from-file=KEY=path names the key", line)
					keys = append(keys, key)
				}
			}
			if cmd[4] == "secret" && cmd[5] == "tls" {
				keys = []string{"tls.crt", "tls.key"}
			}
			for _, k := range keys {
				p := path.Join(mount, k)
				assert.True(t, files[p], "%s: the container reads no %s", line, p)
			}
			for f := range files {
				if path.Dir(f) == mount {
					assert.Contains(t, keys, path.Base(f), "%s: the container reads %s, which this does not create", line, f)
				}
			}
		}
	}
	assert.GreaterOrEqual(t, namespaceCreated, 0, "the namespace is created")
	assert.Greater(t, applied, namespaceCreated, "the overlay is applied after the namespace")
	for v := range volumes {
		if name, ok := strings.CutPrefix(v, "configmap/"); ok && example.ConfigMaps[name] != nil {
			continue // the overlay generates it
		}
		assert.True(t, created[v], "the docs create %s, which the Deployment mounts", v)
	}

	// The replacements block to copy is the one overlays/full uses.
	var full struct{ Replacements []any }
	data, err := os.ReadFile(filepath.Join(root, "deploy", "kubernetes", "overlays", "full", "kustomization.yaml"))
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(data, &full))
	found := false
	for _, b := range fencedBlocks(t, page, "yaml") {
		var doc struct{ Replacements []any }
		if yaml.Unmarshal([]byte(b), &doc) == nil && doc.Replacements != nil {
			found = true
			assert.Equal(t, full.Replacements, doc.Replacements, "the docs' replacements are overlays/full's")
		}
	}
	assert.True(t, found, "docs/deploying.md shows the replacements block")
}
