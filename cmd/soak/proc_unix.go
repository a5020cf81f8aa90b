//go:build unix

package main

import (
	"os/exec"
	"syscall"
)

// detach puts the service child in its own process group, so that a Ctrl-C meant for
// the soak does not reach it: the soak then stops the load and the child with SIGTERM,
// and still reports on it.
func detach(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}
