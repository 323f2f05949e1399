package testenv

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	_ "embed"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

//go:embed stages.yaml
var stagesYAML []byte

// NodeName is the name of the one simulated node every Env has.
const NodeName = "kwok-node-0"

// Component names one process of the control plane.
type Component string

// The processes an Env runs.
const (
	Etcd              Component = "etcd"
	APIServer         Component = "kube-apiserver"
	ControllerManager Component = "kube-controller-manager"
	Scheduler         Component = "kube-scheduler"
	Kwok              Component = "kwok"
)

// Options configure Start. The zero value is ready to use.
type Options struct {
	// BinDir holds the control-plane binaries. Default: BinDir().
	BinDir string
	// Dir is where the Env keeps its data, certificates and logs. Default: a new
	// temporary directory, removed by Stop.
	Dir string
	// StartTimeout bounds Start. Default 90s.
	StartTimeout time.Duration
}

// Env is a running control plane: etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler and kwok with one Ready node, all on free loopback ports.
type Env struct {
	// Config is an admin (system:masters) client configuration.
	Config *rest.Config
	// Kubeconfig is the path of a kubeconfig file for the same admin user.
	Kubeconfig string
	// Dir holds the Env's data and the logs of each process (<component>.log).
	Dir string

	opts    Options
	ownDir  bool
	token   string
	ports   map[string]int
	procs   map[Component]*process
	order   []Component
	stopped bool
}

// Start builds nothing: it starts a control plane from the binaries in
// opts.BinDir and returns when the API server is ready and the node is Ready.
// On error, everything it started is stopped again. A missing binary is an
// error that says to run `make testenv`.
//
// Ports are picked free and then handed to the processes, so another
// process may take one in between; a start that fails on a port already in
// use is retried (twice) with fresh ports when testenv owns the directory.
func Start(ctx context.Context, opts Options) (*Env, error) {
	for attempt := 0; ; attempt++ {
		env, err := start(ctx, opts)
		if err == nil || attempt == 2 || opts.Dir != "" || !strings.Contains(err.Error(), "address already in use") {
			return env, err
		}
	}
}

func start(ctx context.Context, opts Options) (env *Env, err error) {
	if opts.BinDir == "" {
		opts.BinDir = BinDir()
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 90 * time.Second
	}
	if err := checkBinaries(opts.BinDir); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()

	e := &Env{opts: opts, procs: map[Component]*process{}, ports: map[string]int{}}
	if opts.Dir == "" {
		dir, err := os.MkdirTemp("", "tandem-testenv-")
		if err != nil {
			return nil, fmt.Errorf("testenv: temp dir: %w", err)
		}
		e.Dir, e.ownDir = dir, true
	} else {
		e.Dir = opts.Dir
		if err := os.MkdirAll(e.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("testenv: %s: %w", e.Dir, err)
		}
	}
	defer func() {
		if err != nil {
			_ = e.Stop()
		}
	}()
	if err := e.prepare(); err != nil {
		return nil, err
	}
	if err := e.startComponent(ctx, Etcd); err != nil {
		return nil, err
	}
	if err := e.startComponent(ctx, APIServer); err != nil {
		return nil, err
	}
	for _, c := range []Component{ControllerManager, Scheduler, Kwok} {
		if err := e.startComponent(ctx, c); err != nil {
			return nil, err
		}
	}
	if err := e.addNode(ctx); err != nil {
		return nil, err
	}
	return e, nil
}

