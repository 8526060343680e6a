package transport

import (
	"errors"
	"math/rand/v2"
	"testing"

	"duplex/crc32c"
	"duplex/recordset"
)

// sumsFrame is a record-set frame whose large updates start and end off
// the 64 KiB pieces, one ending the payload on a partial piece, with a
// zero-length update among them.
func sumsFrame(t *testing.T) []byte {
	t.Helper()
	rs := &recordset.RecordSet{Session: "s", Subsystem: "u", Seq: 1, Group: 1, ReadTime: 1, Horizon: 100,
		Updates: []recordset.Update{
			{Volume: "a", Kind: recordset.KindWrite, Offset: 0, Length: 777, Timestamp: 1, Seq: 1, Data: patterned(777, 1)},
			{Volume: "a", Kind: recordset.KindWrite, Offset: 4096, Length: 300<<10 + 13, Timestamp: 2, Seq: 2, Data: patterned(300<<10+13, 2)},
			{Volume: "a", Kind: recordset.KindWrite, Offset: 8192, Length: 0, Timestamp: 3, Seq: 3, Data: []byte{}},
			{Volume: "b", Kind: recordset.KindWrite, Offset: 0, Length: 5000, Timestamp: 4, Seq: 4, Data: patterned(5000, 3)},
			{Volume: "b", Kind: recordset.KindWrite, Offset: 1 << 20, Length: 200<<10 + 1, Timestamp: 5, Seq: 5, Data: patterned(200<<10+1, 4)},
		}}
	b, err := recordset.Encode(nil, rs)
	if err != nil {
		t.Fatal(err)
	}
	return Frame(TypeRecordSet, b)
}

// A record-set frame damaged on the link, at any byte, is refused when read
// in checksummed pieces of any size, as when read whole; and the intact
// frame between damaged ones, read in the other mode, is taken: the pieces'
// checksums of one frame never vouch for the next.
func TestFrameSumsRefuseEveryDamagedByte(t *testing.T) {
	ln := listenTCP(t, nil, 0)
	client, server := tcpPair(t, ln, &TCPDialer{Addr: ln.Addr()})
	sums := &crc32c.Sums{}
	server.(FrameSums).SetFrameSums(sums)
	good := sumsFrame(t)
	r := rand.New(rand.NewPCG(3, 4))
	var at []int
	for i := range good {
		if near := i % (64 << 10); i < 64 || len(good)-i <= 64 || near < 3 || near > 64<<10-3 || r.IntN(2000) == 0 {
			at = append(at, i)
		}
	}
	if testing.Short() {
		at = at[:len(at)/4]
	}
	chunks := []int{64 << 10, 0, 4096 + 3, 1 << 20, 64<<10 - 1}
	errc := make(chan error, 1)
	go func() {
		for _, i := range at {
			bad := append([]byte(nil), good...)
			bad[i] ^= 1 << (i % 8)
			if err := client.Send(bad); err != nil {
				errc <- err
				return
			}
			if err := client.Send(good); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	decode := func(f []byte) error {
		typ, body, err := Open(f)
		if err != nil {
			return err
		}
		if typ != TypeRecordSet {
			return errors.New("not a record set")
		}
		_, err = recordset.DecodeSummed(body, recordset.DefaultLimits, sums)
		return err
	}
	for k, i := range at {
		for j, wantErr := range []bool{true, false} {
			sums.Next = chunks[(2*k+j)%len(chunks)]
			f, err := server.Recv()
			if err != nil {
				t.Fatalf("Recv: %v", err)
			}
			if err := decode(f); (err != nil) != wantErr {
				t.Fatalf("byte %d of %d damaged: frame %d read in pieces of %d decodes with error %v", i, len(good), j, sums.Next, err)
			}
			sums.Forget()
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d damaged positions refused", len(at))
}
