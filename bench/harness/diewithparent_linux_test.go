package harness

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A process that starts a daemon and dies without stopping it (a test
// binary that times out: its panic skips every cleanup) takes the daemon
// with it, rather than leaving it running for good.
func TestADaemonDiesWithTheProcessThatStartedIt(t *testing.T) {
	if os.Getenv("HARNESS_DIE_PARENT") != "" {
		d, err := Start("sleeper", filepath.Join(os.Getenv("HARNESS_DIE_PARENT"), "sleeper.log"), "sleep", "600")
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println("started", d.Pid())
		os.Exit(0) // no cleanup, as a panic
	}
	if _, err := exec.LookPath("sleep"); err != nil {
		t.Skip("no sleep(1)")
	}
	parent := exec.Command(os.Args[0], "-test.run=^TestADaemonDiesWithTheProcessThatStartedIt$")
	parent.Env = append(os.Environ(), "HARNESS_DIE_PARENT="+t.TempDir())
	out, err := parent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	parent.Wait()
	pid, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "started ")))
	if err != nil {
		t.Fatalf("the parent said %q", line)
	}
	// Reaped by init once killed: gone from the process table, or a zombie
	// until then. Bounded by the kernel's delivery, not by a clock.
	for start := time.Now(); alive(pid); {
		if time.Since(start) > time.Minute {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("the daemon (pid %d) outlived the process that started it", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// alive says whether pid runs (neither gone nor a zombie).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
