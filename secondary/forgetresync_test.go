package secondary

import (
	"strings"
	"testing"
	"time"

	"duplex/recordset"
	"duplex/transport"
)

// TestARefusalWhileAResyncHoldsAdvisesOnlyWhatOpens: a primary started
// without a volume while a resync holds the secondary is refused, as
// without the hold. If the volume's own resync holds, only the end of its
// copy lets the other volumes go, and a primary without the volume never
// sends it: a secondary without it in its config refuses to open over the
// held groups, and the refusal advises only the way that works: the
// volume back at the primary, whose pair, forgotten there, begins a first
// copy (which ends the volume's own hold) and lets the link on. Followed,
// the secondary applies every group again. If another volume's resync
// holds, the volume can leave as without the hold: taken out of the
// secondary's config too, the secondary opens over the held groups that
// name it, forgets it at the link, and applies them without its updates
// once the holding resync ends.
func TestARefusalWhileAResyncHoldsAdvisesOnlyWhatOpens(t *testing.T) {
	for _, holder := range []string{"vol2", "vol1"} {
		t.Run("held by "+holder, func(t *testing.T) { refusedWhileHeld(t, holder) })
	}
}

func refusedWhileHeld(t *testing.T, holder string) {
	r := newRig(t, map[string]int64{"vol1": 1 << 20, "vol2": 1 << 20})
	conn, typ, _ := r.dial(r.hello())
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	sendAndWait(t, conn,
		writeSet(1, 10_000, mark("vol1", recordset.StateFirstCopy), mark("vol2", recordset.StateFirstCopy),
			mark("vol1", recordset.StateCopyEnd), mark("vol2", recordset.StateCopyEnd)),
		writeSet(2, 20_000, mark(holder, recordset.StateResync), recordset.Update{Volume: holder, Kind: recordset.KindCopy, Offset: 0, Length: 4096, Data: make([]byte, 4096)}),
		writeSet(3, 30_000, write("vol1", 4096), write("vol2", 4096)))
	if st := r.sec.Stats(); st.Group != 1 || len(st.Resyncing) != 1 {
		t.Fatalf("the resync of %s does not hold: applied group %d, resyncing %v", holder, st.Group, st.Resyncing)
	}
	h := r.hello()
	h.Instance = 8
	h.Volumes = []transport.VolumeInfo{{Name: "vol1", Size: 1 << 20}}
	_, typ, body := r.dial(h)
	if typ != transport.TypeRefuse {
		t.Fatalf("a primary without vol2 while the resync of %s holds the secondary: frame type %d, want a refusal", holder, typ)
	}
	reason, _ := refusalReason(body)
	t.Logf("refused: %s", reason)
	if holder == "vol1" {
		heldByAnother(t, r, reason)
		return
	}
	for _, w := range []string{`"vol2"`, "add it back to the primary's config", "resync of \"" + holder + "\" holds", "cannot leave"} {
		if !strings.Contains(reason, w) {
			t.Errorf("refusal %q does not say %s", reason, w)
		}
	}
	if strings.Contains(reason, "take it out of this secondary's config") {
		t.Errorf("refusal %q advises taking vol2 out of the secondary's config, over which the secondary cannot open while the held groups name it", reason)
	}

	// Why: opened without vol2, the secondary cannot replay the held groups.
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	r.sizes = map[string]int64{"vol1": 1 << 20}
	r.openVolumes()
	if s, err := Open(r.config()); err == nil {
		s.Close()
		t.Fatal("opened without vol2 over groups journaled for it: want refused")
	}
	for _, v := range r.vols {
		v.Close()
	}

	// The way advised: vol2 back at the primary, a new pair there.
	r.sizes["vol2"] = 1 << 20
	r.open()
	h.Instance = 9
	h.Volumes = r.hello().Volumes
	conn, typ, _ = r.dial(h)
	if typ != transport.TypeWelcome {
		t.Fatalf("vol2 back at the primary: frame type %d, want a welcome", typ)
	}
	journaled := r.sec.Stats().JournaledGroup
	sendAndWait(t, conn,
		writeSet(journaled+1, 40_000, mark("vol2", recordset.StateFirstCopy), write("vol1", 8192)),
		writeSet(journaled+2, 50_000, mark("vol2", recordset.StateCopyEnd), mark(holder, recordset.StateCopyEnd)))
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := r.sec.Stats()
		if st.Group == journaled+2 && len(st.Resyncing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("vol2's first copy began and ended: applied group %d of %d journaled, resyncing %v; want every group applied", st.Group, st.JournaledGroup, st.Resyncing)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, vol := range []string{"vol1", "vol2"} {
		if v := r.sec.Volume(vol); !v.Consistent || v.Time < 50_000 {
			t.Errorf("%s after vol2's first copy: %+v, want consistent as of 50000 or later", vol, v)
		}
	}
}

// heldByAnother follows the refusal (reason) of a primary without vol2
// while vol1's resync holds r: vol2 out of the secondary's config too.
func heldByAnother(t *testing.T, r *rig, reason string) {
	t.Helper()
	for _, w := range []string{`"vol2"`, "add it back to the primary's config", "take it out of this secondary's config"} {
		if !strings.Contains(reason, w) {
			t.Errorf("refusal %q does not say %s", reason, w)
		}
	}
	if strings.Contains(reason, "cannot leave") {
		t.Errorf("refusal %q says vol2 cannot leave while another volume's resync holds", reason)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	r.sizes = map[string]int64{"vol1": 1 << 20}
	r.open()
	h := r.hello()
	h.Instance = 9
	conn, typ, body := r.dial(h)
	if typ != transport.TypeWelcome {
		reason, _ := refusalReason(body)
		t.Fatalf("vol2 out of both configs: frame type %d (%q), want a welcome", typ, reason)
	}
	journaled := r.sec.Stats().JournaledGroup
	sendAndWait(t, conn,
		writeSet(journaled+1, 40_000, write("vol1", 8192)),
		writeSet(journaled+2, 50_000, mark("vol1", recordset.StateCopyEnd)))
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := r.sec.Stats()
		if st.Group == journaled+2 && len(st.Resyncing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("vol1's resync ended: applied group %d of %d journaled, resyncing %v; want every group applied", st.Group, st.JournaledGroup, st.Resyncing)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if v := r.sec.Volume("vol1"); !v.Consistent || v.Time < 50_000 {
		t.Errorf("vol1 after its resync ended: %+v, want consistent as of 50000 or later", v)
	}
}
