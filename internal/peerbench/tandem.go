package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tandem-gitops/tandem/testenv"
)

// shopApps are the two apps of the latency scenarios, at tag.
func shopApps(tag string) [][2]string {
	return [][2]string{{"client", "example/client:" + tag}, {"server", "example/server:" + tag}}
}

// images of apps.
func images(apps [][2]string) []string {
	out := make([]string, len(apps))
	for i, a := range apps {
		out[i] = a[1]
	}
	return out
}

// svcImages pairs each app's Service with its image.
func svcImages(apps [][2]string) map[string]string {
	m := map[string]string{}
	for _, a := range apps {
		m[a[0]] = a[1]
	}
	return m
}

// tandem measures the agent: push → promotion commit and → Services
// switched, with the file watch (a file:// remote) and then with the webhook
// (an http remote, served by git http-backend); and failure detection.
func (b *bench) tandem(ctx context.Context) error {
	remote, err := testenv.NewRemote(filepath.Join(b.work, "tandem.git"))
	if err != nil {
		return err
	}
	d, err := newDev(ctx, remote, filepath.Join(b.work, "tandem-dev"))
	if err != nil {
		return err
	}
	const ns = "shop"
	if err := d.commit(ctx, tandemBundle("bundles", ns, shopApps("v1"), 2), "add the shop bundle"); err != nil {
		return err
	}
	sha, _, err := d.push(ctx)
	if err != nil {
		return err
	}
	agent, _, err := b.startAgent(ctx, "tandem-watch", "--repo", "file://"+remote.Path)
	if err != nil {
		return err
	}
	if err := expectResult(ctx, remote.Path, sha, "promoted", agent); err != nil {
		return err
	}
	watch := latency{Who: "tandem", How: "file watch on a file:// remote", To: "promotion commit"}
	sw := latency{Who: "tandem", How: "push → stable Services switched", To: "Services switched"}
	rs := latency{Who: "tandem", How: "idle color's pods Ready → stable Services switched (idle color warm: its pods of the release before roll over first)", To: "Services switched"}
	ra := latency{Who: "tandem", How: "(for reference: pods Ready → both Deployments' status says available, which tandem does not wait for)", To: "Deployments available"}
	for i := 0; i < b.cfg.Runs; i++ {
		r, err := b.tandemRound(ctx, d, remote.Path, ns, fmt.Sprintf("w%d", i), nil, agent)
		if err != nil {
			return err
		}
		watch.add(r.commit)
		sw.add(r.switched)
		rs.add(r.readyToSwitch)
		ra.add(r.readyToAvailable)
	}
	agent.stop()

	url, stopHTTP, err := remote.ServeHTTP(ctx, nil)
	if err != nil {
		return err
	}
	defer stopHTTP()
	secret := filepath.Join(b.work, "webhook-secret")
	if err := os.WriteFile(secret, []byte("bench-secret\n"), 0o600); err != nil {
		return err
	}
	agent, addr, err := b.startAgent(ctx, "tandem-webhook", "--repo", url, "--webhook-secret-file", secret)
	if err != nil {
		return err
	}
	hook := func() error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/hooks/git", strings.NewReader("{}"))
		req.Header.Set("X-Gitlab-Token", "bench-secret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("webhook: %w", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("webhook: %s", resp.Status)
		}
		return nil
	}
	wh := latency{Who: "tandem", How: "webhook right after the push (http remote)", To: "promotion commit"}
	for i := 0; i < b.cfg.Runs; i++ {
		r, err := b.tandemRound(ctx, d, remote.Path, ns, fmt.Sprintf("h%d", i), hook, agent)
		if err != nil {
			return err
		}
		wh.add(r.commit)
		sw.add(r.switched)
		rs.add(r.readyToSwitch)
		ra.add(r.readyToAvailable)
	}
	cold, err := b.tandemCold(ctx, d, remote.Path, ns, hook, agent)
	if err != nil {
		return err
	}
	b.res.Live = append(b.res.Live, watch, wh)
	b.res.Switch = append(b.res.Switch, sw, cold, rs, ra)
	return b.tandemFailures(ctx, d, remote.Path, ns, shopApps(fmt.Sprintf("c%d", b.cfg.Runs-1)), hook, agent)
}

// tandemCold sets the bundle's scaleDownAfter to 0s, so the previous color
// is scaled to zero right after each promotion and every release starts the
// idle color from no pods, as Argo Rollouts starts each preview ReplicaSet;
// it times pods Ready → Services switched over Runs releases.
func (b *bench) tandemCold(ctx context.Context, d *dev, remote, ns string, hook func() error, agent *proc) (latency, error) {
	cold := latency{Who: "tandem", How: "idle color's pods Ready → stable Services switched (idle color scaled to zero after each promotion, scaleDownAfter: 0s)", To: "Services switched"}
	bundle := "bundles/" + ns + "/bundle.yaml"
	spec := tandemBundle("bundles", ns, nil, 2)[bundle]
	if err := d.commit(ctx, map[string]string{bundle: strings.Replace(spec, "scaleDownAfter: never", "scaleDownAfter: 0s", 1)}, "scale the previous color down at once"); err != nil {
		return cold, err
	}
	// The change renders what is live, so it makes no release of its own;
	// the first release after it (not measured) is the first that scales
	// the previous color down, so the one after starts from no pods.
	for i := -1; i < b.cfg.Runs; i++ {
		r, err := b.tandemRound(ctx, d, remote, ns, fmt.Sprintf("c%d", i), hook, agent)
		if err != nil {
			return cold, err
		}
		if i >= 0 {
			cold.add(r.readyToSwitch)
		}
	}
	return cold, nil
}

