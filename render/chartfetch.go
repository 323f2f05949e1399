package render

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/tandem-gitops/tandem/internal/yamlguard"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"sigs.k8s.io/yaml"
)

// DefaultMaxChartBytes is the default limit on a remote chart's archive.
const DefaultMaxChartBytes = 8 << 20

// maxIndexBytes bounds a chart repository's index.yaml.
const maxIndexBytes = 32 << 20

// Media types of a chart stored in an OCI registry (as helm pushes it).
const (
	helmConfigMediaType = "application/vnd.cncf.helm.config.v1+json"
	helmChartMediaType  = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
)

// ErrChartChanged is wrapped by the error for a remote chart whose digest
// differs from the one first seen for the same repository, name and
// version: a version is pinned to its digest once resolved.
var ErrChartChanged = errors.New("the chart changed under the same version")

// chartFetcher fetches remote charts: from a Helm HTTP repository
// (index.yaml) or an OCI registry, by exact version; archives are cached
// by digest, and the digest each version resolved to first is pinned.
type chartFetcher struct {
	// cacheDir holds blobs/sha256/<hex> and pins/<hash of the reference>;
	// "" keeps nothing (every render fetches and nothing is pinned).
	cacheDir string
	// credentials is a Docker-style config.json read at every fetch.
	credentials string
	maxBytes    int64
	client      *http.Client
}

// exactVersion is a version without ranges or wildcards.
var exactVersion = regexp.MustCompile(`^v?[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)

// fetch returns the archive of chart name at version from repo, and its
// digest.
func (c *chartFetcher) fetch(ctx context.Context, repo, chartName, version string) ([]byte, string, error) {
	ctx = contextOr(ctx)
	if version == "" {
		return nil, "", fmt.Errorf("chart %s from %s: version is required for a remote chart", chartName, repo)
	}
	if !exactVersion.MatchString(version) {
		return nil, "", fmt.Errorf("chart %s from %s: version %q is not an exact version (ranges are not allowed: a remote chart is pinned)", chartName, repo, version)
	}
	var data []byte
	var digest string
	var err error
	switch {
	case strings.HasPrefix(repo, "oci://"):
		data, digest, err = c.fetchOCI(ctx, repo, chartName, version)
	case strings.HasPrefix(repo, "https://") || strings.HasPrefix(repo, "http://"):
		data, digest, err = c.fetchHTTP(ctx, repo, chartName, version)
	default:
		return nil, "", fmt.Errorf("chart %s: repo %q: must be an https://, http:// or oci:// URL", chartName, repo)
	}
	if err != nil {
		return nil, "", fmt.Errorf("chart %s %s from %s: %w", chartName, version, repo, err)
	}
	if err := c.pin(repo, chartName, version, digest); err != nil {
		return nil, "", fmt.Errorf("chart %s %s from %s: %w", chartName, version, repo, err)
	}
	return data, digest, nil
}

// pin records the digest version resolved to, or refuses a different one.
func (c *chartFetcher) pin(repo, chartName, version, digest string) error {
	if c.cacheDir == "" {
		return nil
	}
	sum := sha256.Sum256([]byte(repo + "\x00" + chartName + "\x00" + version))
	p := filepath.Join(c.cacheDir, "pins", hex.EncodeToString(sum[:]))
	if old, err := os.ReadFile(p); err == nil {
		if was := strings.TrimSpace(string(old)); was != digest {
			return fmt.Errorf("%w: it was %s, it is now %s (publish a new version; or, if the change is trusted, delete %s)", ErrChartChanged, was, digest, p)
		}
		return nil
	}
	return writeAtomic(p, []byte(digest+"\n"))
}

// cached returns the cached blob of digest, verified, if there is one.
func (c *chartFetcher) cached(digest string) ([]byte, bool) {
	if c.cacheDir == "" || !strings.HasPrefix(digest, "sha256:") {
		return nil, false
	}
	data, err := os.ReadFile(filepath.Join(c.cacheDir, "blobs", "sha256", strings.TrimPrefix(digest, "sha256:")))
	if err != nil || sha256Digest(data) != digest {
		return nil, false
	}
	return data, true
}

// store caches blob data under its digest (best effort: a failed write
// only means the next render fetches again).
func (c *chartFetcher) store(data []byte) {
	if c.cacheDir == "" {
		return
	}
	_ = writeAtomic(filepath.Join(c.cacheDir, "blobs", "sha256", strings.TrimPrefix(sha256Digest(data), "sha256:")), data)
}

func writeAtomic(p string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), p)
}

func sha256Digest(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// credential is one host's entry of the credentials file.
type credential struct {
	Username string `json:"username"`
	Password string `json:"password"`
	Auth     string `json:"auth"`
}

// credentialsFor reads the credentials file (again at every call, so a
// rotated secret is picked up) and returns the entry of host, if any.
// Its errors never quote the file's content.
func (c *chartFetcher) credentialsFor(host string) (user, pass string, ok bool, err error) {
	if c.credentials == "" {
		return "", "", false, nil
	}
	data, err := readLimited(c.credentials, 1<<20)
	if err != nil {
		return "", "", false, fmt.Errorf("chart credentials: %w", err)
	}
	var cfg struct {
		Auths map[string]credential `json:"auths"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return "", "", false, fmt.Errorf("chart credentials %s: not a config.json with \"auths\" (content not shown)", c.credentials)
	}
	for key, e := range cfg.Auths {
		k := key
		if u, err := url.Parse(key); err == nil && u.Host != "" {
			k = u.Host
		}
		if k != host {
			continue
		}
		if e.Auth != "" {
			dec, err := base64.StdEncoding.DecodeString(e.Auth)
			if err != nil {
				return "", "", false, fmt.Errorf("chart credentials %s: entry %q: auth is not base64", c.credentials, key)
			}
			u, p, found := strings.Cut(string(dec), ":")
			if !found {
				return "", "", false, fmt.Errorf("chart credentials %s: entry %q: auth is not user:password", c.credentials, key)
			}
			return u, p, true, nil
		}
		return e.Username, e.Password, true, nil
	}
	return "", "", false, nil
}

