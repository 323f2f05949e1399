package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestRenderCommandShowsColoredObjectsAndTwins(t *testing.T) {
	code, out, errOut := runCLI(t, "render", "../../examples/shop", "--color", "green", "--live", "blue")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"name: client-green", "name: server-green", // colored Deployments and Services
		"value: http://server-green:8080", // ${TANDEM_COLOR} substituted
		"tandem.dev/color: blue",          // stable twins select the live color
		"kind: Namespace",                 // shared objects
	} {
		if !strings.Contains(out, want) {
			t.Errorf("render output lacks %q", want)
		}
	}
	if strings.Count(out, "kind: Service\n") != 4 {
		t.Errorf("want 2 colored Services and 2 stable twins, got:\n%s", out)
	}
}

func TestRenderCommandBadInputIsOneLine(t *testing.T) {
	code, _, errOut := runCLI(t, "render", "../../examples/shop", "--color", "purple")
	if code != 2 || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || !strings.Contains(errOut, "purple") {
		t.Fatalf("exit %d, stderr %q: want exit 2 (an error) and one line naming the color", code, errOut)
	}
}

func TestStatusCommand(t *testing.T) {
	repo := t.TempDir()
	dir := filepath.Join(repo, "bundles", "shop")
	if err := os.CopyFS(dir, os.DirFS("../../examples/shop")); err != nil {
		t.Fatal(err)
	}
	rel := `apiVersion: tandem.dev/v1alpha1
kind: Release
bundle: shop
live: green
colors:
  blue: {commit: 3f2a0000000000000000000000000000000000aa, digest: "sha256:a", state: previous}
  green: {commit: 9c1e0000000000000000000000000000000000bb, digest: "sha256:b", state: live}
lastFailure: {commit: 77ab0000000000000000000000000000000000cc, reason: "server-green: ImagePullBackOff", at: "2026-11-23T10:00:00Z"}
`
	if err := os.WriteFile(filepath.Join(dir, "release.yaml"), []byte(rel), 0o644); err != nil {
		t.Fatal(err)
	}
	// The trail: a real repository whose last agent commit is a revert.
	for _, args := range [][]string{
		{"init", "--quiet", "-b", "main"},
		{"add", "-A"},
		{"-c", "user.name=dev", "-c", "user.email=dev@example.com", "commit", "--quiet", "-m",
			"Revert \"bump\" in bundle shop\n\nserver-green: ImagePullBackOff.\n\nTandem-Bundle: shop\nTandem-Result: reverted\nTandem-Reverts: 77ab\nTandem-Restores: 9c1e\n"},
	} {
		if out, err := exec.Command("git", append([]string{"-C", repo}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	code, out, errOut := runCLI(t, "status", repo)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"shop", "green", "9c1e", "blue", "ImagePullBackOff", "reverted"} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}
}

func TestRunFlagsAreValidated(t *testing.T) {
	code, _, errOut := runCLI(t, "run", "--interval", "0s", "--log-format", "xml")
	if code != 2 {
		t.Fatalf("exit %d, want 2 (an error)", code)
	}
	for _, want := range []string{"--repo is required", "--interval", "--log-format"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("error %q lacks %q", errOut, want)
		}
	}
}
