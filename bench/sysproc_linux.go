package main

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the kernel SIGKILL the child when the bench process
// dies, however it dies (also by SIGKILL), so that no child outlives it.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
