package consistency

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"reflect"
	"slices"
	"testing"

	"duplex/recordset"
)

func sampleGroups() map[string]*Group {
	return map[string]*Group{
		"empty": {Number: 1, Time: 100, Through: map[string]uint64{}},
		"time only": {
			Number: 7, Time: 1_700_000_000_000_000_000, Through: map[string]uint64{"ss1": 3, "ss2": 9},
		},
		"updates": {
			Number: 42, Time: 500,
			Through: map[string]uint64{"ss2": 4, "ss1": 12, "ss3": 0},
			Updates: []recordset.Update{
				{Volume: "v0", Kind: recordset.KindWrite, Offset: 4096, Length: 3, Timestamp: 100, Seq: 1, Data: []byte("abc")},
				{Volume: "v1", Kind: recordset.KindZeroes, Offset: 0, Length: 8192, Timestamp: 200, Seq: 7},
				{Volume: "v0", Kind: recordset.KindTrim, Offset: 1 << 20, Length: 512, Timestamp: 300, Seq: 2},
				{Volume: "v2", Kind: recordset.KindCopy, Offset: 12, Length: 2, Timestamp: 500, Seq: 1, Data: []byte{0, 0xff}},
			},
		},
		"max number": {Number: math.MaxUint64, Time: math.MaxInt64, Through: map[string]uint64{"a": math.MaxUint64}},
	}
}

func mustEncodeGroup(t testing.TB, g *Group) []byte {
	t.Helper()
	b, err := EncodeGroup(nil, session, g)
	if err != nil {
		t.Fatalf("EncodeGroup: %v", err)
	}
	return b
}

// normGroup makes empty slices and maps compare equal to nil ones.
func normGroup(g *Group) *Group {
	c := *g
	if len(c.Updates) == 0 {
		c.Updates = nil
	}
	if c.Through == nil {
		c.Through = map[string]uint64{}
	}
	c.Updates = append([]recordset.Update(nil), c.Updates...)
	for i := range c.Updates {
		if len(c.Updates[i].Data) == 0 {
			c.Updates[i].Data = nil
		}
	}
	return &c
}

func TestGroupRoundTrip(t *testing.T) {
	for name, g := range sampleGroups() {
		t.Run(name, func(t *testing.T) {
			b := mustEncodeGroup(t, g)
			got, sess, err := DecodeGroup(b, recordset.DefaultLimits)
			if err != nil {
				t.Fatalf("DecodeGroup: %v", err)
			}
			if sess != session {
				t.Fatalf("session %q, want %q", sess, session)
			}
			if !reflect.DeepEqual(normGroup(got), normGroup(g)) {
				t.Fatalf("got %+v\nwant %+v", got, g)
			}
			if again := mustEncodeGroup(t, got); !bytes.Equal(again, b) {
				t.Fatalf("re-encoding differs")
			}
		})
	}
}

func TestEncodeGroupAppends(t *testing.T) {
	g := sampleGroups()["updates"]
	prefix := []byte("prefix")
	b, err := EncodeGroup(bytes.Clone(prefix), session, g)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, prefix) || !bytes.Equal(b[len(prefix):], mustEncodeGroup(t, g)) {
		t.Fatal("EncodeGroup did not append to dst")
	}
}

func TestEncodeGroupDeterministic(t *testing.T) {
	g := sampleGroups()["updates"]
	want := mustEncodeGroup(t, g)
	for range 50 {
		if got := mustEncodeGroup(t, g); !bytes.Equal(got, want) {
			t.Fatal("encoding of one group varies (map order leaks)")
		}
	}
}

func TestEncodeGroupRejectsInvalid(t *testing.T) {
	for name, g := range map[string]*Group{
		"number 0":         {Number: 0, Time: 10},
		"unordered":        {Number: 1, Time: 10, Updates: []recordset.Update{w("v", 5), w("v", 4)}},
		"update past time": {Number: 1, Time: 10, Updates: []recordset.Update{w("v", 11)}},
	} {
		if _, err := EncodeGroup(nil, session, g); err == nil {
			t.Errorf("%s: EncodeGroup succeeded", name)
		}
	}
}

// offsetOfRecordSet returns where the embedded record set starts.
func offsetOfRecordSet(t *testing.T, b []byte) int {
	t.Helper()
	i := bytes.Index(b, []byte(recordset.Magic))
	if i < 0 {
		t.Fatal("no record set in group encoding")
	}
	return i
}

