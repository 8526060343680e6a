package transport

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"duplex/recordset"
)

func sampleHellos() map[string]Hello {
	return map[string]Hello{
		"zero":           {},
		"session only":   {Session: "s"},
		"one subsystem":  {Session: "sess", Subsystems: []string{"ss1"}, Instance: 1},
		"many":           {Session: "payroll", Subsystems: []string{"ss1", "ss2", "ss3"}, Instance: 0xdeadbeefcafebabe},
		"max instance":   {Session: "x", Subsystems: []string{"a"}, Instance: math.MaxUint64},
		"empty names":    {Session: "", Subsystems: []string{"", ""}, Instance: 7},
		"unsorted names": {Session: "s", Subsystems: []string{"zz", "aa", "mm"}, Instance: 3},
		"utf8":           {Session: "sitzung-ä", Subsystems: []string{"teilsystem-ö"}, Instance: 42},
		"long":           {Session: strings.Repeat("s", 1000), Subsystems: []string{strings.Repeat("n", 300)}, Instance: 9},
		"volumes": {Session: "s", Subsystems: []string{"ss1"}, Instance: 5,
			Volumes: []VolumeInfo{{Name: "db-data", Size: 1 << 30}, {Name: "db-log", Size: 64 << 20}}, Generation: 0x1234_5678_9abc_def0},
		"generation only": {Session: "s", Generation: math.MaxUint64},
		"overwrite":       {Session: "s", Generation: 7, Overwrite: func() *Generation { g := Generation(0xfeed); return &g }()},
		"overwrite none":  {Session: "s", Generation: 7, Overwrite: new(Generation)},
	}
}

func samplePositions() map[string]Position {
	return map[string]Position{
		"zero": {},
		"group only": {
			Group: 12, Time: 1_700_000_000_000_000_000,
		},
		"negative time": {
			Group: 1, Time: -5, Through: map[string]uint64{"a": 1},
		},
		"min time": {
			Group: math.MaxUint64, Time: math.MinInt64,
		},
		"all tables": {
			Group: 77, Time: 123456789,
			Through:  map[string]uint64{"ss1": 10, "ss2": 20, "ss3": 0},
			Received: map[string]uint64{"ss1": 12, "ss2": 20, "ss3": math.MaxUint64},
			Ahead:    map[string]uint64{"ss1": 40},
		},
		"ahead only": {
			Ahead: map[string]uint64{"b": 2, "a": 1},
		},
		"journal free": {
			Group: 3, Through: map[string]uint64{"a": 1}, JournalFree: 5 << 30,
		},
		"limits": {
			Group: 4, Through: map[string]uint64{"a": 2}, JournalFree: 1 << 30,
			Limits: Limits{MaxHeader: 16 << 10, MaxPayload: 5 << 20, MaxRecords: 256, MaxFrame: 6 << 20},
		},
		"max limits": {
			Limits: Limits{MaxHeader: math.MaxUint64, MaxPayload: math.MaxUint64, MaxRecords: math.MaxUint64, MaxFrame: math.MaxUint64},
		},
		"features": {
			Group: 5, Time: 9, Through: map[string]uint64{"a": 2}, Features: FeatureBundles,
		},
		"every section": {
			Group: 6, Time: 9, Recoverable: 8, Features: math.MaxUint64, Inconsistent: []string{"v"},
			Limits: Limits{MaxHeader: 1, MaxPayload: 2, MaxRecords: 3, MaxFrame: 4}, Waited: math.MaxInt64,
		},
		"waited": {
			Group: 12, Time: 3000, Through: map[string]uint64{"a": 4}, Received: map[string]uint64{"a": 6}, Waited: 250 * time.Millisecond,
		},
		"inconsistent": {
			Group: 11, Time: 3000, Through: map[string]uint64{"a": 4}, Inconsistent: []string{"vol2", "vol9"},
		},
		"recoverable": {
			Group: 9, Time: 2000, Through: map[string]uint64{"a": 3}, Recoverable: 1500,
		},
		"limits and recoverable": {
			Group: 10, Time: math.MaxInt64, Recoverable: 1,
			Limits: Limits{MaxHeader: 1, MaxPayload: 2, MaxRecords: 3, MaxFrame: 4},
		},
	}
}

