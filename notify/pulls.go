package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tandem-gitops/tandem/internal/redact"
)

// Pull requests (GitHub, Gitea/Forgejo) and merge requests (GitLab): the
// agent proposes a revert this way when the tracked branch is protected.
// Pulls speaks the same three APIs as the commit statuses, with the same
// options, token handling and errors.

// Pull states, in tandem's words.
const (
	PullOpen   = "open"
	PullClosed = "closed"
	PullMerged = "merged"
)

// Pull is one pull or merge request.
type Pull struct {
	// Number is its number (GitHub, Gitea) or iid (GitLab).
	Number int
	// URL is its page, for people.
	URL   string
	State string // PullOpen, PullClosed or PullMerged
	// Head is the branch it merges.
	Head string
}

// Pulls opens, finds, merges, comments on and closes the requests of one
// repository. Create it with NewPulls; it is safe for concurrent use.
type Pulls struct {
	o StatusOptions
	c *http.Client
}

// pullTimeout bounds one API request.
const pullTimeout = 30 * time.Second

// NewPulls checks o (Provider, BaseURL, Repo, TokenFile; TargetURL is not
// used) and returns the client of its forge.
func NewPulls(o StatusOptions) (*Pulls, error) {
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("pull requests: %w", err)
	}
	return &Pulls{o: o, c: &http.Client{Timeout: pullTimeout, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse // never send the token elsewhere
	}}}, nil
}

// Provider is the forge: GitHub, GitLab or Gitea.
func (p *Pulls) Provider() string { return p.o.Provider }

// Retryable reports whether err (from a Pulls method) may pass by itself: a
// 5xx, 408 or 429 answer, or no answer at all. A 4xx answer (a token
// without the scope, a request the forge refuses) needs a person.
func Retryable(err error) bool { return retryable(err) }

// repoPath is the API path of the repository's requests.
func (p *Pulls) repoPath() string {
	switch p.o.Provider {
	case GitLab:
		return "/api/v4/projects/" + url.PathEscape(p.o.Repo) + "/merge_requests"
	case Gitea:
		owner, repo, _ := strings.Cut(p.o.Repo, "/")
		return "/api/v1/repos/" + url.PathEscape(owner) + "/" + url.PathEscape(repo) + "/pulls"
	}
	owner, repo, _ := strings.Cut(p.o.Repo, "/")
	return "/repos/" + url.PathEscape(owner) + "/" + url.PathEscape(repo) + "/pulls"
}

// issuePath is where comments on request n go.
func (p *Pulls) issuePath(n int) string {
	num := strconv.Itoa(n)
	switch p.o.Provider {
	case GitLab:
		return p.repoPath() + "/" + num + "/notes"
	case Gitea:
		owner, repo, _ := strings.Cut(p.o.Repo, "/")
		return "/api/v1/repos/" + url.PathEscape(owner) + "/" + url.PathEscape(repo) + "/issues/" + num + "/comments"
	}
	owner, repo, _ := strings.Cut(p.o.Repo, "/")
	return "/repos/" + url.PathEscape(owner) + "/" + url.PathEscape(repo) + "/issues/" + num + "/comments"
}

// wire is a request as any of the three forges returns it.
type wire struct {
	Number   int    `json:"number"`   // GitHub, Gitea
	IID      int    `json:"iid"`      // GitLab
	HTMLURL  string `json:"html_url"` // GitHub, Gitea
	WebURL   string `json:"web_url"`  // GitLab
	State    string `json:"state"`
	Merged   bool   `json:"merged"`
	MergedAt string `json:"merged_at"`
	Head     struct {
		Ref string `json:"ref"`
	} `json:"head"` // GitHub, Gitea
	SourceBranch string `json:"source_branch"` // GitLab
}

func (p *Pulls) pull(w wire) Pull {
	out := Pull{Number: w.Number, URL: w.HTMLURL, Head: w.Head.Ref}
	if p.o.Provider == GitLab {
		out.Number, out.URL, out.Head = w.IID, w.WebURL, w.SourceBranch
	}
	switch {
	case w.State == "merged" || w.Merged || w.MergedAt != "":
		out.State = PullMerged
	case w.State == "open" || w.State == "opened":
		out.State = PullOpen
	default:
		out.State = PullClosed
	}
	return out
}