// Every single-bit flip in the magic, version, table count, table name
// lengths or the embedded record set is rejected. (The table's names and
// through values are covered by the journal record's CRC, not by the group
// encoding itself.)
func TestDecodeGroupRejectsCorruption(t *testing.T) {
	for name, g := range sampleGroups() {
		t.Run(name, func(t *testing.T) {
			b := mustEncodeGroup(t, g)
			rsAt := offsetOfRecordSet(t, b)
			checked := map[int]bool{}
			for i := range 8 { // magic, version, count
				checked[i] = true
			}
			for at := 8; at < rsAt; {
				n := int(binary.BigEndian.Uint16(b[at:]))
				checked[at], checked[at+1] = true, true
				at += 2 + n + 8
			}
			for i := rsAt; i < len(b); i++ {
				checked[i] = true
			}
			for i := range len(b) {
				if !checked[i] {
					continue
				}
				for bit := range 8 {
					c := bytes.Clone(b)
					c[i] ^= 1 << bit
					if got, _, err := DecodeGroup(c, recordset.DefaultLimits); err == nil {
						t.Fatalf("byte %d bit %d flipped: decoded %+v", i, bit, got)
					}
				}
			}
		})
	}
}

func TestDecodeGroupRejectsTruncation(t *testing.T) {
	for name, g := range sampleGroups() {
		b := mustEncodeGroup(t, g)
		for n := range len(b) {
			if got, _, err := DecodeGroup(b[:n], recordset.DefaultLimits); err == nil {
				t.Fatalf("%s: first %d of %d bytes decoded to %+v", name, n, len(b), got)
			}
		}
		if _, _, err := DecodeGroup(append(bytes.Clone(b), 0), recordset.DefaultLimits); err == nil {
			t.Fatalf("%s: a trailing byte was accepted", name)
		}
	}
}

func TestDecodeGroupRejectsNonGroups(t *testing.T) {
	b := mustEncodeGroup(t, sampleGroups()["updates"])
	badVersion := bytes.Clone(b)
	binary.BigEndian.PutUint16(badVersion[4:], 2)
	if _, _, err := DecodeGroup(badVersion, recordset.DefaultLimits); !errors.Is(err, ErrMalformedGroup) {
		t.Errorf("version 2: %v, want ErrMalformedGroup", err)
	}
	badMagic := bytes.Clone(b)
	copy(badMagic, "DXRS")
	if _, _, err := DecodeGroup(badMagic, recordset.DefaultLimits); !errors.Is(err, ErrMalformedGroup) {
		t.Errorf("bad magic: %v, want ErrMalformedGroup", err)
	}
	// A plain record set of a subsystem is not a group, even behind a valid
	// group header.
	rs := &recordset.RecordSet{Session: session, Subsystem: "ss1", Seq: 3, Group: 3, Horizon: 10}
	hdr := []byte{'D', 'X', 'C', 'G', 0, 1, 0, 0}
	plain, err := recordset.Encode(bytes.Clone(hdr), rs)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := DecodeGroup(plain, recordset.DefaultLimits); !errors.Is(err, ErrMalformedGroup) {
		t.Errorf("record set of subsystem ss1: %v, want ErrMalformedGroup", err)
	}
	rs.Subsystem, rs.Group = groupSubsys, 4
	mismatched, err := recordset.Encode(bytes.Clone(hdr), rs)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := DecodeGroup(mismatched, recordset.DefaultLimits); !errors.Is(err, ErrMalformedGroup) {
		t.Errorf("sequence 3 but group 4: %v, want ErrMalformedGroup", err)
	}
}

// The table of a group lists each subsystem once, in name order; any other
// table is not what EncodeGroup writes and must not decode (a duplicated name
// would silently lose one of its through values).
func TestDecodeGroupRejectsNonCanonicalTable(t *testing.T) {
	rs := &recordset.RecordSet{Session: session, Subsystem: groupSubsys, Seq: 5, Group: 5, Horizon: 10}
	entry := func(b []byte, name string, v uint64) []byte {
		b = binary.BigEndian.AppendUint16(b, uint16(len(name)))
		b = append(b, name...)
		return binary.BigEndian.AppendUint64(b, v)
	}
	for _, tc := range []struct {
		name  string
		table []byte
	}{
		{"duplicate", entry(entry(nil, "ss1", 5), "ss1", 3)},
		{"unsorted", entry(entry(nil, "ss2", 5), "ss1", 3)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := append([]byte{'D', 'X', 'C', 'G', 0, 1, 0, 2}, tc.table...)
			b, err := recordset.Encode(b, rs)
			if err != nil {
				t.Fatal(err)
			}
			if g, _, err := DecodeGroup(b, recordset.DefaultLimits); err == nil {
				t.Errorf("decoded a non-canonical table as Through %v", g.Through)
			}
		})
	}
}