// get fetches u, at most limit bytes, with the credentials of authHost
// when u is on that host (never sent to another host).
func (c *chartFetcher) get(ctx context.Context, u *url.URL, authHost string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	if u.Host == authHost {
		user, pass, ok, err := c.credentialsFor(authHost)
		if err != nil {
			return nil, err
		}
		if ok {
			req.SetBasicAuth(user, pass)
		}
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return nil, fmt.Errorf("GET %s: %s (check the credentials for %s in --chart-credentials-file)", redactURL(u), resp.Status, authHost)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("GET %s: %s", redactURL(u), resp.Status)
	case resp.ContentLength > limit:
		return nil, &LimitError{Limit: LimitChartBytes, Max: fmt.Sprintf("%d bytes", limit), File: redactURL(u), Detail: fmt.Sprintf("%d bytes to download", resp.ContentLength)}
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", redactURL(u), err)
	}
	if int64(len(data)) > limit {
		return nil, &LimitError{Limit: LimitChartBytes, Max: fmt.Sprintf("%d bytes", limit), File: redactURL(u), Detail: "the download is larger"}
	}
	return data, nil
}

// redactURL drops a URL's user information and query.
func redactURL(u *url.URL) string {
	v := *u
	v.User = nil
	v.RawQuery = ""
	return v.String()
}

// fetchHTTP resolves version in repo's index.yaml and downloads it.
func (c *chartFetcher) fetchHTTP(ctx context.Context, repo, chartName, version string) ([]byte, string, error) {
	base, err := url.Parse(strings.TrimSuffix(repo, "/") + "/")
	if err != nil {
		return nil, "", fmt.Errorf("repo: %w", err)
	}
	if base.User != nil {
		return nil, "", errors.New("repo: credentials in the URL are not allowed (use --chart-credentials-file)")
	}
	data, err := c.get(ctx, base.JoinPath("index.yaml"), base.Host, maxIndexBytes)
	if err != nil {
		return nil, "", err
	}
	if err := yamlguard.CheckExpansion(data); err != nil {
		return nil, "", fmt.Errorf("index.yaml: %w", err)
	}
	var index struct {
		Entries map[string][]struct {
			Version string   `json:"version"`
			URLs    []string `json:"urls"`
			Digest  string   `json:"digest"`
		} `json:"entries"`
	}
	if err := yaml.Unmarshal(data, &index); err != nil {
		return nil, "", fmt.Errorf("index.yaml: %w", err)
	}
	entries, ok := index.Entries[chartName]
	if !ok {
		return nil, "", fmt.Errorf("index.yaml has no chart %q", chartName)
	}
	want := strings.TrimPrefix(version, "v")
	for _, e := range entries {
		if strings.TrimPrefix(e.Version, "v") != want {
			continue
		}
		if len(e.URLs) == 0 {
			return nil, "", fmt.Errorf("index.yaml: version %s has no URL", version)
		}
		digest := ""
		if e.Digest != "" {
			digest = "sha256:" + strings.TrimPrefix(e.Digest, "sha256:")
			if blob, ok := c.cached(digest); ok {
				return blob, digest, nil
			}
		}
		u, err := base.Parse(e.URLs[0])
		if err != nil {
			return nil, "", fmt.Errorf("index.yaml: version %s: %w", version, err)
		}
		blob, err := c.get(ctx, u, base.Host, c.maxBytes)
		if err != nil {
			return nil, "", err
		}
		got := sha256Digest(blob)
		if digest != "" && got != digest {
			return nil, "", fmt.Errorf("%s: the archive's digest %s is not the %s index.yaml lists", redactURL(u), got, digest)
		}
		c.store(blob)
		return blob, got, nil
	}
	return nil, "", fmt.Errorf("index.yaml has no version %s of chart %q", version, chartName)
}