// startAgent starts tandem-agent on the bundles/ root with extra flags and
// waits until it serves /healthz; it returns the agent and its address.
func (b *bench) startAgent(ctx context.Context, name string, extra ...string) (*proc, string, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	args := append([]string{"run", "--kubeconfig", b.env.Kubeconfig, "--root", "bundles",
		"--workdir", filepath.Join(b.work, name), "--metrics-addr", addr, "--log-format", "json"}, extra...)
	p, err := b.start(name, b.cfg.Agent, args, nil)
	if err != nil {
		return nil, "", err
	}
	return p, addr, waitHTTP(ctx, p, "http://"+addr+"/healthz", time.Minute)
}

// round is one measured release.
type round struct {
	commit, switched, readyToSwitch, readyToAvailable time.Duration
}

// tandemRound pushes a new tag for both apps (calling after right after the
// push) and times the promotion commit, the Services' switch and the
// switch after the new pods were all Ready.
func (b *bench) tandemRound(ctx context.Context, d *dev, remote, ns, tag string, after func() error, agent *proc) (round, error) {
	apps := shopApps(tag)
	files := map[string]string{}
	for _, a := range apps {
		files["bundles/"+ns+"/app/"+a[0]+".yaml"] = deployment(a[0], a[1], 2)
	}
	if err := d.commit(ctx, files, "release "+tag); err != nil {
		return round{}, err
	}
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	pods := b.k.start(wctx, podsGVR, ns, "", newPodsReady(images(apps), 2))
	deps := b.k.start(wctx, deployGVR, ns, "", deploymentsAvailable(images(apps)))
	svcs := b.k.start(wctx, servicesGVR, ns, "", b.k.servicesSelect(wctx, ns, svcImages(apps)))
	sha, t0, err := d.push(ctx)
	if err != nil {
		return round{}, err
	}
	if after != nil {
		if err := after(); err != nil {
			return round{}, err
		}
	}
	c, tc, err := waitAgentCommit(ctx, remote, sha, 3*time.Minute)
	if err != nil {
		return round{}, fmt.Errorf("%w\nagent log:\n%s", err, agent.logTail())
	}
	if r := c.Trailers["Tandem-Result"]; r != "promoted" {
		return round{}, fmt.Errorf("release %s: agent commit %q says %s, want promoted", tag, c.Subject, r)
	}
	tr, err := pods.wait()
	if err != nil {
		return round{}, err
	}
	ts, err := svcs.wait()
	if err != nil {
		return round{}, err
	}
	ta, err := deps.wait()
	if err != nil {
		return round{}, err
	}
	return round{commit: tc.Sub(t0), switched: ts.Sub(t0), readyToSwitch: ts.Sub(tr), readyToAvailable: ta.Sub(tr)}, nil
}

// tandemFailures pushes a client that cannot pull its image, then one that
// crash-loops, and times each push → revert commit.
func (b *bench) tandemFailures(ctx context.Context, d *dev, remote, ns string, live [][2]string, hook func() error, agent *proc) error {
	for _, c := range failureCases("client") {
		if err := d.commit(ctx, map[string]string{"bundles/" + ns + "/app/client.yaml": deployment("client", c.image, 2)}, "release "+c.name); err != nil {
			return err
		}
		sha, t0, err := d.push(ctx)
		if err != nil {
			return err
		}
		if err := hook(); err != nil {
			return err
		}
		commit, tc, err := waitAgentCommit(ctx, remote, sha, 5*time.Minute)
		if err != nil {
			return fmt.Errorf("%w\nagent log:\n%s", err, agent.logTail())
		}
		result := commit.Trailers["Tandem-Result"]
		if result != "reverted" {
			return fmt.Errorf("%s: agent commit %q says %s, want reverted", c.name, commit.Subject, result)
		}
		// The stable Services still select the release that was live before.
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err = b.k.until(sctx, servicesGVR, ns, "", b.k.servicesSelect(sctx, ns, svcImages(live)))
		cancel()
		if err != nil {
			return fmt.Errorf("%s: stable Services do not select the live release: %w", c.name, err)
		}
		b.res.Failures = append(b.res.Failures, failure{Who: "tandem", Case: c.name, Took: tc.Sub(t0),
			Outcome: "revert commit; stable Services stayed on the live release"})
	}
	return nil
}

// failureCase is an image the simulated kubelet cannot run (testenv/stages.yaml).
type failureCase struct{ name, image string }

func failureCases(app string) []failureCase {
	return []failureCase{
		{"image never pulls", "missing.invalid/" + app + ":v2"},
		{"crash loop", "example/" + app + ":v2-crash"},
	}
}

// expectResult waits for the agent's first commit after sha and checks its result.
func expectResult(ctx context.Context, remote, sha, want string, agent *proc) error {
	c, _, err := waitAgentCommit(ctx, remote, sha, 5*time.Minute)
	if err != nil {
		return fmt.Errorf("%w\nagent log:\n%s", err, agent.logTail())
	}
	if got := c.Trailers["Tandem-Result"]; got != want {
		return fmt.Errorf("agent commit %q says %s, want %s", c.Subject, got, want)
	}
	return nil
}
