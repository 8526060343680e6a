package secondary

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"duplex/recordset"
	"duplex/transport"
)

// sendCompressed sends rs as a record-set frame in its compressed link
// form and returns its plain and link lengths.
func sendCompressed(t *testing.T, conn transport.Conn, rs *recordset.RecordSet) (plain, link int) {
	t.Helper()
	c, err := transport.NewCompressor(1)
	if err != nil {
		t.Fatal(err)
	}
	body, err := recordset.Encode(nil, rs)
	if err != nil {
		t.Fatal(err)
	}
	set := c.Compress(nil, body)
	if !transport.IsCompressed(set) {
		t.Fatalf("a record set of %d bytes did not compress", len(body))
	}
	if err := conn.Send(transport.Frame(transport.TypeRecordSet, set)); err != nil {
		t.Fatal(err)
	}
	return len(body), len(set)
}

// A secondary announces FeatureZstd in the Welcome that asks what the
// primary reads and again in the one that answers the Features frame (the
// primary goes on from the answer); it journals and applies a compressed
// record set as the plain one it decodes to, and counts both lengths.
func TestSecondaryTakesCompressedRecordSets(t *testing.T) {
	r := newRig(t, map[string]int64{"a": 1 << 20})
	conn, typ, body := r.dialReading(r.hello(), false)
	w, err := transport.DecodePosition(body)
	if typ != transport.TypeWelcome || err != nil {
		t.Fatalf("answer to the hello: frame type %d, %v; want a Welcome", typ, err)
	}
	if w.Features&transport.FeatureZstd == 0 || w.Features&transport.FeatureAsksPrimary == 0 {
		t.Fatalf("the first Welcome announces features %#x, want FeatureZstd and FeatureAsksPrimary", w.Features)
	}
	if err := conn.Send(transport.EncodeFeatures(transport.PrimaryReadsInconsistent)); err != nil {
		t.Fatal(err)
	}
	typ, body, err = recvFrame(conn, 10*time.Second)
	if err != nil || typ != transport.TypeWelcome {
		t.Fatalf("answer to the features: frame type %d, %v; want the Welcome again", typ, err)
	}
	if w, err = transport.DecodePosition(body); err != nil || w.Features&transport.FeatureZstd == 0 || w.Features&transport.FeatureAsksPrimary != 0 {
		t.Fatalf("the Welcome that answers announces features %#x (%v), want FeatureZstd without FeatureAsksPrimary", w.Features, err)
	}

	data := bytes.Repeat([]byte("the same row, again and again; "), 4096)[:64<<10]
	up := recordset.Update{Volume: "a", Kind: recordset.KindWrite, Offset: 8192, Length: uint64(len(data)), Data: data}
	rs := writeSet(1, 1000, up)
	plain, link := sendCompressed(t, conn, rs)
	if refusal, acked := answers(t, conn, 0); refusal != "" || acked != 1 {
		t.Fatalf("after a compressed record set: refusal %q, group %d acknowledged; want group 1", refusal, acked)
	}
	got := make([]byte, len(data))
	if err := r.vols["a"].ReadAt(got, 8192); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("the volume does not hold the compressed record set's write")
	}
	st := r.sec.Stats()
	if st.RecordSetBytes != uint64(plain) || st.RecordSetWireBytes != uint64(link) || st.CorruptFrames != 0 {
		t.Fatalf("stats: %d bytes of record sets plain, %d on the link, %d corrupt; want %d, %d, 0",
			st.RecordSetBytes, st.RecordSetWireBytes, st.CorruptFrames, plain, link)
	}
}

// A secondary configured plain announces no FeatureZstd in either Welcome,
// so a primary sends it plain record sets as to one from before
// compression.
func TestPlainSecondaryDoesNotAnnounceZstd(t *testing.T) {
	r := newRig(t, map[string]int64{"a": 1 << 20})
	r.stop()
	r.edit = func(c *Config) { c.Plain = true }
	r.open()
	conn, typ, body := r.dialReading(r.hello(), false)
	if w, err := transport.DecodePosition(body); typ != transport.TypeWelcome || err != nil || w.Features&transport.FeatureZstd != 0 {
		t.Fatalf("first answer: frame type %d, features %#x, %v; want a Welcome without FeatureZstd", typ, w.Features, err)
	}
	if err := conn.Send(transport.EncodeFeatures(transport.PrimaryReadsInconsistent)); err != nil {
		t.Fatal(err)
	}
	typ, body, err := recvFrame(conn, 10*time.Second)
	if w, derr := transport.DecodePosition(body); err != nil || typ != transport.TypeWelcome || derr != nil || w.Features&transport.FeatureZstd != 0 {
		t.Fatalf("answer to the features: frame type %d, features %#x, %v %v; want a Welcome without FeatureZstd", typ, w.Features, err, derr)
	}
}

// A compressed record set that would decode to more than the frames the
// secondary accepts is refused before it is decoded, with the reason: the
// same set sent again would be refused again, so discarding it as corrupt
// would stall the link for ever.
func TestCompressedRecordSetLargerThanTheFrameLimitIsRefused(t *testing.T) {
	r := newRig(t, map[string]int64{"a": 2 << 20})
	r.stop()
	r.edit = func(c *Config) { c.MaxFrame = 256 << 10 }
	r.open()
	conn, typ, _ := r.dial(r.hello())
	if typ != transport.TypeWelcome {
		t.Fatalf("answer to the hello: frame type %d, want a Welcome", typ)
	}
	up := recordset.Update{Volume: "a", Kind: recordset.KindWrite, Offset: 0, Length: 1 << 20, Data: make([]byte, 1<<20)}
	plain, link := sendCompressed(t, conn, writeSet(1, 1000, up))
	if link > 256<<10 || plain <= 256<<10 {
		t.Fatalf("the compressed set is %d bytes, %d plain: want it within the frame limit, its plain form beyond it", link, plain)
	}
	refusal, acked := answers(t, conn, 0)
	if !strings.Contains(refusal, "larger than this secondary accepts") || acked != 0 {
		t.Fatalf("refusal %q, group %d acknowledged; want a refusal saying the set is too large", refusal, acked)
	}
}
