package render

import (
	"bytes"
	"context"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestKustomizeConfigInSync checks that the field specs copied into
// kustconfig.go are those of the kustomize module this build uses.
func TestKustomizeConfigInSync(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/kustomize/api").Output()
	if err != nil {
		t.Fatalf("go list -m sigs.k8s.io/kustomize/api: %v (the go command must be on PATH and the module downloaded: go mod download)", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "internal", "konfig", "builtinpluginconsts")
	consts := map[string]ast.Expr{}
	fset := token.NewFileSet()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.CONST {
				continue
			}
			for _, s := range g.Specs {
				vs := s.(*ast.ValueSpec)
				for i, n := range vs.Names {
					consts[n.Name] = vs.Values[i]
				}
			}
		}
	}
	var eval func(ast.Expr) string
	eval = func(e ast.Expr) string {
		switch e := e.(type) {
		case *ast.BasicLit:
			s, err := strconv.Unquote(e.Value)
			if err != nil {
				t.Fatal(err)
			}
			return s
		case *ast.BinaryExpr:
			return eval(e.X) + eval(e.Y)
		case *ast.Ident:
			v, ok := consts[e.Name]
			if !ok {
				t.Fatalf("kustomize constant %s not found in %s", e.Name, dir)
			}
			return eval(v)
		}
		t.Fatalf("unexpected expression %T in %s", e, dir)
		return ""
	}
	for name, ours := range map[string]string{
		"commonLabelFieldSpecs":   kustomizeCommonLabelFieldSpecs,
		"nameReferenceFieldSpecs": kustomizeNameReferenceFieldSpecs,
	} {
		if _, ok := consts[name]; !ok {
			t.Fatalf("kustomize constant %s not found in %s", name, dir)
		}
		if theirs := eval(consts[name]); theirs != ours {
			t.Errorf("%s in kustconfig.go differs from kustomize's %s in %s: copy it again", name, name, dir)
		}
	}
	if _, err := defaultOverlayConfig(); err != nil {
		t.Fatal(err)
	}
}

// TestOneLevelBuild checks which golden cases the one-level build serves
// (so that TestGolden proves the color overlay identical to a generated
// kustomization level) and which need the generated level, and why.
func TestOneLevelBuild(t *testing.T) {
	want := map[string]string{
		"vars":         "vars",
		"local-config": "local-config",
	}
	cases, err := os.ReadDir("testdata/golden")
	must(t, err)
	for _, c := range cases {
		t.Run(c.Name(), func(t *testing.T) {
			dir := filepath.Join("testdata/golden", c.Name())
			bundles, err := Discover(dir, ".")
			must(t, err)
			b := bundles[0]
			root, err := filepath.Abs(dir)
			must(t, err)
			bc := &buildCtx{ctx: context.Background(), root: root, b: b, budget: DefaultMaxBytes, maxObjects: DefaultMaxObjects, inputs: map[string]bool{}}
			_, twoLevel, err := bc.kustomize(filepath.Join(root, filepath.FromSlash(b.Dir), filepath.FromSlash(b.Spec.Path)), nil, nil)
			must(t, err)
			if w := want[c.Name()]; w == "" && twoLevel != "" {
				t.Errorf("needs a generated level (%s), want the one-level build", twoLevel)
			} else if w != "" && !strings.Contains(twoLevel, w) {
				t.Errorf("needs a generated level for %q, want for %q", twoLevel, w)
			}
		})
	}
}

// TestNeedsTwoLevel lists the kustomization fields that keep the generated
// level: they act at the top level only or change its transformer config.
func TestNeedsTwoLevel(t *testing.T) {
	for _, c := range []struct {
		k    map[string]any
		top  bool
		want string
	}{
		{map[string]any{"resources": []any{"a.yaml"}, "namePrefix": "p-", "configMapGenerator": []any{}}, true, ""},
		{map[string]any{"vars": []any{}}, false, "vars"},
		{map[string]any{"configurations": []any{"c.yaml"}}, false, "configurations"},
		{map[string]any{"crds": []any{"c.json"}}, false, "crds"},
		{map[string]any{"buildMetadata": []any{"originAnnotations"}}, true, "buildMetadata"},
		{map[string]any{"openapi": map[string]any{"path": "s.json"}}, true, "openapi"},
		{map[string]any{"kind": "Component"}, true, "kind Component"},
		{map[string]any{"kind": "Component"}, false, ""},
	} {
		if got := needsTwoLevel(c.k, c.top); got != c.want {
			t.Errorf("needsTwoLevel(%v, top %v) = %q, want %q", c.k, c.top, got, c.want)
		}
	}
}

// TestOneLevelMatchesTwoLevel renders every golden case, both colors, and a
// generated 100-object tree with the one-level build and color overlay and
// again under a generated kustomization level, and wants the same bytes
// and digest: the identity holds even for goldens rewritten by -update.
func TestOneLevelMatchesTwoLevel(t *testing.T) {
	type tree struct{ root, name string }
	var trees []tree
	cases, err := os.ReadDir("testdata/golden")
	must(t, err)
	for _, c := range cases {
		trees = append(trees, tree{filepath.Join("testdata/golden", c.Name()), c.Name()})
	}
	root := t.TempDir()
	var res []string
	files := map[string]string{"b/bundle.yaml": strings.Replace(testBundle, "%s", "b", 1)}
	for i := 0; i < 50; i++ {
		name := fmt.Sprintf("app%d", i)
		files["b/app/"+name+".yaml"] = strings.ReplaceAll(deploy("example/"+name+":v1"), "name: d", "name: "+name) +
			"---\napiVersion: v1\nkind: Service\nmetadata:\n  name: " + name + "\nspec:\n  selector: {app: d}\n  ports:\n  - port: 80\n"
		res = append(res, "- "+name+".yaml")
	}
	files["b/app/kustomization.yaml"] = "resources:\n" + strings.Join(res, "\n") + "\n"
	writeFiles(t, root, files)
	trees = append(trees, tree{root, "objects=100"})
	for _, tr := range trees {
		t.Run(tr.name, func(t *testing.T) {
			bundles, err := Discover(tr.root, ".")
			must(t, err)
			b := bundles[0]
			render := func(twoLevel bool) ([]*Result, string) {
				rs, err := RenderColors(context.Background(), b, Options{RepoRoot: tr.root, Commit: "c0ffee", twoLevel: twoLevel}, b.Spec.Colors[0], b.Spec.Colors[1])
				must(t, err)
				var buf bytes.Buffer
				for _, r := range rs {
					must(t, WriteYAML(&buf, r.Shared, r.Objects, r.Twins, SortedCheckJobs(r.CheckJobs)))
				}
				return rs, buf.String()
			}
			one, oneYAML := render(false)
			two, twoYAML := render(true)
			if oneYAML != twoYAML {
				t.Errorf("one-level render differs from the two-level one:\n%s\n---- two-level:\n%s", oneYAML, twoYAML)
			}
			if one[0].Digest != two[0].Digest {
				t.Errorf("digest %s, two-level %s", one[0].Digest, two[0].Digest)
			}
			if !slices.Equal(one[0].Inputs, two[0].Inputs) {
				t.Errorf("inputs %v, two-level %v", one[0].Inputs, two[0].Inputs)
			}
		})
	}
}
