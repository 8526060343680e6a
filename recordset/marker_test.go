package recordset

import (
	"bytes"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
)

const goldenMarkerPath = "testdata/golden-v2-marker.hex"

// markerSet is pinned by testdata/golden-v2-marker.hex: change neither.
func markerSet() *RecordSet {
	return &RecordSet{
		Session:   "s1",
		Subsystem: "ss-a",
		Seq:       8,
		Group:     4,
		ReadTime:  1_700_000_000_000_001_000,
		Horizon:   1_700_000_000_000_001_900,
		Updates: []Update{
			{Volume: "vol0", Kind: KindWrite, Offset: 4096, Length: 2, Timestamp: 1_700_000_000_000_001_100, Seq: 45, Data: []byte("ef")},
			withTS(Marker{State: StateResync, Bytes: 3 << 20}.Update("vol1"), 1_700_000_000_000_001_200, 46),
			{Volume: "vol1", Kind: KindCopy, Offset: 512, Length: 1, Timestamp: 1_700_000_000_000_001_300, Seq: 47, Data: []byte{0x5a}},
			withTS(Marker{State: StateCopyEnd}.Update("vol1"), 1_700_000_000_000_001_400, 48),
		},
	}
}

func withTS(u Update, ts int64, seq uint64) Update {
	u.Timestamp, u.Seq = ts, seq
	return u
}

func TestGoldenMarker(t *testing.T) {
	b := mustEncode(t, markerSet())
	annotated := func() string {
		return strings.Replace(annotate(b), "goldenSet, format version 1", "markerSet, format version 2", 1)
	}
	if *update {
		if err := os.WriteFile(goldenMarkerPath, []byte(annotated()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	text, err := os.ReadFile(goldenMarkerPath)
	if err != nil {
		t.Fatal(err)
	}
	want, err := parseHex(string(text))
	if err != nil {
		t.Fatalf("%s: %v", goldenMarkerPath, err)
	}
	if !bytes.Equal(b, want) {
		t.Fatalf("encoding of markerSet no longer matches %s: the wire format changed.\ngot:\n%s", goldenMarkerPath, annotated())
	}
	rs, err := Decode(want, DefaultLimits)
	if err != nil {
		t.Fatalf("Decode(golden marker): %v", err)
	}
	if !reflect.DeepEqual(normalized(rs), normalized(markerSet())) {
		t.Fatalf("Decode(golden marker) = %+v", rs)
	}
	m, err := DecodeMarker(rs.Updates[1])
	if err != nil || m != (Marker{State: StateResync, Bytes: 3 << 20}) {
		t.Fatalf("DecodeMarker = %+v, %v", m, err)
	}
}

func TestMarkerVersions(t *testing.T) {
	if v := be.Uint16(mustEncode(t, goldenSet())[offVersion:]); v != Version {
		t.Errorf("a set without markers is version %d, want %d", v, Version)
	}
	b := mustEncode(t, markerSet())
	if v := be.Uint16(b[offVersion:]); v != VersionMarkers {
		t.Errorf("a set with markers is version %d, want %d", v, VersionMarkers)
	}
	// A marker in a version 1 set, and a version 2 set without markers, are
	// not what an encoder produces.
	old := bytes.Clone(b)
	be.PutUint16(old[offVersion:], Version)
	resealHeader(old)
	if _, err := Decode(old, DefaultLimits); !errors.Is(err, ErrMalformed) {
		t.Errorf("marker in a version 1 set: %v, want ErrMalformed", err)
	}
	plain := mustEncode(t, goldenSet())
	be.PutUint16(plain[offVersion:], VersionMarkers)
	resealHeader(plain)
	if _, err := Decode(plain, DefaultLimits); !errors.Is(err, ErrMalformed) {
		t.Errorf("version 2 set without markers: %v, want ErrMalformed", err)
	}
}

func TestMarkerRejects(t *testing.T) {
	good := Marker{State: StateResync, Inconsistent: true, Bytes: 1}.Update("v")
	if m, err := DecodeMarker(good); err != nil || !m.Inconsistent || m.Bytes != 1 {
		t.Fatalf("DecodeMarker(good) = %+v, %v", m, err)
	}
	for name, mutate := range map[string]func(u *Update){
		"offset":           func(u *Update) { u.Offset = 1 },
		"short":            func(u *Update) { u.Data = u.Data[:MarkerSize-1]; u.Length-- },
		"state 0":          func(u *Update) { u.Data[0] = 0 },
		"state 7":          func(u *Update) { u.Data[0] = 7 },
		"unknown flag":     func(u *Update) { u.Data[1] = 2 },
		"flag on copy-end": func(u *Update) { u.Data[0] = byte(StateCopyEnd) },
		"reserved":         func(u *Update) { u.Data[5] = 1 },
	} {
		u := good
		u.Data = bytes.Clone(good.Data)
		mutate(&u)
		if _, err := DecodeMarker(u); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: DecodeMarker: %v, want ErrMalformed", name, err)
		}
		u.Timestamp = 1
		rs := &RecordSet{Session: "s", Subsystem: "u", Seq: 1, Horizon: 2, Updates: []Update{u}}
		if err := rs.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Validate: %v, want ErrInvalid", name, err)
		}
	}
}
