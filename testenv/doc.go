// Package testenv starts a real Kubernetes control plane and real Git remotes
// for tests and the demo. Nothing in it is a fake: the API server, etcd, the
// controllers (Deployments, ReplicaSets, EndpointSlices, Jobs, garbage
// collection) and the scheduler are the upstream binaries; only the kubelet is
// simulated, by kwok, on one node named NodeName.
//
// # Binaries
//
// `make testenv` builds kube-apiserver, kube-controller-manager and
// kube-scheduler (k8s.io/kubernetes v1.37.2), etcd (v3.7.0) and kwok (v0.8.0)
// from the separate module in testenv/tools, into a cache outside the source
// tree keyed by those versions (see BinDir). A cold build takes about 12
// minutes on 2 cores; after that it is a no-op. Start fails with an error
// naming the missing binaries and `make testenv` if they are absent.
//
// # Start and stop
//
// Start picks free loopback ports, so test packages and a running demo do not
// collide, and returns once /readyz answers and the node is Ready. Measured
// warm start (binaries cached) on the 2-core build machine: 4.3 s from
// `testenv up` to a Ready node (RunTests logs the figure for every package).
// Every process runs in its own process group with a parent-death signal;
// Stop ends the groups and removes the directory. StopComponent and
// StartComponent take one process down and back for outage tests.
//
// # Simulated workloads
//
// kwok stages (stages.yaml) decide what pods report, keyed on the image
// reference so that test bundles look like real repositories:
//
//	missing.invalid/<anything>   ErrImagePull, then ImagePullBackOff; never starts
//	<image>:<tag>-crash          Running, container in CrashLoopBackOff, restartCount +1 a second
//	<image>:<tag>-unready        Running, container running but never Ready
//	<image>:<tag>-slow           Running, and Ready about 2s after it starts
//	any other image              Running and Ready at once; Job pods then Succeeded
//
// Pods get IPs from 10.244.0.0/16, so EndpointSlices behave as in a cluster.
//
// # Git remotes
//
// NewRemote (git.go) makes a bare repository that refuses non-fast-forward
// updates and deletions, can be served over HTTP by `git http-backend`, and
// can be told to reject pushes with a hook.
//
// # Other files
//
// env.go (Start, Stop, the Env), binaries.go (where the binaries are found),
// process.go (process groups), testing.go (RunTests for TestMain, and a
// namespace per test), agentproc.go (a tandem-agent process and its
// commits' Tandem-* trailers), prometheus.go (a real Prometheus for
// prometheus checks), signing.go (throw-away GnuPG homes and keys for the
// signed-commit tests) and stages.yaml (the kwok stages above). The command
// testenv/cmd/testenv runs a control plane by hand (`testenv up`).
//
// It is for tests and the demo only: the agent never imports it.
package testenv
