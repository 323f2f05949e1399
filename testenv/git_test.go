package testenv

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestRemoteRefusesForcePushAndHonoursHook(t *testing.T) {
	rem, err := NewRemote(filepath.Join(t.TempDir(), "r.git"))
	if err != nil {
		t.Fatal(err)
	}
	c1, err := rem.Seed(map[string]string{"a": "1"}, "one")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rem.Commit(map[string]string{"a": "2"}, "two"); err != nil {
		t.Fatal(err)
	}
	clone := filepath.Join(t.TempDir(), "c")
	if _, err := runGit("", "clone", "-q", rem.Path, clone); err != nil {
		t.Fatal(err)
	}
	if _, err := runGit(clone, "push", "--force", "origin", c1+":refs/heads/main"); err == nil {
		t.Fatal("force push was accepted")
	}
	if err := rem.RejectPushes("protected"); err != nil {
		t.Fatal(err)
	}
	if _, err := rem.Commit(map[string]string{"a": "3"}, "three"); err == nil || !strings.Contains(err.Error(), "protected") {
		t.Fatalf("push with hook = %v, want declined with reason", err)
	}
	if err := rem.AllowPushes(); err != nil {
		t.Fatal(err)
	}
	if _, err := rem.Commit(map[string]string{"a": "3"}, "three"); err != nil {
		t.Fatal(err)
	}
}