// normPosition makes nil and empty tables compare equal: the wire format
// does not tell them apart.
func normPosition(p Position) Position {
	norm := func(m map[string]uint64) map[string]uint64 {
		if len(m) == 0 {
			return map[string]uint64{}
		}
		return m
	}
	p.Through, p.Received, p.Ahead = norm(p.Through), norm(p.Received), norm(p.Ahead)
	return p
}

func mustOpen(t testing.TB, f []byte, wantType byte) []byte {
	t.Helper()
	typ, body, err := Open(f)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if typ != wantType {
		t.Fatalf("Open: type %d, want %d", typ, wantType)
	}
	return body
}

func TestHelloRoundTrip(t *testing.T) {
	for name, h := range sampleHellos() {
		t.Run(name, func(t *testing.T) {
			f := EncodeHello(h)
			got, err := DecodeHello(mustOpen(t, f, TypeHello))
			if err != nil {
				t.Fatalf("DecodeHello: %v", err)
			}
			if got.Session != h.Session || got.Instance != h.Instance || len(got.Subsystems) != len(h.Subsystems) {
				t.Fatalf("got %+v, want %+v", got, h)
			}
			if (got.Overwrite == nil) != (h.Overwrite == nil) || got.Overwrite != nil && *got.Overwrite != *h.Overwrite {
				t.Fatalf("overwrite: got %v, want %v", got.Overwrite, h.Overwrite)
			}
			for i := range h.Subsystems {
				if got.Subsystems[i] != h.Subsystems[i] {
					t.Fatalf("subsystem %d: got %q, want %q", i, got.Subsystems[i], h.Subsystems[i])
				}
			}
			if again := EncodeHello(got); !bytes.Equal(again, f) {
				t.Fatalf("re-encoding differs:\n got %x\nwant %x", again, f)
			}
		})
	}
}

func TestPositionRoundTrip(t *testing.T) {
	for name, p := range samplePositions() {
		for _, typ := range []byte{TypeWelcome, TypeAck} {
			t.Run(name, func(t *testing.T) {
				f := EncodePosition(typ, p)
				got, err := DecodePosition(mustOpen(t, f, typ))
				if err != nil {
					t.Fatalf("DecodePosition: %v", err)
				}
				if want := normPosition(p); !reflect.DeepEqual(got, want) {
					t.Fatalf("got %+v, want %+v", got, want)
				}
				if again := EncodePosition(typ, got); !bytes.Equal(again, f) {
					t.Fatalf("re-encoding differs:\n got %x\nwant %x", again, f)
				}
			})
		}
	}
}

// The tables are encoded in name order whatever the map iteration order, so
// equal positions have equal frames.
func TestPositionEncodingIsDeterministic(t *testing.T) {
	p := samplePositions()["all tables"]
	want := EncodePosition(TypeAck, p)
	for range 50 {
		if got := EncodePosition(TypeAck, p); !bytes.Equal(got, want) {
			t.Fatalf("encoding varies:\n got %x\nwant %x", got, want)
		}
	}
}

func TestRefuseRoundTrip(t *testing.T) {
	for _, reason := range []string{"", "session mismatch", "ümlaut", strings.Repeat("r", 1024)} {
		for _, passing := range []bool{false, true} {
			want := Refusal{Reason: reason, Passing: passing}
			got, err := DecodeRefuse(mustOpen(t, EncodeRefuse(want), TypeRefuse))
			if err != nil {
				t.Fatalf("DecodeRefuse(%.20q, passing %v): %v", reason, passing, err)
			}
			if got != want {
				t.Fatalf("got %.20q (%d bytes, passing %v), want %.20q (%d bytes, passing %v)",
					got.Reason, len(got.Reason), got.Passing, reason, len(reason), passing)
			}
		}
	}
}

func TestRefuseLongReasonIsCut(t *testing.T) {
	reason := strings.Repeat("x", 5000)
	got, err := DecodeRefuse(mustOpen(t, EncodeRefuse(Refusal{Reason: reason, Passing: true}), TypeRefuse))
	if err != nil {
		t.Fatal(err)
	}
	if !got.Passing {
		t.Fatal("a passing refusal whose reason was cut decodes as lasting")
	}
	if want := reason[:1024]; got.Reason != want {
		t.Fatalf("got %d bytes, want the first 1024", len(got.Reason))
	}
}

