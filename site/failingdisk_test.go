package site

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"duplex/config"
	"duplex/internal/testenv"
	"duplex/nbd"
)

// failingDisk is a file of size bytes whose reads and writes fail with EIO
// while failing is set, as a failing disk's do: an nbdkit memory disk
// behind its error filter, mounted as a file by nbdfuse.
type failingDisk struct {
	path    string
	errFile string
}

func newFailingDisk(t *testing.T, size int64) *failingDisk {
	t.Helper()
	testenv.NeedTool(t, "nbdkit", "nbdkit")
	testenv.NeedTool(t, "nbdfuse", "nbdfuse")
	testenv.NeedTool(t, "fusermount3", "fuse3")
	if _, err := os.Stat("/dev/fuse"); err != nil {
		testenv.Missing(t, "no /dev/fuse: %v", err)
	}
	dir := t.TempDir()
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	d := &failingDisk{path: filepath.Join(mnt, "disk"), errFile: filepath.Join(dir, "failing")}
	cmd := exec.Command("nbdfuse", d.path, "--command", "nbdkit", "-s", "--filter=error", "memory", strconv.FormatInt(size, 10),
		"error-rate=100%", "error-file="+d.errFile, "error=EIO")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	// Registered first, run last: after the sites have closed the file.
	// The kernel may still hold the file busy for a moment after its last
	// close (writeback of pages the failing disk refused): a single
	// unmount that fails then left nbdfuse running and the test waiting on
	// it for good. Retry for a while, then detach the mount and kill it.
	t.Cleanup(func() {
		var out []byte
		var err error
		for deadline := time.Now().Add(10 * time.Second); ; {
			if out, err = exec.Command("fusermount3", "-u", mnt).CombinedOutput(); err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Logf("fusermount3 -u %s: %v: %s; detaching it", mnt, err, out)
			exec.Command("fusermount3", "-u", "-z", mnt).Run()
		}
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Logf("nbdfuse did not exit 10s after the unmount of %s: killed", mnt)
			cmd.Process.Kill()
			<-exited
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		if st, err := os.Stat(d.path); err == nil && st.Size() == size {
			return d
		}
		if time.Now().After(deadline) {
			testenv.Missing(t, "nbdfuse did not mount %s in 10s", d.path)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fail makes the disk's reads and writes fail (true) or work again.
func (d *failingDisk) fail(t *testing.T, on bool) {
	t.Helper()
	if on {
		if err := os.WriteFile(d.errFile, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if err := os.Remove(d.errFile); err != nil {
		t.Fatal(err)
	}
}

// TestARecoveryCopyWhoseReadFailsDoesNotStopTheStart: the primary stopped
// uncleanly with writes to vol1 and vol2 the secondary never got; at the
// restart, vol1's disk fails (EIO). The primary starts all the same and
// serves: vol1 is suspended with the read's error as its reason, vol2,
// recovered, is duplex, and vol1's NBD export answers a read or a write
// with an error rather than hang. Once the disk works again, a resume
// copies vol1, and the secondary holds both volumes as the primary does.
func TestARecoveryCopyWhoseReadFailsDoesNotStopTheStart(t *testing.T) {
	cfg := linkConfig(t)
	disk := newFailingDisk(t, 1<<20)
	cfg.Primary.Subsystems[0].Volumes[0].Path = disk.path
	if got := cfg.Primary.Subsystems[0].Volumes[0].Name; got != "vol1" {
		t.Fatalf("the demo session's first volume is %s, want vol1", got)
	}
	cfg.Primary.SidefileLimit = 16 * config.MiB
	s, dialer := crashWithUnshippedWrites(t, cfg, "vol1", "vol2")
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	disk.fail(t, true)
	cfg.Primary.NBD = "127.0.0.1:0"
	p, err := OpenPrimary(cfg, quiet, PrimaryOptions{Dialer: dialer, CopyReadWait: healthyReadWait})
	if err != nil {
		t.Fatalf("the primary does not start, vol1's disk failing: %v", err)
	}
	runUntil(t, func(ctx context.Context) { p.Run(ctx, 0) })
	waitFor(t, 30*time.Second, "vol1 reported suspended, with the read's error", func() bool {
		v := volumeStatus(p.Status(), "vol1")
		return v.State == "suspended" && strings.Contains(v.Reason, "input/output error")
	})
	waitFor(t, 30*time.Second, "vol2 duplex", func() bool { return volumeStatus(p.Status(), "vol2").State == "duplex" })

	// The failing volume's export answers with errors, at once.
	c, err := nbd.Dial(p.NBDAddr(), "vol1")
	if err != nil {
		t.Fatalf("vol1's export, its disk failing: %v", err)
	}
	defer c.Close()
	answered := make(chan [2]error, 1)
	go func() {
		rerr := c.ReadAt(make([]byte, 4096), 0)
		werr := c.WriteAt(bytes.Repeat([]byte{0x78}, 4096), 8192)
		answered <- [2]error{rerr, werr}
	}()
	select {
	case errs := <-answered:
		if errs[0] == nil || errs[1] == nil {
			t.Fatalf("vol1's export, its disk failing: read %v, write %v; want both to fail", errs[0], errs[1])
		}
	case <-time.After(30 * time.Second):
		t.Fatal("vol1's export does not answer a read and a write in 30s, its disk failing")
	}
	c2, err := nbd.Dial(p.NBDAddr(), "vol2")
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := c2.WriteAt(bytes.Repeat([]byte{0x79}, 4096), 8192); err != nil {
		t.Fatalf("vol2's export: %v", err)
	}
	quiesceMover(t, p)

	disk.fail(t, false)
	if err := c.WriteAt(bytes.Repeat([]byte{0x7a}, 4096), 8192); err != nil {
		t.Fatalf("vol1's export, its disk working again: %v", err)
	}
	resumesToTheSecondary(t, p, s, []string{"vol1"}, []string{"vol1", "vol2"})
}

// TestACopyWhoseReadFailsSuspendsItsPair: vol1's disk fails (EIO) while
// the primary runs, and vol1 is deleted and added again: its first copy's
// read fails. The pair is suspended with the read's error as its reason
// rather than tried for ever, vol2's writes keep reaching the secondary,
// and once the disk works again a resume copies vol1 whole.
func TestACopyWhoseReadFailsSuspendsItsPair(t *testing.T) {
	cfg := linkConfig(t)
	disk := newFailingDisk(t, 1<<20)
	cfg.Primary.Subsystems[0].Volumes[0].Path = disk.path
	s, _ := runSecondary(t, cfg)
	cfg.Primary.Secondary = s.ListenAddr()
	p, _ := startPrimary(t, cfg, healthyReadWait)
	waitFor(t, 30*time.Second, "every pair duplex", func() bool { return allPairsDuplex(p.Status()) })
	ctx := context.Background()
	if err := p.Write(ctx, "vol1", bytes.Repeat([]byte{0x77}, 4096), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Pairs().Delete("vol1"); err != nil {
		t.Fatal(err)
	}
	disk.fail(t, true)
	if err := p.Pairs().Add("vol1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "vol1 reported suspended, with the read's error", func() bool {
		v := volumeStatus(p.Status(), "vol1")
		return v.State == "suspended" && strings.Contains(v.Reason, "input/output error")
	})
	if err := p.Write(ctx, "vol2", bytes.Repeat([]byte{0x79}, 4096), 8192); err != nil {
		t.Fatal(err)
	}
	quiesceMover(t, p)
	waitFor(t, 30*time.Second, "the secondary's vol2 to be the primary's", func() bool { return sameVolume(t, p, s, "vol2") })

	disk.fail(t, false)
	resumesToTheSecondary(t, p, s, []string{"vol1"}, []string{"vol1", "vol2"})
}

// TestAWriteThatFailsOnTheDiskIsNotReplicatedAsWritten: vol1 is duplex and
// its disk fails (EIO). An NBD client's write to it gets an error, not an
// acknowledgement. The write was captured before the disk failed it, so
// the secondary gets its data, which the primary's disk never took: vol1
// is suspended, saying why, rather than go on reported duplex and
// consistent with a copy the primary does not hold. Once the disk works
// again, a resume copies the region, and the secondary's vol1 is the
// primary's.
func TestAWriteThatFailsOnTheDiskIsNotReplicatedAsWritten(t *testing.T) {
	r := duplexOnAFailingDisk(t)
	p, s, disk, c := r.p, r.s, r.disk, r.c

	disk.fail(t, true)
	answered := make(chan error, 1)
	go func() { answered <- c.WriteAt(bytes.Repeat([]byte{0x78}, 4096), 8192) }()
	select {
	case err := <-answered:
		if err == nil {
			t.Fatal("a write to vol1, its disk failing, was acknowledged")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("vol1's export does not answer a write in 30s, its disk failing")
	}
	waitFor(t, 30*time.Second, "vol1 reported suspended, with the write's error", func() bool {
		v := volumeStatus(p.Status(), "vol1")
		return v.State == "suspended" && strings.Contains(v.Reason, "write") && strings.Contains(v.Reason, "input/output error")
	})
	disk.fail(t, false)
	got := make([]byte, 4096)
	if err := p.ReadAt("vol1", got, 8192); err != nil {
		t.Fatal(err)
	}
	if got[0] != 0x77 {
		t.Logf("the primary's vol1 holds %#x at 8192 after the failed write", got[0])
	}
	resumesToTheSecondary(t, p, s, []string{"vol1"}, []string{"vol1", "vol2"})
}

// TestAWriteThatFailsOnTheDiskJustBeforeACleanStopIsCopiedAgain: as
// TestAWriteThatFailsOnTheDiskIsNotReplicatedAsWritten, but the primary
// is stopped cleanly as soon as the failed write is answered, before the
// pair manager's next look at the failed writes. A clean stop leaves no
// activity log marks to copy again and saved vol1 duplex, with the
// secondary holding the write's data where the primary's disk does not.
// The stop tells the secondary, so that it does not report vol1 duplex
// while the primary is down. Restarted, its disk working, vol1 is
// suspended for the write, and once resumed the secondary's vol1 is the
// primary's.
func TestAWriteThatFailsOnTheDiskJustBeforeACleanStopIsCopiedAgain(t *testing.T) {
	r := duplexOnAFailingDisk(t)
	cfg, p, s, stop, disk, c := r.cfg, r.p, r.s, r.stop, r.disk, r.c

	disk.fail(t, true)
	if err := c.WriteAt(bytes.Repeat([]byte{0x78}, 4096), 8192); err == nil {
		t.Fatal("a write to vol1, its disk failing, was acknowledged")
	}
	if err := stop(); err != nil {
		t.Fatalf("the primary's stop, linked to the secondary: %v, want a clean stop", err)
	}
	c.Close()
	// Stopped, the primary holds vol1 suspended, the region to copy; the
	// secondary, linked until the stop, must not go on reporting it duplex
	// and consistent as of the last group, a copy the primary's disk does
	// not hold, until the primary's restart tells it.
	if v := volumeStatus(s.Status(), "vol1"); v.State != "suspended" {
		t.Fatalf("the secondary, the primary stopped cleanly just after vol1's disk failed a write: vol1 %s (%s), want suspended", v.State, v.Consistency)
	}
	disk.fail(t, false)

	p, _ = startPrimary(t, cfg, healthyReadWait)
	waitFor(t, 10*time.Second, "vol1, restarted after a clean stop, reported suspended, with the write's error", func() bool {
		v := volumeStatus(p.Status(), "vol1")
		return v.State == "suspended" && strings.Contains(v.Reason, "write") && strings.Contains(v.Reason, "input/output error")
	})
	resumesToTheSecondary(t, p, s, []string{"vol1"}, []string{"vol1", "vol2"})
}

// failingDiskRig is a session whose vol1 lies on a disk that can be made
// to fail, every pair duplex, and an NBD client of vol1 that has written
// 0x77 at 8192 (the block the tests then fail a write to).
type failingDiskRig struct {
	cfg  *config.Config
	disk *failingDisk
	s    *Secondary
	p    *Primary
	stop func() error // nil: a clean stop
	c    *nbd.Client
}

func duplexOnAFailingDisk(t *testing.T) failingDiskRig {
	t.Helper()
	cfg := linkConfig(t)
	disk := newFailingDisk(t, 1<<20)
	cfg.Primary.Subsystems[0].Volumes[0].Path = disk.path
	cfg.Primary.NBD = "127.0.0.1:0"
	s, _ := runSecondary(t, cfg)
	cfg.Primary.Secondary = s.ListenAddr()
	p, stop := startPrimaryDraining(t, cfg, healthyReadWait, 30*time.Second)
	waitFor(t, 30*time.Second, "every pair duplex", func() bool { return allPairsDuplex(p.Status()) })
	c := clientWroteVol1(t, p.NBDAddr(), 0x77)
	return failingDiskRig{cfg: cfg, disk: disk, s: s, p: p, stop: stop, c: c}
}
