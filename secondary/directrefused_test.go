package secondary

import (
	"bytes"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"duplex/disk"
)

// TestRefusedDirectWritesKeepTheSecondaryGoing: a journal file system that
// says it takes direct I/O and refuses it (EINVAL) is a way of writing to
// give up, not a failed disk: the secondary goes on journaling, through
// the page cache, acknowledging and applying every group, and says so in
// its log once.
func TestRefusedDirectWritesKeepTheSecondaryGoing(t *testing.T) {
	in := disk.NewInjector(nil)
	in.PassDirect()
	in.Inject(disk.Fault{Op: disk.OpWrite, Direct: true, Err: syscall.EINVAL})
	r := newStorageRig(t, in)
	l, _, reason := r.connect()
	if l == nil {
		t.Fatalf("refused: %s", reason)
	}
	for g := uint64(1); g <= 8; g++ {
		l.send(g, int64(g-1)*4096, byte(0xa0+g))
		if got, reason := l.journaled(g); got < g {
			t.Fatalf("group %d not acknowledged (acknowledged %d, refusal %q; stopped %q)", g, got, reason, r.sec.Stats().Stopped)
		}
	}
	if in.Injected(disk.OpWrite) == 0 {
		probe, err := os.CreateTemp(r.dir, "probe")
		if err == nil {
			defer probe.Close()
			if disk.DirectGrain(probe.Fd()) == 0 {
				t.Skipf("%s takes no direct writes: none to refuse", r.dir)
			}
		}
		t.Fatal("no direct write was refused")
	}
	if st := r.sec.Stats(); st.Stopped != "" {
		t.Fatalf("the secondary stopped: %s", st.Stopped)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		buf := make([]byte, 8*4096)
		if err := r.vol.ReadAt(buf, 0); err != nil {
			t.Fatal(err)
		}
		ok := true
		for g := 1; g <= 8; g++ {
			if !bytes.Equal(buf[(g-1)*4096:g*4096], bytes.Repeat([]byte{byte(0xa0 + g)}, 4096)) {
				ok = false
			}
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the acknowledged groups were not applied")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := strings.Count(r.logs.String(), "refused a direct write"); n != 1 {
		t.Errorf("the log says %d times that the file system refused a direct write, want once:\n%s", n, r.logs.String())
	}
}
