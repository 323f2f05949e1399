package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/tandem-gitops/tandem/internal/redact"
)

// Results of an Outcome.
const (
	ResultPromoted    = "promoted"
	ResultReverted    = "reverted"
	ResultHeld        = "held"
	ResultFlippedBack = "flipped-back"
)

// Formats of a Webhook.
const (
	FormatJSON  = "json"
	FormatSlack = "slack"
)

// SignatureHeader carries "sha256=<hex HMAC-SHA256 of the body>" when a
// webhook has a secret (the scheme GitHub uses for its own webhooks).
const SignatureHeader = "X-Tandem-Signature-256"

// Outcome is what a webhook receives (FormatJSON) for one release outcome.
type Outcome struct {
	// APIVersion and Kind identify the document: tandem.dev/v1alpha1, Notification.
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Bundle     string `json:"bundle"`
	// Result is promoted, reverted, held or flipped-back.
	Result string `json:"result"`
	// Color is the color the outcome is about: the one promoted, or the
	// one that failed.
	Color string `json:"color,omitempty"`
	// Live is the color serving traffic afterwards.
	Live string `json:"live,omitempty"`
	// SourceCommit is the commit that was released (or failed).
	SourceCommit string `json:"sourceCommit,omitempty"`
	// AgentCommit is the agent's commit recording the outcome; empty for
	// flipped-back (recorded by the revert or hold that follows) and when
	// a newer commit made a revert moot.
	AgentCommit string `json:"agentCommit,omitempty"`
	// Reason says why a release failed.
	Reason string `json:"reason,omitempty"`
	// Evidence is the verification's evidence (per-app readiness).
	Evidence string    `json:"evidence,omitempty"`
	At       time.Time `json:"at"`
}

// Webhook is one --notify-url.
type Webhook struct {
	URL string
	// Format is FormatJSON (default) or FormatSlack.
	Format string
	// SecretFile, when set, holds the HMAC key for SignatureHeader.
	SecretFile string
}

func (w *Webhook) validate() error {
	u, err := url.Parse(w.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("URL %s: want an http:// or https:// URL", redactURL(w.URL))
	}
	switch w.Format {
	case "":
		w.Format = FormatJSON
	case FormatJSON, FormatSlack:
	default:
		return fmt.Errorf("format %q: want json or slack", w.Format)
	}
	if w.SecretFile != "" {
		if _, err := readSecret(w.SecretFile); err != nil {
			return err
		}
	}
	return nil
}

// Body is the request body w sends for o.
func (w *Webhook) Body(o Outcome) ([]byte, error) {
	o.APIVersion, o.Kind = "tandem.dev/v1alpha1", "Notification"
	// Reason and Evidence quote checks, Prometheus and the cluster:
	// credentials out, control characters out (encoding/json escapes the
	// rest; SlackText escapes for mrkdwn).
	o.Reason, o.Evidence = redact.JSON(o.Reason), redact.JSON(o.Evidence)
	if w.Format == FormatSlack {
		return json.Marshal(map[string]string{"text": SlackText(o)})
	}
	return json.Marshal(o)
}

// SlackText is the one-message summary of o for chat, in the mrkdwn that
// Slack and Mattermost both read.
func SlackText(o Outcome) string {
	var b strings.Builder
	switch o.Result {
	case ResultPromoted:
		fmt.Fprintf(&b, ":white_check_mark: *%s* promoted to %s (%s)", o.Bundle, o.Color, short(o.SourceCommit))
	case ResultReverted:
		fmt.Fprintf(&b, ":rotating_light: *%s*: %s reverted", o.Bundle, short(o.SourceCommit))
	case ResultHeld:
		fmt.Fprintf(&b, ":warning: *%s*: %s held (not promoted)", o.Bundle, short(o.SourceCommit))
	case ResultFlippedBack:
		fmt.Fprintf(&b, ":leftwards_arrow_with_hook: *%s*: traffic flipped back to %s from %s", o.Bundle, o.Live, o.Color)
	default:
		fmt.Fprintf(&b, "*%s*: %s", o.Bundle, o.Result)
	}
	// Text from outside is escaped: "<!channel>" in a reason is shown, not acted on.
	if o.Reason != "" {
		fmt.Fprintf(&b, "\n%s", redact.Mrkdwn(o.Reason))
	}
	if o.Evidence != "" && o.Result == ResultPromoted {
		fmt.Fprintf(&b, "\n%s", redact.Mrkdwn(o.Evidence))
	}
	if o.Live != "" && o.Result != ResultFlippedBack {
		fmt.Fprintf(&b, "\nlive: %s", o.Live)
	}
	if o.AgentCommit != "" {
		fmt.Fprintf(&b, "; recorded in %s", short(o.AgentCommit))
	}
	return b.String()
}

// Sign is the SignatureHeader value of body under secret.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func (w *Webhook) send(ctx context.Context, c *http.Client, o Outcome) error {
	body, err := w.Body(o)
	if err != nil {
		return &terminalError{err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return &terminalError{errors.New("invalid URL")}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "tandem-agent")
	var secret []byte
	if w.SecretFile != "" {
		if secret, err = readSecret(w.SecretFile); err != nil {
			return err // retryable: the file may be in the middle of a rotation
		}
		req.Header.Set(SignatureHeader, Sign(secret, body))
	}
	return do(c, req, string(secret))
}

// do sends req and turns anything but a 2xx into an error that holds no
// secret: transport errors lose their URL (it may hold a token in its
// path), response bodies are cut short and scrubbed of secret.
func do(c *http.Client, req *http.Request, secret string) error {
	resp, err := c.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if req.Context().Err() != nil {
			return fmt.Errorf("no answer in time: %w", req.Context().Err())
		}
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 == 2 {
		return nil
	}
	text := strings.Join(strings.Fields(string(data)), " ")
	if secret != "" {
		text = strings.ReplaceAll(text, secret, "[redacted]")
	}
	return &HTTPError{StatusCode: resp.StatusCode, Body: truncate(redact.Text(text), 200), RetryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now())}
}

// readSecret reads a secret or token file, trimmed; an empty file is an error.
func readSecret(file string) ([]byte, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, fmt.Errorf("%s: file is empty", file)
	}
	return data, nil
}
