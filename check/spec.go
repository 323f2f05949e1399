package check

import (
	"fmt"
	"math"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// When a check runs.
const (
	// WhenVerify: against the idle color once it is healthy, before the flip.
	WhenVerify = "verify"
	// WhenSoak: against the new live color during the soak.
	WhenSoak = "soak"
)

// Kinds of check.
const (
	KindJob        = "job"
	KindHTTP       = "http"
	KindPrometheus = "prometheus"
)

// AnnotationCheck marks a Job of the bundle as the Job of the check it names.
const AnnotationCheck = "tandem.dev/check"

// Limits of a check's numbers: a check must be able to finish.
const (
	MaxCount    = 1000
	MinInterval = 100 * time.Millisecond
	MaxTimeout  = time.Hour
	// DefaultTimeout is a verify check's window when it names none.
	DefaultTimeout = 2 * time.Minute
)

// Spec is one validated check of spec.checks. Exactly one of Job, HTTP and
// Prometheus is set.
type Spec struct {
	Name string
	When string // WhenVerify or WhenSoak
	// Timeout is the check's window: it must reach a verdict within it.
	Timeout    time.Duration
	Job        *Job
	HTTP       *HTTP
	Prometheus *Prometheus
}

// Kind is the check's kind: job, http or prometheus.
func (s Spec) Kind() string {
	switch {
	case s.Job != nil:
		return KindJob
	case s.HTTP != nil:
		return KindHTTP
	}
	return KindPrometheus
}

// Job runs the bundle's Job annotated tandem.dev/check: <check name>,
// created afresh for each run in the color under test.
type Job struct{}

// HTTP sends Count requests, Interval apart, and needs Successes of them to
// answer with one of Status (and match Body when set).
type HTTP struct {
	URL, Method    string
	Status         []int
	Body           *regexp.Regexp
	Count          int
	Successes      int
	Interval       time.Duration
	RequestTimeout time.Duration
}

// Prometheus runs Query Count times, Interval apart; a measurement fails
// when a value does not meet Condition, and the check fails when more than
// FailureLimit measurements fail.
type Prometheus struct {
	Query        string
	Condition    Condition
	Count        int
	Interval     time.Duration
	FailureLimit int
}

// Condition is a comparison of a measured value with a threshold.
type Condition struct {
	Op        string // <, <=, >, >=, ==, !=
	Threshold float64
}

func (c Condition) String() string {
	return c.Op + " " + strconv.FormatFloat(c.Threshold, 'g', -1, 64)
}

// Met reports whether v meets the condition.
func (c Condition) Met(v float64) bool {
	switch c.Op {
	case "<":
		return v < c.Threshold
	case "<=":
		return v <= c.Threshold
	case ">":
		return v > c.Threshold
	case ">=":
		return v >= c.Threshold
	case "==":
		return v == c.Threshold
	}
	return v != c.Threshold
}

var conditionRE = regexp.MustCompile(`^\s*(<=|>=|==|!=|<|>)\s*(\S+)\s*$`)

// ParseCondition parses "< 0.01", ">= 0.99" and the like.
func ParseCondition(s string) (Condition, error) {
	m := conditionRE.FindStringSubmatch(s)
	if m == nil {
		return Condition{}, fmt.Errorf("%q is not a condition such as \"< 0.01\" or \">= 0.99\"", s)
	}
	v, err := strconv.ParseFloat(m[2], 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return Condition{}, fmt.Errorf("%q: threshold %q is not a finite number", s, m[2])
	}
	return Condition{Op: m[1], Threshold: v}, nil
}

// Raw is one entry of spec.checks as written in bundle.yaml.
type Raw struct {
	Name       string         `json:"name"`
	When       string         `json:"when"`
	Timeout    string         `json:"timeout"`
	Job        *struct{}      `json:"job"`
	HTTP       *RawHTTP       `json:"http"`
	Prometheus *RawPrometheus `json:"prometheus"`
}

// RawHTTP is an http check as written.
type RawHTTP struct {
	URL            string `json:"url"`
	Method         string `json:"method"`
	Status         []int  `json:"status"`
	Body           string `json:"body"`
	Count          *int   `json:"count"`
	Successes      *int   `json:"successes"`
	Interval       string `json:"interval"`
	RequestTimeout string `json:"requestTimeout"`
}

// RawPrometheus is a prometheus check as written.
type RawPrometheus struct {
	Query        string `json:"query"`
	Condition    string `json:"condition"`
	Count        *int   `json:"count"`
	Interval     string `json:"interval"`
	FailureLimit *int   `json:"failureLimit"`
}

// FieldError is a bad field of spec.checks; Field is its full path
// ("spec.checks[1].http.url").
type FieldError struct {
	Field, Msg string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

var nameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// Parse validates spec.checks; soak is spec.soak (soak checks run within it).
func Parse(raw []Raw, soak time.Duration) ([]Spec, error) {
	var out []Spec
	seen := map[string]bool{}
	for i, r := range raw {
		at := fmt.Sprintf("spec.checks[%d]", i)
		bad := func(field, format string, a ...any) error {
			return &FieldError{Field: at + field, Msg: fmt.Sprintf(format, a...)}
		}
		if !nameRE.MatchString(r.Name) || len(r.Name) > 63 {
			return nil, bad(".name", "%q is not a DNS label", r.Name)
		}
		if seen[r.Name] {
			return nil, bad(".name", "%q is used by an earlier check", r.Name)
		}
		seen[r.Name] = true
		s, err := parseOne(r, soak, bad)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

type badFunc func(field, format string, a ...any) error

func parseOne(r Raw, soak time.Duration, bad badFunc) (Spec, error) {
	s := Spec{Name: r.Name, When: r.When}
	switch r.When {
	case "":
		s.When = WhenVerify
	case WhenVerify, WhenSoak:
	default:
		return s, bad(".when", "must be %s or %s, not %q", WhenVerify, WhenSoak, r.When)
	}
	if s.When == WhenSoak && soak <= 0 {
		return s, bad(".when", "a soak check needs spec.soak")
	}
	s.Timeout = DefaultTimeout
	if s.When == WhenSoak {
		s.Timeout = soak
	}
	if r.Timeout != "" {
		d, err := time.ParseDuration(r.Timeout)
		if err != nil || d <= 0 || d > MaxTimeout {
			return s, bad(".timeout", "%q is not a duration between 0 and %s", r.Timeout, MaxTimeout)
		}
		if s.When == WhenSoak && d > soak {
			return s, bad(".timeout", "%s is longer than spec.soak (%s): a soak check must finish within the soak", d, soak)
		}
		s.Timeout = d
	}
	kinds := 0
	for _, set := range []bool{r.Job != nil, r.HTTP != nil, r.Prometheus != nil} {
		if set {
			kinds++
		}
	}
	if kinds != 1 {
		return s, bad("", "set exactly one of job, http and prometheus (found %d)", kinds)
	}
	var err error
	switch {
	case r.Job != nil:
		s.Job = &Job{}
	case r.HTTP != nil:
		s.HTTP, err = parseHTTP(r.HTTP, s.Timeout, bad)
	default:
		s.Prometheus, err = parsePrometheus(r.Prometheus, s.Timeout, bad)
	}
	return s, err
}

// Defaults of an http check.
const (
	defaultHTTPCount      = 3
	defaultHTTPInterval   = 2 * time.Second
	defaultRequestTimeout = 5 * time.Second
)

func parseHTTP(r *RawHTTP, window time.Duration, bad badFunc) (*HTTP, error) {
	h := &HTTP{URL: r.URL, Method: strings.ToUpper(r.Method), Status: r.Status}
	if err := validURLTemplate(r.URL); err != nil {
		return nil, bad(".http.url", "%v", err)
	}
	if h.Method == "" {
		h.Method = "GET"
	}
	if !slices.Contains([]string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}, h.Method) {
		return nil, bad(".http.method", "%q is not an HTTP method", r.Method)
	}
	if len(h.Status) == 0 {
		h.Status = []int{200}
	}
	for _, c := range h.Status {
		if c < 100 || c > 599 {
			return nil, bad(".http.status", "%d is not an HTTP status code", c)
		}
	}
	if r.Body != "" {
		re, err := regexp.Compile(r.Body)
		if err != nil {
			return nil, bad(".http.body", "not a regular expression: %v", err)
		}
		h.Body = re
	}
	var err error
	if h.Count, err = count(r.Count, defaultHTTPCount, 1, ".http.count", bad); err != nil {
		return nil, err
	}
	if h.Successes, err = count(r.Successes, h.Count, 1, ".http.successes", bad); err != nil {
		return nil, err
	}
	if h.Successes > h.Count {
		return nil, bad(".http.successes", "%d is more than count (%d)", h.Successes, h.Count)
	}
	if h.Interval, err = interval(r.Interval, defaultHTTPInterval, ".http.interval", bad); err != nil {
		return nil, err
	}
	if h.RequestTimeout, err = interval(r.RequestTimeout, defaultRequestTimeout, ".http.requestTimeout", bad); err != nil {
		return nil, err
	}
	return h, fits(h.Count, h.Interval, window, ".http", bad)
}

// Defaults of a prometheus check.
const (
	defaultPromCount    = 3
	defaultPromInterval = 10 * time.Second
)

func parsePrometheus(r *RawPrometheus, window time.Duration, bad badFunc) (*Prometheus, error) {
	p := &Prometheus{Query: r.Query}
	if err := validQueryTemplate(r.Query); err != nil {
		return nil, bad(".prometheus.query", "%v", err)
	}
	c, err := ParseCondition(r.Condition)
	if err != nil {
		return nil, bad(".prometheus.condition", "%v", err)
	}
	p.Condition = c
	if p.Count, err = count(r.Count, defaultPromCount, 1, ".prometheus.count", bad); err != nil {
		return nil, err
	}
	if p.FailureLimit, err = count(r.FailureLimit, 0, 0, ".prometheus.failureLimit", bad); err != nil {
		return nil, err
	}
	if p.FailureLimit >= p.Count {
		return nil, bad(".prometheus.failureLimit", "%d would let every measurement fail (count is %d)", p.FailureLimit, p.Count)
	}
	if p.Interval, err = interval(r.Interval, defaultPromInterval, ".prometheus.interval", bad); err != nil {
		return nil, err
	}
	return p, fits(p.Count, p.Interval, window, ".prometheus", bad)
}

// count reads an optional count between lowest and MaxCount.
func count(v *int, def, lowest int, field string, bad badFunc) (int, error) {
	if v == nil {
		return def, nil
	}
	if *v < lowest || *v > MaxCount {
		return 0, bad(field, "%d is not between %d and %d", *v, lowest, MaxCount)
	}
	return *v, nil
}

// interval reads an optional duration between MinInterval and MaxTimeout.
func interval(s string, def time.Duration, field string, bad badFunc) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < MinInterval || d > MaxTimeout {
		return 0, bad(field, "%q is not a duration between %s and %s", s, MinInterval, MaxTimeout)
	}
	return d, nil
}

// fits refuses a check whose measurements cannot all be taken in its window.
func fits(n int, every, window time.Duration, field string, bad badFunc) error {
	if need := time.Duration(n-1) * every; need >= window {
		return bad(field, "%d measurements %s apart take %s, longer than the check's timeout (%s)", n, every, need, window)
	}
	return nil
}

// Variables a template may use.
var variables = []string{"TANDEM_COLOR", "TANDEM_BUNDLE", "TANDEM_NAMESPACE"}

var varRE = regexp.MustCompile(`\$\{([^}]*)\}`)

// Vars are the values of a template's variables.
type Vars struct{ Color, Bundle, Namespace string }

// Expand substitutes the variables in t.
func (v Vars) Expand(t string) string {
	return strings.NewReplacer("${TANDEM_COLOR}", v.Color, "${TANDEM_BUNDLE}", v.Bundle, "${TANDEM_NAMESPACE}", v.Namespace).Replace(t)
}

// validTemplate refuses unknown variables and a "$" that starts none.
func validTemplate(t string) error {
	for _, m := range varRE.FindAllStringSubmatch(t, -1) {
		if !slices.Contains(variables, m[1]) {
			return fmt.Errorf("unknown variable ${%s} (known: ${%s})", m[1], strings.Join(variables, "}, ${"))
		}
	}
	if strings.Contains(varRE.ReplaceAllString(t, ""), "${") {
		return fmt.Errorf("%q has an unterminated ${", t)
	}
	return nil
}

func validURLTemplate(t string) error {
	if t == "" {
		return fmt.Errorf("required")
	}
	if err := validTemplate(t); err != nil {
		return err
	}
	u, err := url.Parse(Vars{Color: "blue", Bundle: "b", Namespace: "ns"}.Expand(t))
	if err != nil {
		return fmt.Errorf("not a URL: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL with a host", t)
	}
	return nil
}

// validQueryTemplate checks what can be checked without Prometheus: the
// variables and that brackets, braces, parentheses and quotes balance.
// Prometheus parses the query itself; a query it rejects fails the check.
func validQueryTemplate(t string) error {
	if strings.TrimSpace(t) == "" {
		return fmt.Errorf("required")
	}
	if err := validTemplate(t); err != nil {
		return err
	}
	return balanced(varRE.ReplaceAllString(t, "x"))
}

// balanced checks PromQL's brackets and quotes.
func balanced(q string) error {
	var stack []rune
	pairs := map[rune]rune{')': '(', ']': '[', '}': '{'}
	var quote rune
	for i, r := range q {
		switch {
		case quote != 0:
			if r == quote && (i == 0 || q[i-1] != '\\') {
				quote = 0
			}
		case r == '"' || r == '\'' || r == '`':
			quote = r
		case r == '(' || r == '[' || r == '{':
			stack = append(stack, r)
		case pairs[r] != 0:
			if len(stack) == 0 || stack[len(stack)-1] != pairs[r] {
				return fmt.Errorf("unbalanced %q at offset %d", r, i)
			}
			stack = stack[:len(stack)-1]
		}
	}
	if quote != 0 {
		return fmt.Errorf("unterminated %c quote", quote)
	}
	if len(stack) > 0 {
		return fmt.Errorf("unclosed %q", stack[len(stack)-1])
	}
	return nil
}
