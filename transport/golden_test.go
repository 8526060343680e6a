package transport

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// goldenPosition is pinned by testdata/welcome-*.hex: change neither.
func goldenPosition() Position {
	return Position{Group: 5, Time: 1_700_000_000_000_000_000, Through: map[string]uint64{"ss1": 3}, JournalFree: 1 << 30}
}

// readGolden returns the bytes of a testdata file of hex digits, with
// everything after a '#' on a line a comment.
func readGolden(t *testing.T, path string) []byte {
	t.Helper()
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var digits strings.Builder
	for line := range strings.Lines(string(text)) {
		line, _, _ = strings.Cut(line, "#")
		digits.WriteString(strings.Join(strings.Fields(line), ""))
	}
	b, err := hex.DecodeString(digits.String())
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return b
}

// A Welcome that announces no limits is byte for byte what secondaries sent
// before limits were announced: a primary of before reads it. One that
// announces them appends a section, pinned here too.
func TestGoldenWelcome(t *testing.T) {
	for _, tc := range []struct {
		path   string
		limits Limits
	}{
		{"testdata/welcome-baseline.hex", Limits{}},
		{"testdata/welcome-limits.hex", Limits{MaxHeader: 16 << 10, MaxPayload: 5 << 20, MaxRecords: 256, MaxFrame: 6 << 20}},
	} {
		t.Run(tc.path, func(t *testing.T) {
			want := readGolden(t, tc.path)
			p := goldenPosition()
			p.Limits = tc.limits
			if got := EncodePosition(TypeWelcome, p); !bytes.Equal(got, want) {
				t.Fatalf("the Welcome encoding no longer matches %s: the wire format changed\n got %x\nwant %x", tc.path, got, want)
			}
			got, err := DecodePosition(mustOpen(t, want, TypeWelcome))
			if err != nil {
				t.Fatalf("DecodePosition(golden): %v", err)
			}
			if got.Limits != tc.limits || got.Group != p.Group || got.JournalFree != p.JournalFree {
				t.Fatalf("DecodePosition(golden) = %+v, want %+v", got, p)
			}
		})
	}
}

// A Welcome without limits announces the baseline, the limits every
// secondary had before it could say otherwise.
func TestWelcomeWithoutLimitsAnnouncesTheBaseline(t *testing.T) {
	p, err := DecodePosition(mustOpen(t, readGolden(t, "testdata/welcome-baseline.hex"), TypeWelcome))
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Announced(); got != BaselineLimits {
		t.Fatalf("Announced() = %+v, want the baseline %+v", got, BaselineLimits)
	}
	l := Limits{MaxHeader: 1, MaxPayload: 2, MaxRecords: 3, MaxFrame: 4}
	if got := (Position{Limits: l}).Announced(); got != l {
		t.Fatalf("Announced() = %+v, want %+v", got, l)
	}
}

// The section is all or nothing, and of a known kind: anything else is not
// an encoding of any Position.
func TestDecodePositionRejectsMalformedLimits(t *testing.T) {
	_, base, err := Open(readGolden(t, "testdata/welcome-baseline.hex"))
	if err != nil {
		t.Fatal(err)
	}
	u64 := func(v uint64) []byte {
		return []byte{byte(v >> 56), byte(v >> 48), byte(v >> 40), byte(v >> 32), byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
	}
	section := func(kind byte, vs ...uint64) []byte {
		b := append(bytes.Clone(base), kind)
		for _, v := range vs {
			b = append(b, u64(v)...)
		}
		return b
	}
	for name, body := range map[string][]byte{
		"unknown section": section(0xf0, 1, 1, 1, 1),
		"zero limit":      section(sectionLimits, 1, 0, 1, 1),
		"all zero":        section(sectionLimits, 0, 0, 0, 0),
		"short section":   section(sectionLimits, 1, 1, 1),
		"kind only":       section(sectionLimits),
	} {
		t.Run(name, func(t *testing.T) {
			if p, err := DecodePosition(body); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decoded %+v, err %v; want ErrCorrupt", p, err)
			}
		})
	}
}

