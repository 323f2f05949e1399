package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/tandem-gitops/tandem/internal/redact"
)

// Commit status providers (--commit-status).
const (
	GitHub = "github"
	GitLab = "gitlab"
	Gitea  = "gitea"
)

// Description limits of the providers: GitHub documents and enforces 140
// characters; Gitea and Forgejo follow GitHub's API; GitLab stores 255.
const (
	githubDescriptionMax = 140
	gitlabDescriptionMax = 255
)

// State is a commit status state, in tandem's words; each provider gets its own.
type State string

// The states tandem posts.
const (
	// StatePending: the candidate is being applied and verified.
	StatePending State = "pending"
	// StateSuccess: the candidate was promoted (or is what is live already).
	StateSuccess State = "success"
	// StateFailure: the candidate failed verification and was reverted or held.
	StateFailure State = "failure"
	// StateCanceled: a newer commit replaced the candidate before it was verified.
	StateCanceled State = "canceled"
)

// Status is one commit status for the source commit of a candidate.
type Status struct {
	// Commit is the full hash of the source commit.
	Commit string
	// Bundle names the status: its context (GitHub, Gitea) or name (GitLab)
	// is "tandem/<bundle>", so every bundle a commit changes gets its own mark.
	Bundle      string
	State       State
	Description string
}

// StatusOptions chooses the provider of commit statuses.
type StatusOptions struct {
	// Provider is GitHub, GitLab or Gitea (Forgejo too).
	Provider string
	// BaseURL is the API root: default https://api.github.com for GitHub
	// (https://ghe.example.com/api/v3 for Enterprise), https://gitlab.com
	// for GitLab; required for Gitea (https://gitea.example.com).
	BaseURL string
	// Repo is "owner/repo" (GitHub, Gitea) or the project id or path
	// "group/project" (GitLab).
	Repo string
	// TokenFile holds the API token; it is read for every request.
	TokenFile string
	// TargetURL, when set, is the status's link.
	TargetURL string
}

var ownerRepo = regexp.MustCompile(`^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$`)

func (o *StatusOptions) validate() error {
	switch o.Provider {
	case GitHub:
		if o.BaseURL == "" {
			o.BaseURL = "https://api.github.com"
		}
	case GitLab:
		if o.BaseURL == "" {
			o.BaseURL = "https://gitlab.com"
		}
	case Gitea:
		if o.BaseURL == "" {
			return fmt.Errorf("--commit-status-url is required for gitea")
		}
	default:
		return fmt.Errorf("provider %q: want github, gitlab or gitea", o.Provider)
	}
	if u, err := url.Parse(o.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("base URL %s: want an http:// or https:// URL", redactURL(o.BaseURL))
	}
	o.BaseURL = strings.TrimSuffix(o.BaseURL, "/")
	switch {
	case o.Repo == "":
		return fmt.Errorf("repository is required (owner/repo, or a GitLab project id)")
	case o.Provider != GitLab && !ownerRepo.MatchString(o.Repo):
		return fmt.Errorf("repository %q: want owner/repo", o.Repo)
	case strings.Contains(o.Repo, ".."):
		return fmt.Errorf("repository %q: want owner/repo", o.Repo)
	}
	if o.TokenFile == "" {
		return fmt.Errorf("a token file is required")
	}
	_, err := readSecret(o.TokenFile)
	return err
}

// Request builds the provider's request for s with token, following each
// provider's documented API:
//
//   - GitHub: POST {base}/repos/{owner}/{repo}/statuses/{sha}, Bearer
//     token, {"state","target_url","description","context"}, state pending,
//     success, failure or error.
//   - Gitea/Forgejo: the same body at {base}/api/v1/repos/{owner}/{repo}/statuses/{sha}.
//   - GitLab: POST {base}/api/v4/projects/{id}/statuses/{sha}, header
//     PRIVATE-TOKEN, {"state","name","description","target_url"}, state
//     pending, success, failed or canceled.
func (o *StatusOptions) Request(ctx context.Context, s Status, token string) (*http.Request, error) {
	name := "tandem/" + s.Bundle
	var endpoint string
	var body map[string]string
	switch o.Provider {
	case GitHub, Gitea:
		prefix := ""
		if o.Provider == Gitea {
			prefix = "/api/v1"
		}
		owner, repo, _ := strings.Cut(o.Repo, "/")
		endpoint = fmt.Sprintf("%s%s/repos/%s/%s/statuses/%s", o.BaseURL, prefix, url.PathEscape(owner), url.PathEscape(repo), url.PathEscape(s.Commit))
		state := string(s.State)
		if s.State == StateCanceled {
			state = "error" // GitHub has no canceled state
		}
		body = map[string]string{"state": state, "context": name, "description": truncate(redact.Subject(s.Description, 1024), githubDescriptionMax)}
	case GitLab:
		// A path id is one URL-encoded segment: group%2Fproject.
		endpoint = fmt.Sprintf("%s/api/v4/projects/%s/statuses/%s", o.BaseURL, url.PathEscape(o.Repo), url.PathEscape(s.Commit))
		state := string(s.State)
		if s.State == StateFailure {
			state = "failed"
		}
		body = map[string]string{"state": state, "name": name, "description": truncate(redact.Subject(s.Description, 1024), gitlabDescriptionMax)}
	}
	if o.TargetURL != "" {
		body["target_url"] = o.TargetURL
	}
	data, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	o.authorize(req, token)
	return req, nil
}

// authorize sets the headers each provider wants: its media type and
// version, and the token in its own header.
func (o *StatusOptions) authorize(req *http.Request, token string) {
	req.Header.Set("User-Agent", "tandem-agent")
	switch o.Provider {
	case GitHub:
		req.Header.Set("Accept", "application/vnd.github+json")
		req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
		req.Header.Set("Authorization", "Bearer "+token)
	case Gitea:
		req.Header.Set("Accept", "application/json")
		req.Header.Set("Authorization", "token "+token)
	case GitLab:
		req.Header.Set("PRIVATE-TOKEN", token)
	}
}

func (o *StatusOptions) send(ctx context.Context, c *http.Client, s Status) error {
	token, err := readSecret(o.TokenFile)
	if err != nil {
		return err // retryable: the file may be in the middle of a rotation
	}
	req, err := o.Request(ctx, s, string(token))
	if err != nil {
		return &terminalError{fmt.Errorf("build request: %w", err)}
	}
	return do(c, req, string(token))
}
