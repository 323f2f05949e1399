package main

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandem-gitops/tandem/gitsync"
	"github.com/tandem-gitops/tandem/promote"
	"github.com/tandem-gitops/tandem/render"
	"github.com/tandem-gitops/tandem/testenv"
)

// TestOutcomeKeepsSoakedAt: the driver rewrites release.yaml from its own
// state (which does not know of the soak record); a write for the same live
// release keeps soakedAt, one for a new live release drops it.
func TestOutcomeKeepsSoakedAt(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	remote, err := testenv.NewRemote(filepath.Join(dir, "remote.git"))
	must(t, err)
	at := "2026-11-29T20:00:00Z"
	rel := func(live, soaked string) string {
		r := "apiVersion: tandem.dev/v1alpha1\nkind: Release\nbundle: stg\nlive: green\ncolors:\n  green: {commit: " + live + ", digest: \"sha256:b\", state: live, promotedAt: \"" + at + "\""
		if soaked != "" {
			r += ", soakedAt: \"" + soaked + "\""
		}
		return r + "}\n  blue: {commit: aaaa, digest: \"sha256:a\", state: previous}\n"
	}
	_, err = remote.Seed(map[string]string{"bundles/stg/bundle.yaml": stageBundleYAML("stg", ""),
		"bundles/stg/release.yaml": rel("bbbb", "2026-11-29T20:05:00Z")}, "staging soaked bbbb")
	must(t, err)
	repo, err := gitsync.Open(ctx, gitsync.Options{URL: "file://" + remote.Path, CacheDir: filepath.Join(dir, "cache")})
	must(t, err)
	b, err := render.ParseBundle("bundles/stg/bundle.yaml", []byte(stageBundleYAML("stg", "")))
	must(t, err)
	store := newReleaseStore()
	store.setSpec(b)
	g := &bundleGit{repo: repo, store: store, bundle: "stg"}
	write := func(live string) string {
		t.Helper()
		parsed, err := promote.ParseRelease("release.yaml", []byte(rel(live, "")), b.Spec.Colors)
		must(t, err)
		parsed.LastFailure = &promote.Failure{Commit: "cccc", Reason: "a newer candidate failed", At: time.Now().UTC().Truncate(time.Second)}
		if _, _, err := g.Write(ctx, promote.Commit{Result: promote.ResultHeld, Message: promote.HoldMessage("stg", "cccc", "failed"), Release: parsed}); err != nil {
			t.Fatal(err)
		}
		out, err := remote.Git("show", "main:bundles/stg/release.yaml")
		must(t, err)
		return out
	}
	if got := write("bbbb"); !strings.Contains(got, "soakedAt: \"2026-11-29T20:05:00Z\"") || !strings.Contains(got, "a newer candidate failed") {
		t.Errorf("a hold for the same live release lost soakedAt:\n%s", got)
	}
	if got := write("dddd"); strings.Contains(got, "soakedAt") {
		t.Errorf("a new live release kept the old soakedAt:\n%s", got)
	}
}

// TestSoakEnded: only a soak that ran to its end healthy is recorded.
func TestSoakEnded(t *testing.T) {
	for _, tc := range []struct {
		name string
		n    promote.Note
		want bool
	}{
		{"ended healthy", promote.Note{Phase: "soak", Color: "green", Commit: "c", Duration: 3 * time.Second}, true},
		{"degraded", promote.Note{Phase: "soak", Commit: "c", Duration: time.Second, Err: errTest}, false},
		{"cut short by a newer commit", promote.Note{Phase: "soak", Commit: "c", Detail: "a newer commit arrived; soak ended early"}, false},
		{"another phase", promote.Note{Phase: "promote", Commit: "c", Duration: time.Second}, false},
	} {
		if got := soakEnded(tc.n); got != tc.want {
			t.Errorf("%s: soakEnded %v, want %v", tc.name, got, tc.want)
		}
	}
}

var errTest = errors.New("server-green: CrashLoopBackOff")
