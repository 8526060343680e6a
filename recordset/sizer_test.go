package recordset

import (
	"errors"
	"fmt"
	"testing"
)

// The Sizer agrees with the encoder on every prefix of a record set, and
// Fits agrees with the decoder's limits, at and one byte below each bound.
func TestSizerMatchesEncoding(t *testing.T) {
	rs := &RecordSet{Session: "sess", Subsystem: "ss1", Seq: 1, Horizon: 1000}
	s := NewSizer(rs.Session, rs.Subsystem)
	if got, want := s.Size(), EncodedSize(rs); got != want {
		t.Fatalf("empty: Size %d, EncodedSize %d", got, want)
	}
	for i := range 40 {
		u := Update{Volume: fmt.Sprintf("vol%d", i%3), Kind: KindWrite, Offset: uint64(i) * 512, Timestamp: int64(i + 1)}
		if i%4 == 0 {
			u.Kind = KindZeroes
			u.Length = 4096
		} else {
			u.Data = make([]byte, i*100)
			u.Length = uint64(len(u.Data))
		}
		next := &RecordSet{Session: rs.Session, Subsystem: rs.Subsystem, Seq: 1, Horizon: rs.Horizon, Updates: append(append([]Update(nil), rs.Updates...), u)}
		b, err := Encode(nil, next)
		if err != nil {
			t.Fatal(err)
		}
		h, err := PeekHeader(b)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.SizeWith(u.Volume, len(u.Data)); got != len(b) {
			t.Fatalf("update %d: SizeWith %d, encoded %d bytes", i, got, len(b))
		}
		exact := Limits{MaxHeader: h.HeaderLen, MaxPayload: max(h.PayloadLen, 1), MaxRecords: h.Records}
		for j, lim := range []Limits{exact,
			{MaxHeader: h.HeaderLen - 1, MaxPayload: exact.MaxPayload, MaxRecords: h.Records},
			{MaxHeader: h.HeaderLen, MaxPayload: h.PayloadLen - 1, MaxRecords: h.Records},
			{MaxHeader: h.HeaderLen, MaxPayload: exact.MaxPayload, MaxRecords: h.Records - 1}} {
			if lim.MaxPayload <= 0 || lim.MaxRecords <= 0 {
				continue // zero means the default
			}
			_, derr := Decode(b, lim)
			if derr != nil && !errors.Is(derr, ErrTooLarge) {
				t.Fatal(derr)
			}
			if fits := s.Fits(&u, lim); fits != (derr == nil) {
				t.Fatalf("update %d, limits %d %+v: Fits %v, Decode: %v", i, j, lim, fits, derr)
			}
		}
		s.Add(&u)
		rs.Updates = append(rs.Updates, u)
		if got, want := s.Size(), EncodedSize(rs); got != want {
			t.Fatalf("after %d updates: Size %d, EncodedSize %d", i+1, got, want)
		}
	}
}