// An Ack of a secondary that recovers to a time behind the journaled one (a
// resync holds it) appends a section, pinned here; one that recovers to the
// journaled time is the Ack of before.
func TestGoldenAckRecoverable(t *testing.T) {
	want := readGolden(t, "testdata/ack-recoverable.hex")
	p := goldenPosition()
	p.Recoverable = p.Time - 1_000_000_000
	if got := EncodePosition(TypeAck, p); !bytes.Equal(got, want) {
		t.Fatalf("the Ack encoding no longer matches: the wire format changed\n got %x\nwant %x", got, want)
	}
	got, err := DecodePosition(mustOpen(t, want, TypeAck))
	if err != nil {
		t.Fatalf("DecodePosition(golden): %v", err)
	}
	if got.Recoverable != p.Recoverable || got.RecoversTo() != p.Recoverable || got.Time != p.Time {
		t.Fatalf("DecodePosition(golden) = %+v, want %+v", got, p)
	}
	base, err := DecodePosition(mustOpen(t, readGolden(t, "testdata/welcome-baseline.hex"), TypeWelcome))
	if err != nil {
		t.Fatal(err)
	}
	if base.RecoversTo() != base.Time {
		t.Fatalf("a Position without the section recovers to %d, want its time %d", base.RecoversTo(), base.Time)
	}
}

// The recoverable section holds a time after zero and not after the
// journaled one, after the limits section if both come, once.
func TestDecodePositionRejectsMalformedRecoverable(t *testing.T) {
	_, base, err := Open(readGolden(t, "testdata/welcome-baseline.hex"))
	if err != nil {
		t.Fatal(err)
	}
	tm := goldenPosition().Time
	u64 := func(v uint64) []byte {
		return []byte{byte(v >> 56), byte(v >> 48), byte(v >> 40), byte(v >> 32), byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
	}
	body := func(parts ...[]byte) []byte {
		return bytes.Join(append([][]byte{base}, parts...), nil)
	}
	rec := func(v int64) []byte { return append([]byte{sectionRecoverable}, u64(uint64(v))...) }
	lim := append([]byte{sectionLimits}, bytes.Repeat(u64(1), 4)...)
	if _, err := DecodePosition(body(lim, rec(tm-1))); err != nil {
		t.Fatalf("limits then recoverable: %v", err)
	}
	for name, b := range map[string][]byte{
		"zero":              body(rec(0)),
		"negative":          body(rec(-1)),
		"after the time":    body(rec(tm + 1)),
		"short":             body(rec(tm - 1)[:5]),
		"kind only":         body([]byte{sectionRecoverable}),
		"twice":             body(rec(tm-1), rec(tm-1)),
		"before the limits": body(rec(tm-1), lim),
	} {
		t.Run(name, func(t *testing.T) {
			if p, err := DecodePosition(b); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decoded %+v, err %v; want ErrCorrupt", p, err)
			}
		})
	}
}

// goldenBundle is pinned by testdata/bundle.hex: change neither. Its record
// set bodies stand for encoded record sets, which check themselves.
func goldenBundle() Bundle {
	return Bundle{
		Beats: []Heartbeat{{Subsystem: 1, Seq: 7, Horizon: 1_700_000_000_000_000_000}},
		Sets:  [][]byte{[]byte("DXRS"), []byte("set2")},
	}
}

// A Welcome of a secondary that takes bundles appends the features
// section, pinned here.
func TestGoldenWelcomeFeatures(t *testing.T) {
	want := readGolden(t, "testdata/welcome-features.hex")
	p := goldenPosition()
	p.Features = FeatureBundles
	if got := EncodePosition(TypeWelcome, p); !bytes.Equal(got, want) {
		t.Fatalf("the Welcome encoding no longer matches: the wire format changed\n got %x\nwant %x", got, want)
	}
	got, err := DecodePosition(mustOpen(t, want, TypeWelcome))
	if err != nil {
		t.Fatalf("DecodePosition(golden): %v", err)
	}
	if got.Features != FeatureBundles || got.Limits != (Limits{}) || got.Recoverable != 0 {
		t.Fatalf("DecodePosition(golden) = %+v, want %+v", got, p)
	}
	base, err := DecodePosition(mustOpen(t, readGolden(t, "testdata/welcome-baseline.hex"), TypeWelcome))
	if err != nil {
		t.Fatal(err)
	}
	if base.Features != 0 {
		t.Fatalf("a Welcome without the section announces features %#x, want none", base.Features)
	}
}

// The features section follows the others, once, and is never empty.
func TestDecodePositionRejectsMalformedFeatures(t *testing.T) {
	_, base, err := Open(readGolden(t, "testdata/welcome-baseline.hex"))
	if err != nil {
		t.Fatal(err)
	}
	feat := func(v byte) []byte { return []byte{sectionFeatures, 0, 0, 0, 0, 0, 0, 0, v} }
	rec := append([]byte{sectionRecoverable}, 0x17, 0x97, 0x9c, 0xfd, 0xfa, 0x8f, 0x36, 0x00)
	body := func(parts ...[]byte) []byte { return bytes.Join(append([][]byte{base}, parts...), nil) }
	if _, err := DecodePosition(body(rec, feat(1))); err != nil {
		t.Fatalf("recoverable then features: %v", err)
	}
	for name, b := range map[string][]byte{
		"none":                   body(feat(0)),
		"short":                  body(feat(1)[:5]),
		"twice":                  body(feat(1), feat(1)),
		"before the recoverable": body(feat(1), rec),
	} {
		t.Run(name, func(t *testing.T) {
			if p, err := DecodePosition(b); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decoded %+v, err %v; want ErrCorrupt", p, err)
			}
		})
	}
}

