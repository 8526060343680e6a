package e2e

import (
	"strings"
	"testing"

	"duplex/internal/testenv"
)

// TestToolsFioTrimsBeforeWritesKilled runs fio's nbd engine with
// randtrimwrite at queue depth 16, two jobs on one export: each block
// trimmed, then written, with the other job's trims and writes in flight
// beside them, a FLUSH every 16 writes and at the end of each job. The
// primary is killed -9 once fio is done; after its restart and a drain, the
// secondary is byte-identical to the primary: every trim reached it in its
// order with the writes of the same blocks.
func TestToolsFioTrimsBeforeWritesKilled(t *testing.T) {
	t.Parallel()
	testenv.NeedTool(t, "fio", "fio")
	if out, _ := testenv.RunTool(t, "fio", "--enghelp=nbd"); !strings.Contains(out, "uri") {
		t.Skipf("fio has no nbd engine: apt-get install fio (built with libnbd)\n%s", out)
	}
	if out, _ := testenv.RunTool(t, "fio", "--cmdhelp=rw"); !strings.Contains(out, "randtrimwrite") {
		t.Skipf("this fio has no rw=randtrimwrite (fio 3.32 or later)\n%s", out)
	}
	s := newSession(t, sessionOpts{name: "e2e-fiotrim", volSize: 16 << 20})
	s.start()
	uri := nbdURI(s.cfg.Primary.NBD, "vol2")
	qemuIO(t, uri, false, "write -P 0x3c 0 16M", "flush")
	out := testenv.MustRunTool(t, "fio", "--name=t", "--ioengine=nbd", "--uri="+uri,
		"--rw=randtrimwrite", "--bsrange=512-64k", "--bs_unaligned", "--iodepth=16", "--numjobs=2", "--size=8M",
		"--fsync=16", "--end_fsync=1", "--output-format=normal")
	if !strings.Contains(out, "err= 0") || strings.Contains(out, "error") {
		t.Fatalf("fio reported errors:\n%s", out)
	}
	s.prim.kill()
	s.startPrimary()
	s.waitLinked()
	s.drainPrimary()
	s.stopSecondary()
	s.assertImagesEqual()
}
