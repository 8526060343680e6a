package secondary

import (
	stdmaps "maps"
	"testing"
	"time"

	"duplex/transport"
)

// A primary that says it reads indexed Acks is acknowledged by its Hello's
// order of the subsystems (not the sorted one); any other primary, and any
// primary of a secondary from before indexed Acks (NoIndexedAcks), by
// name. Either way the tables say the same.
func TestAcksByIndexOnlyToAPrimaryThatReadsThem(t *testing.T) {
	both := transport.PrimaryReadsInconsistent | transport.PrimaryReadsIndexedAcks
	for _, tc := range []struct {
		name        string
		reads       uint64
		answer      bool // the primary answers the Welcome that asks (one from before TypeFeatures does not)
		secOfBefore bool
		want        byte
	}{
		{"both new", both, true, false, transport.TypeIndexedAck},
		{"new primary, secondary of before", both, true, true, transport.TypeAck},
		{"primary of before indexed Acks", transport.PrimaryReadsInconsistent, true, false, transport.TypeAck},
		{"primary of before Features", 0, false, false, transport.TypeAck},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, map[string]int64{"a": 1 << 20}, "ss1", "ss2")
			if tc.secOfBefore {
				r.stop()
				r.edit = func(c *Config) { c.NoIndexedAcks = true }
				r.open()
			}
			h := r.hello()
			h.Subsystems = []string{"ss2", "ss1"}
			conn, typ, _ := r.dialReads(h, tc.reads, tc.answer)
			if typ != transport.TypeWelcome {
				t.Fatalf("answer to the hello: frame type %d, want a Welcome", typ)
			}
			sendRecordSet(t, conn, writeSet(1, 1000, write("a", 0)))
			sendRecordSet(t, conn, subsystemSet("ss2", 1, 1000, 2000))
			sendRecordSet(t, conn, subsystemSet("ss2", 2, 2000, 3000))
			wantThrough := map[string]uint64{"ss1": 1, "ss2": 1}
			wantReceived := map[string]uint64{"ss1": 1, "ss2": 2}
			deadline := time.Now().Add(10 * time.Second)
			for {
				typ, body, err := recvFrame(conn, time.Until(deadline))
				if err != nil {
					t.Fatalf("no Ack of group 1 with ss2 received through 2: %v", err)
				}
				var p transport.Position
				switch typ {
				case transport.TypeAck:
					p, err = transport.DecodePosition(body)
				case transport.TypeIndexedAck:
					var tables transport.IndexedTables
					p, err = transport.DecodeIndexedAck(body, len(h.Subsystems), &tables)
					p.Through, p.Received, p.Ahead = tables.Names(h.Subsystems)
				default:
					t.Fatalf("frame type %d, want an acknowledgement", typ)
				}
				if err != nil {
					t.Fatalf("acknowledgement of type %d: %v", typ, err)
				}
				if typ != tc.want {
					t.Fatalf("acknowledgement of type %d, want %d", typ, tc.want)
				}
				if p.Group < 1 || p.Received["ss2"] < 2 {
					continue
				}
				if !stdmaps.Equal(p.Through, wantThrough) || !stdmaps.Equal(p.Received, wantReceived) || len(p.Ahead) != 0 {
					t.Fatalf("acknowledgement of group %d: through %v, received %v, ahead %v; want through %v, received %v, none ahead",
						p.Group, p.Through, p.Received, p.Ahead, wantThrough, wantReceived)
				}
				return
			}
		})
	}
}
