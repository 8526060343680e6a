package sysmon

import (
	"os"
	"os/exec"
	"syscall"
)

// self is the running binary even if its file was replaced or removed since
// the process started (an upgrade in place).
const self = "/proc/self/exe"

// reexec replaces the process with the binary it runs, with the same
// arguments and env.
func reexec(env []string) {
	if p := binary(); p != self {
		_ = syscall.Exec(p, os.Args, env)
	}
	_ = syscall.Exec(self, os.Args, env)
}

// binary is the path to run the process's binary again by. The kernel names
// a process (its comm: what ps, top, pgrep and the journal show) after the
// last element of the path it executes, so self would rename the daemon
// "exe": the path it was started by (os.Args[0], looked up in PATH as its
// starter did), or failing that its binary's own path, is taken while it is
// still the running binary, and self only once it is not. A file put in its
// place between this check and the exec is what a start a moment later
// would have run.
func binary() string {
	running, err := os.Stat(self)
	if err != nil {
		return self
	}
	var paths []string
	if len(os.Args) > 0 && os.Args[0] != "" {
		if p, err := exec.LookPath(os.Args[0]); err == nil {
			paths = append(paths, p)
		}
	}
	if p, err := os.Readlink(self); err == nil {
		paths = append(paths, p)
	}
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil && os.SameFile(fi, running) {
			return p
		}
	}
	return self
}
