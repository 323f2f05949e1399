package render

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// TestBundleSchemaUpToDate fails when docs/bundle.schema.json is not what
// the bundle.yaml types and bundleFieldDocs generate now.
func TestBundleSchemaUpToDate(t *testing.T) {
	want, err := BundleSchema()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join("..", filepath.FromSlash(SchemaFile)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is out of step with the bundle.yaml types: run `go generate ./render` and commit it", SchemaFile)
	}
}

// TestBundleSchemaDefaults checks that every default the schema states is
// the one ParseBundle fills in.
func TestBundleSchemaDefaults(t *testing.T) {
	data, err := BundleSchema()
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(data, &schema); err != nil {
		t.Fatal(err)
	}
	def := func(path ...string) any {
		t.Helper()
		s := schema
		for _, p := range path {
			if p == "[]" {
				s = s["items"].(map[string]any)
				continue
			}
			s = s["properties"].(map[string]any)[p].(map[string]any)
		}
		return s["default"]
	}
	dur := func(v any) time.Duration {
		t.Helper()
		d, err := time.ParseDuration(v.(string))
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	b, err := ParseBundle("bundle.yaml", []byte(`apiVersion: tandem.dev/v1alpha1
kind: Bundle
metadata: {name: shop}
spec:
  namespace: shop
  soak: 1m
  checks:
  - {name: web, http: {url: "http://web-${TANDEM_COLOR}"}}
  - {name: errors, prometheus: {query: "sum(x)", condition: "< 1"}}
`))
	if err != nil {
		t.Fatal(err)
	}
	s := b.Spec
	colors := def("spec", "colors").([]any)
	checks := []struct {
		name      string
		got, want any
	}{
		{"spec.path", s.Path, def("spec", "path")},
		{"spec.colors", []any{s.Colors[0], s.Colors[1]}, colors},
		{"spec.healthTimeout", s.HealthTimeout, dur(def("spec", "healthTimeout"))},
		{"spec.scaleDownAfter", s.ScaleDownAfter, dur(def("spec", "scaleDownAfter"))},
		{"spec.onFailure", s.OnFailure, def("spec", "onFailure")},
		{"spec.adopt", s.Adopt, def("spec", "adopt")},
		{"spec.approval", s.Stage.Approval, def("spec", "approval")},
		{"spec.checks[].when", s.Checks[0].When, def("spec", "checks", "[]", "when")},
		{"spec.checks[].http.method", s.Checks[0].HTTP.Method, def("spec", "checks", "[]", "http", "method")},
		{"spec.checks[].http.status", float64(s.Checks[0].HTTP.Status[0]), def("spec", "checks", "[]", "http", "status").([]any)[0]},
		{"spec.checks[].http.count", float64(s.Checks[0].HTTP.Count), def("spec", "checks", "[]", "http", "count")},
		{"spec.checks[].http.interval", s.Checks[0].HTTP.Interval, dur(def("spec", "checks", "[]", "http", "interval"))},
		{"spec.checks[].http.requestTimeout", s.Checks[0].HTTP.RequestTimeout, dur(def("spec", "checks", "[]", "http", "requestTimeout"))},
		{"spec.checks[].prometheus.count", float64(s.Checks[1].Prometheus.Count), def("spec", "checks", "[]", "prometheus", "count")},
		{"spec.checks[].prometheus.interval", s.Checks[1].Prometheus.Interval, dur(def("spec", "checks", "[]", "prometheus", "interval"))},
		{"spec.checks[].prometheus.failureLimit", float64(s.Checks[1].Prometheus.FailureLimit), def("spec", "checks", "[]", "prometheus", "failureLimit")},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: ParseBundle's default is %v, the schema says %v", c.name, c.got, c.want)
		}
	}
	// spec.soak's default: a bundle without it has no soak.
	nosoak, err := ParseBundle("bundle.yaml", []byte("apiVersion: tandem.dev/v1alpha1\nkind: Bundle\nmetadata: {name: a}\nspec: {namespace: a}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := nosoak.Spec.Soak, dur(def("spec", "soak")); got != want {
		t.Errorf("spec.soak: ParseBundle's default is %v, the schema says %v", got, want)
	}
}