// prepare picks ports and writes the token file, service-account keys,
// kubeconfig and kwok stages.
func (e *Env) prepare() error {
	for _, name := range []string{"etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler", "kwok"} {
		p, err := freePort()
		if err != nil {
			return fmt.Errorf("testenv: free port for %s: %w", name, err)
		}
		e.ports[name] = p
	}
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		return fmt.Errorf("testenv: token: %w", err)
	}
	e.token = hex.EncodeToString(tok)
	if err := os.WriteFile(e.path("tokens.csv"), []byte(e.token+",admin,admin,system:masters\n"), 0o600); err != nil {
		return fmt.Errorf("testenv: token file: %w", err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("testenv: service-account key: %w", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return fmt.Errorf("testenv: service-account key: %w", err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	if err := os.WriteFile(e.path("sa.key"), keyPEM, 0o600); err != nil {
		return fmt.Errorf("testenv: sa.key: %w", err)
	}
	if err := os.WriteFile(e.path("sa.pub"), pubPEM, 0o600); err != nil {
		return fmt.Errorf("testenv: sa.pub: %w", err)
	}
	if err := os.WriteFile(e.path("stages.yaml"), stagesYAML, 0o600); err != nil {
		return fmt.Errorf("testenv: stages: %w", err)
	}
	host := "https://127.0.0.1:" + strconv.Itoa(e.ports["apiserver"])
	e.Config = &rest.Config{
		Host:            host,
		BearerToken:     e.token,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		QPS:             200,
		Burst:           400,
	}
	e.Kubeconfig = e.path("kubeconfig")
	kc := clientcmdapi.NewConfig()
	kc.Clusters["testenv"] = &clientcmdapi.Cluster{Server: host, InsecureSkipTLSVerify: true}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: e.token}
	kc.Contexts["testenv"] = &clientcmdapi.Context{Cluster: "testenv", AuthInfo: "admin", Namespace: "default"}
	kc.CurrentContext = "testenv"
	if err := clientcmd.WriteToFile(*kc, e.Kubeconfig); err != nil {
		return fmt.Errorf("testenv: kubeconfig: %w", err)
	}
	return nil
}

// args returns the command line of a component.
func (e *Env) args(c Component) []string {
	p := func(name string) string { return strconv.Itoa(e.ports[name]) }
	etcdURL := "http://127.0.0.1:" + p("etcd")
	kube := []string{
		"--kubeconfig=" + e.Kubeconfig,
		"--authentication-kubeconfig=" + e.Kubeconfig,
		"--authorization-kubeconfig=" + e.Kubeconfig,
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
	}
	switch c {
	case Etcd:
		return []string{
			"--data-dir=" + e.path("etcd"),
			"--listen-client-urls=" + etcdURL,
			"--advertise-client-urls=" + etcdURL,
			"--listen-peer-urls=http://127.0.0.1:" + p("etcd-peer"),
			"--initial-advertise-peer-urls=http://127.0.0.1:" + p("etcd-peer"),
			"--initial-cluster=default=http://127.0.0.1:" + p("etcd-peer"),
			"--unsafe-no-fsync",
			"--log-level=warn",
		}
	case APIServer:
		return []string{
			"--etcd-servers=" + etcdURL,
			"--bind-address=127.0.0.1",
			"--secure-port=" + p("apiserver"),
			"--cert-dir=" + e.path("certs"),
			"--token-auth-file=" + e.path("tokens.csv"),
			"--authorization-mode=RBAC",
			"--service-account-key-file=" + e.path("sa.pub"),
			"--service-account-signing-key-file=" + e.path("sa.key"),
			"--service-account-issuer=https://kubernetes.default.svc",
			"--service-cluster-ip-range=10.96.0.0/16",
			"--allow-privileged=true",
			"--endpoint-reconciler-type=none",
			"--v=0",
		}
	case ControllerManager:
		return append(kube,
			"--secure-port="+p("controller-manager"),
			"--service-account-private-key-file="+e.path("sa.key"),
			"--controllers=*",
			"--cluster-cidr=10.244.0.0/16",
			"--service-cluster-ip-range=10.96.0.0/16",
			"--concurrent-deployment-syncs=10",
			"--concurrent-replicaset-syncs=10",
			"--concurrent-service-endpoint-syncs=10",
			"--v=0",
		)
	case Scheduler:
		return append(kube, "--secure-port="+p("scheduler"), "--v=0")
	case Kwok:
		return []string{
			"--kubeconfig=" + e.Kubeconfig,
			"--config=" + e.path("stages.yaml"),
			"--manage-all-nodes=false",
			"--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
			"--node-lease-duration-seconds=40",
			"--server-address=127.0.0.1:" + p("kwok"),
			"--cidr=10.244.0.1/16",
			"--node-ip=10.0.0.1",
		}
	}
	return nil
}

// startComponent starts one process and waits until it is serving.
func (e *Env) startComponent(ctx context.Context, c Component) error {
	p, err := startProcess(filepath.Join(e.opts.BinDir, string(c)), e.args(c), e.path(string(c)+".log"))
	if err != nil {
		return fmt.Errorf("testenv: start %s: %w", c, err)
	}
	if _, seen := e.procs[c]; !seen {
		e.order = append(e.order, c)
	}
	e.procs[c] = p
	switch c {
	case Etcd:
		err = e.waitHTTP(ctx, p, "http://127.0.0.1:"+strconv.Itoa(e.ports["etcd"])+"/health")
	case APIServer:
		err = e.waitAPIServer(ctx, p)
	case ControllerManager:
		err = e.waitHTTP(ctx, p, "https://127.0.0.1:"+strconv.Itoa(e.ports["controller-manager"])+"/healthz")
	case Scheduler:
		err = e.waitHTTP(ctx, p, "https://127.0.0.1:"+strconv.Itoa(e.ports["scheduler"])+"/healthz")
	case Kwok:
		err = e.waitHTTP(ctx, p, "http://127.0.0.1:"+strconv.Itoa(e.ports["kwok"])+"/healthz")
	}
	if err != nil {
		return fmt.Errorf("testenv: %s did not become ready: %w\n%s", c, err, p.logTail())
	}
	return nil
}

// StopComponent stops one process for outage tests: SIGTERM, then SIGKILL
// after two seconds (kube-apiserver drains watches far longer than a test
// wants to wait; an outage is abrupt anyway).
// StartComponent brings it back with the same ports, data and flags.
func (e *Env) StopComponent(c Component) error {
	p, ok := e.procs[c]
	if !ok {
		return fmt.Errorf("testenv: %s is not running", c)
	}
	delete(e.procs, c)
	return p.stop(2 * time.Second)
}

// StartComponent starts a component stopped by StopComponent again and waits
// until it serves.
func (e *Env) StartComponent(ctx context.Context, c Component) error {
	if _, ok := e.procs[c]; ok {
		return fmt.Errorf("testenv: %s is already running", c)
	}
	return e.startComponent(ctx, c)
}

// Stop ends every process the Env started (its whole process group) and
// removes the Env's directory if Start created it. It is safe to call twice.
func (e *Env) Stop() error {
	if e == nil || e.stopped {
		return nil
	}
	e.stopped = true
	var errs []error
	for i := len(e.order) - 1; i >= 0; i-- {
		if p, ok := e.procs[e.order[i]]; ok {
			if err := p.stop(10 * time.Second); err != nil {
				errs = append(errs, fmt.Errorf("testenv: stop %s: %w", e.order[i], err))
			}
			delete(e.procs, e.order[i])
		}
	}
	if e.ownDir {
		if err := os.RemoveAll(e.Dir); err != nil {
			errs = append(errs, fmt.Errorf("testenv: remove %s: %w", e.Dir, err))
		}
	}
	return errors.Join(errs...)
}

// PIDs returns the process IDs of the running components (for leak tests).
func (e *Env) PIDs() map[Component]int {
	out := map[Component]int{}
	for c, p := range e.procs {
		out[c] = p.cmd.Process.Pid
	}
	return out
}

// Client returns a typed clientset for the admin configuration.
func (e *Env) Client() (*kubernetes.Clientset, error) {
	return kubernetes.NewForConfig(e.Config)
}

func (e *Env) path(name string) string { return filepath.Join(e.Dir, name) }

// waitHTTP polls url until it answers 200 or the process exits.
func (e *Env) waitHTTP(ctx context.Context, p *process, url string) error {
	client := insecureHTTPClient()
	return poll(ctx, p, func() bool {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// waitAPIServer polls /readyz with the admin token, then waits for the
// default namespace (the API server creates it shortly after it is ready).
func (e *Env) waitAPIServer(ctx context.Context, p *process) error {
	cs, err := kubernetes.NewForConfig(e.Config)
	if err != nil {
		return err
	}
	return poll(ctx, p, func() bool {
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil || string(body) != "ok" {
			return false
		}
		_, err = cs.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
		return err == nil
	})
}

// addNode registers the simulated node and waits until kwok reports it Ready.
func (e *Env) addNode(ctx context.Context) error {
	cs, err := kubernetes.NewForConfig(e.Config)
	if err != nil {
		return err
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name:        NodeName,
		Annotations: map[string]string{"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
		Labels:      map[string]string{"kubernetes.io/hostname": NodeName, "kubernetes.io/os": "linux", "type": "kwok"},
	}}
	if _, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("testenv: create node %s: %w", NodeName, err)
	}
	kwok := e.procs[Kwok]
	err = poll(ctx, kwok, func() bool {
		n, err := cs.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if err != nil {
			return false
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				return true
			}
		}
		return false
	})
	if err != nil {
		return fmt.Errorf("testenv: node %s not Ready: %w\n%s", NodeName, err, kwok.logTail())
	}
	return nil
}

// poll calls ready every 100ms until it returns true, ctx ends or p exits.
func poll(ctx context.Context, p *process, ready func() bool) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		if ready() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.done:
			return fmt.Errorf("process exited: %v", p.waitErr)
		case <-t.C:
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
