package secondary

import (
	"bytes"
	"testing"
	"time"

	"duplex/recordset"
	"duplex/transport"
)

// A record set of large updates damaged on the link, at a byte anywhere
// near the 64 KiB pieces the secondary checksums as it reads them, is
// counted corrupt and neither acknowledged nor applied, however the
// frames before it were read; the intact set then is.
func TestDamagedLargeUpdatesRefusedFromPieceSums(t *testing.T) {
	r := newRig(t, map[string]int64{"a": 2 << 20})
	conn, typ, _ := r.dial(r.hello())
	if typ != transport.TypeWelcome {
		t.Fatalf("answer to the hello: frame type %d, want a Welcome", typ)
	}
	big := func(n int, seed byte) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = seed + byte(i) + byte(i>>8)*7
		}
		return b
	}
	frame := func(group uint64) ([]byte, []recordset.Update) {
		seed := byte(group)
		ups := []recordset.Update{
			{Volume: "a", Kind: recordset.KindWrite, Offset: 0, Length: 999, Data: big(999, seed)},
			{Volume: "a", Kind: recordset.KindWrite, Offset: 4096, Length: 300<<10 + 5, Data: big(300<<10+5, seed+1)},
			{Volume: "a", Kind: recordset.KindWrite, Offset: 1 << 20, Length: 400<<10 + 3, Data: big(400<<10+3, seed+2)},
		}
		f, err := recordset.Encode([]byte{transport.TypeRecordSet}, writeSet(group, 10000*int64(group), ups...))
		if err != nil {
			t.Fatal(err)
		}
		return transport.Seal(f), ups
	}
	size := len(must(frame(1)))
	var at []int
	for i := 64 << 10; i < size; i += 64 << 10 {
		at = append(at, i-1, i, i+1)
	}
	at = append(at, size-5, size-100, 2000)
	// Each damaged set follows an intact one of large updates, after which
	// the secondary reads in pieces; the intact one after it is read whole,
	// and sent again, read in pieces (a duplicate, dropped once decoded).
	for k, i := range at {
		group := uint64(k + 1)
		good, ups := frame(group)
		bad := bytes.Clone(good)
		bad[i] ^= 0x40
		if err := conn.Send(bad); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for r.sec.Stats().CorruptFrames < uint64(k+1) {
			if time.Now().After(deadline) {
				t.Fatalf("byte %d of %d damaged: %d corrupt frames counted, want %d", i, len(good), r.sec.Stats().CorruptFrames, k+1)
			}
			time.Sleep(time.Millisecond)
		}
		if err := conn.Send(good); err != nil {
			t.Fatal(err)
		}
		if refusal, acked := answers(t, conn, group-1); refusal != "" || acked != group {
			t.Fatalf("after the intact set %d: refusal %q, group %d acknowledged", group, refusal, acked)
		}
		if err := conn.Send(good); err != nil {
			t.Fatal(err)
		}
		for _, u := range ups {
			got := make([]byte, len(u.Data))
			if err := r.vols["a"].ReadAt(got, int64(u.Offset)); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, u.Data) {
				t.Fatalf("byte %d damaged: the volume at %d does not hold the intact write of group %d", i, u.Offset, group)
			}
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.sec.Stats().Duplicates < uint64(len(at)) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := r.sec.Stats().Duplicates; n != uint64(len(at)) {
		t.Fatalf("%d duplicates counted, want %d", n, len(at))
	}
	if n := r.sec.Stats().CorruptFrames; n != uint64(len(at)) {
		t.Fatalf("%d corrupt frames counted, want %d", n, len(at))
	}
}

func must(f []byte, _ []recordset.Update) []byte { return f }
