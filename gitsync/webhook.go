package gitsync

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/fsnotify/fsnotify"
)

// MaxWebhookBody is the largest webhook body accepted (larger gets 413).
const MaxWebhookBody = 1 << 20

// NewWebhook returns the handler for POST /hooks/git. It accepts a GitHub
// X-Hub-Signature-256 (HMAC-SHA256 of the body) or a GitLab X-Gitlab-Token
// matching the secret in secretFile (re-read on each request), answers 202 and
// calls wake. Bad or missing signatures get 401 and no wake-up. An empty
// secretFile refuses every request.
func NewWebhook(secretFile string, wake func()) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxWebhookBody))
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
				return
			}
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		if secretFile == "" {
			http.Error(w, "webhook secret not configured", http.StatusUnauthorized)
			return
		}
		secret, err := os.ReadFile(secretFile)
		if err != nil {
			http.Error(w, "webhook secret unavailable", http.StatusInternalServerError)
			return
		}
		key := []byte(strings.TrimSpace(string(secret)))
		if !verify(key, r.Header, body) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusAccepted)
		if wake != nil {
			wake()
		}
	})
}

func verify(key []byte, h http.Header, body []byte) bool {
	if len(key) == 0 {
		return false
	}
	if sig := h.Get("X-Hub-Signature-256"); sig != "" {
		hexSig, ok := strings.CutPrefix(sig, "sha256=")
		if !ok {
			return false
		}
		got, err := hex.DecodeString(hexSig)
		if err != nil {
			return false
		}
		m := hmac.New(sha256.New, key)
		m.Write(body)
		return hmac.Equal(got, m.Sum(nil))
	}
	if tok := h.Get("X-Gitlab-Token"); tok != "" {
		return subtle.ConstantTimeCompare([]byte(tok), key) == 1
	}
	return false
}

// WatchLocal calls wake whenever the refs of the local repository at dir
// change (refs/heads recursively, packed-refs, HEAD). It blocks until ctx ends.
func WatchLocal(ctx context.Context, dir string, wake func()) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch %s: %w", dir, err)
	}
	defer w.Close()
	gitDir := dir
	if st, err := os.Stat(filepath.Join(dir, ".git")); err == nil && st.IsDir() {
		gitDir = filepath.Join(dir, ".git")
	}
	add := func(root string) error {
		return filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				return w.Add(p)
			}
			return nil
		})
	}
	if err := w.Add(gitDir); err != nil {
		return fmt.Errorf("watch %s: %w", gitDir, err)
	}
	heads := filepath.Join(gitDir, "refs", "heads")
	if err := add(heads); err != nil {
		return fmt.Errorf("watch %s: %w", heads, err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ev.Has(fsnotify.Create) {
				if st, err := os.Stat(ev.Name); err == nil && st.IsDir() {
					_ = add(ev.Name)
				}
			}
			base := filepath.Base(ev.Name)
			if strings.HasPrefix(ev.Name, heads) || base == "packed-refs" || base == "HEAD" {
				if !strings.HasSuffix(base, ".lock") {
					wake()
				}
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			return fmt.Errorf("watch %s: %w", dir, err)
		}
	}
}
