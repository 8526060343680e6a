package secondary

import (
	"testing"

	"duplex/apply"
	"duplex/recordset"
	"duplex/transport"
)

// TestVolumeForgottenOnceThePrimaryLinksWithoutIt: a volume taken out of
// both sites' configs is forgotten by the secondary once a primary links
// without it, not at an open without it (a mistake in the secondary's
// config alone must not forget its copy): added back under the same
// name, it is a new pair, of which the secondary holds no copy, so its
// image, removed meanwhile, is no copy it would report as zeros.
func TestVolumeForgottenOnceThePrimaryLinksWithoutIt(t *testing.T) {
	r := newRig(t, map[string]int64{"vol1": 1 << 20, "vol2": 1 << 20})
	conn, typ, _ := r.dial(r.hello())
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	sendAndWait(t, conn,
		writeSet(1, 10_000, mark("vol1", recordset.StateFirstCopy), mark("vol2", recordset.StateFirstCopy), write("vol1", 0), write("vol2", 0)),
		writeSet(2, 20_000, mark("vol1", recordset.StateCopyEnd), mark("vol2", recordset.StateCopyEnd)),
		writeSet(3, 30_000, write("vol1", 4096), write("vol2", 4096)))
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	names := func(when string) map[string]apply.VolumeState {
		t.Helper()
		st, err := apply.ReadState(r.config().StatePath)
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		return st.Volumes
	}
	if v, ok := names("after the copies")["vol2"]; !ok || v.State != StateDuplex {
		t.Fatalf("after the copies, the state holds vol2 as %+v (named %v), want duplex", v, ok)
	}

	// The secondary alone without vol2: it keeps its copy's record.
	delete(r.sizes, "vol2")
	r.open()
	if v, ok := names("opened without vol2")["vol2"]; !ok || v.State != StateDuplex {
		t.Errorf("opened without vol2, the state holds it as %+v (named %v), want it kept, duplex", v, ok)
	}
	// A primary links without it: its session no longer has the pair.
	if _, typ, _ := r.dial(r.hello()); typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	if v, ok := names("linked by a primary without vol2")["vol2"]; ok {
		t.Errorf("linked by a primary without vol2, the state still holds it as %+v, want it forgotten", v)
	}
	if v, ok := names("linked by a primary without vol2")["vol1"]; !ok || v.State != StateDuplex {
		t.Errorf("linked by a primary without vol2, the state holds vol1 as %+v (named %v), want duplex", v, ok)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}

	// Added back: a volume the secondary holds no copy of, until the new
	// pair's first copy ends here.
	r.sizes["vol2"] = 1 << 20
	r.open()
	if v := r.sec.Volume("vol2"); v.Consistent || !v.FirstCopy {
		t.Errorf("added back, vol2 is reported %+v, want not consistent, a first copy not complete", v)
	}
	if v := r.sec.Volume("vol1"); !v.Consistent {
		t.Errorf("vol1 is reported %+v after vol2 was forgotten, want consistent", v)
	}
}
