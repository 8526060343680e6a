package e2e

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"duplex/internal/testenv"
)

// These tests drive the running primary with the tools users run (nbdinfo,
// qemu-io, nbdcopy, fio, a kernel file system over nbdfuse and a loop
// device), and check what reaches the secondary. Each skips, saying what to
// install, when its tool is missing.

func nbdURI(addr, name string) string { return "nbd://" + addr + "/" + name }

func TestToolsNbdinfo(t *testing.T) {
	t.Parallel()
	testenv.NeedTool(t, "nbdinfo", "libnbd-bin")
	s := newSession(t, sessionOpts{})
	s.start()

	info := testenv.NBDInfo(t, nbdURI(s.cfg.Primary.NBD, "vol3"))
	if len(info.Exports) != 1 {
		t.Fatalf("nbdinfo: %+v", info)
	}
	e := info.Exports[0]
	if e.Name != "vol3" || e.Size != 64<<20 || e.ReadOnly || !e.CanFlush || !e.CanFUA || !e.CanTrim || !e.CanZero {
		t.Errorf("primary export vol3: %+v; want 64 MiB, writable, can_flush, can_fua, can_trim, can_zero", e)
	}

	info = testenv.NBDInfo(t, "--list", "nbd://"+s.cfg.Primary.NBD)
	var names []string
	for _, e := range info.Exports {
		names = append(names, e.Name)
	}
	sort.Strings(names)
	if strings.Join(names, ",") != "vol1,vol2,vol3,vol4" {
		t.Errorf("nbdinfo --list on the primary: exports %q, want vol1..vol4", names)
	}

	info = testenv.NBDInfo(t, nbdURI(s.cfg.Secondary.NBD, "vol3"))
	if len(info.Exports) != 1 || !info.Exports[0].ReadOnly || info.Exports[0].Size != 64<<20 {
		t.Errorf("secondary export vol3: %+v; want read-only, 64 MiB", info.Exports)
	}
	if out, err := testenv.RunTool(t, "nbdinfo", nbdURI(s.cfg.Primary.NBD, "nosuch")); err == nil {
		t.Errorf("nbdinfo of an export that is not a volume succeeded:\n%s", out)
	}
}

func qemuIO(t *testing.T, uri string, readOnly bool, cmds ...string) string {
	t.Helper()
	args := []string{"-f", "raw"}
	if readOnly {
		args = append(args, "-r")
	}
	args = append(args, uri)
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out := testenv.MustRunTool(t, "qemu-io", args...)
	if strings.Contains(out, "Pattern verification failed") || strings.Contains(strings.ToLower(out), "error") ||
		strings.Contains(out, "failed") {
		t.Fatalf("qemu-io %s:\n%s", uri, out)
	}
	return out
}

// TestToolsQemuIO writes patterns, discards and write-zeroes with qemu-io on
// a volume of each subsystem, then checks the secondary after the primary
// drained: byte-identical images, and the same patterns through its
// read-only export.
func TestToolsQemuIO(t *testing.T) {
	t.Parallel()
	testenv.NeedTool(t, "qemu-io", "qemu-utils")
	s := newSession(t, sessionOpts{})
	s.start()

	// vol1 is in ss1, vol3 in ss2.
	pat := map[string][2]string{"vol1": {"0xab", "0xcd"}, "vol3": {"0x5a", "0x3c"}}
	for _, vol := range []string{"vol1", "vol3"} {
		a, b := pat[vol][0], pat[vol][1]
		qemuIO(t, nbdURI(s.cfg.Primary.NBD, vol), false,
			"write -P "+a+" 0 2M",
			"read -P "+a+" 0 2M",
			"discard 1M 64k",
			"read -P 0 1M 64k",
			"write -z 1536k 64k",
			"read -P 0 1536k 64k",
			"write -P "+b+" -f 3M 4k", // FUA
			"write -P "+b+" 60M 1M",
			"flush",
		)
	}
	s.drainPrimary()

	for _, vol := range []string{"vol1", "vol3"} {
		a, b := pat[vol][0], pat[vol][1]
		qemuIO(t, nbdURI(s.cfg.Secondary.NBD, vol), true,
			"read -P "+a+" 0 1M",
			"read -P 0 1M 64k",
			"read -P "+a+" 1088k 448k",
			"read -P 0 1536k 64k",
			"read -P "+a+" 1600k 448k",
			"read -P 0 2M 1M",
			"read -P "+b+" 3M 4k",
			"read -P "+b+" 60M 1M",
		)
		// The secondary export refuses writes.
		out, err := testenv.RunTool(t, "qemu-io", "-f", "raw", nbdURI(s.cfg.Secondary.NBD, vol), "-c", "write -P 1 0 4k")
		if err == nil && !strings.Contains(out, "failed") && !strings.Contains(strings.ToLower(out), "read-only") {
			t.Errorf("qemu-io write to the secondary's export of %s did not fail:\n%s", vol, out)
		}
	}
	s.stopSecondary()
	s.assertImagesEqual()
}

