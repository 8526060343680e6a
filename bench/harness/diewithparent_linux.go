package harness

import (
	"os/exec"
	"syscall"
)

// DieWithParent has the kernel kill cmd's process when the process that
// starts it dies: a test binary that times out (its panic skips every
// cleanup) or a benchmark run that is killed would otherwise leave its
// daemons running for good, a primary redialing its secondary every second,
// taking CPU and ports from later runs on the same machine. The kernel
// signals the child when the thread that started it ends, which Go does
// only to a thread a goroutine exits locked to (runtime.LockOSThread):
// nothing that starts daemons does that.
func DieWithParent(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
