package e2e

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"duplex/config"
	"duplex/internal/testenv"
)

// needExt4OverNBD skips unless a kernel file system can be put on an NBD
// export here: nbdfuse, a loop device, mkfs.ext4, e2fsck and mount, as root.
func needExt4OverNBD(t *testing.T) {
	t.Helper()
	testenv.NeedTool(t, "nbdfuse", "libnbd-bin")
	testenv.NeedTool(t, "fusermount3", "fuse3")
	testenv.NeedTool(t, "mkfs.ext4", "e2fsprogs")
	testenv.NeedTool(t, "e2fsck", "e2fsprogs")
	testenv.NeedTool(t, "losetup", "mount")
	testenv.NeedTool(t, "mount", "mount")
	if os.Geteuid() != 0 {
		t.Skip("needs root for losetup and mount")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("no /dev/fuse: %v", err)
	}
}

// ext4OverNBD mounts the NBD export uri as ext4 at fsDir through nbdfuse
// and a loop device (making the file system first if mkfs), and returns
// the unmount: umount, loop detach, fuse unmount, in that order, each
// write flushed to the export by then.
func ext4OverNBD(t *testing.T, uri, fsDir string, mkfs bool) func() {
	t.Helper()
	return ext4OverNBDWith(t, uri, fsDir, mkfs, nil)
}