// fetchOCI resolves repo/chartName:version in an OCI registry and
// downloads the chart layer of its manifest.
func (c *chartFetcher) fetchOCI(ctx context.Context, repo, chartName, version string) ([]byte, string, error) {
	ref, err := name.ParseReference(strings.TrimSuffix(strings.TrimPrefix(repo, "oci://"), "/") + "/" + chartName + ":" + strings.ReplaceAll(version, "+", "_"))
	if err != nil {
		return nil, "", fmt.Errorf("reference: %w", err)
	}
	host := ref.Context().RegistryStr()
	auth := authn.Anonymous
	user, pass, ok, err := c.credentialsFor(host)
	if err != nil {
		return nil, "", err
	}
	if ok {
		auth = &authn.Basic{Username: user, Password: pass}
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuth(auth), remote.WithTransport(c.client.Transport)}
	desc, err := remote.Get(ref, opts...)
	if err != nil {
		return nil, "", ociError(ref.String(), host, err)
	}
	m, err := v1.ParseManifest(bytes.NewReader(desc.Manifest))
	if err != nil {
		return nil, "", fmt.Errorf("%s: manifest: %w", ref, err)
	}
	if m.Config.MediaType != helmConfigMediaType {
		return nil, "", fmt.Errorf("%s: not a helm chart (config media type %q)", ref, m.Config.MediaType)
	}
	var layer *v1.Descriptor
	for i := range m.Layers {
		if m.Layers[i].MediaType == helmChartMediaType || m.Layers[i].MediaType == "application/tar+gzip" {
			layer = &m.Layers[i]
		}
	}
	if layer == nil {
		return nil, "", fmt.Errorf("%s: the manifest has no chart layer", ref)
	}
	if layer.Size > c.maxBytes {
		return nil, "", &LimitError{Limit: LimitChartBytes, Max: fmt.Sprintf("%d bytes", c.maxBytes), File: ref.String(), Detail: fmt.Sprintf("the chart layer is %d bytes", layer.Size)}
	}
	digest := desc.Digest.String()
	if blob, ok := c.cached(layer.Digest.String()); ok {
		return blob, digest, nil
	}
	l, err := remote.Layer(ref.Context().Digest(layer.Digest.String()), opts...)
	if err != nil {
		return nil, "", ociError(ref.String(), host, err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, "", ociError(ref.String(), host, err)
	}
	defer rc.Close()
	blob, err := io.ReadAll(io.LimitReader(rc, c.maxBytes+1))
	if err != nil {
		return nil, "", ociError(ref.String(), host, err)
	}
	if int64(len(blob)) > c.maxBytes {
		return nil, "", &LimitError{Limit: LimitChartBytes, Max: fmt.Sprintf("%d bytes", c.maxBytes), File: ref.String(), Detail: "the chart layer is larger"}
	}
	if got := sha256Digest(blob); got != layer.Digest.String() {
		return nil, "", fmt.Errorf("%s: the chart layer's digest is %s, not %s", ref, got, layer.Digest)
	}
	c.store(blob)
	return blob, digest, nil
}

// ociError names the reference and, for a refused login, the credentials.
func ociError(ref, host string, err error) error {
	var te *transport.Error
	if errors.As(err, &te) && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden) {
		return fmt.Errorf("%s: %d %s (check the credentials for %s in --chart-credentials-file)", ref, te.StatusCode, http.StatusText(te.StatusCode), host)
	}
	return fmt.Errorf("%s: %w", ref, err)
}

// checkUnpackedSize refuses a gzipped tar whose content exceeds limit
// bytes, before helm's loader unpacks it into memory.
func checkUnpackedSize(data []byte, limit int64) error {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("chart archive: %w", err)
	}
	tr := tar.NewReader(zr)
	var total int64
	for {
		hd, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("chart archive: %w", err)
		}
		n, err := io.Copy(io.Discard, io.LimitReader(tr, limit-total+1))
		if err != nil {
			return fmt.Errorf("chart archive: %s: %w", hd.Name, err)
		}
		if total += n; total > limit {
			return &LimitError{Limit: LimitChartBytes, Max: fmt.Sprintf("%d bytes unpacked", limit), File: hd.Name, Detail: "the chart archive unpacks to more"}
		}
	}
}