// TestToolsNbdcopy copies 64 MiB of random data into a primary export and
// back out of the secondary's read-only export.
func TestToolsNbdcopy(t *testing.T) {
	t.Parallel()
	testenv.NeedTool(t, "nbdcopy", "libnbd-bin")
	s := newSession(t, sessionOpts{})
	s.start()
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	data := make([]byte, 64<<20)
	rand.Read(data)
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.MustRunTool(t, "nbdcopy", "--flush", src, nbdURI(s.cfg.Primary.NBD, "vol2"))
	s.waitConsistentAfter(time.Now())
	testenv.MustRunTool(t, "nbdcopy", nbdURI(s.cfg.Secondary.NBD, "vol2"), dst)
	want := sha256.Sum256(data)
	if got := testenv.SHA256File(t, dst); got != want {
		t.Errorf("copied out of the secondary: sha256 %x, want %x (the source's)", got, want)
	}
	s.drainPrimary()
	s.stopSecondary()
	s.assertImagesEqual()
}

var fioIOPS = regexp.MustCompile(`write: IOPS=([0-9.]+k?)`)

// TestToolsFio runs fio's nbd engine with verification against a primary
// export; afterwards the secondary equals the primary.
func TestToolsFio(t *testing.T) {
	t.Parallel()
	testenv.NeedTool(t, "fio", "fio")
	if out, _ := testenv.RunTool(t, "fio", "--enghelp=nbd"); !strings.Contains(out, "uri") {
		t.Skipf("fio has no nbd engine: apt-get install fio (built with libnbd)\n%s", out)
	}
	s := newSession(t, sessionOpts{})
	s.start()
	out := testenv.MustRunTool(t, "fio", "--name=t", "--ioengine=nbd", "--uri="+nbdURI(s.cfg.Primary.NBD, "vol4"),
		"--rw=randwrite", "--bs=4k", "--iodepth=16", "--size=32M",
		"--verify=crc32c", "--do_verify=1", "--verify_fatal=1", "--output-format=normal")
	// err= 0 is the job's status; total=8192,8192 says every 4k block was
	// written and read back for verification.
	if !strings.Contains(out, "err= 0") || !strings.Contains(out, "total=8192,8192") ||
		strings.Contains(out, "verify: bad") || strings.Contains(out, "verify failed") {
		t.Fatalf("fio reported errors:\n%s", out)
	}
	if m := fioIOPS.FindStringSubmatch(out); m != nil {
		t.Logf("fio 4k randwrite qd16 with verify against the primary: IOPS=%s", m[1])
	}
	s.drainPrimary()
	s.stopSecondary()
	s.assertImagesEqual()
}

