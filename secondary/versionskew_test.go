package secondary

import (
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
	conn, typ, body := r.dial(r.hello())
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
