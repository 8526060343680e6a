package secondary

import (
	"bytes"
	"path/filepath"
	"testing"

	"duplex/consistency"
	"duplex/journal"
	"duplex/recordset"
	"duplex/transport"
)

// TestJournaledLargeUpdatesReadBack: the journal record of a group whose
// large updates came from two subsystems' record sets, interleaved, has a
// checksum combined from the record sets' (the data is not read again);
// the journal must read every such record back intact after the secondary
// stops, and the volumes must hold the data.
func TestJournaledLargeUpdatesReadBack(t *testing.T) {
	const size = 32 << 20
	r := newRig(t, map[string]int64{"vol1": size, "vol2": size}, "ss1", "ss2")
	conn, typ, _ := r.dial(r.hello())
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	fill := func(n int, seed byte) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = seed ^ byte(i*13+i>>9)
		}
		return b
	}
	var sent []recordset.Update
	for seq := uint64(1); seq <= 3; seq++ {
		base := int64(seq) * 100_000
		var a, b []recordset.Update
		for i, n := range []int{1 << 20, 4096, 200 << 10, 64 << 10, 100} {
			u := recordset.Update{Volume: []string{"vol1", "vol2"}[i%2], Kind: recordset.KindWrite, Offset: uint64(seq)<<23 + uint64(i)<<20,
				Length: uint64(n), Timestamp: base + int64(i), Data: fill(n, byte(seq*16)+byte(i))}
			if i%2 == 0 {
				a = append(a, u)
			} else {
				b = append(b, u)
			}
		}
		sa := subsystemSet("ss1", seq, base, base+50_000, a...)
		sb := subsystemSet("ss2", seq, base, base+50_000, b...)
		sendRecordSet(t, conn, sa)
		sendRecordSet(t, conn, sb)
		sent = append(sent, sa.Updates...)
		sent = append(sent, sb.Updates...)
	}
	if reason, acked := answers(t, conn, 2); acked < 3 {
		t.Fatalf("acknowledged through group %d, want 3 (refusal %q)", acked, reason)
	}
	for _, u := range sent {
		got := make([]byte, len(u.Data))
		if err := r.sec.ReadAt(u.Volume, got, int64(u.Offset)); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, u.Data) {
			t.Fatalf("%s at %d: the volume does not hold the %d bytes written", u.Volume, u.Offset, len(u.Data))
		}
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}

	// Every record still in the journal is read back, checksums checked.
	j, err := journal.Open(filepath.Join(r.dir, "journal"), journal.Options{MaxRecord: MaxGroupBytes})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	type at struct {
		vol string
		off uint64
	}
	seen := map[at][]byte{}
	err = j.Replay(j.FirstIndex()-1, func(index uint64, data []byte) error {
		g, _, err := consistency.DecodeGroup(data, groupLimits)
		if err != nil {
			return err
		}
		for _, u := range g.Updates {
			seen[at{u.Volume, u.Offset}] = u.Data
		}
		return nil
	})
	if err != nil {
		t.Fatalf("journal read back: %v", err)
	}
	if len(seen) == 0 {
		t.Fatal("nothing left in the journal to read back")
	}
	for _, u := range sent {
		if d, ok := seen[at{u.Volume, u.Offset}]; ok && !bytes.Equal(d, u.Data) {
			t.Fatalf("journal holds other bytes for %s at %d", u.Volume, u.Offset)
		}
	}
}
