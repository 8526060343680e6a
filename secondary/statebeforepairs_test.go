package secondary

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"duplex/apply"
	"duplex/recordset"
	"duplex/transport"
)

// oldStateRig opens a rig over testdata/state-before-pair-states.json, a
// state file as a version from before pair states wrote it (session,
// applied group, time and each subsystem's record set: no volumes), its
// journal released through that group.
func oldStateRig(t *testing.T, sizes map[string]int64) *rig {
	t.Helper()
	r := &rig{t: t, dir: t.TempDir(), sizes: sizes, subs: []string{"ss1"}}
	b, err := os.ReadFile(filepath.Join("testdata", "state-before-pair-states.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(r.dir, "state.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	r.open()
	t.Cleanup(r.close)
	return r
}

// TestAStateFromBeforePairStatesIsUpgradedInPlace: that version took every
// volume as duplex, consistent as of the applied group's time, and so
// does this one: its first start writes the state file naming each volume
// of its config duplex. Unnamed, the volumes were taken as duplex only
// until the state named any volume (a marker of one, a checkpoint): a
// restart then took the others for copies never made (consistent as of
// no time, for good), a primary linking without a volume whose copy is
// consistent was welcomed rather than refused, and one linking without a
// volume taken out of both configs left it named, reported consistent as
// of every later group its stream no longer wrote.
func TestAStateFromBeforePairStatesIsUpgradedInPlace(t *testing.T) {
	sizes := map[string]int64{"vol1": 1 << 20, "vol2": 1 << 20}
	withoutVol2 := func(r *rig) transport.Hello {
		h := r.hello()
		h.Instance = 8
		h.Volumes = []transport.VolumeInfo{{Name: "vol1", Size: 1 << 20}}
		return h
	}
	t.Run("upgraded", func(t *testing.T) {
		r := oldStateRig(t, sizes)
		st, err := apply.ReadState(r.config().StatePath)
		if err != nil {
			t.Fatal(err)
		}
		for name := range sizes {
			if v, ok := st.Volumes[name]; !ok || v != (apply.VolumeState{State: StateDuplex}) {
				t.Errorf("the state file after the first start holds %s as %+v (named %v), want duplex", name, v, ok)
			}
		}
		if st.Group != 3 || st.Time != 30000 || st.Through["ss1"] != 3 {
			t.Errorf("the state file after the first start: group %d, time %d, through %v; want group 3 as of 30000, ss1 through 3", st.Group, st.Time, st.Through)
		}
	})
	t.Run("a marker of one volume, then a restart", func(t *testing.T) {
		r := oldStateRig(t, sizes)
		conn, typ, _ := r.dial(r.hello())
		if typ != transport.TypeWelcome {
			t.Fatalf("frame type %d, want a welcome", typ)
		}
		sendAndWait(t, conn, writeSet(4, 40_000, write("vol1", 0), write("vol2", 0), mark("vol2", recordset.StateSuspended)))
		if err := r.stop(); err != nil {
			t.Fatal(err)
		}
		r.open()
		if v := r.sec.Volume("vol1"); !v.Consistent || v.NoWholeCopy || v.State != StateDuplex {
			t.Errorf("after a marker of vol2 and a restart, vol1 is reported %+v, want duplex and consistent", v)
		}
		if v := r.sec.Volume("vol2"); !v.Consistent || v.State != StateSuspended {
			t.Errorf("after vol2's suspension and a restart, vol2 is reported %+v, want suspended and consistent", v)
		}
	})
	t.Run("a primary without a volume still configured", func(t *testing.T) {
		r := oldStateRig(t, sizes)
		_, typ, body := r.dial(withoutVol2(r))
		if typ != transport.TypeRefuse {
			t.Fatalf("a primary without vol2, consistent here as of group 3 and still configured: frame type %d, want a refusal", typ)
		}
		if reason, _ := refusalReason(body); !strings.Contains(reason, `"vol2"`) {
			t.Errorf("the refusal %q does not name vol2", reason)
		}
	})
	t.Run("a primary without a volume out of both configs", func(t *testing.T) {
		r := oldStateRig(t, map[string]int64{"vol1": 1 << 20})
		conn, typ, _ := r.dial(withoutVol2(r))
		if typ != transport.TypeWelcome {
			t.Fatalf("frame type %d, want a welcome", typ)
		}
		sendAndWait(t, conn, writeSet(4, 40_000, write("vol1", 0)))
		if err := r.stop(); err != nil {
			t.Fatal(err)
		}
		// Added back under the same name, its image removed meanwhile: a
		// new pair, whose copy here is made by its first copy.
		if err := os.Remove(filepath.Join(r.dir, "vol2.img")); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		r.sizes = sizes
		r.open()
		if v := r.sec.Volume("vol2"); v.Consistent {
			t.Errorf("vol2, out of both configs at the link and added back with its image made anew, is reported %+v, want no copy", v)
		}
		if v := r.sec.Volume("vol1"); !v.Consistent {
			t.Errorf("vol1 is reported %+v, want consistent", v)
		}
	})
}
