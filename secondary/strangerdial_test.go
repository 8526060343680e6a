package secondary

import (
	"testing"

	"duplex/recordset"
	"duplex/transport"
)

// TestAStrangersDialLeavesTheLinkAlone: a primary of another session (a
// process left running by another test or deployment, redialling an
// address now this secondary's), one of other subsystems or of volumes
// this secondary does not hold, is refused before it touches the link:
// the linked primary's connection stays the linked one and its record
// sets are journaled and acknowledged on it. Only a primary of this
// session, its subsystems and volumes (a new process of the same primary)
// takes the link over.
func TestAStrangersDialLeavesTheLinkAlone(t *testing.T) {
	const size = 1 << 20
	r := newRig(t, map[string]int64{"a": size})
	conn, typ, _ := r.dial(r.hello())
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a Welcome", typ)
	}
	sendRecordSet(t, conn, writeSet(1, 1000, recordset.Update{Volume: "a", Kind: recordset.KindWrite, Offset: 0, Length: 4096}))
	if reason, acked := answers(t, conn, 0); acked != 1 {
		t.Fatalf("group 1 not acknowledged on the link: acked %d, refusal %q", acked, reason)
	}
	peer := r.sec.Stats().Peer
	for _, tc := range []struct {
		name  string
		hello func(h *transport.Hello)
	}{
		{"another session", func(h *transport.Hello) { h.Session = "s" }},
		{"other subsystems", func(h *transport.Hello) { h.Subsystems = []string{"ss1", "ss2"} }},
		{"another volume", func(h *transport.Hello) { h.Volumes = []transport.VolumeInfo{{Name: "vol1", Size: size}} }},
		{"a volume of another size", func(h *transport.Hello) { h.Volumes[0].Size = 2 * size }},
	} {
		h := r.hello()
		h.Instance = 99
		tc.hello(&h)
		if _, typ, _ := r.dial(h); typ != transport.TypeRefuse {
			t.Errorf("%s: frame type %d, want a refusal", tc.name, typ)
		}
		if st := r.sec.Stats(); !st.Connected || st.Peer != peer {
			t.Fatalf("%s: after its refusal the secondary is linked %v to %q, want still to %q", tc.name, st.Connected, st.Peer, peer)
		}
	}
	sendRecordSet(t, conn, writeSet(2, 3000, recordset.Update{Volume: "a", Kind: recordset.KindWrite, Offset: 4096, Length: 4096}))
	if reason, acked := answers(t, conn, 1); acked != 2 {
		t.Fatalf("group 2 not acknowledged on the link after the strangers' dials: acked %d, refusal %q", acked, reason)
	}
}
