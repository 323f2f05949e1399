package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// Forge is a local stand-in for the pull-request API of GitHub, GitLab or
// Gitea/Forgejo, backed by a real bare repository: a request's branches are
// the repository's, and a merge is a real merge commit on its base branch
// (made server side, as a forge does, past any pre-receive hook). It
// implements the few endpoints tandem uses (find, open, get, merge, close a
// request; comment) and checks every request: method, path, the provider's
// auth header and the JSON body's fields. Anything else is answered 404 and
// recorded in Errors.
type Forge struct {
	Kind  string // "github", "gitlab" or "gitea"
	Repo  string // owner/name
	Token string
	// URL is the API base URL to give the agent (--forge-url).
	URL string

	remote *Remote
	srv    *http.Server

	mu       sync.Mutex
	pulls    []*FakePull
	errs     []string
	requests []string
}

// FakePull is a request as the Forge keeps it.
type FakePull struct {
	Number                  int
	Head, Base, Title, Body string
	State                   string // open, closed, merged
	Comments                []string
	MergeCommit             string
}

// StartForge serves kind's API for remote (repository repo, token token) on
// a free 127.0.0.1 port until ctx ends.
func StartForge(ctx context.Context, kind string, remote *Remote, repo, token string) (*Forge, error) {
	f := &Forge{Kind: kind, Repo: repo, Token: token, remote: remote}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f.URL = "http://" + ln.Addr().String()
	f.srv = &http.Server{Handler: http.HandlerFunc(f.serve)}
	go func() { _ = f.srv.Serve(ln) }()
	go func() { <-ctx.Done(); _ = f.srv.Close() }()
	return f, nil
}

// Pulls lists the requests, oldest first.
func (f *Forge) Pulls() []FakePull {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]FakePull, len(f.pulls))
	for i, p := range f.pulls {
		out[i] = *p
		out[i].Comments = append([]string(nil), p.Comments...)
	}
	return out
}

// Errors lists the requests the Forge refused as malformed.
func (f *Forge) Errors() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.errs...)
}

// Requests lists every request as "METHOD path".
func (f *Forge) Requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.requests...)
}

// Merge merges request n as a person pressing the button would.
func (f *Forge) Merge(n int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.find(n)
	if p == nil || p.State != "open" {
		return fmt.Errorf("request %d: not open", n)
	}
	return f.merge(p)
}

// Link is the page of request n, as the provider spells it.
func (f *Forge) Link(n int) string {
	switch f.Kind {
	case "gitlab":
		return fmt.Sprintf("%s/%s/-/merge_requests/%d", f.URL, f.Repo, n)
	case "gitea":
		return fmt.Sprintf("%s/%s/pulls/%d", f.URL, f.Repo, n)
	}
	return fmt.Sprintf("%s/%s/pull/%d", f.URL, f.Repo, n)
}

func (f *Forge) find(n int) *FakePull {
	for _, p := range f.pulls {
		if p.Number == n {
			return p
		}
	}
	return nil
}

// merge makes the merge commit of p's head into its base in the bare
// repository. The caller holds mu.
func (f *Forge) merge(p *FakePull) error {
	base, err := f.remote.Git("rev-parse", "refs/heads/"+p.Base)
	if err != nil {
		return err
	}
	head, err := f.remote.Git("rev-parse", "refs/heads/"+p.Head)
	if err != nil {
		return err
	}
	base, head = strings.TrimSpace(base), strings.TrimSpace(head)
	tree, err := f.remote.Git("merge-tree", "--write-tree", base, head)
	if err != nil {
		return fmt.Errorf("request %d does not merge cleanly: %w", p.Number, err)
	}
	tree = strings.TrimSpace(strings.SplitN(tree, "\n", 2)[0])
	msg := fmt.Sprintf("Merge pull request #%d from %s\n\n%s", p.Number, p.Head, p.Title)
	commit, err := f.remote.Git("commit-tree", tree, "-p", base, "-p", head, "-m", msg)
	if err != nil {
		return err
	}
	commit = strings.TrimSpace(commit)
	if _, err := f.remote.Git("update-ref", "refs/heads/"+p.Base, commit, base); err != nil {
		return err
	}
	p.State, p.MergeCommit = "merged", commit
	return nil
}

