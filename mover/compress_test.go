package mover

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"duplex/recordset"
	"duplex/transport"
)

func compressor(t *testing.T) *transport.Compressor {
	t.Helper()
	c, err := transport.NewCompressor(0)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// expand decodes a record set in its link form, as the secondary does.
func expand(t *testing.T, set []byte) *recordset.RecordSet {
	t.Helper()
	d, err := transport.NewDecompressor(64 << 20)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := d.Expand(set)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := recordset.Decode(plain, recordset.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// To a secondary that takes compressed record sets, the mover compresses
// those that shrink, in bundles and in record-set frames alike, and sends
// the others plain; its counters say how much the link carried.
func TestCompressedToASecondaryThatTakesThem(t *testing.T) {
	for _, features := range []uint64{transport.FeatureBundles | transport.FeatureZstd, transport.FeatureZstd} {
		p := startPrimary(t, options{subsystems: []string{"ss1"}, compressor: compressor(t)})
		l, _ := p.accept(t)
		l.welcome(transport.Position{Features: features})
		waitFor(t, "the link", func() bool { return p.mover.Stats().Connected })
		next := func() []byte {
			typ, body := l.next()
			if typ == transport.TypeRecordSet {
				return body
			}
			b, err := transport.DecodeBundle(body)
			if err != nil || len(b.Sets) != 1 {
				t.Fatalf("bundle of %d record sets, %v", len(b.Sets), err)
			}
			return b.Sets[0]
		}

		text := bytes.Repeat([]byte("the same row, again and again; "), 4096)[:64<<10]
		p.write(t, "ss1", text, 0)
		p.mover.Cut()
		set := next()
		if !transport.IsCompressed(set) || len(set) > len(text)/4 {
			t.Fatalf("features %#x: a record set of 64 KiB of text went as %d bytes, compressed: %v", features, len(set), transport.IsCompressed(set))
		}
		if rs := expand(t, set); len(rs.Updates) != 1 || !bytes.Equal(rs.Updates[0].Data, text) {
			t.Fatalf("the compressed record set does not hold the write")
		}

		random := make([]byte, 64<<10)
		for i := range random {
			random[i] = byte(rand.Uint32())
		}
		p.write(t, "ss1", random, 512<<10)
		p.mover.Cut()
		set = next()
		if transport.IsCompressed(set) {
			t.Fatalf("a record set of random bytes went compressed")
		}
		if rs := expand(t, set); !bytes.Equal(rs.Updates[0].Data, random) {
			t.Fatalf("the plain record set does not hold the write")
		}
		// The counters move once the send has returned, which may be after
		// the frame has reached the far end.
		waitFor(t, "both record sets counted", func() bool { return p.mover.Stats().RecordSetBytes >= 128<<10 })
		st := p.mover.Stats()
		if !st.Compressing || st.RecordSetBytes < 128<<10 || st.RecordSetWireBytes > st.RecordSetBytes-48<<10 {
			t.Fatalf("stats: compressing %v, %d bytes plain, %d on the link", st.Compressing, st.RecordSetBytes, st.RecordSetWireBytes)
		}
	}
}

// A secondary from before compression announces no FeatureZstd: it gets
// plain record sets, which it reads, from a primary configured to
// compress.
func TestPlainToASecondaryThatDoesNotTakeCompressed(t *testing.T) {
	p := startPrimary(t, options{subsystems: []string{"ss1"}, compressor: compressor(t)})
	l, _ := p.accept(t)
	l.welcome(transport.Position{Features: transport.FeatureBundles})
	waitFor(t, "the link", func() bool { return p.mover.Stats().Connected })
	text := bytes.Repeat([]byte("abcd"), 16<<10)
	p.write(t, "ss1", text, 0)
	p.mover.Cut()
	b := l.bundle()
	if len(b.Sets) != 1 {
		t.Fatalf("%d record sets", len(b.Sets))
	}
	rs, err := recordset.Decode(b.Sets[0], recordset.DefaultLimits)
	if err != nil {
		t.Fatalf("a secondary of before cannot read what it was sent: %v", err)
	}
	if !bytes.Equal(rs.Updates[0].Data, text) {
		t.Fatal("wrong data")
	}
	if st := p.mover.Stats(); st.Compressing || st.RecordSetBytes != st.RecordSetWireBytes {
		t.Fatalf("stats: compressing %v, %d bytes plain, %d on the link", st.Compressing, st.RecordSetBytes, st.RecordSetWireBytes)
	}
}

// A secondary that asks what the primary reads (FeatureAsksPrimary) and
// takes compressed record sets is sent the Features frame first, plain,
// and compressed record sets once its answering Welcome, which announces
// FeatureZstd again, has come.
func TestCompressedAfterTheFeaturesHandshake(t *testing.T) {
	p := startPrimary(t, options{subsystems: []string{"ss1"}, compressor: compressor(t)})
	l, _ := p.accept(t)
	l.welcome(transport.Position{Features: transport.FeatureBundles | transport.FeatureZstd | transport.FeatureAsksPrimary})
	if typ, body := l.next(); typ != transport.TypeFeatures {
		t.Fatalf("first frame after a Welcome that asks: type %d, want Features", typ)
	} else if reads, err := transport.DecodeFeatures(body); err != nil || reads&transport.PrimaryReadsInconsistent == 0 {
		t.Fatalf("Features %#x, %v", reads, err)
	}
	l.welcome(transport.Position{Features: transport.FeatureBundles | transport.FeatureZstd})
	waitFor(t, "the link", func() bool { return p.mover.Stats().Connected })
	text := bytes.Repeat([]byte("the same row, again and again; "), 4096)[:64<<10]
	p.write(t, "ss1", text, 0)
	p.mover.Cut()
	b := l.bundle()
	if len(b.Sets) != 1 || !transport.IsCompressed(b.Sets[0]) {
		t.Fatalf("after the handshake: a bundle of %d record sets, the first compressed: %v", len(b.Sets), len(b.Sets) == 1 && transport.IsCompressed(b.Sets[0]))
	}
	if rs := expand(t, b.Sets[0]); !bytes.Equal(rs.Updates[0].Data, text) {
		t.Fatal("the compressed record set does not hold the write")
	}
}

// The record sets of a bundle, compressed in parallel, travel in the order
// a plain bundle holds them, each compressed or plain as it shrinks or
// not: the secondary takes a subsystem's record sets in sequence.
func TestCompressedBundleKeepsTheOrderOfItsRecordSets(t *testing.T) {
	subs := []string{"ss1", "ss2", "ss3", "ss4", "ss5"}
	type set struct {
		ss         string
		seq        uint64
		data       string
		compressed bool
	}
	run := func(c *transport.Compressor, features uint64) []set {
		p := startPrimary(t, options{subsystems: subs, compressor: c})
		l, _ := p.accept(t)
		l.welcome(transport.Position{Features: features})
		waitFor(t, "the link", func() bool { return p.mover.Stats().Connected })
		var got []set
		for round := range 3 {
			for i, ss := range subs {
				data := bytes.Repeat(fmt.Appendf(nil, "%s, round %d; ", ss, round), 4096)[:32<<10]
				if i == 2 { // the same random bytes in both runs
					rng := rand.New(rand.NewPCG(uint64(round), 0))
					for j := range data {
						data[j] = byte(rng.Uint32())
					}
				}
				p.write(t, ss, data, int64(round)*64<<10)
			}
			p.mover.Cut()
			b := l.bundle()
			if len(b.Sets) != len(subs) {
				t.Fatalf("a bundle of %d record sets, want one a subsystem", len(b.Sets))
			}
			for _, s := range b.Sets {
				rs := expand(t, s)
				got = append(got, set{rs.Subsystem, rs.Seq, string(rs.Updates[0].Data), transport.IsCompressed(s)})
			}
		}
		return got
	}
	plain := run(nil, transport.FeatureBundles)
	compressed := run(compressor(t), transport.FeatureBundles|transport.FeatureZstd)
	if len(plain) != len(compressed) {
		t.Fatalf("%d record sets plain, %d compressed", len(plain), len(compressed))
	}
	for i := range plain {
		p, c := plain[i], compressed[i]
		if p.ss != c.ss || p.seq != c.seq || p.data != c.data {
			t.Fatalf("record set %d of the bundle: %s/%d plain, %s/%d compressed (same data: %v)", i, p.ss, p.seq, c.ss, c.seq, p.data == c.data)
		}
		if want := p.ss != "ss3"; c.compressed != want {
			t.Fatalf("record set %s/%d went compressed: %v, want %v", c.ss, c.seq, c.compressed, want)
		}
	}
}
