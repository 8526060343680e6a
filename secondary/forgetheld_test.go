package secondary

import (
	"testing"

	"duplex/recordset"
	"duplex/transport"
)

// TestAPrimaryWithoutADeletedPairsVolumeLinksWhileAResyncHolds: while
// another volume's resync holds the secondary, the groups journaled are
// not applied, so a volume whose pair the stream deleted, or began anew
// with a first copy, is still applied as the old pair's consistent copy.
// The journaled groups say that copy is no longer the session's: a
// primary linking without the volume is welcomed and the volume
// forgotten, as without the hold. Refused, it would be for ever: only
// the stream ends the hold, and only a linked primary sends it.
func TestAPrimaryWithoutADeletedPairsVolumeLinksWhileAResyncHolds(t *testing.T) {
	for _, tc := range []struct {
		name string
		vol2 []recordset.Update // vol2's markers while vol1's resync holds
	}{
		{"deleted", []recordset.Update{mark("vol2", recordset.StateDeleted)}},
		{"deleted and added again", []recordset.Update{mark("vol2", recordset.StateDeleted), mark("vol2", recordset.StateFirstCopy)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, map[string]int64{"vol1": 1 << 20, "vol2": 1 << 20})
			conn, typ, _ := r.dial(r.hello())
			if typ != transport.TypeWelcome {
				t.Fatalf("frame type %d, want a welcome", typ)
			}
			sendAndWait(t, conn,
				writeSet(1, 10_000, mark("vol1", recordset.StateFirstCopy), mark("vol2", recordset.StateFirstCopy),
					mark("vol1", recordset.StateCopyEnd), mark("vol2", recordset.StateCopyEnd)),
				writeSet(2, 20_000, mark("vol1", recordset.StateResync), recordset.Update{Volume: "vol1", Kind: recordset.KindCopy, Offset: 0, Length: 4096, Data: make([]byte, 4096)}),
				writeSet(3, 30_000, tc.vol2...))
			if st := r.sec.Stats(); st.Group != 1 || len(st.Resyncing) != 1 {
				t.Fatalf("the resync of vol1 does not hold: applied group %d, resyncing %v", st.Group, st.Resyncing)
			}

			h := r.hello()
			h.Instance = 8
			h.Volumes = []transport.VolumeInfo{{Name: "vol1", Size: 1 << 20}}
			_, typ, body := r.dial(h)
			if typ != transport.TypeWelcome {
				reason, _ := refusalReason(body)
				t.Fatalf("a primary without vol2, whose pair the journaled groups say is %s: frame type %d (%q), want a welcome", r.sec.Volume("vol2").State, typ, reason)
			}
			if v := r.sec.Volume("vol2"); v.Consistent {
				t.Errorf("linked without vol2, vol2 is reported %+v, want forgotten: not consistent", v)
			}
		})
	}
}