// ext4OverNBDWith is ext4OverNBD that runs check on the loop device before
// the mount.
func ext4OverNBDWith(t *testing.T, uri, fsDir string, mkfs bool, check func(dev string)) func() {
	t.Helper()
	dir := t.TempDir()
	fuseDir := filepath.Join(dir, "fuse")
	if err := os.Mkdir(fuseDir, 0o755); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(dir, "nbdfuse.pid")
	fuse := exec.Command("nbdfuse", "-P", pidFile, fuseDir, uri)
	var fuseOut bytes.Buffer
	fuse.Stdout, fuse.Stderr = &fuseOut, &fuseOut
	if err := fuse.Start(); err != nil {
		t.Skipf("cannot run nbdfuse: %v", err)
	}
	fuseDone := make(chan error, 1)
	go func() { fuseDone <- fuse.Wait() }()
	var steps []func() error
	steps = append(steps, func() error {
		out, err := exec.Command("fusermount3", "-u", fuseDir).CombinedOutput()
		select {
		case <-fuseDone:
		case <-time.After(30 * time.Second):
			fuse.Process.Kill()
			<-fuseDone
			return fmt.Errorf("nbdfuse did not exit after fusermount3 -u")
		}
		if err != nil {
			return fmt.Errorf("fusermount3 -u: %v: %s", err, out)
		}
		return nil
	})
	undo := func() error {
		var first error
		for i := len(steps) - 1; i >= 0; i-- {
			if err := steps[i](); err != nil && first == nil {
				first = err
			}
		}
		steps = nil
		return first
	}
	t.Cleanup(func() { undo() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		if b, _ := os.ReadFile(pidFile); len(b) > 0 {
			break
		}
		select {
		case err := <-fuseDone:
			fuseDone <- err
			t.Skipf("nbdfuse could not mount (FUSE unusable here?): %v\n%s", err, fuseOut.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Skipf("nbdfuse not ready within 20s:\n%s", fuseOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	loop, err := exec.Command("losetup", "-f", "--show", filepath.Join(fuseDir, "nbd")).CombinedOutput()
	if err != nil {
		t.Skipf("losetup on the nbdfuse file is not possible here: %v: %s", err, loop)
	}
	dev := strings.TrimSpace(string(loop))
	steps = append(steps, func() error {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			return fmt.Errorf("losetup -d %s: %v: %s", dev, err, out)
		}
		return nil
	})
	if mkfs {
		testenv.MustRunTool(t, "mkfs.ext4", "-q", "-E", "lazy_itable_init=0,lazy_journal_init=0", dev)
	}
	if check != nil {
		check(dev)
	}
	if out, err := exec.Command("mount", dev, fsDir).CombinedOutput(); err != nil {
		t.Skipf("mount of ext4 on %s is not possible here: %v: %s", dev, err, out)
	}
	steps = append(steps, func() error {
		syscall.Sync()
		if out, err := exec.Command("umount", fsDir).CombinedOutput(); err != nil {
			return fmt.Errorf("umount %s: %v: %s", fsDir, err, out)
		}
		return nil
	})
	return func() {
		t.Helper()
		if err := undo(); err != nil {
			t.Fatal(err)
		}
	}
}

// writeStepTree writes files of content of its own for one step under
// root/step and returns path -> sha256.
func writeStepTree(t *testing.T, root, step string, seed uint64) map[string][32]byte {
	t.Helper()
	rng := mrand.New(mrand.NewPCG(seed, 7))
	want := map[string][32]byte{}
	sizes := []int{1, 4096, 10000, 65536, 300000, 1 << 20}
	for i, size := range sizes {
		d := filepath.Join(step, fmt.Sprintf("d%d", i%3))
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
		data := make([]byte, size)
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		name := filepath.Join(d, fmt.Sprintf("file%d.bin", i))
		if err := os.WriteFile(filepath.Join(root, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		want[filepath.ToSlash(name)] = sha256.Sum256(data)
	}
	return want
}

// fsckImage checks a copy of a site's image: e2fsck -fy replays the
// journal (a copy taken after a crash needs it), then e2fsck -fn must find
// the file system clean. It returns the tree the copy holds.
func fsckImage(t *testing.T, image, where string) map[string][32]byte {
	t.Helper()
	dir := t.TempDir()
	cp := filepath.Join(dir, "copy.img")
	copyImage(t, image, cp)
	if out, err := testenv.RunTool(t, "e2fsck", "-fy", cp); err != nil {
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() > 1 {
			t.Fatalf("%s: e2fsck -fy: %v\n%s", where, err, out)
		}
	}
	if out, err := testenv.RunTool(t, "e2fsck", "-fn", cp); err != nil {
		t.Fatalf("%s: e2fsck -fn after the journal's replay: %v\n%s", where, err, out)
	}
	ro := filepath.Join(dir, "ro")
	if err := os.Mkdir(ro, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-o", "ro,loop", cp, ro).CombinedOutput(); err != nil {
		t.Fatalf("%s: loop-mount the copy read-only: %v: %s", where, err, out)
	}
	defer exec.Command("umount", ro).Run()
	got := readTree(t, ro)
	t.Logf("%s: e2fsck clean, %d entries", where, len(got))
	return got
}

func checkTree(t *testing.T, where string, got map[string][32]byte, want ...map[string][32]byte) {
	t.Helper()
	for _, w := range want {
		for path, sum := range w {
			if g, ok := got[path]; !ok {
				t.Errorf("%s: %s is missing", where, path)
			} else if g != sum {
				t.Errorf("%s: %s differs", where, path)
			}
		}
	}
}

func sameTree(t *testing.T, where string, a, b map[string][32]byte) {
	t.Helper()
	if len(a) != len(b) {
		t.Errorf("%s: %d entries at A, %d at B", where, len(a), len(b))
	}
	checkTree(t, where, a, b)
}

// TestDaemonsRoundTripFilesystem is TestDaemonsRoundTrip with ext4 on a
// volume (nbdfuse and a loop device over the NBD export of the site that
// is primary): files written at A, which is killed -9 once they are
// synced; A back alone takes a file B never sees; recover and promote at
// B, which takes files; rejoin at A; switchover back; files at A; rejoin
// at B. After each step e2fsck finds a copy of each site's image clean
// (after the journal's replay), the files each site acknowledged are
// there, and at the end both images are identical.
func TestDaemonsRoundTripFilesystem(t *testing.T) {
	needExt4OverNBD(t)
	const volSize = 64 << 20
	link := testenv.FreeAddr(t)
	s := newSession(t, sessionOpts{name: "e2e-roundtrip-fs", volSize: volSize, token: "e2e-roundtrip-fs-token", edit: func(c *config.Config) {
		c.Primary.Listen, c.Primary.Journal = link, filepath.Join(c.Dir, "primary", "journal")
	}})
	s.start()
	aImg, bImg := s.volumePaths("vol1")
	fsDir := filepath.Join(t.TempDir(), "fs")
	if err := os.Mkdir(fsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	step := func(addr, name string, mkfs bool, seed uint64) map[string][32]byte {
		unmount := ext4OverNBD(t, nbdURI(addr, "vol1"), fsDir, mkfs)
		w := writeStepTree(t, fsDir, name, seed)
		unmount()
		return w
	}

	// A: a file system and files, synced; then kill -9.
	step(s.cfg.Primary.NBD, "a1", true, 1)
	s.prim.kill()
	s.waitPrimaryGone()
	s.stopSecondary()
	s.restartPrimary()
	aOnly := step(s.cfg.Primary.NBD, "a-only", false, 2)
	s.prim.kill()
	fsckImage(t, aImg, "A after its second kill -9")

	// Failover.
	prom := s.recoverAndPromote()
	fsckImage(t, bImg, "B after the failover")
	b1 := step(s.cfg.Secondary.NBD, "b1", false, 3)
	checkTree(t, "B after its writes", fsckImage(t, bImg, "B after its writes"), b1)

	// Rejoin at A: once the copy ended and A applied it, A is B's image.
	if code, out, errOut := runDuplex(t, "rejoin", "--config", s.path); code != 0 {
		t.Fatalf("rejoin exited %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	rej := startDaemon(t, "rejoin", s.path, filepath.Join(s.dir, "rejoin.log"), "--yes")
	rej.waitStarted()
	rej.waitReady(s.cfg.Primary.Control)
	eventually(t, 3*time.Minute, "the copy to A to end", func() bool {
		st := s.secondaryStatus()
		if st.Link != "connected" {
			return false
		}
		for _, v := range st.Volumes {
			if v.State != "duplex" {
				return false
			}
		}
		a := s.primaryStatus()
		return (a.HeldGroups == nil || *a.HeldGroups == 0) && len(a.Resyncing) == 0 && a.Group != nil && a.JournaledGroup != nil && *a.Group == *a.JournaledGroup
	})
	aTree := fsckImage(t, aImg, "A after the rejoin")
	sameTree(t, "after the rejoin at A", aTree, fsckImage(t, bImg, "B after the rejoin"))
	for path := range aOnly {
		if _, ok := aTree[path]; ok {
			t.Errorf("A after the rejoin still has %s, written while B never saw it", path)
		}
	}

	// Switchover back: A serves as the primary on the addresses it held
	// as B's secondary, never free in between.
	freed := watchFreedAddrs(t, s.cfg.Primary.NBD, s.cfg.Primary.Control)
	if code, out, errOut := runDuplex(t, "switchover", "--config", s.path, "--timeout", "90s"); code != 0 {
		t.Fatalf("switchover back: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	eventually(t, time.Minute, "A to serve as the primary", func() bool {
		freed.check(t, "the switchover back", false)
		st, err := fetchStatus(s.cfg.Primary.Control)
		return err == nil && st.Role == "primary"
	})
	freed.check(t, "the switchover back", true)
	sameTree(t, "after the switchover back", fsckImage(t, aImg, "A after the switchover back"), fsckImage(t, bImg, "B after the switchover back"))

	// A takes files; B rejoins it.
	a2 := step(s.cfg.Primary.NBD, "a2", false, 4)
	checkTree(t, "A after its writes", fsckImage(t, aImg, "A after its writes"), b1, a2)
	if code := prom.stop(); code != 0 {
		t.Errorf("B's promoted daemon, switched over, exited %d after SIGTERM, want 0", code)
	}
	if code, out, errOut := runDuplex(t, "rejoin", "--config", s.path); code != 0 {
		t.Fatalf("rejoin at B exited %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	rejB := startDaemon(t, "rejoin", s.path, filepath.Join(s.dir, "rejoin-b.log"), "--yes")
	rejB.waitStarted()
	rejB.waitReady(s.cfg.Secondary.Control)
	eventually(t, 3*time.Minute, "the copy to B to end and B to apply everything", func() bool {
		st := s.primaryStatus()
		if st.Link != "connected" {
			return false
		}
		for _, v := range st.Volumes {
			if v.State != "duplex" {
				return false
			}
		}
		b := s.secondaryStatus()
		return (b.HeldGroups == nil || *b.HeldGroups == 0) && len(b.Resyncing) == 0 && b.Group != nil && b.JournaledGroup != nil && *b.Group == *b.JournaledGroup
	})
	a, b := fsckImage(t, aImg, "A at the end"), fsckImage(t, bImg, "B at the end")
	sameTree(t, "at the end", a, b)
	checkTree(t, "B at the end", b, b1, a2)
	if testenv.SHA256File(t, aImg) != testenv.SHA256File(t, bImg) {
		t.Errorf("vol1 differs between A and B at the end")
	}
	if code := rej.stop(); code != 0 {
		t.Errorf("A exited %d after SIGTERM, want 0", code)
	}
	if code := rejB.stop(); code != 0 {
		t.Errorf("B exited %d after SIGTERM, want 0", code)
	}
}
