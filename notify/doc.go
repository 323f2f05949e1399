// Package notify tells people outside the cluster about releases: it posts
// one JSON document (or a Slack/Mattermost incoming-webhook body) per
// outcome to webhook URLs, and sets commit statuses on the source commit of
// each candidate in GitHub, GitLab or Gitea/Forgejo.
//
// Delivery never blocks a release: each destination has its own bounded
// queue and worker, a full queue drops the message, and a destination that
// fails is retried with capped backoff a bounded number of times. Every
// delivery, failure and drop is reported as a typed Result to a callback,
// so the caller can log and count it. The package does not log, does not
// read the environment, and never puts a token or secret in an error.
//
// Files: notify.go (Notifier: New, Start, Notify, SetStatus, the queues,
// workers and retries), webhook.go (the JSON and Slack bodies, and Sign, the
// HMAC of X-Tandem-Signature-256) and status.go (the commit-status requests
// of GitHub, GitLab and Gitea), and pulls.go (Pulls: the pull and merge
// requests of the same three forges, with the same options and tokens, for
// reverts proposed against a protected branch). It knows nothing of Git, the cluster or the
// release lifecycle: it delivers what it is given.
package notify