func FuzzDecodeGroup(f *testing.F) {
	for _, g := range sampleGroups() {
		f.Add(mustEncodeGroup(f, g))
	}
	f.Add([]byte{})
	f.Add([]byte("DXCG"))
	f.Add([]byte("DXCG\x00\x01\x00\x00"))
	f.Add([]byte("DXCG\x00\x01\xff\xff"))
	f.Add([]byte("DXCG\x00\x01\x00\x01\xff\xff"))
	f.Add(bytes.Repeat([]byte{0xff}, 64))

	f.Fuzz(func(t *testing.T, b []byte) {
		g, sess, err := DecodeGroup(b, recordset.DefaultLimits)
		if err != nil {
			if g != nil {
				t.Fatalf("DecodeGroup returned a group with error %v", err)
			}
			if !errors.Is(err, ErrMalformedGroup) && !errors.Is(err, recordset.ErrMalformed) &&
				!errors.Is(err, recordset.ErrCorrupt) && !errors.Is(err, recordset.ErrTooLarge) &&
				!errors.Is(err, recordset.ErrVersion) {
				t.Fatalf("DecodeGroup error wraps no sentinel: %v", err)
			}
			return
		}
		again, err := EncodeGroup(nil, sess, g)
		if err != nil {
			t.Fatalf("decoded group does not encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("group %d (through %v) re-encodes differently:\n in  %x\n out %x", g.Number, g.Through, b, again)
		}
	})
}

// TestEncodeGroupSum: a group of updates decoded from record sets, large
// and small, from two sets interleaved in timestamp order, encodes to the
// same bytes as the updates before the wire, and the checksum
// EncodeGroupSum returns without reading the large updates again is that
// of those bytes; EncodeGroupParts' parts joined are those bytes too.
func TestEncodeGroupSum(t *testing.T) {
	data := func(n int, seed byte) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = seed + byte(i*7)
		}
		return b
	}
	sets := []*recordset.RecordSet{
		{Session: session, Subsystem: "ss1", Seq: 1, Group: 1, Horizon: 1000},
		{Session: session, Subsystem: "ss2", Seq: 1, Group: 1, Horizon: 1000},
	}
	sizes := []int{1 << 20, 100, 70 << 10, 0, 4096, 200 << 10, 1}
	var want []recordset.Update
	for i, n := range sizes {
		u := recordset.Update{Volume: "v" + string(rune('a'+i%3)), Kind: recordset.KindWrite, Offset: uint64(i) << 21, Length: uint64(n),
			Timestamp: int64(10 + i), Seq: uint64(i/2 + 1), Data: data(n, byte(i))}
		if n == 0 {
			u.Kind, u.Length = recordset.KindZeroes, 512
		}
		sets[i%2].Updates = append(sets[i%2].Updates, u)
		want = append(want, u)
	}
	var got []recordset.Update
	for _, rs := range sets {
		b, err := recordset.Encode(nil, rs)
		if err != nil {
			t.Fatal(err)
		}
		dec, err := recordset.Decode(b, recordset.Limits{MaxPayload: 1 << 24})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, dec.Updates...)
	}
	// Timestamp order, as the former forms the group.
	slices.SortFunc(got, func(a, b recordset.Update) int { return cmp.Compare(a.Timestamp, b.Timestamp) })
	through := map[string]uint64{"ss1": 1, "ss2": 1}
	fresh, err := EncodeGroup([]byte("x"), session, &Group{Number: 9, Time: 1000, Through: through, Updates: want})
	if err != nil {
		t.Fatal(err)
	}
	b, sum, err := EncodeGroupSum([]byte("x"), session, &Group{Number: 9, Time: 1000, Through: through, Updates: got})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, fresh) {
		t.Fatal("the group of decoded updates encodes to other bytes than the same updates before the wire")
	}
	if want := crc32.Checksum(b[1:], crc32.MakeTable(crc32.Castagnoli)); sum != want {
		t.Fatalf("EncodeGroupSum checksum %#08x, want %#08x", sum, want)
	}
	// In parts, for the journal to write where they are: the same bytes
	// joined, the same checksum.
	for _, us := range [][]recordset.Update{got, want} {
		_, parts, psum, err := EncodeGroupParts([]byte("x"), session, &Group{Number: 9, Time: 1000, Through: through, Updates: us})
		if err != nil {
			t.Fatal(err)
		}
		if joined := bytes.Join(parts, nil); !bytes.Equal(joined, b[1:]) || psum != sum {
			t.Fatalf("EncodeGroupParts: %d bytes joined, checksum %#08x; EncodeGroupSum %d bytes, %#08x", len(joined), psum, len(b)-1, sum)
		}
	}
}
