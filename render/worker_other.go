//go:build !linux

package render

import "os/exec"

// limitMemory relies on the Go runtime's soft limit alone off Linux.
func limitMemory(int64) error { return nil }

func setWorkerAttrs(*exec.Cmd) {}