// A bundle frame is pinned byte for byte; its CRC covers the header, not
// the record sets, which check themselves.
func TestGoldenBundle(t *testing.T) {
	want := readGolden(t, "testdata/bundle.hex")
	if got := EncodeBundle(goldenBundle()); !bytes.Equal(got, want) {
		t.Fatalf("the bundle encoding no longer matches: the wire format changed\n got %x\nwant %x", got, want)
	}
	got, err := DecodeBundle(mustOpen(t, want, TypeBundle))
	if err != nil {
		t.Fatalf("DecodeBundle(golden): %v", err)
	}
	if !reflect.DeepEqual(got, goldenBundle()) {
		t.Fatalf("DecodeBundle(golden) = %+v, want %+v", got, goldenBundle())
	}
	// A record set's bytes are outside the frame CRC.
	c := bytes.Clone(want)
	c[len(c)-5] ^= 0xff
	if _, _, err := Open(c); err != nil {
		t.Fatalf("a flipped record set byte fails the frame CRC: %v", err)
	}
}

// Every bundle header that does not account for its body exactly is
// corrupt: no slack, no record set past the end, no empty record set.
func TestDecodeBundleRejectsMalformed(t *testing.T) {
	_, good, err := Open(EncodeBundle(goldenBundle()))
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		"empty":           nil,
		"header too long": append([]byte{0xff, 0xff, 0xff, 0xff}, good[4:]...),
		"trailing byte":   append(bytes.Clone(good), 0),
		"short":           good[:len(good)-1],
		"empty set":       EncodeBundle(Bundle{Sets: [][]byte{{}}})[1:],
		"zero horizon":    mustBody(EncodeBundle(Bundle{Beats: []Heartbeat{{Seq: 1}}})),
	} {
		t.Run(name, func(t *testing.T) {
			if got, err := DecodeBundle(b); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decoded %+v, err %v; want ErrCorrupt", got, err)
			}
		})
	}
}

func mustBody(f []byte) []byte {
	_, body, err := Open(f)
	if err != nil {
		panic(err)
	}
	return body
}

// FuzzDecodeBundle: DecodeBundle never panics, classifies its errors, and
// what it accepts is exactly what EncodeBundle writes.
func FuzzDecodeBundle(f *testing.F) {
	f.Add(mustBody(EncodeBundle(goldenBundle())))
	f.Add(mustBody(EncodeBundle(Bundle{})))
	f.Add(mustBody(EncodeBundle(Bundle{Beats: []Heartbeat{{Subsystem: 2, Seq: 1, Horizon: 5}}})))
	f.Add([]byte{0, 0, 0, 6, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, body []byte) {
		b, err := DecodeBundle(body)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		if again := mustBody(EncodeBundle(b)); !bytes.Equal(again, body) {
			t.Fatalf("bundle re-encodes differently:\n in  %x\n out %x", body, again)
		}
	})
}

// An Ack of a secondary that holds volumes consistent as of no time (here,
// after it gave up a hold) appends a section naming them, pinned here; one
// without it is the Ack of before, and names none.
func TestGoldenAckInconsistent(t *testing.T) {
	want := readGolden(t, "testdata/ack-inconsistent.hex")
	p := goldenPosition()
	p.Inconsistent = []string{"vol2", "vol4"}
	if got := EncodePosition(TypeAck, p); !bytes.Equal(got, want) {
		t.Fatalf("the Ack encoding no longer matches: the wire format changed\n got %x\nwant %x", got, want)
	}
	got, err := DecodePosition(mustOpen(t, want, TypeAck))
	if err != nil {
		t.Fatalf("DecodePosition(golden): %v", err)
	}
	if !slices.Equal(got.Inconsistent, p.Inconsistent) || got.Time != p.Time || got.Recoverable != 0 || got.Features != 0 {
		t.Fatalf("DecodePosition(golden) = %+v, want %+v", got, p)
	}
	base, err := DecodePosition(mustOpen(t, readGolden(t, "testdata/ack-recoverable.hex"), TypeAck))
	if err != nil {
		t.Fatal(err)
	}
	if base.Inconsistent != nil {
		t.Fatalf("a Position without the section names %q", base.Inconsistent)
	}
}

