package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"duplex/internal/testenv"
	"duplex/workload"
)

// TestDaemonsReadViewIsStable reads a secondary export with libnbd, a
// client Duplex did not write, over one connection, a block at a time with
// pauses, for seconds, while dependent writes replicate into the same
// volume (testdata/readview.py): the connection is pinned at the group
// current when it opened, so the whole image it reads is one state, and a
// single-pass check of it (which finds violations in a copy that moves
// while it is read) finds none. A connection opened later reads a state no
// older, holding newer writes.
func TestDaemonsReadViewIsStable(t *testing.T) {
	t.Parallel()
	needLibnbdPython(t)
	script, err := filepath.Abs(filepath.Join("testdata", "readview.py"))
	if err != nil {
		t.Fatal(err)
	}
	const (
		volSize      = 16 << 20
		regionBlocks = 512
	)
	s := newSession(t, sessionOpts{name: "e2e-read-view", volSize: volSize})
	s.start()
	names := s.cfg.VolumeNames()
	lay := workload.Layout{Volumes: 1, BlocksPerVolume: regionBlocks, Clients: 4}
	nt := dialTarget(t, s.cfg.Primary.NBD, names[:1], lay, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	loadDone := make(chan error, 1)
	go func() {
		_, err := workload.Run(ctx, lay, nt, 0, uint64(time.Now().UnixNano()))
		loadDone <- err
	}()
	nt.waitAcked(t)
	time.Sleep(500 * time.Millisecond)
	var prev workload.Image
	for round := range 2 {
		out := filepath.Join(t.TempDir(), "vol.img")
		before := nt.acked.Load()
		// 16 blocks, then 0.1 s of pause: over 3 s in all, with groups
		// applied between any two bursts.
		said := testenv.MustRunTool(t, libnbdPython, "-I", "-B", script, s.cfg.Secondary.NBD, names[0], out,
			"--blocks", strconv.Itoa(regionBlocks), "--burst", "16", "--pause", "0.1")
		acked := nt.acked.Load() - before
		f := strings.Fields(said)
		if len(f) != 2 {
			t.Fatalf("round %d: readview.py said %q", round, said)
		}
		if f[1] != "single-conn" {
			t.Errorf("round %d: a pinned export advertised %s", round, f[1])
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if len(data) != regionBlocks*workload.BlockSize {
			t.Fatalf("round %d: readview.py read %d bytes, want %d", round, len(data), regionBlocks*workload.BlockSize)
		}
		img, vs, err := workload.ReadImage(lay, func(_ int, p []byte, off int64) error {
			copy(p, data[off:])
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		vs = append(vs, img.Violations(img, workload.Scope{})...)
		for _, v := range vs[:min(len(vs), 10)] {
			t.Errorf("round %d: one connection's image: %s", round, v)
		}
		written, _ := img.Stats()
		t.Logf("round %d: libnbd read %d blocks over one connection in %s s while %d dependent writes were acknowledged: %d blocks hold writes, %d violations",
			round, regionBlocks, f[0], acked, written, len(vs))
		if acked == 0 {
			t.Errorf("round %d: no write was acknowledged while the connection read", round)
		}
		if written == 0 {
			t.Errorf("round %d: the image holds no write", round)
		}
		if prev != nil {
			// The volume only moves forward, and each block is one
			// client's: the later connection holds, at every block, the
			// earlier one's write or a newer write of the same client.
			newer := false
			for b := range img[0] {
				was, now := prev[0][b], img[0][b]
				if was.Counter != 0 && (now.Client != was.Client || now.Counter < was.Counter) {
					t.Errorf("round %d: block %d holds write %d/%d, where the earlier connection read %d/%d",
						round, b, now.Client, now.Counter, was.Client, was.Counter)
				}
				newer = newer || now.Ref != was.Ref
			}
			if !newer {
				t.Errorf("round %d: a connection opened after the earlier one's read reads the same state", round)
			}
		}
		prev = img
	}
	cancel()
	if err := <-loadDone; err != nil {
		t.Fatalf("dependent writes: %v", err)
	}
	loadavg, _ := os.ReadFile("/proc/loadavg")
	t.Logf("load average %s", strings.TrimSpace(string(loadavg)))
}
