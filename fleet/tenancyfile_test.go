package fleet

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/tandem-gitops/tandem/render"
)

const tenancyYAML = `apiVersion: tandem.dev/v1alpha1
kind: Tenancy
rules:
- name: team-a
  paths: ["teams/a/**"]
  namespaces: ["team-a", "team-a-*"]
  serviceAccounts: ["deployer", "reader"]
- name: gateway
  paths: ["platform/gw"]
  namespaces: ["gw"]
  serviceAccounts: ["gw"]
  kinds: ["*", "*.gateway.networking.k8s.io", "Namespace", "ClusterRole.rbac.authorization.k8s.io"]
- name: root
  paths: ["."]
  namespaces: ["infra"]
`

func obj(apiVersion, kind, ns, name string) *unstructured.Unstructured {
	md := map[string]any{"name": name}
	if ns != "" {
		md["namespace"] = ns
	}
	return &unstructured.Unstructured{Object: map[string]any{"apiVersion": apiVersion, "kind": kind, "metadata": md}}
}

// TestTenancyFileRules: which bundles a tenancy file lets through, by
// directory, namespace, ServiceAccount and kind, and the errors naming the
// rule, the file and the field.
func TestTenancyFileRules(t *testing.T) {
	f, err := ParseTenancyFile("tenancy.yaml", []byte(tenancyYAML))
	if err != nil {
		t.Fatal(err)
	}
	dep := obj("apps/v1", "Deployment", "", "server")
	for _, c := range []struct {
		name        string
		dir, ns, sa string
		objects     []*unstructured.Unstructured
		shared      []*unstructured.Unstructured
		want        string // "" = allowed
	}{
		{"its own namespace", "teams/a/shop", "team-a", "", []*unstructured.Unstructured{dep}, nil, ""},
		{"a namespace glob", "teams/a/x/y", "team-a-dev", "reader", nil, nil, ""},
		{"another team's namespace", "teams/a/shop", "team-b", "", nil, nil,
			`teams/a/shop/bundle.yaml: spec.namespace: namespace "team-b" is not allowed by tenancy rule "team-a" (tenancy.yaml rules[0].namespaces: team-a, team-a-*)`},
		{"another team's ServiceAccount", "teams/a/shop", "team-a", "admin", nil, nil,
			`teams/a/shop/bundle.yaml: spec.serviceAccountName: ServiceAccount "admin" is not allowed by tenancy rule "team-a" (tenancy.yaml rules[0].serviceAccounts: deployer, reader)`},
		{"no rule", "teams/b/shop", "team-a", "", nil, nil,
			`teams/b/shop/bundle.yaml: directory teams/b/shop matches no rule of the tenancy file tenancy.yaml`},
		{"a shared object in another namespace", "teams/a/shop", "team-a", "", nil, []*unstructured.Unstructured{obj("v1", "ConfigMap", "team-b", "x")},
			`spec.shared: ConfigMap x: namespace "team-b" is not allowed by tenancy rule "team-a"`},
		{"a Namespace not listed", "teams/a/shop", "team-a", "", nil, []*unstructured.Unstructured{obj("v1", "Namespace", "", "team-a")},
			`spec.shared: Namespace team-a: cluster-scoped kind Namespace is not allowed (cluster-scoped kinds must be listed) by tenancy rule "team-a" (tenancy.yaml rules[0].kinds: not set`},
		{"a ClusterRoleBinding", "teams/a/shop", "team-a", "", nil, []*unstructured.Unstructured{obj("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "", "admin")},
			`cluster-scoped kind ClusterRoleBinding.rbac.authorization.k8s.io is not allowed`},
		{"a custom resource not listed", "teams/a/shop", "team-a", "", []*unstructured.Unstructured{obj("example.com/v1", "Widget", "team-a", "w")}, nil,
			`spec.path: Widget w: kind Widget.example.com is not allowed (kinds not built into Kubernetes must be listed)`},
		{"listed kinds", "platform/gw", "gw", "", []*unstructured.Unstructured{dep, obj("gateway.networking.k8s.io/v1", "HTTPRoute", "gw", "r")},
			[]*unstructured.Unstructured{obj("v1", "Namespace", "", "gw"), obj("rbac.authorization.k8s.io/v1", "ClusterRole", "", "gw")}, ""},
		{"a listed Namespace kind, another namespace", "platform/gw", "gw", "", nil, []*unstructured.Unstructured{obj("v1", "Namespace", "", "team-a")},
			`spec.shared: Namespace team-a: namespace "team-a" is not allowed by tenancy rule "gateway" (tenancy.yaml rules[1].namespaces: gw)`},
		{"a cluster-scoped kind listed elsewhere", "platform/gw", "gw", "", nil, []*unstructured.Unstructured{obj("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "", "x")},
			`kind ClusterRoleBinding.rbac.authorization.k8s.io is not allowed (cluster-scoped kinds must be listed) by tenancy rule "gateway" (tenancy.yaml rules[1].kinds: *, *.gateway.networking.k8s.io, Namespace, ClusterRole.rbac.authorization.k8s.io)`},
		{"a subdirectory of an exact path", "platform/gw/x", "gw", "", nil, nil, "matches no rule"},
		{"the root bundle", ".", "infra", "", nil, nil, ""},
		{"the root rule names no ServiceAccount", ".", "infra", "deployer", nil, nil,
			`spec.serviceAccountName: ServiceAccount "deployer" is not allowed by tenancy rule "root" (tenancy.yaml rules[2].serviceAccounts: none)`},
	} {
		t.Run(c.name, func(t *testing.T) {
			ten := &Tenancy{file: f}
			b := &render.Bundle{Name: "x", Dir: c.dir, File: strings.TrimPrefix(c.dir+"/bundle.yaml", "./"), Spec: render.Spec{Namespace: c.ns, ServiceAccountName: c.sa}}
			err := ten.Check(b, &render.Result{Objects: c.objects, Shared: c.shared})
			switch {
			case c.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Errorf("err = %v\nwant one containing %q", err, c.want)
			}
			if c.want != "" {
				if _, err := ten.ApplierFor(b); strings.Contains(c.want, "spec.serviceAccountName") || strings.Contains(c.want, "no rule") {
					if err == nil {
						t.Error("ApplierFor acts for a bundle outside its rule")
					}
				}
			}
		})
	}
}

// TestTenancyFileServiceAccount: the rule's first ServiceAccount acts for
// a bundle that names none; one it names must be listed; a rule without
// ServiceAccounts leaves --default-service-account.
func TestTenancyFileServiceAccount(t *testing.T) {
	f, err := ParseTenancyFile("tenancy.yaml", []byte(tenancyYAML))
	if err != nil {
		t.Fatal(err)
	}
	ten := &Tenancy{file: f, defaultSA: "ci"}
	for _, c := range []struct{ dir, sa, want string }{
		{"teams/a/shop", "", `ServiceAccount team-a/deployer (tenancy rule "team-a", tenancy.yaml rules[0].serviceAccounts)`},
		{"teams/a/shop", "reader", `ServiceAccount team-a/reader (spec.serviceAccountName of teams/a/shop/bundle.yaml, allowed by tenancy rule "team-a")`},
		{".", "", "ServiceAccount team-a/ci (--default-service-account)"},
	} {
		b := &render.Bundle{Name: "x", Dir: c.dir, File: strings.TrimPrefix(c.dir+"/bundle.yaml", "./"), Spec: render.Spec{Namespace: "team-a", ServiceAccountName: c.sa}}
		if got := ten.Actor(b); got != c.want {
			t.Errorf("%s with %q: actor %q, want %q", c.dir, c.sa, got, c.want)
		}
	}
}

// TestParseTenancyFile: what a tenancy file may not say.
func TestParseTenancyFile(t *testing.T) {
	for _, c := range []struct{ name, yaml, want string }{
		{"empty", "", "empty"},
		{"no rules", "rules: []\n", "rules: none"},
		{"unknown field", "rules:\n- name: a\n  paths: [x]\n  namespaces: [a]\n  namespace: b\n", `unknown field "namespace"`},
		{"no name", "rules:\n- paths: [x]\n  namespaces: [a]\n", "rules[0].name: required"},
		{"duplicate name", "rules:\n- {name: a, paths: [x], namespaces: [a]}\n- {name: a, paths: [y], namespaces: [b]}\n", `rules[1].name: "a" is the name of an earlier rule`},
		{"no paths", "rules:\n- {name: a, namespaces: [a]}\n", "rules[0].paths: required"},
		{"absolute path", "rules:\n- {name: a, paths: [/x], namespaces: [a]}\n", `rules[0].paths: "/x"`},
		{"no namespaces", "rules:\n- {name: a, paths: [x]}\n", "rules[0].namespaces: required"},
		{"bad namespace", "rules:\n- {name: a, paths: [x], namespaces: [Team_A]}\n", `rules[0].namespaces: "Team_A" is not a namespace name`},
		{"bad ServiceAccount", "rules:\n- {name: a, paths: [x], namespaces: [a], serviceAccounts: [../x]}\n", `rules[0].serviceAccounts: "../x"`},
		{"bad kind", "rules:\n- {name: a, paths: [x], namespaces: [a], kinds: [\"apps/Deployment\"]}\n", `rules[0].kinds: "apps/Deployment"`},
		{"wrong kind", "kind: Bundle\nrules:\n- {name: a, paths: [x], namespaces: [a]}\n", `kind "Bundle": want Tenancy`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseTenancyFile("t.yaml", []byte(c.yaml))
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "t.yaml: ") {
				t.Errorf("err = %v, want one starting with t.yaml: and containing %q", err, c.want)
			}
		})
	}
}

// TestMatchPath: globs on bundle directories.
func TestMatchPath(t *testing.T) {
	for _, c := range []struct {
		glob, dir string
		want      bool
	}{
		{"teams/a/**", "teams/a", true},
		{"teams/a/**", "teams/a/x/y", true},
		{"teams/a/**", "teams/ab", false},
		{"teams/a/*", "teams/a/x", true},
		{"teams/a/*", "teams/a/x/y", false},
		{"teams/*/shop", "teams/b/shop", true},
		{"**", ".", true},
		{"**", "x/y", true},
		{".", ".", true},
		{".", "x", false},
		{"x", ".", false},
		{"**/prod", "a/b/prod", true},
		{"**/prod", "a/b/prod/x", false},
	} {
		if got := matchPath(c.glob, c.dir); got != c.want {
			t.Errorf("matchPath(%q, %q) = %v, want %v", c.glob, c.dir, got, c.want)
		}
	}
}