// A reason cut to 1 KiB is cut between characters: a cut inside one
// would leave the primary's status, log and `duplex pair --wait` error a
// reason ending in bytes that are no text. Each case puts a character of
// 1 to 4 bytes across the 1 KiB mark.
func TestRefuseLongReasonIsCutBetweenCharacters(t *testing.T) {
	for _, char := range []string{"x", "é", "€", "𝄞"} {
		for pad := range len(char) {
			reason := strings.Repeat("a", 1024-pad) + strings.Repeat(char, 10)
			got, err := DecodeRefuse(mustOpen(t, EncodeRefuse(Refusal{Reason: reason}), TypeRefuse))
			if err != nil {
				t.Fatal(err)
			}
			if !utf8.ValidString(got.Reason) {
				t.Errorf("%q after %d bytes: cut inside a character: ends %x", char, 1024-pad, got.Reason[len(got.Reason)-4:])
			}
			if !strings.HasPrefix(reason, got.Reason) || len(got.Reason) > 1024 || len(got.Reason) <= 1024-len(char) {
				t.Errorf("%q after %d bytes: kept %d bytes, want the longest whole-character prefix of at most 1024", char, 1024-pad, len(got.Reason))
			}
		}
	}
}

func TestFrameRoundTrip(t *testing.T) {
	for _, body := range [][]byte{nil, {}, {0}, []byte("hello"), bytes.Repeat([]byte{0xa5}, 70000)} {
		for _, typ := range []byte{0, TypeHello, TypeRecordSet, 255} {
			f := Frame(typ, body)
			if got, want := len(f), len(body)+frameOverhead; got != want {
				t.Fatalf("frame length %d, want %d", got, want)
			}
			gotTyp, gotBody, err := Open(f)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if gotTyp != typ || !bytes.Equal(gotBody, body) {
				t.Fatalf("Open = %d, %x; want %d, %x", gotTyp, gotBody, typ, body)
			}
			// Seal on a buffer holding type and body builds the same frame.
			if sealed := Seal(append([]byte{typ}, body...)); !bytes.Equal(sealed, f) {
				t.Fatalf("Seal differs from Frame")
			}
		}
	}
}

func sampleRecordSetFrame(t testing.TB) []byte {
	t.Helper()
	rs := &recordset.RecordSet{
		Session: "sess", Subsystem: "ss1", Seq: 3, Group: 9, ReadTime: 100, Horizon: 500,
		Updates: []recordset.Update{
			{Volume: "v0", Kind: recordset.KindWrite, Offset: 4096, Length: 5, Timestamp: 200, Seq: 1, Data: []byte("abcde")},
			{Volume: "v1", Kind: recordset.KindZeroes, Offset: 0, Length: 512, Timestamp: 300, Seq: 2},
		},
	}
	f, err := recordset.Encode([]byte{TypeRecordSet}, rs)
	if err != nil {
		t.Fatal(err)
	}
	return Seal(f)
}

// sampleFrames are valid frames of every message type.
func sampleFrames(t testing.TB) map[string][]byte {
	m := map[string][]byte{
		"refuse":         EncodeRefuse(Refusal{Reason: "go away"}),
		"refuse empty":   EncodeRefuse(Refusal{}),
		"refuse passing": EncodeRefuse(Refusal{Reason: "back soon", Passing: true}),
		"refuse stale":   EncodeRefuse(Refusal{Reason: "clock went back", Passing: true, Kind: RefusalStale}),
		"refuse newer":   EncodeRefuse(Refusal{Reason: "a newer kind", Kind: 200}),
		"recordset":      sampleRecordSetFrame(t),
		"empty body":     Frame(TypeAck, nil),
		"bundle": EncodeBundle(Bundle{
			Beats: []Heartbeat{{Subsystem: 0, Seq: 0, Horizon: 1}, {Subsystem: math.MaxUint16, Seq: math.MaxUint64, Horizon: math.MaxInt64}},
			Sets:  [][]byte{sampleRecordSetFrame(t)[1 : len(sampleRecordSetFrame(t))-4], sampleRecordSetFrame(t)[1 : len(sampleRecordSetFrame(t))-4]},
		}),
		"bundle of heartbeats": EncodeBundle(Bundle{Beats: []Heartbeat{{Subsystem: 3, Seq: 9, Horizon: 77}}}),
		"empty bundle":         EncodeBundle(Bundle{}),
		"features":             EncodeFeatures(PrimaryReadsInconsistent),
		"features unknown":     EncodeFeatures(^uint64(0)),
	}
	for name, h := range sampleHellos() {
		if len(h.Session) < 100 {
			m["hello "+name] = EncodeHello(h)
		}
	}
	// Of the names the sample Positions use, the later ones far into
	// the Hello, where an index takes more than a byte.
	names := []string{"a", "b", "ss3"}
	for len(names) < fuzzSubsystems-2 {
		names = append(names, fmt.Sprintf("x%d", len(names)))
	}
	names = append(names, "ss2", "ss1")
	x := NewSubsystemIndex(names)
	for name, p := range samplePositions() {
		m["welcome "+name] = EncodePosition(TypeWelcome, p)
		m["ack "+name] = EncodePosition(TypeAck, p)
		m["indexed ack "+name] = x.EncodeAck(p)
	}
	return m
}

