package secondary

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"duplex/apply"
	"duplex/recordset"
	"duplex/transport"
)

func filled(vol string, off uint64, b byte) recordset.Update {
	return recordset.Update{Volume: vol, Kind: recordset.KindWrite, Offset: off, Length: 4096, Data: bytes.Repeat([]byte{b}, 4096)}
}

// killedWithGroupsUnapplied runs a rig of vol1 and vol2 until both copies
// are consistent, then has group 3 (vol2 written, then vol1: a dependent
// write) and group 4 (vol1) journaled and acknowledged while applying
// them waits at vol1, and returns a copy of its disk: a secondary killed
// -9 with groups that name vol2 journaled and not applied, its images
// holding part of group 3 (vol2's write without vol1's). No checkpoint
// runs meanwhile, so its state file names group 0 and groups 1 through 4
// all wait when it is started without vol2: with the default
// CheckpointEvery, a run slow to apply group 1 (under load) recorded it,
// and the groups that waited began at 2.
func killedWithGroupsUnapplied(t *testing.T) string {
	t.Helper()
	r := &rig{t: t, dir: t.TempDir(), sizes: map[string]int64{"vol1": 1 << 20, "vol2": 1 << 20}, subs: []string{"ss1"},
		edit: func(c *Config) { c.CheckpointEvery = time.Hour }}
	r.open()
	t.Cleanup(r.close)
	conn, typ, _ := r.dial(r.hello())
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	sendAndWait(t, conn,
		writeSet(1, 10_000, mark("vol1", recordset.StateFirstCopy), mark("vol2", recordset.StateFirstCopy), write("vol1", 0), write("vol2", 0)),
		writeSet(2, 20_000, mark("vol1", recordset.StateCopyEnd), mark("vol2", recordset.StateCopyEnd)))
	waitFor(t, "group 2 applied", func() bool { return r.sec.Stats().Group >= 2 })
	gate := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(gate) }) })
	r.sec.targets["vol1"] = gatedTarget{Target: r.sec.targets["vol1"], gate: gate}
	conn = conn.(settledConn).Conn // the applier waits at the gate
	sendRecordSet(t, conn, writeSet(3, 30_000, filled("vol2", 8192, 2), filled("vol1", 8192, 1)))
	sendRecordSet(t, conn, writeSet(4, 40_000, filled("vol1", 12288, 4)))
	if reason, acked := answers(t, conn, 3); acked < 4 {
		t.Fatalf("acknowledged through group %d, want 4 (refusal %q)", acked, reason)
	}
	killed := t.TempDir()
	copyFiles(t, r.dir, killed)
	return killed
}

func holds(t *testing.T, r *rig, vol string, off int64, want byte) {
	t.Helper()
	got := make([]byte, 4096)
	if err := r.sec.ReadAt(vol, got, off); err != nil {
		t.Errorf("reading %s at %d: %v", vol, off, err)
		return
	}
	if !bytes.Equal(got, bytes.Repeat([]byte{want}, 4096)) {
		t.Errorf("%s at %d holds %d, want %d", vol, off, got[0], want)
	}
}

// TestAVolumeOutOfTheConfigAfterAKillWithItsGroupsUnapplied: killed -9
// with groups that name vol2 journaled and not applied, the secondary is
// started with vol2 out of its config, as the forget path says. It starts:
// those groups wait (the volumes may hold part of them, so they are not
// read), as the start cannot tell a volume that leaves the session from a
// slip in its config alone. A primary that names vol2 is refused, and
// the groups still wait. One that links without vol2 has it forgotten,
// and the groups are applied without its updates: vol1's writes in them
// are all there (a group is applied to every volume or to none). A slip
// undone (vol2 back in the config, no primary linked meanwhile) loses
// nothing: the groups are applied to both.
func TestAVolumeOutOfTheConfigAfterAKillWithItsGroupsUnapplied(t *testing.T) {
	t.Run("it leaves the session", func(t *testing.T) {
		dir := killedWithGroupsUnapplied(t)
		r := &rig{t: t, dir: dir, sizes: map[string]int64{"vol1": 1 << 20}, subs: []string{"ss1"}}
		r.open()
		t.Cleanup(r.close)
		if err := r.sec.ReadAt("vol1", make([]byte, 4096), 8192); err == nil {
			t.Error("vol1 is read while the groups that name vol2 wait: it may hold part of them")
		} else if !strings.Contains(err.Error(), `"vol2"`) || !strings.Contains(err.Error(), "put") {
			t.Errorf("vol1's read is refused saying %q: want vol2 named, and the way forward", err)
		}
		if v := r.sec.Volume("vol1"); v.Consistent {
			t.Errorf("vol1 is reported %+v while the groups that name vol2 wait: want not consistent, it may hold part of them", v)
		}
		if _, err := r.sec.Fence(); err == nil {
			t.Fatal("fenced while the groups that name vol2 wait: the volumes may hold part of them, at no group to fence at")
		} else if !strings.Contains(err.Error(), `"vol2"`) {
			t.Errorf("the fence refused saying %q: want vol2 named", err)
		}
		with := r.hello()
		with.Instance = 8
		with.Volumes = append(with.Volumes, transport.VolumeInfo{Name: "vol2", Size: 1 << 20})
		if _, typ, body := r.dial(with); typ != transport.TypeRefuse {
			t.Fatalf("a primary that names vol2, not in the secondary's config: frame type %d, want a refusal", typ)
		} else if reason, _ := refusalReason(body); !strings.Contains(reason, `"vol2"`) {
			t.Errorf("the refusal %q does not name vol2", reason)
		}
		without := r.hello()
		without.Instance = 9
		if _, typ, body := r.dial(without); typ != transport.TypeWelcome {
			reason, _ := refusalReason(body)
			t.Fatalf("a primary without vol2: frame type %d (%q), want a welcome", typ, reason)
		}
		holds(t, r, "vol1", 8192, 1)
		holds(t, r, "vol1", 12288, 4)
		if v := r.sec.Volume("vol1"); !v.Consistent || v.Time < 40_000 {
			t.Errorf("vol1 is reported %+v, want consistent as of group 4", v)
		}
		if err := r.stop(); err != nil {
			t.Fatal(err)
		}
		st, err := apply.ReadState(r.config().StatePath)
		if err != nil {
			t.Fatal(err)
		}
		if st.Group != 4 || st.Forgotten["vol2"] < 4 {
			t.Errorf("the state file: group %d, forgotten %v; want group 4, vol2 forgotten through it", st.Group, st.Forgotten)
		}
		r.open()
		holds(t, r, "vol1", 8192, 1)
	})
	t.Run("a slip in its config undone", func(t *testing.T) {
		dir := killedWithGroupsUnapplied(t)
		r := &rig{t: t, dir: dir, sizes: map[string]int64{"vol1": 1 << 20}, subs: []string{"ss1"}}
		r.open()
		t.Cleanup(r.close)
		if err := r.stop(); err != nil {
			t.Fatal(err)
		}
		r.sizes = map[string]int64{"vol1": 1 << 20, "vol2": 1 << 20}
		r.open()
		holds(t, r, "vol1", 8192, 1)
		holds(t, r, "vol1", 12288, 4)
		holds(t, r, "vol2", 8192, 2)
		if v := r.sec.Volume("vol2"); !v.Consistent {
			t.Errorf("vol2, back in the config, is reported %+v, want consistent", v)
		}
	})
}
