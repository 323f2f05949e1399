package check

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

func parseYAML(t *testing.T, doc string, soak time.Duration) ([]Spec, error) {
	t.Helper()
	var raw []Raw
	j, err := yaml.YAMLToJSON([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(j, &raw); err != nil {
		t.Fatal(err)
	}
	return Parse(raw, soak)
}

func TestParseDefaults(t *testing.T) {
	specs, err := parseYAML(t, `
- name: smoke
  job: {}
- name: api
  http: {url: "http://client-${TANDEM_COLOR}.${TANDEM_NAMESPACE}.svc/healthz"}
- name: errors
  when: soak
  prometheus: {query: 'sum(rate(errors{color="${TANDEM_COLOR}"}[1m]))', condition: "< 0.01", interval: 5s}
`, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 3 || specs[0].Kind() != KindJob || specs[0].When != WhenVerify || specs[0].Timeout != DefaultTimeout {
		t.Fatalf("job check: %+v", specs[0])
	}
	h := specs[1].HTTP
	if h.Method != "GET" || len(h.Status) != 1 || h.Status[0] != 200 || h.Count != 3 || h.Successes != 3 {
		t.Errorf("http defaults: %+v", h)
	}
	p := specs[2]
	if p.When != WhenSoak || p.Timeout != time.Minute || p.Prometheus.Condition.String() != "< 0.01" || p.Prometheus.Count != 3 {
		t.Errorf("soak check: %+v %+v", p, p.Prometheus)
	}
	if got := (Vars{Color: "green", Bundle: "shop", Namespace: "prod"}).Expand(h.URL); got != "http://client-green.prod.svc/healthz" {
		t.Errorf("expanded URL %q", got)
	}
}

// Hostile or mistaken spec.checks are refused naming the field.
func TestParseRefuses(t *testing.T) {
	for _, tc := range []struct{ doc, field, msg string }{
		{`[{name: a}]`, "spec.checks[0]", "exactly one of job, http and prometheus"},
		{`[{name: a, job: {}, http: {url: "http://x"}}]`, "spec.checks[0]", "exactly one"},
		{`[{name: A_b, job: {}}]`, "spec.checks[0].name", "DNS label"},
		{`[{name: a, job: {}}, {name: a, job: {}}]`, "spec.checks[1].name", "earlier check"},
		{`[{name: a, when: later, job: {}}]`, "spec.checks[0].when", "verify or soak"},
		{`[{name: a, when: soak, job: {}}]`, "spec.checks[0].when", "needs spec.soak"},
		{`[{name: a, timeout: 3h, job: {}}]`, "spec.checks[0].timeout", "between"},
		{`[{name: a, http: {url: "http://x/${COLOR}"}}]`, "spec.checks[0].http.url", "unknown variable ${COLOR}"},
		{`[{name: a, http: {url: "http://x/${TANDEM_COLOR"}}]`, "spec.checks[0].http.url", "unterminated"},
		{`[{name: a, http: {url: "file:///etc/passwd"}}]`, "spec.checks[0].http.url", "http(s) URL"},
		{`[{name: a, http: {url: "http://x", method: "BREW"}}]`, "spec.checks[0].http.method", "not an HTTP method"},
		{`[{name: a, http: {url: "http://x", status: [99]}}]`, "spec.checks[0].http.status", "not an HTTP status"},
		{`[{name: a, http: {url: "http://x", body: "("}}]`, "spec.checks[0].http.body", "regular expression"},
		{`[{name: a, http: {url: "http://x", count: 1000000}}]`, "spec.checks[0].http.count", "between 1 and 1000"},
		{`[{name: a, http: {url: "http://x", count: 2, successes: 3}}]`, "spec.checks[0].http.successes", "more than count"},
		{`[{name: a, http: {url: "http://x", interval: 1ms}}]`, "spec.checks[0].http.interval", "between 100ms"},
		{`[{name: a, timeout: 10s, http: {url: "http://x", count: 100, interval: 1s}}]`, "spec.checks[0].http", "longer than the check's timeout"},
		{`[{name: a, prometheus: {query: "sum(rate(x[1m])", condition: "< 1"}}]`, "spec.checks[0].prometheus.query", "unclosed"},
		{`[{name: a, prometheus: {query: "x", condition: "about 1"}}]`, "spec.checks[0].prometheus.condition", "not a condition"},
		{`[{name: a, prometheus: {query: "x", condition: "< NaN"}}]`, "spec.checks[0].prometheus.condition", "finite"},
		{`[{name: a, prometheus: {query: "x", condition: "< 1", count: 3, failureLimit: 3}}]`, "spec.checks[0].prometheus.failureLimit", "every measurement"},
		{`[{name: a, prometheus: {query: "", condition: "< 1"}}]`, "spec.checks[0].prometheus.query", "required"},
	} {
		_, err := parseYAML(t, tc.doc, 0)
		fe, ok := err.(*FieldError)
		if !ok || fe.Field != tc.field || !strings.Contains(fe.Msg, tc.msg) {
			t.Errorf("%s: got %v, want field %s with %q", tc.doc, err, tc.field, tc.msg)
		}
	}
}

func TestCondition(t *testing.T) {
	for _, tc := range []struct {
		cond string
		v    float64
		met  bool
	}{
		{"< 0.01", 0.001, true}, {"< 0.01", 0.01, false}, {"<=0.01", 0.01, true},
		{">= 0.99", 0.995, true}, {"> 5", 5, false}, {"== 1", 1, true}, {"!= 0", 0, false},
	} {
		c, err := ParseCondition(tc.cond)
		if err != nil {
			t.Fatal(err)
		}
		if c.Met(tc.v) != tc.met {
			t.Errorf("%s met by %v: %v, want %v", tc.cond, tc.v, !tc.met, tc.met)
		}
	}
}
