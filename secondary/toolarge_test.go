package secondary

import (
	"strings"
	"testing"

	"duplex/recordset"
	"duplex/transport"
)

// A record set larger than the secondary accepts is refused with a reason
// the primary logs, instead of being discarded as corrupt while the primary
// resends it for ever with nothing to show why.
func TestRecordSetOverLimitsIsRefusedWithReason(t *testing.T) {
	r := &rig{t: t, dir: t.TempDir(), sizes: map[string]int64{"a": 1 << 20}}
	r.openVolumes()
	cfg := r.config()
	cfg.Limits = recordset.Limits{MaxPayload: 64 << 10}
	sec, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.sec = sec
	r.run()
	t.Cleanup(r.close)

	conn, typ, _ := r.dial(r.hello())
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	sendRecordSet(t, conn, writeSet(1, 1000, recordset.Update{Volume: "a", Kind: recordset.KindWrite, Offset: 0, Length: 128 << 10}))
	reason, acked := answers(t, conn, 0)
	if acked != 0 {
		t.Fatalf("a record set over the limits was acknowledged through group %d", acked)
	}
	for _, want := range []string{"too large", "131072", "65536"} {
		if !strings.Contains(reason, want) {
			t.Fatalf("refusal %q does not say %q", reason, want)
		}
	}
	if got := r.sec.Stats().Refused; got == 0 {
		t.Fatal("Refused = 0 after refusing a record set")
	}
}

// A record set whose length field was damaged on the way looks too large
// too; its header CRC tells it apart, and it is discarded as corrupt (the
// primary resends it) rather than refused.
func TestDamagedLengthIsCorruptNotRefused(t *testing.T) {
	r := newRig(t, map[string]int64{"a": 1 << 20})
	conn, typ, _ := r.dial(r.hello())
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	f, err := recordset.Encode([]byte{transport.TypeRecordSet}, writeSet(1, 1000, recordset.Update{Volume: "a", Kind: recordset.KindWrite, Length: 4096}))
	if err != nil {
		t.Fatal(err)
	}
	f[1+12] = 0x7f // payload length far above the limit
	if err := conn.Send(transport.Seal(f)); err != nil {
		t.Fatal(err)
	}
	sendRecordSet(t, conn, writeSet(1, 1000, recordset.Update{Volume: "a", Kind: recordset.KindWrite, Length: 4096}))
	if reason, acked := answers(t, conn, 0); reason != "" || acked != 1 {
		t.Fatalf("after a damaged then an intact record set: refusal %q, acknowledged through %d, want none and 1", reason, acked)
	}
	if got := r.sec.Stats().CorruptFrames; got != 1 {
		t.Fatalf("CorruptFrames = %d, want 1", got)
	}
}