var numRe = regexp.MustCompile(`^(\d+)$`)

// route is one endpoint: method, the path below the repository's requests
// (a number is "N"), the JSON fields its body must hold.
type route struct {
	method, sub string
	fields      []string
}

func (f *Forge) routes() (prefix, comments string, rs map[string]route) {
	owner, name, _ := strings.Cut(f.Repo, "/")
	switch f.Kind {
	case "gitlab":
		prefix = "/api/v4/projects/" + url.PathEscape(f.Repo) + "/merge_requests"
		return prefix, "", map[string]route{
			"find":    {http.MethodGet, "", nil},
			"open":    {http.MethodPost, "", []string{"source_branch", "target_branch", "title", "description"}},
			"get":     {http.MethodGet, "N", nil},
			"merge":   {http.MethodPut, "N/merge", nil},
			"close":   {http.MethodPut, "N", []string{"state_event"}},
			"comment": {http.MethodPost, "N/notes", []string{"body"}},
		}
	case "gitea":
		prefix = "/api/v1/repos/" + owner + "/" + name + "/pulls"
		return prefix, "/api/v1/repos/" + owner + "/" + name + "/issues", map[string]route{
			"find":    {http.MethodGet, "", nil},
			"open":    {http.MethodPost, "", []string{"head", "base", "title", "body"}},
			"get":     {http.MethodGet, "N", nil},
			"merge":   {http.MethodPost, "N/merge", []string{"Do"}},
			"close":   {http.MethodPatch, "N", []string{"state"}},
			"comment": {http.MethodPost, "N/comments", []string{"body"}},
		}
	}
	prefix = "/repos/" + owner + "/" + name + "/pulls"
	return prefix, "/repos/" + owner + "/" + name + "/issues", map[string]route{
		"find":    {http.MethodGet, "", nil},
		"open":    {http.MethodPost, "", []string{"head", "base", "title", "body"}},
		"get":     {http.MethodGet, "N", nil},
		"merge":   {http.MethodPut, "N/merge", []string{"merge_method"}},
		"close":   {http.MethodPatch, "N", []string{"state"}},
		"comment": {http.MethodPost, "N/comments", []string{"body"}},
	}
}

func (f *Forge) authorized(r *http.Request) bool {
	switch f.Kind {
	case "gitlab":
		return r.Header.Get("PRIVATE-TOKEN") == f.Token
	case "gitea":
		return r.Header.Get("Authorization") == "token "+f.Token
	}
	return r.Header.Get("Authorization") == "Bearer "+f.Token && r.Header.Get("Accept") == "application/vnd.github+json"
}

