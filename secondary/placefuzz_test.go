package secondary

import (
	"encoding/binary"
	"testing"
	"unsafe"

	"duplex/recordset"
	"duplex/transport"
)

// FuzzPlacedFrame builds a bundle (or a record-set frame) of a sequential
// writer's record sets, lets the fuzzer change bytes of its head (the
// lengths, counts and magic placement reads among them), and puts it
// through the receiver's path for a large frame: placeFrame by its head,
// the frame copied where placed, decodeFrame. Whatever the head says,
// the frame lies inside its buffer, its length, in a buffer putFrame
// recycles; what decodes aliases the frame and nothing past it;
// and a set decoded from where placement expected its payload has its
// data on a page boundary.
func FuzzPlacedFrame(f *testing.F) {
	f.Add([]byte{255, 255, 255, 255}, uint8(0), uint8(1), []byte{}, true)
	f.Add([]byte{63, 63, 1, 200, 7}, uint8(3), uint8(2), []byte{}, true)
	f.Add([]byte{10, 20}, uint8(200), uint8(1), []byte{1, 0, 0xff}, true)
	f.Add([]byte{255, 255, 255, 255, 255}, uint8(0), uint8(0x81), []byte{9, 0, 0x80, 20, 0, 1}, false)
	f.Add([]byte{}, uint8(5), uint8(0), []byte{}, true)
	s := &Secondary{}
	var err error
	lim := s.cfg.Limits.Effective()
	if s.unzstd, err = transport.NewDecompressor(lim.MaxHeader + lim.MaxPayload + 4); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, sizes []byte, beats, sets uint8, flips []byte, reseal bool) {
		if len(sizes) > 16 {
			sizes = sizes[:16] // frames of up to 4 MiB: fuzzed by the thousand
		}
		nsets := int(sets & 3)
		var encoded [][]byte
		off := uint64(0)
		for i := range nsets {
			rs := &recordset.RecordSet{Session: "s", Subsystem: "ss1", Seq: uint64(i + 1), Group: 1, ReadTime: 9, Horizon: 100}
			for j, b := range sizes {
				if j%max(nsets, 1) != i {
					continue
				}
				n := (int(b)%16 + 1) * 16 << 10
				rs.Updates = append(rs.Updates, recordset.Update{Volume: "v", Kind: recordset.KindWrite, Offset: off, Length: uint64(n),
					Timestamp: int64(j + 1), Seq: uint64(j + 1), Data: make([]byte, n)})
				off += uint64(n)
			}
			b, err := recordset.Encode(nil, rs)
			if err != nil {
				t.Fatal(err)
			}
			encoded = append(encoded, b)
		}
		var frame []byte
		if sets&0x80 != 0 && nsets == 1 {
			frame = transport.Frame(transport.TypeRecordSet, encoded[0])
		} else {
			hb := make([]transport.Heartbeat, beats%64)
			for i := range hb {
				hb[i] = transport.Heartbeat{Subsystem: uint16(i), Seq: 1, Horizon: 10}
			}
			frame = transport.EncodeBundle(transport.Bundle{Beats: hb, Sets: encoded})
		}
		// The fuzzer's changes: a position within the head, and a byte to
		// xor there.
		intact := len(flips) < 3
		for len(flips) >= 3 {
			at := int(binary.BigEndian.Uint16(flips)) % min(len(frame), transport.PlaceHead)
			frame[at] ^= flips[2]
			flips = flips[3:]
		}
		if reseal {
			frame = transport.Seal(frame[:len(frame)-4])
		}
		head := frame[:min(len(frame), transport.PlaceHead)]
		buf, fr := placeFrame(head, len(frame))
		lo := uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
		at := uintptr(unsafe.Pointer(unsafe.SliceData(fr)))
		if len(fr) != len(frame) || at < lo || at+uintptr(cap(fr)) > lo+uintptr(cap(buf)) {
			t.Fatalf("a frame of %d bytes placed as %d (capacity %d) at %d of a buffer of %d", len(frame), len(fr), cap(fr), at-lo, cap(buf))
		}
		if c := cap(buf); c >= minPooledFrame && c <= maxPooledFrame {
			if _, size := frameClass(c); size != c {
				t.Fatalf("a placed frame's buffer of %d bytes is not one putFrame recycles", c)
			}
		}
		copy(fr, frame)
		a := s.decodeFrame(fr, buf, nil)
		if a.in.buf == nil {
			if intact {
				t.Fatalf("an intact frame was not decoded: %+v", a)
			}
			return // recycled or dropped by decodeFrame
		}
		defer putFrame(a.in.buf)
		want := -1 // where placement put the first set's payload
		if first, ok := transport.FirstSetAt(head); ok {
			if p, ok := recordset.PayloadAt(head[first:]); ok {
				want = first + p
			}
		}
		for k, rs := range a.in.sets {
			for _, u := range rs.Updates {
				if len(u.Data) == 0 {
					continue
				}
				d := uintptr(unsafe.Pointer(unsafe.SliceData(u.Data)))
				if d < at || d+uintptr(len(u.Data)) > at+uintptr(len(fr)) {
					t.Fatalf("set %d: an update of %d bytes lies outside its frame", k, len(u.Data))
				}
			}
			if k != 0 || len(rs.Updates) == 0 {
				continue
			}
			placed := want >= 0 && want < len(fr) && unsafe.SliceData(rs.Updates[0].Data) == &fr[want]
			if intact && !placed {
				t.Fatalf("an intact frame's first set's payload is not where placement put it (%d)", want)
			}
			if placed {
				for i, u := range rs.Updates {
					if a := uintptr(unsafe.Pointer(unsafe.SliceData(u.Data))); a%placeAlign != 0 {
						t.Fatalf("the first set's update %d lies at %#x, not on a page boundary", i, a)
					}
				}
			}
		}
	})
}
