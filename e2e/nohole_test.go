package e2e

import (
	"syscall"
	"testing"

	"duplex/internal/testenv"
)

// TestQemuIOZeroesWithNoHoleStayAllocated zeroes written data on a primary
// volume with qemu-io's write -z, which sends WRITE_ZEROES with
// NBD_CMD_FLAG_NO_HOLE (no -u: the client does not let the server unmap).
// The protocol says the area MUST then be fully provisioned, so that later
// writes there cannot fail for lack of space: the primary's image must not
// lose the blocks it had there. write -z -u may punch a hole. Both read back
// as zeroes on both sites, and the images end identical.
func TestQemuIOZeroesWithNoHoleStayAllocated(t *testing.T) {
	t.Parallel()
	testenv.NeedTool(t, "qemu-io", "qemu-utils")
	s := newSession(t, sessionOpts{name: "e2e-nohole", volSize: 16 << 20})
	s.start()
	uri := nbdURI(s.cfg.Primary.NBD, "vol1")
	primPath, _ := s.volumePaths("vol1")
	blocks := func() int64 {
		t.Helper()
		var st syscall.Stat_t
		if err := syscall.Stat(primPath, &st); err != nil {
			t.Fatal(err)
		}
		return st.Blocks * 512
	}

	qemuIO(t, uri, false, "write -P 0x77 2M 2M", "flush")
	before := blocks()
	qemuIO(t, uri, false, "write -z 2M 1M", "flush", "read -P 0 2M 1M", "read -P 0x77 3M 1M")
	if after := blocks(); after < before {
		t.Errorf("the primary's image holds %d bytes after a WRITE_ZEROES with NO_HOLE over 1 MiB of its data, %d before: "+
			"the zeroed range was deallocated, which NO_HOLE forbids", after, before)
	}
	// Without NO_HOLE the server may deallocate; the data reads zero either way.
	qemuIO(t, uri, false, "write -z -u 3M 1M", "flush", "read -P 0 2M 2M")

	s.drainPrimary()
	s.stopSecondary()
	s.assertImagesEqual()
}