// The inconsistent section names at least one volume, each named, sorted
// and once, after the other sections, once.
func TestDecodePositionRejectsMalformedInconsistent(t *testing.T) {
	_, base, err := Open(readGolden(t, "testdata/welcome-baseline.hex"))
	if err != nil {
		t.Fatal(err)
	}
	body := func(parts ...[]byte) []byte {
		return bytes.Join(append([][]byte{base}, parts...), nil)
	}
	names := func(ns ...string) []byte {
		b := []byte{sectionInconsistent, 0, byte(len(ns))}
		for _, n := range ns {
			b = append(b, 0, byte(len(n)))
			b = append(b, n...)
		}
		return b
	}
	features := []byte{sectionFeatures, 0, 0, 0, 0, 0, 0, 0, 1}
	if _, err := DecodePosition(body(features, names("a", "b"))); err != nil {
		t.Fatalf("features then inconsistent: %v", err)
	}
	for name, b := range map[string][]byte{
		"no volume":       body(names()),
		"empty name":      body(names("")),
		"out of order":    body(names("b", "a")),
		"twice":           body(names("a", "a")),
		"short count":     body([]byte{sectionInconsistent, 0}),
		"short name":      body(names("abc")[:6]),
		"count too high":  body([]byte{sectionInconsistent, 0, 2, 0, 1, 'a'}),
		"kind only":       body([]byte{sectionInconsistent}),
		"section twice":   body(names("a"), names("b")),
		"before features": body(names("a"), features),
	} {
		t.Run(name, func(t *testing.T) {
			if p, err := DecodePosition(b); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decoded %+v, err %v; want ErrCorrupt", p, err)
			}
		})
	}
}

// A lasting unnamed refusal is byte for byte the Refuse of a secondary
// from before refusals said whether they pass, and decodes as lasting:
// such a secondary could not say. A passing one appends a section, and a
// named one another, which a primary from before takes for trailing bytes
// after a reason it reads; a primary that reads the passing section and
// not the kind takes a named refusal for a damaged frame, lasting, as it
// read a stale record set's before it was named.
func TestGoldenRefuse(t *testing.T) {
	for _, tc := range []struct {
		path string
		r    Refusal
	}{
		{"testdata/refuse-lasting.hex", Refusal{Reason: "no"}},
		{"testdata/refuse-passing.hex", Refusal{Reason: "no", Passing: true}},
		{"testdata/refuse-stale.hex", Refusal{Reason: "no", Passing: true, Kind: RefusalStale}},
	} {
		t.Run(tc.path, func(t *testing.T) {
			want := readGolden(t, tc.path)
			if got := EncodeRefuse(tc.r); !bytes.Equal(got, want) {
				t.Fatalf("the Refuse encoding no longer matches %s: the wire format changed\n got %x\nwant %x", tc.path, got, want)
			}
			got, err := DecodeRefuse(mustOpen(t, want, TypeRefuse))
			if err != nil || got != tc.r {
				t.Fatalf("DecodeRefuse(golden) = %+v, %v; want %+v", got, err, tc.r)
			}
			// What a primary from before decodes: the reason first, then
			// nothing more, or an error it ignores.
			old := &reader{b: mustOpen(t, want, TypeRefuse)}
			if reason := old.str(); old.err != nil || reason != tc.r.Reason {
				t.Fatalf("the reason as a primary from before reads it: %q, %v; want %q", reason, old.err, tc.r.Reason)
			}
			// What a primary that reads the passing section and not the
			// kind decodes: passing only without a kind.
			if len(old.b) > 0 && old.b[0] == refusePassing {
				old.b = old.b[1:]
			}
			if passing := old.done() == nil && tc.r.Passing; passing != (tc.r.Passing && tc.r.Kind == RefusalUnnamed) {
				t.Fatalf("a primary from before kinds reads passing %v of %+v", passing, tc.r)
			}
		})
	}
}

