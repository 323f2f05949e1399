package render

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/tandem-gitops/tandem/contract"
)

//go:generate go run ../internal/bundleschema -o ../docs/bundle.schema.json

// SchemaFile is where the repository keeps BundleSchema's output, relative
// to its root; TestBundleSchemaUpToDate compares the two.
const SchemaFile = "docs/bundle.schema.json"

// fieldDoc is what the Go types of bundle.yaml cannot say about one field:
// its description, default, allowed values and limits. Keys of
// bundleFieldDocs are field paths as in errors, with "[]" for any list
// element ("spec.checks[].http.url").
type fieldDoc struct {
	Desc     string
	Default  any
	Enum     []any
	Const    any
	Pattern  string
	Required bool
	// Extra is merged into the field's schema (limits, oneOf).
	Extra map[string]any
}

// Patterns of bundle.yaml values.
const (
	dnsLabelPattern = `^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// duration is a non-negative Go duration as time.ParseDuration
	// reads it ("90s", "1m30s", "0").
	duration        = `(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)`
	durationPattern = `^` + duration + `$`
)

var dnsLabel63 = map[string]any{"maxLength": 63}

// bundleFieldDocs documents every field ParseBundle reads. BundleSchema
// fails when a field of the types has no entry here, or an entry names no
// field, so the schema cannot fall behind the types.
var bundleFieldDocs = map[string]fieldDoc{
	"apiVersion":    {Desc: "API version of the file.", Const: contract.APIVersion, Required: true},
	"kind":          {Desc: "Kind of the file.", Const: KindBundle, Required: true},
	"metadata":      {Desc: "Names the bundle.", Required: true},
	"metadata.name": {Desc: "Name of the bundle: a DNS label, unique in the repository. It names the inventories, the field managers (tandem/<name>) and the tandem.dev/bundle label.", Pattern: dnsLabelPattern, Required: true, Extra: dnsLabel63},
	"spec":          {Desc: "How the bundle is rendered and released.", Required: true},
	"spec.namespace": {Desc: "Namespace of the colored objects, the stable Services and the inventories (a DNS label).",
		Pattern: dnsLabelPattern, Required: true, Extra: dnsLabel63},
	"spec.path": {Desc: "Kustomization directory holding every app of the bundle, relative to bundle.yaml and inside the bundle's directory; rendered once per color.",
		Default: "app"},
	"spec.shared": {Desc: "Optional kustomization directory, relative to bundle.yaml: applied uncolored before each candidate (Namespaces, CRDs, cluster-scoped objects). Must differ from spec.path. Default: none."},
	"spec.colors": {Desc: "The two colors, DNS labels that differ; the first is used for the first deploy.",
		Default: []any{"blue", "green"}, Extra: map[string]any{"minItems": 2, "maxItems": 2, "uniqueItems": true}},
	"spec.colors[]": {Desc: "A color (a DNS label).", Pattern: dnsLabelPattern, Extra: dnsLabel63},
	"spec.healthTimeout": {Desc: "The idle color must be healthy within this Go duration (positive); verify checks run after, each within its own timeout.",
		Default: "5m", Pattern: durationPattern},
	"spec.soak": {Desc: "After the flip, watch the new live color this long (a Go duration); a degradation flips traffic back. 0: no soak.",
		Default: "0s", Pattern: durationPattern},
	"spec.scaleDownAfter": {Desc: "After the soak, scale the previous color to zero after this Go duration; \"never\" keeps it warm.",
		Default: "10m", Pattern: `^(never|` + duration + `)$`},
	"spec.onFailure": {Desc: "What a failed release writes: revert (a revert commit restoring the bundle's inputs) or hold (release.yaml's lastFailure only).",
		Default: "revert", Enum: []any{"revert", "hold"}},
	"spec.suspend": {Desc: "Pause the bundle during an incident: no candidate is released and drift correction stops; traffic stays as it is. Removing the field resumes (the newest commit is then the candidate).",
		Default: false},
	"spec.adopt": {Desc: "Let the bundle take over existing objects that no bundle owns (no tandem.dev/bundle label). Off: such an object is refused before anything is applied.",
		Default: false},
	"spec.serviceAccountName": {Desc: "ServiceAccount in spec.namespace that the agent impersonates for every apply, wait, flip and prune of the bundle. Default: the agent's --default-service-account, else the agent's own identity.",
		Extra: map[string]any{"maxLength": 253}},
	"spec.checks": {Desc: "End-to-end checks: run against the idle color before the flip (when: verify) or against the new live color during the soak (when: soak). Names are unique."},
	"spec.checks[]": {Desc: "One check: set exactly one of job, http and prometheus.",
		Extra: map[string]any{"oneOf": []any{
			map[string]any{"required": []any{"job"}},
			map[string]any{"required": []any{"http"}},
			map[string]any{"required": []any{"prometheus"}},
		}}},
	"spec.checks[].name": {Desc: "Name of the check (a DNS label), used in Tandem-Check trailers, metrics and the tandem.dev/check annotation of a job check's Job.",
		Pattern: dnsLabelPattern, Required: true, Extra: dnsLabel63},
	"spec.checks[].when": {Desc: "verify: against the idle color once it is healthy, before any traffic moves; soak: against the new live color during spec.soak (needs spec.soak).",
		Default: "verify", Enum: []any{"verify", "soak"}},
	"spec.checks[].timeout": {Desc: "The check's window, a Go duration up to 1h: it must reach a verdict within it. Default: 2m for a verify check, spec.soak for a soak check (which it may not exceed).",
		Pattern: durationPattern},
	"spec.checks[].job":  {Desc: "A job check: the bundle's Job annotated tandem.dev/check: <name> (in spec.path) is created afresh in the color under test for each run; it passes when the Job completes. Write job: {}."},
	"spec.checks[].http": {Desc: "An http check: requests from the agent."},
	"spec.checks[].http.url": {Desc: "http(s) URL with a host; may use ${TANDEM_COLOR}, ${TANDEM_BUNDLE} and ${TANDEM_NAMESPACE}.",
		Required: true},
	"spec.checks[].http.method":   {Desc: "HTTP method: GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS (any case).", Default: "GET"},
	"spec.checks[].http.status":   {Desc: "Status codes that count as a success (100-599).", Default: []any{200}},
	"spec.checks[].http.status[]": {Desc: "A status code.", Extra: map[string]any{"minimum": 100, "maximum": 599}},
	"spec.checks[].http.body":     {Desc: "Optional Go regular expression the response body must match."},
	"spec.checks[].http.count": {Desc: "Number of requests (1-1000); (count-1) x interval must fit in the timeout.",
		Default: 3, Extra: map[string]any{"minimum": 1, "maximum": 1000}},
	"spec.checks[].http.successes": {Desc: "Requests that must succeed (1-count). Default: count.",
		Extra: map[string]any{"minimum": 1, "maximum": 1000}},
	"spec.checks[].http.interval": {Desc: "Time between requests, a Go duration from 100ms to 1h.",
		Default: "2s", Pattern: durationPattern},
	"spec.checks[].http.requestTimeout": {Desc: "Timeout of each request, a Go duration from 100ms to 1h.",
		Default: "5s", Pattern: durationPattern},
	"spec.checks[].prometheus": {Desc: "A prometheus check: a PromQL query against the agent's --prometheus-url."},
	"spec.checks[].prometheus.query": {Desc: "PromQL query returning one value; may use ${TANDEM_COLOR}, ${TANDEM_BUNDLE} and ${TANDEM_NAMESPACE}.",
		Required: true},
	"spec.checks[].prometheus.condition": {Desc: "What each measured value must meet: an operator (<, <=, >, >=, ==, !=) and a finite number, e.g. \"< 0.01\".",
		Required: true, Pattern: `^\s*(<=|>=|==|!=|<|>)\s*\S+\s*$`},
	"spec.checks[].prometheus.count": {Desc: "Number of measurements (1-1000); (count-1) x interval must fit in the timeout.",
		Default: 3, Extra: map[string]any{"minimum": 1, "maximum": 1000}},
	"spec.checks[].prometheus.interval": {Desc: "Time between measurements, a Go duration from 100ms to 1h.",
		Default: "10s", Pattern: durationPattern},
	"spec.checks[].prometheus.failureLimit": {Desc: "Measurements that may fail the condition before the check fails; less than count.",
		Default: 0, Extra: map[string]any{"minimum": 0, "maximum": 1000}},
	"spec.after":   {Desc: "Upstream bundles (same repository and branch): a change to an input this bundle shares with one of them is released here only once that upstream promoted it and its soak ended healthy. Unknown names and cycles are refused."},
	"spec.after[]": {Desc: "Name of an upstream bundle.", Pattern: dnsLabelPattern, Extra: dnsLabel63},
	"spec.approval": {Desc: "required: each release also waits for a person's commit with the trailer \"Tandem-Approve: <bundle> <commit>\"; none: no approval.",
		Default: "none", Enum: []any{"required", "none"}},
}

// BundleSchema returns the JSON schema (draft 2020-12) of bundle.yaml,
// generated by walking the types ParseBundle decodes strictly (so every
// object refuses unknown properties) and adding bundleFieldDocs.
func BundleSchema() ([]byte, error) {
	g := schemaGen{used: map[string]bool{}}
	root := g.walk(reflect.TypeOf(rawBundle{}), "")
	for k := range bundleFieldDocs {
		if !g.used[k] {
			g.errs = append(g.errs, fmt.Sprintf("%s: documented but not a field of bundle.yaml", k))
		}
	}
	if len(g.errs) > 0 {
		sort.Strings(g.errs)
		return nil, fmt.Errorf("bundle schema: %s", strings.Join(g.errs, "; "))
	}
	root["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	root["title"] = "tandem bundle.yaml (" + contract.APIVersion + ")"
	root["description"] = "A bundle of apps released together, blue/green. Generated from the Go types by go generate ./render; see docs/reference.md."
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(root); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

type schemaGen struct {
	used map[string]bool
	errs []string
}

// walk returns the schema of t at path p, with p's documentation.
func (g *schemaGen) walk(t reflect.Type, p string) map[string]any {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	s := map[string]any{}
	switch t.Kind() {
	case reflect.Struct:
		s["type"] = "object"
		s["additionalProperties"] = false
		props := map[string]any{}
		var required []string
		for i := 0; i < t.NumField(); i++ {
			name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
			if name == "" || name == "-" {
				g.errs = append(g.errs, fmt.Sprintf("%s: field %s has no json name", p, t.Field(i).Name))
				continue
			}
			fp := name
			if p != "" {
				fp = p + "." + name
			}
			props[name] = g.walk(t.Field(i).Type, fp)
			if bundleFieldDocs[fp].Required {
				required = append(required, name)
			}
		}
		if len(props) > 0 {
			s["properties"] = props
		}
		if len(required) > 0 {
			sort.Strings(required)
			s["required"] = required
		}
	case reflect.Slice:
		s["type"] = "array"
		s["items"] = g.walk(t.Elem(), p+"[]")
	case reflect.String:
		s["type"] = "string"
	case reflect.Bool:
		s["type"] = "boolean"
	case reflect.Int:
		s["type"] = "integer"
	default:
		g.errs = append(g.errs, fmt.Sprintf("%s: no schema for Go kind %s", p, t.Kind()))
	}
	if p == "" {
		return s
	}
	d, ok := bundleFieldDocs[p]
	if !ok {
		g.errs = append(g.errs, fmt.Sprintf("%s: a field of bundle.yaml without documentation in bundleFieldDocs", p))
		return s
	}
	g.used[p] = true
	s["description"] = d.Desc
	if d.Default != nil {
		s["default"] = d.Default
	}
	if d.Enum != nil {
		s["enum"] = d.Enum
	}
	if d.Const != nil {
		s["const"] = d.Const
	}
	if d.Pattern != "" {
		s["pattern"] = d.Pattern
	}
	for k, v := range d.Extra {
		s[k] = v
	}
	return s
}
