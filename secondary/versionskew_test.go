package secondary

import (
	"slices"
	"testing"
	"time"

	"duplex/transport"
)

// readsSections1to3 decodes a Welcome or Ack as a primary from before the
// inconsistent section (4) did: that primary's DecodePosition stops at
// section 3 and takes any byte after it for a malformed section.
func readsSections1to3(t *testing.T, what string, body []byte) transport.Position {
	t.Helper()
	p, err := transport.DecodePosition(body)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if len(p.Inconsistent) > 0 {
		t.Fatalf("%s carries the inconsistent section (volumes %v) to a primary that did not say it reads it: "+
			"a primary that knows sections 1-3 refuses it as malformed and never links", what, p.Inconsistent)
	}
	return p
}

// TestPrimaryThatKnowsSections1to3Links: a secondary holding a volume
// consistent as of no time (never copied) names it in the optional section
// 4 of its Positions, which a primary from before that section cannot read.
// To a primary that does not say it reads it, the Welcome and every Ack go
// without it: the older primary links and replicates.
func TestPrimaryThatKnowsSections1to3Links(t *testing.T) {
	r := newRig(t, map[string]int64{"a": 1 << 20})
	conn, typ, body := r.dialReading(r.hello(), false)
	if typ != transport.TypeWelcome {
		t.Fatalf("answer to the hello: frame type %d, want a Welcome", typ)
	}
	readsSections1to3(t, "the Welcome", body)
	sendRecordSet(t, conn, writeSet(1, 1000, write("a", 0)))
	typ, body, err := recvFrame(conn, 10*time.Second)
	if err != nil || typ != transport.TypeAck {
		t.Fatalf("answer to a record set: frame type %d, %v; want an Ack", typ, err)
	}
	if p := readsSections1to3(t, "the Ack", body); p.Group != 1 {
		t.Fatalf("Ack of group %d, want 1", p.Group)
	}
}

// TestPrimaryThatReadsSection4IsToldTheInconsistentVolumes: the secondary's
// Welcome asks what the primary reads; a primary that answers it reads the
// inconsistent section is welcomed again, now with the section, and its
// Acks carry it too.
func TestPrimaryThatReadsSection4IsToldTheInconsistentVolumes(t *testing.T) {
	r := newRig(t, map[string]int64{"a": 1 << 20})
	conn, typ, body := r.dialReading(r.hello(), false)
	if typ != transport.TypeWelcome {
		t.Fatalf("answer to the hello: frame type %d, want a Welcome", typ)
	}
	if w := readsSections1to3(t, "the first Welcome", body); w.Features&transport.FeatureAsksPrimary == 0 {
		t.Fatalf("the Welcome announces features %#x: it does not ask what the primary reads", w.Features)
	}
	if err := conn.Send(transport.EncodeFeatures(transport.PrimaryReadsInconsistent)); err != nil {
		t.Fatal(err)
	}
	typ, body, err := recvFrame(conn, 10*time.Second)
	if err != nil || typ != transport.TypeWelcome {
		t.Fatalf("answer to the features: frame type %d, %v; want the Welcome again", typ, err)
	}
	if w, err := transport.DecodePosition(body); err != nil || !slices.Equal(w.Inconsistent, []string{"a"}) {
		t.Fatalf("the second Welcome names %q consistent as of no time (err %v), want the never copied a", w.Inconsistent, err)
	}
	if p := ackAfter(t, conn, writeSet(1, 1000, write("a", 0))); !slices.Equal(p.Inconsistent, []string{"a"}) {
		t.Fatalf("the Ack of group %d names %q consistent as of no time, want a", p.Group, p.Inconsistent)
	}
	// Said again later, it is not answered: a Welcome amid the
	// acknowledgements would go back on what they said.
	if err := conn.Send(transport.EncodeFeatures(0)); err != nil {
		t.Fatal(err)
	}
	if p := ackAfter(t, conn, writeSet(2, 5000, write("a", 4096))); p.Group != 2 || !slices.Equal(p.Inconsistent, []string{"a"}) {
		t.Fatalf("after a late Features frame: Ack of group %d naming %q, want group 2 naming a", p.Group, p.Inconsistent)
	}
}
