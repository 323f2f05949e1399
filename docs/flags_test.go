// Package docs holds the user documentation; its tests check the
// documentation against the tandem-agent binary.
//
// They live here rather than in cmd/agent because cmd/agent's TestMain
// starts a control plane, which a check of the docs does not need.
package docs

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
)

// subcommands are those of tandem-agent that take flags (version takes none).
var subcommands = []string{"run", "render", "status", "diff"}

// otherTools are flags of other programs that the docs show in their
// commands (kubectl, helm, git, gpg, ssh-keygen); they are not tandem-agent's.
var otherTools = map[string]string{
	"--set":                 "helm",
	"--reuse-values":        "helm",
	"--skip-tests":          "helm template",
	"--from-file":           "kubectl create secret",
	"--from-literal":        "kubectl create secret",
	"--field-selector":      "kubectl get events",
	"--server-side":         "kubectl apply",
	"--show-managed-fields": "kubectl get",
	"--format":              "git log",
	"--trailer":             "git commit",
	"--strict":              "git fsck",
	"--auto":                "git gc",
	"--all":                 "git",
	"--armor":               "gpg",
	"--export":              "gpg",
	"--export-secret-keys":  "gpg",
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	buildOut  []byte
)

// agent builds tandem-agent once for the tests of this package.
func agent(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tandem-docs-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "tandem-agent")
		buildOut, buildErr = exec.Command("go", "build", "-o", binPath, "../cmd/agent").CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("go build ../cmd/agent: %v\n%s", buildErr, buildOut)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

var helpFlag = regexp.MustCompile(`(?m)^  -([a-z0-9][-a-z0-9]*)`)

// binaryFlags returns the flags of each subcommand as "--name", read from
// its --help (any stream, any exit status).
func binaryFlags(t *testing.T) map[string][]string {
	t.Helper()
	bin := agent(t)
	out := map[string][]string{}
	for _, sub := range subcommands {
		var buf bytes.Buffer
		cmd := exec.Command(bin, sub, "--help")
		cmd.Stdout, cmd.Stderr = &buf, &buf
		_ = cmd.Run() // --help exits 2 today; the text is what counts
		for _, m := range helpFlag.FindAllStringSubmatch(buf.String(), -1) {
			out[sub] = append(out[sub], "--"+m[1])
		}
		if len(out[sub]) == 0 {
			t.Fatalf("tandem-agent %s --help lists no flags:\n%s", sub, buf.String())
		}
	}
	return out
}

var docFlag = regexp.MustCompile(`(?:^|[^A-Za-z0-9_-])(--[a-z][a-z0-9]*(?:-[a-z0-9]+)*)`)

// userDocs are the files users read: README, CHANGELOG and docs/*.md.
func userDocs(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../README.md", "../CHANGELOG.md")
	sort.Strings(files)
	return files
}

// TestDocsFlagsExist: every --flag the docs name is a flag of some
// tandem-agent subcommand, or of another tool listed in otherTools.
func TestDocsFlagsExist(t *testing.T) {
	// --help works for every command, --version for the binary itself.
	known := map[string]bool{"--help": true, "--version": true}
	for _, flags := range binaryFlags(t) {
		for _, f := range flags {
			known[f] = true
		}
	}
	family := func(prefix string) bool {
		for f := range known {
			if strings.HasPrefix(f, prefix+"-") {
				return true
			}
		}
		return false
	}
	for _, file := range userDocs(t) {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(data), "\n") {
			for _, m := range docFlag.FindAllStringSubmatchIndex(line, -1) {
				f, rest := line[m[2]:m[3]], line[m[3]:]
				if known[f] || otherTools[f] != "" {
					continue
				}
				// "--git-*-file" and "--notify-*" name families of flags.
				if strings.HasPrefix(rest, "-*") && family(f) {
					continue
				}
				t.Errorf("%s:%d: %s is not a flag of tandem-agent %s", file, i+1, f, strings.Join(subcommands, ", "))
			}
		}
	}
}

// TestDocsReferenceHasEveryFlag: every flag of every subcommand is in
// reference.md, in the section of that subcommand (a heading that names
// `tandem-agent <sub>`, up to the next heading of the same or a higher level).
func TestDocsReferenceHasEveryFlag(t *testing.T) {
	data, err := os.ReadFile("reference.md")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	for sub, flags := range binaryFlags(t) {
		section := sectionOf(lines, "tandem-agent "+sub)
		if section == "" {
			t.Errorf("reference.md has no section headed `tandem-agent %s`", sub)
			continue
		}
		for _, f := range flags {
			if !strings.Contains(section, "`"+f+"`") && !strings.Contains(section, "`"+f+" ") {
				t.Errorf("reference.md, section tandem-agent %s: flag %s is not documented", sub, f)
			}
		}
	}
}

// sectionOf returns the text under the first heading that contains
// "`"+name+"`" (or name followed by a non-word character).
func sectionOf(lines []string, name string) string {
	head := regexp.MustCompile("^(#+) .*`" + regexp.QuoteMeta(name) + "(`| )")
	for i, l := range lines {
		m := head.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		level := len(m[1])
		end := len(lines)
		for j := i + 1; j < len(lines); j++ {
			if h := strings.IndexFunc(lines[j], func(r rune) bool { return r != '#' }); h > 0 && h <= level && strings.HasPrefix(lines[j][h:], " ") {
				end = j
				break
			}
		}
		return strings.Join(lines[i+1:end], "\n")
	}
	return ""
}
