package secondary

import (
	"errors"
	"strings"
	"testing"

	"duplex/disk"
	"duplex/recordset"
	"duplex/transport"
)

// While a resync holds the secondary, nothing after the applied group is
// released, so the held segments are not room. A secondary whose journal
// filled during a hold, restarted on the same full disk, must be refused
// with the numbers and the reason, not accepted to fail its first append
// and stop again on every restart.
func TestOpenRefusesHeldSegmentsAsRoom(t *testing.T) {
	r := &rig{t: t, dir: t.TempDir(), sizes: map[string]int64{"vol1": 16 << 20}, subs: []string{"ss1"}}
	cfg := func(free int64) Config {
		c := r.config()
		c.FS = roomFS{FS: disk.OS, free: free}
		c.LargestGroup = 1 << 20
		return c
	}
	openWith := func(free int64) error {
		r.openVolumes()
		sec, err := Open(cfg(free))
		if err != nil {
			for _, v := range r.vols {
				v.Close()
			}
			return err
		}
		r.sec = sec
		r.run()
		return nil
	}
	t.Cleanup(r.close)
	// 14 MiB free: segments of 3 MiB.
	if err := openWith(14 << 20); err != nil {
		t.Fatal(err)
	}
	conn, typ, _ := r.dial(r.hello())
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	// vol1's first copy ends, then a resync of it over that consistent copy
	// begins: every later group is held.
	sendAndWait(t, conn, writeSet(1, 5_000, mark("vol1", recordset.StateFirstCopy), mark("vol1", recordset.StateCopyEnd)))
	mk := recordset.Marker{State: recordset.StateResync, Bytes: 8 << 20}.Update("vol1")
	sendRecordSet(t, conn, writeSet(2, 10_000, mk))
	const n = 17
	for k := uint64(3); k <= n; k++ {
		ts := int64(k) * 10_000
		sendRecordSet(t, conn, writeSet(k, ts, recordset.Update{Volume: "vol1", Kind: recordset.KindWrite, Offset: uint64(k%16) << 20, Length: 512 << 10}))
	}
	if reason, acked := answers(t, conn, n-1); acked < n {
		t.Fatalf("acknowledged through %d, want %d (refusal %q)", acked, n, reason)
	}
	st := r.sec.Stats()
	if st.Group != 1 || st.HeldGroups == 0 {
		t.Fatalf("not held: applied %d, held %d", st.Group, st.HeldGroups)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	// Restarted with 3 MiB free (a fresh journal needs 4: refused): what the journal holds is all held, none of
	// it can be released until the resync ends, so the journal has 3 MiB of
	// room, less than it needs (2 segments + 2 groups).
	err := openWith(3 << 20)
	if err == nil {
		st := r.sec.Stats()
		t.Fatalf("Open accepted a journal with 3 MiB free whose %d held groups (%d bytes in the journal) cannot be released: it counts held segments as room",
			st.HeldGroups, st.JournalBytes)
	}
	for _, want := range []string{"resync of vol1 in progress", "cannot be released", "3.0 MiB free", "grow the file system", "not available"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not say %q", err, want)
		}
	}
	if errors.Is(err, ErrStopped) {
		t.Error("a refusal to start is not a stop")
	}
	// With room for what the journal needs besides the held segments, the
	// secondary starts, still holding them.
	if err := openWith(8 << 20); err != nil {
		t.Fatalf("refused with 8 MiB free: %v", err)
	}
	if st := r.sec.Stats(); st.Group != 1 || st.HeldGroups != n-1 {
		t.Fatalf("restarted at applied %d with %d held groups, want 1 and %d", st.Group, st.HeldGroups, n-1)
	}
}