func TestOpenDetectsEverySingleBitFlip(t *testing.T) {
	for name, f := range sampleFrames(t) {
		t.Run(name, func(t *testing.T) {
			for i := range len(f) * 8 {
				c := bytes.Clone(f)
				c[i/8] ^= 1 << (i % 8)
				typ, body, err := Open(c)
				if err == nil && typ == TypeRecordSet {
					// A record set's body is checked by its own CRCs.
					_, err = recordset.Decode(body, recordset.DefaultLimits)
				}
				if err == nil && typ == TypeBundle {
					// So are the record sets of a bundle.
					var b Bundle
					if b, err = DecodeBundle(body); err == nil {
						for _, set := range b.Sets {
							if _, err = recordset.Decode(set, recordset.DefaultLimits); err != nil {
								break
							}
						}
					}
				}
				if err == nil {
					t.Fatalf("bit %d flipped: Open = %d, %x, accepted; want an error", i, typ, body)
				}
			}
		})
	}
}

func TestOpenRejectsTruncatedFrames(t *testing.T) {
	for name, f := range sampleFrames(t) {
		t.Run(name, func(t *testing.T) {
			for n := range len(f) {
				if _, _, err := Open(f[:n]); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("first %d of %d bytes: Open err = %v, want ErrCorrupt", n, len(f), err)
				}
			}
			// Bytes after the CRC are no better.
			if _, _, err := Open(append(bytes.Clone(f), 0)); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("frame with a trailing byte: Open err = %v, want ErrCorrupt", err)
			}
		})
	}
}

// decodeBody decodes body as a message of type typ; ok is false for types
// that have no decoder here.
func decodeBody(typ byte, body []byte) (any, bool, error) {
	switch typ {
	case TypeHello:
		h, err := DecodeHello(body)
		return h, true, err
	case TypeWelcome, TypeAck:
		p, err := DecodePosition(body)
		return p, true, err
	case TypeRefuse:
		r, err := DecodeRefuse(body)
		return r, true, err
	case TypeBundle:
		b, err := DecodeBundle(body)
		return b, true, err
	case TypeFeatures:
		f, err := DecodeFeatures(body)
		return f, true, err
	case TypeIndexedAck:
		var a indexedAck
		p, err := DecodeIndexedAck(body, fuzzSubsystems, &a.t)
		a.p = p
		return a, true, err
	}
	return nil, false, nil
}

// fuzzSubsystems is how many subsystems the Hello named on the connection
// of an indexed Ack the tests decode without one.
const fuzzSubsystems = 1000

// indexedAck is a decoded TypeIndexedAck.
type indexedAck struct {
	p Position
	t IndexedTables
}

// positionOf returns the Position a decoded Welcome, Ack or indexed Ack
// carries.
func positionOf(v any) (Position, bool) {
	switch v := v.(type) {
	case Position:
		return v, true
	case indexedAck:
		return v.p, true
	}
	return Position{}, false
}

