package secondary

import (
	"strings"
	"testing"

	"duplex/apply"
	"duplex/recordset"
	"duplex/transport"
)

// TestAPrimaryWithoutAConsistentCopysVolumeIsRefused: a primary that
// links without a volume of which the secondary holds a copy it calls
// consistent, while the secondary's own config still has the volume (a
// replacement primary started without it, a slip in the primary's config
// alone), is refused: linked, the secondary would forget a copy that may
// be the only good one. The refusal names the volume, the time its copy
// is consistent as of, and both ways forward; the copy stays consistent
// and the state file keeps it. A copy the secondary calls consistent as
// of no time (a first copy under way) or a deleted pair's, is forgotten
// as before: there is no consistent copy to keep. Opened without the
// volume in its config too, the secondary forgets it at the link.
func TestAPrimaryWithoutAConsistentCopysVolumeIsRefused(t *testing.T) {
	withoutVol2 := func(r *rig) transport.Hello {
		h := r.hello()
		h.Instance = 8
		h.Volumes = []transport.VolumeInfo{{Name: "vol1", Size: 1 << 20}}
		return h
	}
	stateOf := func(t *testing.T, r *rig, vol string) (apply.VolumeState, bool) {
		t.Helper()
		st, err := apply.ReadState(r.config().StatePath)
		if err != nil {
			t.Fatal(err)
		}
		v, ok := st.Volumes[vol]
		return v, ok
	}
	for _, tc := range []struct {
		name    string
		vol2    []recordset.Update // vol2's markers after its first copy began
		refused bool
		want    []string
	}{
		{"duplex", []recordset.Update{mark("vol2", recordset.StateCopyEnd)}, true,
			[]string{`"vol2"`, "consistent as of 1970-01-01T00:00:00.000031Z", "duplex", "add it back to the primary's config", "take it out of this secondary's config", "duplex promote"}},
		{"suspended", []recordset.Update{mark("vol2", recordset.StateCopyEnd), write("vol2", 8192), mark("vol2", recordset.StateSuspended)}, true,
			[]string{`"vol2"`, "consistent as of", "suspended"}},
		{"first copy under way", nil, false, nil},
		{"deleted", []recordset.Update{mark("vol2", recordset.StateCopyEnd), mark("vol2", recordset.StateDeleted)}, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, map[string]int64{"vol1": 1 << 20, "vol2": 1 << 20})
			conn, typ, _ := r.dial(r.hello())
			if typ != transport.TypeWelcome {
				t.Fatalf("frame type %d, want a welcome", typ)
			}
			sendAndWait(t, conn,
				writeSet(1, 10_000, mark("vol1", recordset.StateFirstCopy), mark("vol2", recordset.StateFirstCopy), write("vol1", 0), write("vol2", 0)),
				writeSet(2, 20_000, append([]recordset.Update{mark("vol1", recordset.StateCopyEnd)}, tc.vol2...)...),
				writeSet(3, 30_000, write("vol1", 4096)))
			before := r.sec.Volume("vol2")

			_, typ, body := r.dial(withoutVol2(r))
			if !tc.refused {
				if typ != transport.TypeWelcome {
					reason, _ := refusalReason(body)
					t.Fatalf("a primary without vol2, of which the secondary holds no consistent copy (%+v): frame type %d (%q), want a welcome", before, typ, reason)
				}
				if v := r.sec.Volume("vol2"); v.Consistent || !v.NoWholeCopy {
					t.Errorf("linked without vol2, vol2 is reported %+v, want forgotten: no whole copy, not consistent", v)
				}
				return
			}
			if !before.Consistent {
				t.Fatalf("before the link, vol2 is reported %+v, want consistent", before)
			}
			if typ != transport.TypeRefuse {
				t.Fatalf("a primary without vol2, whose copy here is consistent and still configured: frame type %d, want a refusal", typ)
			}
			reason, _ := refusalReason(body)
			for _, w := range tc.want {
				if !strings.Contains(reason, w) {
					t.Errorf("refusal %q does not say %s", reason, w)
				}
			}
			t.Logf("refused: %s", reason)
			if v := r.sec.Volume("vol2"); v != before {
				t.Errorf("refused, vol2 is reported %+v, want as before %+v", v, before)
			}
			if err := r.stop(); err != nil {
				t.Fatal(err)
			}
			if v, ok := stateOf(t, r, "vol2"); !ok || v.Inconsistent || v.NoWholeCopy {
				t.Errorf("refused and stopped, the state file holds vol2 as %+v (named %v), want its copy kept", v, ok)
			}
			if st, err := apply.ReadState(r.config().StatePath); err != nil || len(st.Forgotten) != 0 {
				t.Errorf("refused and stopped, the state file forgot %v (%v), want nothing", st.Forgotten, err)
			}

			// Taken out of the secondary's config too: forgotten at the link.
			delete(r.sizes, "vol2")
			r.open()
			if _, typ, _ := r.dial(withoutVol2(r)); typ != transport.TypeWelcome {
				t.Fatalf("opened without vol2 too: frame type %d, want a welcome", typ)
			}
			if v, ok := stateOf(t, r, "vol2"); ok {
				t.Errorf("opened without vol2 and linked without it, the state still holds it as %+v, want it forgotten", v)
			}
		})
	}
}