// A section after the reason other than the passing and kind ones, either
// twice, out of order, cut, or a kind section naming none, is no encoding
// of a refusal: refused, and what is read of the reason is kept, lasting
// and unnamed.
func TestDecodeRefuseRejectsMalformedSections(t *testing.T) {
	reason := appendString(nil, "r")
	for name, body := range map[string][]byte{
		"unknown section":   append(bytes.Clone(reason), 3),
		"passing twice":     append(bytes.Clone(reason), refusePassing, refusePassing),
		"passing then more": append(bytes.Clone(reason), refusePassing, 0),
		"kind then passing": append(bytes.Clone(reason), refuseKind, byte(RefusalStale), refusePassing),
		"kind twice":        append(bytes.Clone(reason), refuseKind, byte(RefusalStale), refuseKind, byte(RefusalStale)),
		"kind cut":          append(bytes.Clone(reason), refusePassing, refuseKind),
		"kind naming none":  append(bytes.Clone(reason), refusePassing, refuseKind, 0),
	} {
		t.Run(name, func(t *testing.T) {
			got, err := DecodeRefuse(body)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("DecodeRefuse(%x) = %+v, %v; want ErrCorrupt", body, got, err)
			}
			if got != (Refusal{Reason: "r"}) {
				t.Errorf("DecodeRefuse(%x) = %+v with its error; want the reason, lasting", body, got)
			}
		})
	}
}

// A receipt of a secondary waiting on its disk appends a section saying
// how long it has, pinned here, by name and by index; one without it is
// the receipt of before, and says no wait.
func TestGoldenAckWaited(t *testing.T) {
	want := readGolden(t, "testdata/ack-waited.hex")
	p := goldenPosition()
	p.Waited = 1250 * time.Millisecond
	if got := EncodePosition(TypeAck, p); !bytes.Equal(got, want) {
		t.Fatalf("the Ack encoding no longer matches: the wire format changed\n got %x\nwant %x", got, want)
	}
	got, err := DecodePosition(mustOpen(t, want, TypeAck))
	if err != nil {
		t.Fatalf("DecodePosition(golden): %v", err)
	}
	if got.Waited != p.Waited || got.Time != p.Time || got.Inconsistent != nil || got.Recoverable != 0 {
		t.Fatalf("DecodePosition(golden) = %+v, want %+v", got, p)
	}
	want = readGolden(t, "testdata/ack-indexed-waited.hex")
	q, tables := goldenIndexed()
	q.Waited = p.Waited
	if got := EncodeIndexedAck(q, tables); !bytes.Equal(got, want) {
		t.Fatalf("the indexed Ack encoding no longer matches: the wire format changed\n got %x\nwant %x", got, want)
	}
	var gotTables IndexedTables
	gq, err := DecodeIndexedAck(mustOpen(t, want, TypeIndexedAck), 3, &gotTables)
	if err != nil || !reflect.DeepEqual(gq, q) || !reflect.DeepEqual(gotTables, tables) {
		t.Fatalf("DecodeIndexedAck(golden) = %+v, %+v, %v; want %+v, %+v", gq, gotTables, err, q, tables)
	}
	for _, name := range []string{"testdata/ack-inconsistent.hex", "testdata/ack-recoverable.hex"} {
		base, err := DecodePosition(mustOpen(t, readGolden(t, name), TypeAck))
		if err != nil {
			t.Fatal(err)
		}
		if base.Waited != 0 {
			t.Fatalf("%s: a Position without the section says a wait of %s", name, base.Waited)
		}
	}
}

// The waited section comes last, once, and says a wait of a nanosecond at
// the least, within an int64.
func TestDecodePositionRejectsMalformedWaited(t *testing.T) {
	_, base, err := Open(readGolden(t, "testdata/welcome-baseline.hex"))
	if err != nil {
		t.Fatal(err)
	}
	body := func(parts ...[]byte) []byte { return bytes.Join(append([][]byte{base}, parts...), nil) }
	waited := func(v ...byte) []byte {
		b := []byte{sectionWaited, 0, 0, 0, 0, 0, 0, 0, 0}
		copy(b[9-len(v):], v)
		return b
	}
	inconsistent := []byte{sectionInconsistent, 0, 1, 0, 1, 'a'}
	for name, b := range map[string][]byte{
		"a nanosecond":         body(waited(1)),
		"after inconsistent":   body(inconsistent, waited(0x4a, 0x81, 0x7c, 0x80)),
		"the longest duration": body(waited(0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)),
	} {
		if p, err := DecodePosition(b); err != nil || p.Waited <= 0 {
			t.Fatalf("%s: decoded %+v, %v", name, p, err)
		}
	}
	for name, b := range map[string][]byte{
		"zero":                body(waited()),
		"negative":            body(waited(0x80, 0, 0, 0, 0, 0, 0, 1)),
		"short":               body(waited(1)[:5]),
		"kind only":           body([]byte{sectionWaited}),
		"twice":               body(waited(1), waited(1)),
		"before inconsistent": body(waited(1), inconsistent),
	} {
		t.Run(name, func(t *testing.T) {
			if p, err := DecodePosition(b); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decoded %+v, err %v; want ErrCorrupt", p, err)
			}
		})
	}
}
