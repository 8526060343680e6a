package secondary

import (
	"strings"
	"testing"

	"duplex/recordset"
	"duplex/transport"
)

// A secondary announces its limits in its Welcome when they differ from
// the baseline, which a Welcome without them means; with the baseline it
// sends the Welcome of before, which older primaries read.
func TestWelcomeAnnouncesLimitsOtherThanTheBaseline(t *testing.T) {
	for _, tc := range []struct {
		name     string
		limits   recordset.Limits
		maxFrame int
		want     transport.Limits
	}{
		{"baseline", recordset.Limits{}, 0, transport.Limits{}},
		{"smaller payload", recordset.Limits{MaxPayload: 8 << 20}, 0,
			transport.Limits{MaxHeader: 1 << 20, MaxPayload: 8 << 20, MaxRecords: 1 << 20, MaxFrame: transport.DefaultMaxFrame}},
		{"smaller frame", recordset.Limits{}, 32 << 20,
			transport.Limits{MaxHeader: 1 << 20, MaxPayload: 64 << 20, MaxRecords: 1 << 20, MaxFrame: 32 << 20}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &rig{t: t, dir: t.TempDir(), sizes: map[string]int64{"a": 1 << 20}}
			r.openVolumes()
			cfg := r.config()
			cfg.Limits, cfg.MaxFrame = tc.limits, tc.maxFrame
			sec, err := Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			r.sec = sec
			r.run()
			t.Cleanup(r.close)
			_, typ, body := r.dial(r.hello())
			if typ != transport.TypeWelcome {
				t.Fatalf("frame type %d, want a welcome", typ)
			}
			p, err := transport.DecodePosition(body)
			if err != nil {
				t.Fatal(err)
			}
			if p.Limits != tc.want {
				t.Fatalf("welcome announces %+v, want %+v", p.Limits, tc.want)
			}
		})
	}
}

// A frame larger than the secondary announced is refused with both numbers,
// whatever link carried it.
func TestFrameOverTheAnnouncedMaximumIsRefused(t *testing.T) {
	r := &rig{t: t, dir: t.TempDir(), sizes: map[string]int64{"a": 1 << 20}}
	r.openVolumes()
	cfg := r.config()
	cfg.MaxFrame = 64 << 10
	sec, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.sec = sec
	r.run()
	t.Cleanup(r.close)
	conn, _, _ := r.dial(r.hello())
	sendRecordSet(t, conn, writeSet(1, 1000, recordset.Update{Volume: "a", Kind: recordset.KindWrite, Offset: 0, Length: 128 << 10}))
	reason, acked := answers(t, conn, 0)
	if acked != 0 {
		t.Fatalf("a frame over the maximum was acknowledged through group %d", acked)
	}
	for _, want := range []string{"frame", "65536"} {
		if !strings.Contains(reason, want) {
			t.Fatalf("refusal %q does not say %q", reason, want)
		}
	}
}
