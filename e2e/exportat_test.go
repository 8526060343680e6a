package e2e

import (
	"bytes"
	"context"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"duplex/config"
	"duplex/internal/testenv"
	"duplex/nbd"
	"duplex/workload"
)

var asOfRE = regexp.MustCompile(`consistent as of (\S+) \(group (\d+)\)`)

// TestDaemonsExportsAtATime: with history on, dependent writes go on over
// two volumes while the test notes a wall time T; later, still writing,
// connections to vol1@T and vol2@T read both volumes as of the newest
// group at or before T: together a dependent-write-consistent prefix,
// holding no write issued after T, and both connections the same group
// (nbdcopy, over one connection each, copies of vol1@T and vol2@T the
// bytes the test's own connections read). A time before the window is
// refused with an NBD error naming the window, and nbdinfo --list
// describes each export.
func TestDaemonsExportsAtATime(t *testing.T) {
	t.Parallel()
	const (
		volSize      = 16 << 20
		regionBlocks = 256
	)
	s := newSession(t, sessionOpts{name: "e2e-export-at", volSize: volSize, edit: func(c *config.Config) {
		c.Secondary.History = config.Duration(time.Hour)
	}})
	s.start()
	names := s.cfg.VolumeNames()[:2]
	lay := workload.Layout{Volumes: len(names), BlocksPerVolume: regionBlocks, Clients: 4}
	nt := dialTarget(t, s.cfg.Primary.NBD, names, lay, 0)
	timed := &timedTarget{inner: nt, times: map[[2]uint64][2]time.Time{}}
	refs := &refTarget{inner: timed, refs: map[[2]uint64]workload.Ref{}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	loadDone := make(chan error, 1)
	go func() {
		_, err := workload.Run(ctx, lay, refs, 0, uint64(time.Now().UnixNano()))
		loadDone <- err
	}()
	nt.waitAcked(t)
	time.Sleep(700 * time.Millisecond)
	at := time.Now()
	stamp := at.UTC().Format(time.RFC3339Nano)
	// Still writing, and the secondary past T.
	eventually(t, time.Minute, "the secondary past T", func() bool {
		st := s.secondaryStatus()
		ct, err := time.Parse(time.RFC3339Nano, st.ConsistencyTime)
		return err == nil && ct.After(at)
	})
	before := nt.acked.Load()
	var views []*nbd.Client
	for _, n := range names {
		views = append(views, dialNBD(t, s.cfg.Secondary.NBD, n+"@"+stamp))
	}
	read := func(v int, p []byte, off int64) error { return views[v].ReadAt(p, off) }
	held := checkPrefixAt(t, lay, timed, read, at)
	// The group the views read, and its time, as nbdinfo shows them.
	var reached time.Time
	if _, err := exec.LookPath("nbdinfo"); err != nil {
		t.Log("nbdinfo not installed (apt-get install libnbd-bin): the writes acknowledged before the group's time not checked")
	} else {
		info := testenv.NBDInfo(t, nbdURI(s.cfg.Secondary.NBD, names[1]+"@"+stamp))
		m := asOfRE.FindStringSubmatch(info.Exports[0].Description)
		if m == nil {
			t.Fatalf("nbdinfo %s@%s: description %q names no group", names[1], stamp, info.Exports[0].Description)
		}
		if reached, err = time.Parse(time.RFC3339Nano, m[1]); err != nil {
			t.Fatal(err)
		}
		if reached.After(at) {
			t.Errorf("%s@%s reads group %s as of %s, after T", names[1], stamp, m[2], m[1])
		}
		if late := at.Sub(reached); late > time.Duration(s.cfg.Interval) {
			// Groups come every interval while writes go on, unless the
			// machine is too loaded to form them in time: said, not failed.
			loadavg, _ := os.ReadFile("/proc/loadavg")
			t.Logf("group %s as of %s, %s before T (interval %s, load average %s)", m[2], m[1], late, time.Duration(s.cfg.Interval), strings.TrimSpace(string(loadavg)))
		}
	}
	n := 0
	if !reached.IsZero() {
		// The writes go on: those recorded so far.
		refs.mu.Lock()
		written := maps.Clone(refs.refs)
		refs.mu.Unlock()
		n = mustHoldAcked(t, lay, timed, written, read, reached)
	}
	t.Logf("%s@%s and %s@%s: %d blocks hold writes, every one of the %d writes acknowledged before the group's time (%s) among them; %d writes acknowledged while they were read",
		names[0], stamp, names[1], stamp, held, n, reached.Format(time.RFC3339Nano), nt.acked.Load()-before)
	if held == 0 {
		t.Fatal("the views at T hold no write")
	}

	if _, err := nbd.Dial(s.cfg.Secondary.NBD, names[0]+"@"+at.Add(-time.Hour).UTC().Format(time.RFC3339Nano)); err == nil ||
		!strings.Contains(err.Error(), "before the oldest recoverable time") {
		t.Errorf("an export before the window: %v", err)
	}
	if _, err := nbd.Dial(s.cfg.Secondary.NBD, names[0]+"@yesterday"); err == nil || !strings.Contains(err.Error(), "RFC 3339") {
		t.Errorf("an export at an unreadable time: %v", err)
	}

	if _, err := exec.LookPath("nbdcopy"); err == nil {
		// A client Duplex did not write, one connection to each volume:
		// the images the checks above passed.
		for v, n := range names {
			out := filepath.Join(t.TempDir(), n+".img")
			testenv.MustRunTool(t, "nbdcopy", "--connections=1", nbdURI(s.cfg.Secondary.NBD, n+"@"+stamp), out)
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			want := make([]byte, len(got))
			for off := 0; off < len(want); off += 1 << 20 {
				if err := views[v].ReadAt(want[off:off+1<<20], int64(off)); err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(got, want) {
				t.Errorf("nbdcopy of %s@%s differs from what a connection to it reads", n, stamp)
			}
		}
	} else {
		t.Log("nbdcopy not installed (apt-get install libnbd-bin): its copies of NAME@TIME not checked")
	}
	cancel()
	if err := <-loadDone; err != nil {
		t.Fatalf("dependent writes: %v", err)
	}

	testenv.NeedTool(t, "nbdinfo", "libnbd-bin")
	info := testenv.NBDInfo(t, "--list", nbdURI(s.cfg.Secondary.NBD, ""))
	if len(info.Exports) != len(s.cfg.VolumeNames()) {
		t.Fatalf("nbdinfo --list: %d exports, want %d", len(info.Exports), len(s.cfg.VolumeNames()))
	}
	for _, e := range info.Exports {
		if !strings.Contains(e.Description, "read-only replica of volume "+e.Name) || !strings.Contains(e.Description, e.Name+"@TIME") || e.CanMultiConn {
			t.Errorf("nbdinfo --list: export %s: description %q, can_multi_conn %v", e.Name, e.Description, e.CanMultiConn)
		}
	}
	t.Logf("nbdinfo --list: %s: %s", info.Exports[0].Name, info.Exports[0].Description)
	loadavg, _ := os.ReadFile("/proc/loadavg")
	t.Logf("load average %s", strings.TrimSpace(string(loadavg)))
}