// A body that lost bytes at its end, sealed again so that the CRC holds,
// still fails to decode: the decoders never read past what they were given
// and never accept a short message.
func TestDecodeRejectsTruncatedBodies(t *testing.T) {
	for name, f := range sampleFrames(t) {
		typ, body, err := Open(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := decodeBody(typ, body); !ok {
			continue
		}
		t.Run(name, func(t *testing.T) {
			for n := range len(body) {
				short := Frame(typ, body[:n])
				ty, b, err := Open(short)
				if err != nil {
					t.Fatalf("Open of a resealed frame: %v", err)
				}
				v, _, err := decodeBody(ty, b)
				if p, ok := positionOf(v); ok && err == nil && cutBeforeSections(typ, body, n, p) {
					// Cut exactly before its optional sections, a
					// Position is one without them: the frame CRC,
					// not the body, tells the two apart.
					continue
				}
				if h, ok := v.(Hello); ok && err == nil && h.Overwrite == nil && n == len(body)-9 {
					// Cut exactly before its consent, a Hello is
					// one without it, as for a Position's sections.
					continue
				}
				if r, ok := v.(Refusal); ok && err == nil && n >= 2+len(r.Reason) && bytes.HasPrefix(body, appendString(nil, r.Reason)) {
					// Cut exactly before one of its sections, a
					// refusal is one without it, as for a Hello: a
					// lasting or unnamed one.
					continue
				}
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("body cut to %d of %d bytes: decoded %+v, err %v; want ErrCorrupt", n, len(body), v, err)
				}
			}
			long := Frame(typ, append(bytes.Clone(body), 0))
			_, b, _ := Open(long)
			if v, _, err := decodeBody(typ, b); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("body with a trailing byte: decoded %+v, err %v; want ErrCorrupt", v, err)
			}
		})
	}
}

// cutBeforeSections says the Position body cut to n bytes, decoded as p,
// lost exactly the optional sections p lacks and nothing else.
func cutBeforeSections(typ byte, body []byte, n int, p Position) bool {
	v, _, err := decodeBody(typ, body)
	full, ok := positionOf(v)
	if err != nil || !ok {
		return false
	}
	lost := 0
	if full.Limits != (Limits{}) && p.Limits == (Limits{}) {
		lost += limitsSectionSize
	}
	if full.Recoverable != 0 && p.Recoverable == 0 {
		lost += recoverableSectionSize
	}
	if full.Features != 0 && p.Features == 0 {
		lost += 1 + 8
	}
	if len(full.Inconsistent) > 0 && len(p.Inconsistent) == 0 {
		lost += 1 + 2
		for _, n := range full.Inconsistent {
			lost += 2 + len(n)
		}
	}
	if full.Waited != 0 && p.Waited == 0 {
		lost += waitedSectionSize
	}
	return lost > 0 && n == len(body)-lost
}

// reencode returns the frame that the decoded message v of type typ encodes
// to.
func reencode(typ byte, v any) []byte {
	switch typ {
	case TypeHello:
		return EncodeHello(v.(Hello))
	case TypeWelcome, TypeAck:
		return EncodePosition(typ, v.(Position))
	case TypeRefuse:
		return EncodeRefuse(v.(Refusal))
	case TypeBundle:
		return EncodeBundle(v.(Bundle))
	case TypeFeatures:
		return EncodeFeatures(v.(uint64))
	case TypeIndexedAck:
		return EncodeIndexedAck(v.(indexedAck).p, v.(indexedAck).t)
	}
	panic("no encoder")
}