func (f *Forge) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	path := r.URL.EscapedPath()
	f.requests = append(f.requests, r.Method+" "+path)
	fail := func(code int, msg string) {
		f.errs = append(f.errs, r.Method+" "+path+": "+msg)
		writeJSON(w, code, map[string]string{"message": msg})
	}
	if !f.authorized(r) {
		fail(http.StatusUnauthorized, "bad credentials")
		return
	}
	prefix, comments, rs := f.routes()
	var sub string
	switch {
	case path == prefix || strings.HasPrefix(path, prefix+"/"):
		sub = strings.TrimPrefix(strings.TrimPrefix(path, prefix), "/")
	case comments != "" && strings.HasPrefix(path, comments+"/"):
		sub = strings.TrimPrefix(path, comments+"/")
	default:
		fail(http.StatusNotFound, "no such path")
		return
	}
	n := 0
	if num, rest, _ := strings.Cut(sub, "/"); numRe.MatchString(num) {
		n, _ = strconv.Atoi(num)
		sub = "N"
		if rest != "" {
			sub += "/" + rest
		}
	}
	var name string
	for k, rt := range rs {
		if rt.method == r.Method && rt.sub == sub {
			name = k
		}
	}
	if name == "" {
		fail(http.StatusNotFound, "no such endpoint")
		return
	}
	body := map[string]any{}
	if len(rs[name].fields) > 0 {
		if r.Header.Get("Content-Type") != "application/json" {
			fail(http.StatusUnsupportedMediaType, "want application/json")
			return
		}
		data, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(data, &body); err != nil {
			fail(http.StatusBadRequest, "body is not JSON")
			return
		}
		for _, k := range rs[name].fields {
			if s, ok := body[k].(string); !ok || s == "" {
				fail(http.StatusUnprocessableEntity, "missing field "+k)
				return
			}
		}
	}
	str := func(k string) string { s, _ := body[k].(string); return s }
	var p *FakePull
	if sub != "" {
		if p = f.find(n); p == nil {
			fail(http.StatusNotFound, "no such request")
			return
		}
	}
	switch name {
	case "find":
		var out []map[string]any
		for _, q := range f.pulls {
			if f.listed(q, r.URL.Query()) {
				out = append(out, f.wire(q))
			}
		}
		writeJSON(w, http.StatusOK, out)
	case "open":
		head, base, title, text := str("head"), str("base"), str("title"), str("body")
		if f.Kind == "gitlab" {
			head, base, text = str("source_branch"), str("target_branch"), str("description")
		}
		if _, err := f.remote.Git("rev-parse", "--verify", "refs/heads/"+head); err != nil {
			fail(http.StatusUnprocessableEntity, "head branch "+head+" does not exist")
			return
		}
		for _, q := range f.pulls {
			if q.Head == head && q.State == "open" {
				fail(http.StatusUnprocessableEntity, "a request from "+head+" is open already")
				return
			}
		}
		q := &FakePull{Number: len(f.pulls) + 1, Head: head, Base: base, Title: title, Body: text, State: "open"}
		f.pulls = append(f.pulls, q)
		writeJSON(w, http.StatusCreated, f.wire(q))
	case "get":
		writeJSON(w, http.StatusOK, f.wire(p))
	case "merge":
		if p.State != "open" {
			fail(http.StatusMethodNotAllowed, "request is not open")
			return
		}
		if err := f.merge(p); err != nil {
			fail(http.StatusMethodNotAllowed, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"merged": true, "sha": p.MergeCommit})
	case "close":
		if (f.Kind == "gitlab" && str("state_event") != "close") || (f.Kind != "gitlab" && str("state") != "closed") {
			fail(http.StatusUnprocessableEntity, "unexpected state change")
			return
		}
		if p.State == "open" {
			p.State = "closed"
		}
		writeJSON(w, http.StatusOK, f.wire(p))
	case "comment":
		p.Comments = append(p.Comments, str("body"))
		writeJSON(w, http.StatusCreated, map[string]any{"id": len(p.Comments)})
	}
}

// listed applies the list filters each provider offers.
func (f *Forge) listed(q *FakePull, v url.Values) bool {
	switch f.Kind {
	case "gitlab":
		return (v.Get("state") == "" || v.Get("state") == map[string]string{"open": "opened"}[q.State] || v.Get("state") == q.State) &&
			(v.Get("source_branch") == "" || v.Get("source_branch") == q.Head) &&
			(v.Get("target_branch") == "" || v.Get("target_branch") == q.Base)
	case "gitea":
		return v.Get("state") == "" || v.Get("state") == "all" || v.Get("state") == q.State || (v.Get("state") == "closed" && q.State == "merged")
	}
	owner, _, _ := strings.Cut(f.Repo, "/")
	return (v.Get("state") == "" || v.Get("state") == "all" || v.Get("state") == q.State || (v.Get("state") == "closed" && q.State == "merged")) &&
		(v.Get("head") == "" || v.Get("head") == owner+":"+q.Head) && (v.Get("base") == "" || v.Get("base") == q.Base)
}

// wire is q as the provider returns it.
func (f *Forge) wire(q *FakePull) map[string]any {
	if f.Kind == "gitlab" {
		state := map[string]string{"open": "opened"}[q.State]
		if state == "" {
			state = q.State
		}
		return map[string]any{"iid": q.Number, "web_url": f.Link(q.Number), "state": state, "source_branch": q.Head, "target_branch": q.Base}
	}
	state := q.State
	if state == "merged" {
		state = "closed"
	}
	return map[string]any{"number": q.Number, "html_url": f.Link(q.Number), "state": state, "merged": q.State == "merged",
		"head": map[string]any{"ref": q.Head}, "base": map[string]any{"ref": q.Base}}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
