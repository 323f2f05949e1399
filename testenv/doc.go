// Package testenv starts a real Kubernetes control plane and real Git remotes
// for tests and the demo. Filled in below.
package testenv