// The decoders accept exactly what the encoders produce: a Position table
// that names a subsystem twice, or lists names out of order, is not an
// encoding of any Position. Accepting it means two different frames carry
// the same message and a duplicated name silently loses one of its values.
func TestDecodePositionRejectsNonCanonicalTables(t *testing.T) {
	entry := func(b []byte, name string, v uint64) []byte {
		b = appendString(b, name)
		return append(b, byte(v>>56), byte(v>>48), byte(v>>40), byte(v>>32), byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
	head := make([]byte, 16) // group 0, time 0
	for _, tc := range []struct {
		name  string
		table []byte
	}{
		{"duplicate name", entry(entry([]byte{0, 2}, "ss1", 5), "ss1", 3)},
		{"unsorted names", entry(entry([]byte{0, 2}, "ss2", 5), "ss1", 3)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := append(append(bytes.Clone(head), tc.table...), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0) // Received, Ahead empty, journal free unknown
			p, err := DecodePosition(body)
			if err == nil {
				again := EncodePosition(TypeAck, p)
				_, b, _ := Open(again)
				t.Errorf("DecodePosition accepted a non-canonical table as %+v; it re-encodes as %x, not %x", p.Through, b, body)
			}
		})
	}
}

// maxFuzzFrame bounds the frame FuzzDecodeMessage decodes: a longer input
// is decoded as its first maxFuzzFrame bytes. The engine minimizes every
// input that finds new coverage, for up to a minute, at a cost that grows
// as the square of its length when every byte counts (a frame's lengths
// and counts): each try is a pass over the whole test binary's coverage
// counters, about a millisecond on a loaded machine. Mutations of the
// seeds reach a kilobyte within a second, and two such inputs took both
// workers from 3 s into a 60 s run to its end, 760,000 tries each, while
// nothing was fuzzed. Cut to the largest seed's size, rounded up, an
// input is minimized in 130,000 tries at worst. A decoder's loops take
// a frame of 500 bytes as one of 5,000, and record sets and bundles, the
// frames that run long, have fuzz targets of their own.
const maxFuzzFrame = 512

// Every seed of FuzzDecodeMessage is decoded whole: none is longer than
// the frame it decodes.
func TestFuzzDecodeMessageSeedsAreWhole(t *testing.T) {
	for name, f := range sampleFrames(t) {
		if len(f) > maxFuzzFrame {
			t.Errorf("seed %s: %d bytes, FuzzDecodeMessage decodes %d", name, len(f), maxFuzzFrame)
		}
	}
}

func FuzzDecodeMessage(f *testing.F) {
	for _, fr := range sampleFrames(f) {
		f.Add(fr)
	}
	f.Add([]byte{})
	f.Add([]byte{TypeHello})
	f.Add([]byte{TypeAck, 0, 0, 0, 0})
	f.Add(bytes.Repeat([]byte{0xff}, 64))
	f.Add(Frame(TypeHello, []byte{0xff, 0xff}))
	f.Add(Frame(TypeAck, bytes.Repeat([]byte{0xff}, 40)))
	f.Add(Frame(TypeRecordSet, []byte("DXRS garbage")))
	f.Add(Frame(99, []byte("unknown type")))
	// The Hello's optional consent section: whole, cut inside, of a tag
	// this build does not know, and followed by more.
	consent := Generation(0xfeed)
	hello := EncodeHello(Hello{Session: "s", Subsystems: []string{"ss1"}, Generation: 7, Overwrite: &consent})
	body := hello[1 : len(hello)-4]
	f.Add(Frame(TypeHello, body[:len(body)-3]))
	f.Add(Frame(TypeHello, append(bytes.Clone(body[:len(body)-9]), 2, 0, 0, 0, 0, 0, 0, 0, 1)))
	f.Add(Frame(TypeHello, append(bytes.Clone(body), 1)))
	// The Refuse's sections: of a tag this build does not know, twice,
	// out of order, cut off, naming no kind, and after a cut reason.
	f.Add(Frame(TypeRefuse, append(appendString(nil, "r"), 3)))
	f.Add(Frame(TypeRefuse, append(appendString(nil, "r"), refusePassing, refusePassing)))
	f.Add(Frame(TypeRefuse, append(appendString(nil, "r"), refuseKind, byte(RefusalStale), refusePassing)))
	f.Add(Frame(TypeRefuse, append(appendString(nil, "r"), refusePassing, refuseKind)))
	f.Add(Frame(TypeRefuse, append(appendString(nil, "r"), refuseKind, 0)))
	f.Add(Frame(TypeRefuse, []byte{0, 5, 'r', refusePassing}))

	f.Fuzz(func(t *testing.T, b []byte) {
		b = b[:min(len(b), maxFuzzFrame)]
		checkMessage(t, b)
		// Random bytes hardly ever pass the CRC; with the CRC fixed up, the
		// mutations reach the decoders.
		if len(b) >= frameOverhead {
			checkMessage(t, Seal(bytes.Clone(b[:len(b)-4])))
		}
	})
}

// checkMessage asserts what must hold for every frame: Open and the decoders
// do not panic, their errors are classified, and a frame that decodes is the
// one its message encodes to.
func checkMessage(t *testing.T, f []byte) {
	typ, body, err := Open(f)
	if err != nil {
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Open error wraps no sentinel: %v", err)
		}
		return
	}
	if typ == TypeRecordSet {
		rs, err := recordset.Decode(body, recordset.DefaultLimits)
		if err != nil {
			return
		}
		again, err := recordset.Encode([]byte{TypeRecordSet}, rs)
		if err != nil {
			t.Fatalf("decoded record set does not encode: %v", err)
		}
		if again = Seal(again); !bytes.Equal(again, f) {
			t.Fatalf("record set frame re-encodes differently:\n in  %x\n out %x", f, again)
		}
		return
	}
	v, ok, err := decodeBody(typ, body)
	if !ok {
		return
	}
	if err != nil {
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("decode error wraps no sentinel: %v", err)
		}
		return
	}
	if again := reencode(typ, v); !bytes.Equal(again, f) {
		t.Fatalf("type %d decodes to %+v, which re-encodes differently:\n in  %x\n out %x", typ, v, f, again)
	}
}

