package sysmon

import (
	"os"
	"syscall"
)

// reexec replaces the process with the binary it runs, with the same
// arguments and env. /proc/self/exe is the running binary even if its file
// was replaced or removed since (an upgrade in place).
func reexec(env []string) {
	_ = syscall.Exec("/proc/self/exe", os.Args, env)
}
