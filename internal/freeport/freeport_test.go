package freeport

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// childEnv makes the test binary a picker in another process: it takes
// that many addresses, prints them, and holds them until its stdin closes.
const childEnv = "FREEPORT_TEST_CHILD"

func TestMain(m *testing.M) {
	if v := os.Getenv(childEnv); v != "" {
		n, _ := strconv.Atoi(v)
		addrs, err := Addrs(n)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Println(strings.Join(addrs, " "))
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// picker is another process holding the addresses it picked.
type picker struct {
	cmd   *exec.Cmd
	stdin io.Closer
	addrs []string
}

func startPicker(t *testing.T, n int, env ...string) *picker {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(append(os.Environ(), childEnv+"="+strconv.Itoa(n)), env...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &picker{cmd: cmd, stdin: in}
	t.Cleanup(func() { in.Close(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("the other picker printed no addresses: %v", err)
	}
	p.addrs = strings.Fields(line)
	if len(p.addrs) != n {
		t.Fatalf("the other picker printed %d addresses, want %d", len(p.addrs), n)
	}
	return p
}

func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Two test processes picking at once (CI runs every package's tests at
// once) never get the same port; none is in the ephemeral range, where any
// process binding port 0 or connecting may take it before the daemon binds
// it; and each can be bound when handed out: the reservation holds no
// socket.
func TestTwoProcessesNeverShareAPort(t *testing.T) {
	const n = 300
	done := make(chan []string, 1)
	go func() {
		a, err := Addrs(n)
		if err != nil {
			t.Error(err)
		}
		done <- a
	}()
	other := startPicker(t, n)
	mine := <-done
	if t.Failed() {
		t.FailNow()
	}
	more, err := Addrs(10) // and not twice in one process
	if err != nil {
		t.Fatal(err)
	}
	lo, hi := EphemeralRange()
	seen := map[string]string{}
	for who, addrs := range map[string][]string{"this process": append(mine, more...), "the other process": other.addrs} {
		for _, addr := range addrs {
			if prev, ok := seen[addr]; ok {
				t.Fatalf("%s handed out to %s and to %s", addr, prev, who)
			}
			seen[addr] = who
			if p := port(t, addr); p >= lo && p <= hi {
				t.Fatalf("%s lies in the ephemeral range %d-%d", addr, lo, hi)
			}
		}
	}
	for _, addr := range append(mine, more...) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("%s handed out but not bindable: %v", addr, err)
		}
		ln.Close()
	}
}

// A picker killed -9 leaves its lock files behind, but not its locks: the
// kernel drops a flock with the last descriptor, so its ports can be
// reserved again and the directory's files reserve nothing for ever.
func TestAKilledPickersPortsCanBeReservedAgain(t *testing.T) {
	other := startPicker(t, 20)
	for _, addr := range other.addrs {
		if tryLock(t, port(t, addr)) {
			t.Fatalf("%s: locked while the other picker lives", addr)
		}
	}
	if err := other.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	other.cmd.Wait()
	for _, addr := range other.addrs {
		if !tryLock(t, port(t, addr)) {
			t.Fatalf("%s: still reserved after its picker was killed", addr)
		}
	}
}

// tryLock says whether port's lock file can be locked now (and unlocks it).
func tryLock(t *testing.T, port int) bool {
	t.Helper()
	f, err := os.Open(filepath.Join(Dir, strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil
}

// The lock directory is shared by every user's pickers, as /tmp is: anyone
// may create a lock file in it, but only its owner may remove or replace
// it. Without the sticky bit another user (or a cleaner of /tmp running as
// one) could remove a file whose lock a picker holds, and the next picker
// would lock a new file of the same name: two processes, one port.
func TestTheLockDirectoryIsSticky(t *testing.T) {
	saved := Dir
	Dir = filepath.Join(t.TempDir(), "ports")
	t.Cleanup(func() { Dir = saved })
	if _, err := Addrs(1); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(Dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fi.Mode()&(os.ModeSticky|os.ModePerm), os.ModeSticky|0o777; got != want {
		t.Fatalf("%s: mode %v, want %v", Dir, got, want)
	}
}

// A host whose ephemeral range starts low (some widen it to 1024-60999)
// leaves no room below it: the ports above it, which the kernel never
// hands out either, are picked instead of failing every test that needs
// an address.
func TestAnEphemeralRangeStartingLowPicksAboveIt(t *testing.T) {
	saved := rangeFile
	rangeFile = filepath.Join(t.TempDir(), "ip_local_port_range")
	t.Cleanup(func() { rangeFile = saved })
	if err := os.WriteFile(rangeFile, []byte("1024\t60999\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	addrs, err := Addrs(3)
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range addrs {
		if p := port(t, addr); p <= 60999 {
			t.Errorf("%s: in or below the ephemeral range 1024-60999", addr)
		}
	}
}

// Every picker on the machine locks the same files, whatever its TMPDIR:
// the ports are the machine's (pam_tmpdir, for one, gives each user a TMPDIR
// of their own, and a job runner may give each job one).
func TestPickersWithTheirOwnTMPDIRNeverShareAPort(t *testing.T) {
	const n = 500
	mine, err := Addrs(n)
	if err != nil {
		t.Fatal(err)
	}
	other := startPicker(t, n, "TMPDIR="+t.TempDir())
	held := map[string]bool{}
	for _, a := range mine {
		held[a] = true
	}
	var both []string
	for _, a := range other.addrs {
		if held[a] {
			both = append(both, a)
		}
	}
	if len(both) > 0 {
		t.Fatalf("%d addresses handed out to this process and to one with another TMPDIR, such as %s", len(both), both[0])
	}
}

// Where /tmp cannot hold the lock directory, TMPDIR's does, rather than
// no test getting an address.
func TestALockDirectoryThatCannotBeMadeFallsBackToTMPDIR(t *testing.T) {
	saved := Dir
	t.Cleanup(func() { Dir = saved })
	notADir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notADir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	Dir = filepath.Join(notADir, dirName)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	if _, err := Addrs(1); err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(tmp, dirName); Dir != want {
		t.Errorf("lock directory %s, want %s", Dir, want)
	}
}

// The lock directory sits in /tmp, where any user may have made the name
// first: a symlink there to a directory of root's must not have a picker
// running as root (CI) make that directory world-writable.
func TestASymlinkedLockDirectoryIsRefused(t *testing.T) {
	saved := Dir
	t.Cleanup(func() { Dir = saved })
	target := filepath.Join(t.TempDir(), "root-only")
	if err := os.Mkdir(target, 0o700); err != nil {
		t.Fatal(err)
	}
	Dir = filepath.Join(t.TempDir(), dirName)
	if err := os.Symlink(target, Dir); err != nil {
		t.Fatal(err)
	}
	_, err := Addrs(1)
	fi, serr := os.Stat(target)
	if serr != nil {
		t.Fatal(serr)
	}
	if got := fi.Mode() & (os.ModeSticky | os.ModePerm); got != 0o700 {
		t.Errorf("the symlink's target %s: mode %v after a pick, want -rwx------", target, got)
	}
	if err == nil {
		t.Error("a pick went ahead in a lock directory that is a symlink")
	}
}

// Nor may a symlink planted as a lock file have the picker make a file
// wherever it points (an empty /etc/nologin, say).
func TestASymlinkedLockFileIsNotFollowed(t *testing.T) {
	savedDir, savedRange := Dir, rangeFile
	t.Cleanup(func() { Dir, rangeFile = savedDir, savedRange })
	rangeFile = filepath.Join(t.TempDir(), "ip_local_port_range")
	if err := os.WriteFile(rangeFile, []byte("17408\t60999\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	Dir = t.TempDir()
	target := t.TempDir()
	lo, hi := Range()
	for p := lo; p <= hi; p++ {
		if err := os.Symlink(filepath.Join(target, strconv.Itoa(p)), filepath.Join(Dir, strconv.Itoa(p))); err != nil {
			t.Fatal(err)
		}
	}
	addrs, err := Addrs(1)
	made, _ := os.ReadDir(target)
	if len(made) > 0 {
		t.Errorf("the picker made %d files where the lock files' symlinks point, such as %s", len(made), made[0].Name())
	}
	if err == nil {
		t.Errorf("picked %v through a symlinked lock file", addrs)
	}
}
