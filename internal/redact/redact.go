// Package redact removes credentials from text that comes from outside
// (error messages of Prometheus, forges, Git servers, check targets) and
// escapes it for the place it goes: a Git commit message, a Slack or
// Mattermost message, a Kubernetes Event. Text that has been through it
// may be written where it stays (Git history) or is shown to many (chat).
//
// It owns no I/O and knows nothing of the agent: strings in, strings out.
package redact

import (
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Redacted replaces a credential.
const Redacted = "REDACTED"

var (
	// userinfo is the password of a URL's userinfo: scheme://user:password@host.
	userinfo = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.-]*://[^/?#\s:@"'<>]*:)[^/?#\s@"'<>]*@`)
	// userOnly is a URL's userinfo without a password, often a token
	// (https://<token>@github.com).
	userOnly = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#\s:@"'<>]+@`)
	// param is a query parameter or key=value pair whose name says it
	// holds a credential: token, access_token, key, password, secret, sig,
	// X-Amz-Signature, X-Goog-Credential and their kin.
	param = regexp.MustCompile(`(?i)((?:^|[?&;,\s"'(])(?:[a-z0-9_.-]*(?:token|secret|passw(?:or)?d|signature|credential|api[_-]?key|access[_-]?key|private[_-]?key|session)[a-z0-9_.-]*|key|sig|sign|pass|pwd|auth|authorization|code)=)[^&;\s"'<>#)]+`)
	// bearer is an Authorization header's credentials.
	bearer = regexp.MustCompile(`(?i)\b((?:bearer|basic|token)\s+)[a-z0-9._~+/=-]{8,}`)
)

// Text redacts the credentials of every URL and key=value pair in s: a
// URL's userinfo, the values of query parameters named like credentials,
// and bearer or basic credentials. The rest of s is left as it was.
func Text(s string) string {
	s = userinfo.ReplaceAllString(s, "${1}"+Redacted+"@")
	s = userOnly.ReplaceAllStringFunc(s, func(m string) string {
		scheme, _, _ := strings.Cut(m, "://")
		return scheme + "://" + Redacted + "@"
	})
	s = param.ReplaceAllString(s, "${1}"+Redacted)
	s = bearer.ReplaceAllString(s, "${1}"+Redacted)
	return s
}

// Truncate cuts s to at most n bytes on a rune boundary, ending with "…"
// when it cut.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const ell = "…"
	cut := max(n-len(ell), 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ell
}

// stripControl drops control and format characters (escapes, NUL,
// bidirectional overrides) but newlines and, when keepTabs, tabs.
func stripControl(s string, keepNewlines bool) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\n' && keepNewlines, r == '\t':
			return r
		case r == '\n', r == '\r':
			return ' '
		case r == utf8.RuneError, unicode.IsControl(r), unicode.Is(unicode.Cf, r):
			return -1
		}
		return r
	}, s)
}

// MaxCommitText bounds outside text in one commit message.
const MaxCommitText = 4096

// Commit makes outside text safe for a Git commit message body: redacted,
// control characters dropped (newlines kept, \r\n made \n), blank lines
// collapsed so it stays one paragraph and cannot pose as trailers, and at
// most MaxCommitText bytes.
func Commit(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = stripControl(Text(s), true)
	lines := strings.Split(s, "\n")
	out := lines[:0]
	for _, l := range lines {
		if strings.TrimSpace(l) != "" {
			out = append(out, strings.TrimRight(l, " \t"))
		}
	}
	return Truncate(strings.Join(out, "\n"), MaxCommitText)
}

// Subject makes outside text safe for one line (a commit subject, a log
// field): redacted, on one line, at most n bytes.
func Subject(s string, n int) string {
	return Truncate(strings.TrimSpace(stripControl(Text(s), false)), n)
}

// Mrkdwn escapes text for Slack's and Mattermost's mrkdwn: &, < and > as
// entities, so that "<!channel>", "<@U123>" and "<http://x|click>" are
// shown, not acted on. It redacts as Text does and drops control
// characters but newlines.
func Mrkdwn(s string) string {
	s = stripControl(Text(s), true)
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// MaxEventMessage bounds a Kubernetes Event's message (the API server
// takes 1 KiB in a note of events.k8s.io/v1).
const MaxEventMessage = 1024

// Event makes outside text safe for a Kubernetes Event message: redacted,
// one line, at most MaxEventMessage bytes.
func Event(s string) string {
	return Subject(s, MaxEventMessage)
}

// JSON prepares outside text for a JSON string (Teams, generic webhooks):
// redacted and control characters but newlines dropped; encoding/json
// escapes the rest, HTML characters included.
func JSON(s string) string {
	return stripControl(Text(s), true)
}