// TestToolsFilesystem makes an ext4 file system on a primary volume through
// nbdfuse and a loop device, fills it, and checks that a copy of the
// secondary image is a clean file system holding the same tree.
func TestToolsFilesystem(t *testing.T) {
	needExt4OverNBD(t)
	s := newSession(t, sessionOpts{})
	s.start()
	dir := t.TempDir()
	fsDir := filepath.Join(dir, "fs")
	if err := os.Mkdir(fsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	unmount := ext4OverNBDWith(t, nbdURI(s.cfg.Primary.NBD, "vol1"), fsDir, true, func(dev string) {
		// The loop device stands on the file nbdfuse exposes the export as.
		f, err := os.Open(dev)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if size, err := f.Seek(0, io.SeekEnd); err != nil || size != 64<<20 {
			t.Fatalf("%s over the nbdfuse file: %d bytes (%v), want 64 MiB", dev, size, err)
		}
	})
	want := writeTree(t, fsDir)
	unmount()

	s.drainPrimary()
	s.stopSecondary()
	s.assertImagesEqual()

	// Check a copy, so the secondary image stays untouched.
	_, secImage := s.volumePaths("vol1")
	cp := filepath.Join(dir, "copy.img")
	copyImage(t, secImage, cp)
	if out, err := testenv.RunTool(t, "e2fsck", "-fn", cp); err != nil {
		t.Fatalf("e2fsck -fn on a copy of the secondary image: %v\n%s", err, out)
	}
	roDir := filepath.Join(dir, "ro")
	if err := os.Mkdir(roDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-o", "ro,loop", cp, roDir).CombinedOutput(); err != nil {
		t.Fatalf("loop-mount the copy read-only: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", roDir).Run() })
	got := readTree(t, roDir)
	for path, sum := range want {
		if g, ok := got[path]; !ok {
			t.Errorf("%s missing on the secondary's copy", path)
		} else if g != sum {
			t.Errorf("%s differs on the secondary's copy", path)
		}
	}
	for path := range got {
		if _, ok := want[path]; !ok && path != "lost+found/" {
			t.Errorf("%s on the secondary's copy was never written", path)
		}
	}
	t.Logf("secondary copy: e2fsck clean, %d entries identical", len(want))
}

// writeTree writes nested directories and files of known content under root
// and returns path -> sha256 (directories map to the zero sum, with a
// trailing slash).
func writeTree(t *testing.T, root string) map[string][32]byte {
	t.Helper()
	rng := mrand.New(mrand.NewPCG(1, 2))
	want := map[string][32]byte{}
	sizes := []int{0, 1, 511, 4096, 10000, 65536, 300000, 1 << 20, 3<<20 + 17}
	n := 0
	for _, d := range []string{"a", "a/b", "a/b/c", "a/b/c/d", "e", "e/f"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
		want[d+"/"] = [32]byte{}
		for range 4 {
			n++
			size := sizes[n%len(sizes)]
			data := make([]byte, size)
			for i := range data {
				data[i] = byte(rng.Uint32())
			}
			name := fmt.Sprintf("%s/file%02d.bin", d, n)
			if err := os.WriteFile(filepath.Join(root, name), data, 0o644); err != nil {
				t.Fatal(err)
			}
			want[name] = sha256.Sum256(data)
		}
	}
	name := "e/f/README.txt"
	text := []byte("written through duplex: nbdfuse -> loop -> ext4\n")
	if err := os.WriteFile(filepath.Join(root, name), text, 0o644); err != nil {
		t.Fatal(err)
	}
	want[name] = sha256.Sum256(text)
	return want
}

func readTree(t *testing.T, root string) map[string][32]byte {
	t.Helper()
	got := map[string][32]byte{}
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if rel == "." {
			return nil
		}
		if d.IsDir() {
			got[filepath.ToSlash(rel)+"/"] = [32]byte{}
			if rel == "lost+found" {
				return filepath.SkipDir
			}
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		got[filepath.ToSlash(rel)] = sha256.Sum256(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func copyImage(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
