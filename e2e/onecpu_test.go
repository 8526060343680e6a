package e2e

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"duplex/internal/testenv"
)

// TestToolsOnOneCPU drives a primary pinned to one CPU with qemu-io, nbdcopy
// and fio, each pinned to the same CPU, as the bench's primary-side section
// runs them. With one processor the primary serves a large write where it
// read it, on the connection's read loop (package nbd's serveLarge), so the
// requests queued behind a large write wait for its pwrite: every tool here
// queues reads or writes behind 1 MiB or 256 KiB writes, writes each range
// twice (the first write of a region waits for its mark in the activity
// log and goes to a worker; the second is served on the read loop), and
// reads back what it wrote; the secondary ends byte-identical.
func TestToolsOnOneCPU(t *testing.T) {
	t.Parallel()
	testenv.NeedTool(t, "taskset", "util-linux")
	testenv.NeedTool(t, "qemu-io", "qemu-utils")
	testenv.NeedTool(t, "nbdcopy", "libnbd-bin")
	testenv.NeedTool(t, "fio", "fio")
	if out, _ := testenv.RunTool(t, "fio", "--enghelp=nbd"); !strings.Contains(out, "uri") {
		t.Skipf("fio has no nbd engine: apt-get install fio (built with libnbd)\n%s", out)
	}
	s := newSession(t, sessionOpts{primaryCPUs: "0"})
	s.start()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.prim.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(status), "Cpus_allowed_list:\t0\n") {
		t.Fatalf("the primary is not pinned to CPU 0:\n%s", status)
	}
	pinned := func(tool string, args ...string) string {
		t.Helper()
		out := testenv.MustRunTool(t, "taskset", append([]string{"-c", "0", tool}, args...)...)
		if strings.Contains(out, "Pattern verification failed") || strings.Contains(out, "verify: bad") ||
			strings.Contains(out, "verify failed") {
			t.Fatalf("%s:\n%s", tool, out)
		}
		return out
	}

	// qemu-io: eight 1 MiB writes in flight at once, a 4 KiB read of a
	// range written before queued behind each, then every range read back.
	uri := nbdURI(s.cfg.Primary.NBD, "vol1")
	for pass, pat := range []string{"0x11", "0x22"} {
		var cmds []string
		for i := range 8 {
			cmds = append(cmds, "-c", fmt.Sprintf("aio_write -P %s %dM 1M", pat, i))
			if pass > 0 {
				cmds = append(cmds, "-c", fmt.Sprintf("aio_read -P 0x11 %dM 4k", 16+i))
			}
		}
		cmds = append(cmds, "-c", "aio_flush")
		for i := range 8 {
			cmds = append(cmds, "-c", fmt.Sprintf("read -P %s %dM 1M", pat, i))
		}
		if pass == 0 {
			cmds = append(cmds, "-c", "write -P 0x11 16M 8M")
		}
		// qemu-io's default cache mode, writethrough, sends every write
		// with FUA, which is never served on the read loop.
		out := pinned("qemu-io", append([]string{"-f", "raw", "-t", "writeback", uri}, cmds...)...)
		if strings.Contains(strings.ToLower(out), "error") || strings.Contains(out, "failed") {
			t.Fatalf("qemu-io, pass %d:\n%s", pass+1, out)
		}
	}

	// nbdcopy: 32 MiB of random data in its requests of 256 KiB over
	// several connections, twice, then copied back out of the primary.
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	data := make([]byte, 32<<20)
	for range 2 {
		rand.Read(data)
		if err := os.WriteFile(src, data, 0o644); err != nil {
			t.Fatal(err)
		}
		pinned("nbdcopy", "--flush", src, nbdURI(s.cfg.Primary.NBD, "vol2"))
	}
	if err := os.WriteFile(dst, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	pinned("nbdcopy", nbdURI(s.cfg.Primary.NBD, "vol2"), dst)
	// The volume is 64 MiB; its first 32 are the copy's.
	got, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) < len(data) || sha256.Sum256(got[:len(data)]) != sha256.Sum256(data) {
		t.Errorf("nbdcopy out of the primary: %d bytes, the first 32 MiB not the data copied in", len(got))
	}

	// fio: 1 MiB sequential writes at queue depth 4, twice over, each pass
	// verified by reading back.
	out := pinned("fio", "--name=t", "--ioengine=nbd", "--uri="+nbdURI(s.cfg.Primary.NBD, "vol4"),
		"--rw=write", "--bs=1M", "--iodepth=4", "--size=32M", "--loops=2",
		"--verify=crc32c", "--do_verify=1", "--verify_fatal=1", "--output-format=normal")
	if !strings.Contains(out, "err= 0") {
		t.Fatalf("fio reported errors:\n%s", out)
	}

	s.drainPrimary()
	s.stopSecondary()
	s.assertImagesEqual()
}
