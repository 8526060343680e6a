package e2e

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestDaemonsPairAddWaitOutlastsTimeoutWhileTheCopyGoesOn: `duplex pair add
// --wait --timeout 2s` of a 16 MiB volume whose copy is paced at 4 MiB/s
// waits the 4 s the copy of its data takes and ends duplex: --timeout bounds a stretch
// in which the copy makes no progress toward duplex (the link down, a
// secondary that refuses), not the copy.
func TestDaemonsPairAddWaitOutlastsTimeoutWhileTheCopyGoesOn(t *testing.T) {
	t.Parallel()
	s := newSession(t, sessionOpts{name: "e2e-wait-slow-copy", volSize: 16 << 20, token: "secret"})
	s.start()
	// Data, not holes: the copy paces only the regions it reads.
	c := dialNBD(t, s.cfg.Primary.NBD, "vol2")
	chunk := bytes.Repeat([]byte{0x5a}, 1<<20)
	for off := int64(0); off < 16<<20; off += 1 << 20 {
		if err := c.WriteAt(chunk, off); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"pair", "rate", "--copy", "4MiB"}, {"pair", "delete", "vol2"}} {
		if code, out, errs := runDuplex(t, append(args, "--config", s.path)...); code != 0 {
			t.Fatalf("duplex %s exited %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
		}
	}
	start := time.Now()
	code, out, errs := runDuplex(t, "pair", "add", "vol2", "--wait", "--timeout", "2s", "--config", s.path)
	took := time.Since(start)
	if code != 0 || !strings.Contains(out, "duplex;") {
		t.Fatalf("pair add --wait --timeout 2s of a copy paced to 4 s exited %d after %s\nstdout: %s\nstderr: %s",
			code, took.Round(time.Millisecond), out, errs)
	}
	if took < 2*time.Second {
		t.Errorf("the copy paced at 4 MiB/s of 16 MiB ended after %s: it outlasted no --timeout", took.Round(time.Millisecond))
	}
	t.Logf("pair add --wait --timeout 2s took %s:\n%s", took.Round(time.Millisecond), out)
}
