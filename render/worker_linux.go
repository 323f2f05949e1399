package render

import (
	"os/exec"
	"syscall"
)

// limitMemory sets RLIMIT_DATA of this process: the Go runtime maps its
// heap writable only as it grows (address space it merely reserves is not
// counted), so allocations past the limit fail and the worker dies with
// "out of memory" rather than swapping the node.
func limitMemory(n int64) error {
	return syscall.Setrlimit(syscall.RLIMIT_DATA, &syscall.Rlimit{Cur: uint64(n), Max: uint64(n)})
}

// setWorkerAttrs kills the worker if the agent dies first.
func setWorkerAttrs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