// A Hello section of a tag this build does not know is refused, not
// skipped: the consent it may carry is not one to guess at.
func TestHelloUnknownSectionRefused(t *testing.T) {
	g := Generation(5)
	f := EncodeHello(Hello{Session: "s", Overwrite: &g})
	body := bytes.Clone(mustOpen(t, f, TypeHello))
	body[len(body)-9] = 2
	if _, err := DecodeHello(body); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("DecodeHello of section 2: err = %v, want ErrCorrupt", err)
	}
	if _, err := DecodeHello(body[:len(body)-1]); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("DecodeHello of a cut section: err = %v, want ErrCorrupt", err)
	}
}

// FuzzDecodeRefuse: whatever a Refuse's body holds, DecodeRefuse does not
// panic, keeps at most 1 KiB of reason, and calls the refusal passing only
// for the reason followed by the passing section and at most the kind
// section, and names a kind only for exactly that section last: a damaged
// frame reads as lasting and unnamed, which costs a stop at most an
// unclean save, never a wait for a secondary that waits for an operator,
// and has the primary act on no kind. A body it accepts is the one
// EncodeRefuse makes of what it read, and a primary from before the
// sections reads the same reason from it.
func FuzzDecodeRefuse(f *testing.F) {
	for _, r := range []Refusal{{}, {Reason: "no"}, {Reason: "no", Passing: true}, {Reason: strings.Repeat("r", 1024), Passing: true},
		{Reason: "no", Kind: RefusalStale}, {Reason: "no", Passing: true, Kind: RefusalStale}, {Reason: "no", Kind: 255}} {
		f.Add(mustOpen(f, EncodeRefuse(r), TypeRefuse))
	}
	f.Add(append(appendString(nil, "r"), 3))
	f.Add(append(appendString(nil, "r"), refusePassing, refusePassing))
	f.Add(append(appendString(nil, "r"), refuseKind, byte(RefusalStale), refusePassing))
	f.Add(append(appendString(nil, "r"), refuseKind, 0))
	f.Add(append(appendString(nil, "r"), refuseKind))
	f.Add([]byte{0, 5, 'r', refusePassing})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, refusePassing})
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := DecodeRefuse(body)
		if len(got.Reason) > 1024 {
			t.Fatalf("DecodeRefuse(%x) kept a reason of %d bytes", body, len(got.Reason))
		}
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("DecodeRefuse(%x): error wraps no sentinel: %v", body, err)
			}
			if got.Passing || got.Kind != RefusalUnnamed {
				t.Fatalf("DecodeRefuse(%x) = %+v with an error (%v): a damaged frame must read as lasting and unnamed", body, got, err)
			}
			return
		}
		if again := mustOpen(t, EncodeRefuse(got), TypeRefuse); !bytes.Equal(again, body) {
			t.Fatalf("DecodeRefuse(%x) = %+v, which encodes as %x", body, got, again)
		}
		sections := body[len(appendString(nil, got.Reason)):]
		kinded := len(sections) >= 2 && sections[len(sections)-2] == refuseKind && sections[len(sections)-1] != 0
		if got.Kind != RefusalUnnamed && (!kinded || RefusalKind(sections[len(sections)-1]) != got.Kind) {
			t.Fatalf("DecodeRefuse(%x) = %+v: a kind without exactly the kind section last", body, got)
		}
		if kinded && got.Kind != RefusalUnnamed {
			sections = sections[:len(sections)-2]
		}
		if got.Passing != bytes.Equal(sections, []byte{refusePassing}) {
			t.Fatalf("DecodeRefuse(%x) = %+v: passing without exactly the reason and the passing section after it", body, got)
		}
		old := &reader{b: body}
		if reason := old.str(); old.err != nil || reason != got.Reason {
			t.Fatalf("a primary from before reads %q (%v) of %x, this build %q", reason, old.err, body, got.Reason)
		}
	})
}
