//go:build !linux

package sysmon

// reexec does nothing where the running binary cannot be named reliably:
// the daemon runs with the runtime's default monitor.
func reexec(env []string) {}
