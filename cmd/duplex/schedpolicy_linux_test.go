package main

import (
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// denySchedSetattr has every thread of the process, and those it creates,
// get EPERM from sched_setattr, as a container's seccomp profile may.
func denySchedSetattr() error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	filter := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // the system call's number
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: unix.SYS_SCHED_SETATTR},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return err
	}
	if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&prog))); errno != 0 {
		return errno
	}
	return nil
}

// TestAPrimaryDeniedTheBatchPolicyStartsAndSaysSo starts a primary whose
// system calls to set a thread's policy are refused (a seccomp profile): it
// starts all the same, and its log says its threads kept the default
// policy, and why.
func TestAPrimaryDeniedTheBatchPolicyStartsAndSaysSo(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("a single processor: the primary keeps the default policy without trying")
	}
	t.Setenv("DUPLEX_DENY_SCHED", "1")
	dir := t.TempDir()
	c := startupSession(dir)
	_, log, _ := startSite(t, "primary", "primary", "--config", writeSessionConfig(t, mkdir(t, filepath.Join(dir, "p")), c))
	if out := log.String(); !strings.Contains(out, "level=WARN") || !strings.Contains(out, "SCHED_BATCH") || !strings.Contains(out, "operation not permitted") {
		t.Errorf("a primary refused the batch policy logs no warning saying so:\n%s", out)
	}
}