// Find returns the open request that merges head into base; ok is false
// when there is none.
func (p *Pulls) Find(ctx context.Context, head, base string) (pr Pull, ok bool, err error) {
	q := url.Values{}
	switch p.o.Provider {
	case GitHub:
		owner, _, _ := strings.Cut(p.o.Repo, "/")
		q.Set("state", "open")
		q.Set("head", owner+":"+head)
		q.Set("base", base)
	case GitLab:
		q.Set("state", "opened")
		q.Set("source_branch", head)
		q.Set("target_branch", base)
	case Gitea:
		q.Set("state", "open")
		q.Set("limit", "50")
	}
	var ws []wire
	if err := p.call(ctx, http.MethodGet, p.repoPath()+"?"+q.Encode(), nil, &ws); err != nil {
		return Pull{}, false, fmt.Errorf("find the request of %s: %w", head, err)
	}
	for _, w := range ws {
		if pr := p.pull(w); pr.Head == head && pr.State == PullOpen {
			return pr, true, nil
		}
	}
	return Pull{}, false, nil
}

// Open opens a request to merge head into base.
func (p *Pulls) Open(ctx context.Context, head, base, title, body string) (Pull, error) {
	title, body = redact.Subject(title, 250), redact.Text(body)
	var in map[string]any
	switch p.o.Provider {
	case GitLab:
		in = map[string]any{"source_branch": head, "target_branch": base, "title": title, "description": body, "remove_source_branch": true}
	default:
		in = map[string]any{"head": head, "base": base, "title": title, "body": body}
	}
	var w wire
	if err := p.call(ctx, http.MethodPost, p.repoPath(), in, &w); err != nil {
		return Pull{}, fmt.Errorf("open a request from %s into %s: %w", head, base, err)
	}
	return p.pull(w), nil
}

// Get reads request n.
func (p *Pulls) Get(ctx context.Context, n int) (Pull, error) {
	var w wire
	if err := p.call(ctx, http.MethodGet, p.repoPath()+"/"+strconv.Itoa(n), nil, &w); err != nil {
		return Pull{}, fmt.Errorf("request %d: %w", n, err)
	}
	return p.pull(w), nil
}

// Merge merges request n with a merge commit (the forge's own rules apply:
// required reviews or checks may refuse it).
func (p *Pulls) Merge(ctx context.Context, n int) error {
	path, method := p.repoPath()+"/"+strconv.Itoa(n)+"/merge", http.MethodPut
	var in map[string]any
	switch p.o.Provider {
	case GitHub:
		in = map[string]any{"merge_method": "merge"}
	case Gitea:
		method, in = http.MethodPost, map[string]any{"Do": "merge"}
	case GitLab:
		in = map[string]any{"should_remove_source_branch": true}
	}
	if err := p.call(ctx, method, path, in, nil); err != nil {
		return fmt.Errorf("merge request %d: %w", n, err)
	}
	return nil
}

// Comment adds a comment to request n.
func (p *Pulls) Comment(ctx context.Context, n int, body string) error {
	if err := p.call(ctx, http.MethodPost, p.issuePath(n), map[string]any{"body": redact.Text(body)}, nil); err != nil {
		return fmt.Errorf("comment on request %d: %w", n, err)
	}
	return nil
}

// Close closes request n without merging it.
func (p *Pulls) Close(ctx context.Context, n int) error {
	path, method := p.repoPath()+"/"+strconv.Itoa(n), http.MethodPatch
	in := map[string]any{"state": "closed"}
	if p.o.Provider == GitLab {
		method, in = http.MethodPut, map[string]any{"state_event": "close"}
	}
	if err := p.call(ctx, method, path, in, nil); err != nil {
		return fmt.Errorf("close request %d: %w", n, err)
	}
	return nil
}

// NumberOf is the number of the request whose page is link (the last
// segment of .../pull/7, .../-/merge_requests/7 or .../pulls/7).
func NumberOf(link string) (int, error) {
	u, err := url.Parse(link)
	if err != nil {
		return 0, fmt.Errorf("request link %q: %w", link, err)
	}
	segs := strings.Split(strings.TrimSuffix(u.Path, "/"), "/")
	n, err := strconv.Atoi(segs[len(segs)-1])
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("request link %q: no request number at its end", link)
	}
	return n, nil
}

// call sends one API request (in as JSON when not nil) and decodes the
// answer into out (when not nil).
func (p *Pulls) call(ctx context.Context, method, path string, in, out any) error {
	token, err := readSecret(p.o.TokenFile)
	if err != nil {
		return err
	}
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return &terminalError{err}
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.o.BaseURL+path, body)
	if err != nil {
		return &terminalError{err}
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	p.o.authorize(req, string(token))
	resp, err := p.c.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode/100 != 2 {
		text := strings.ReplaceAll(strings.Join(strings.Fields(string(data)), " "), string(token), "[redacted]")
		return &HTTPError{StatusCode: resp.StatusCode, Body: truncate(redact.Text(text), 200), RetryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now())}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return &terminalError{fmt.Errorf("%s %s: the answer is not the JSON expected: %w", method, path, err)}
	}
	return nil
}
