package yamlguard

import (
	"fmt"
	"strings"
	"testing"
)

// TestCheckYAML: the guard for files parsed outside kustomize (release.yaml).
func TestCheckYAML(t *testing.T) {
	laughs := "a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n"
	for i, n := range "bcdefghi" {
		laughs += fmt.Sprintf("%c: &%c [%s]\n", n, n, strings.Repeat("*"+string("abcdefghi"[i])+",", 8)+"*"+string("abcdefghi"[i]))
	}
	for in, want := range map[string]string{
		"a: 1\nb: 2\n":                "",
		"a: &x [1]\nb: *x\n":          "",
		"":                            "",
		"a: 1\n---\na: 2\n":           "second YAML document",
		"a: 1\nb: {c: 1, c: 2}\n":     `line 2: key "c" appears twice`,
		laughs:                        "aliases expand",
		"a: &x {k: 1}\nb: {<<: *x}\n": "",
	} {
		err := Check([]byte(in))
		if (err == nil) != (want == "") || err != nil && !strings.Contains(err.Error(), want) {
			t.Errorf("Check(%.40q) = %v, want %q", in, err, want)
		}
	}
}
