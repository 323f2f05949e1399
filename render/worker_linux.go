package render

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"strconv"
	"syscall"
)

// limitMemory sets RLIMIT_DATA of this process to n above the data memory
// it already holds: the Go runtime maps its heap writable only as it grows
// (address space it merely reserves is not counted), so allocations past
// the limit fail and the worker dies with "out of memory" rather than
// swapping the node. Counting from what is mapped at start keeps the bound
// the same for a binary built with the race detector, whose runtime maps
// some 300 MB before main runs.
func limitMemory(n int64) error {
	base := vmData()
	return syscall.Setrlimit(syscall.RLIMIT_DATA, &syscall.Rlimit{Cur: uint64(base + n), Max: uint64(base + n)})
}

// vmData is this process's VmData in bytes (0 when it cannot be read).
func vmData() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) >= 2 && string(f[0]) == "VmData:" {
			kb, err := strconv.ParseInt(string(f[1]), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}

// setWorkerAttrs kills the worker if the agent dies first.
func setWorkerAttrs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
