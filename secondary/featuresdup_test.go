package secondary

import (
	"context"
	"slices"
	"testing"
	"time"

	"duplex/transport"
)

// TestFeaturesAnsweredOverALinkThatDuplicates: a primary that reads the
// inconsistent section answers the Welcome with its Features frame, and the
// secondary answers with a Welcome that names the volumes it holds
// consistent as of no time (here the never-copied volume a). The link may
// duplicate frames (transport.Faults.Duplicate, which the secondary's
// stream takes as duplicates elsewhere): a duplicated Hello arrives as the
// first frame after the link, and the Features frame after it must still be
// answered; otherwise a primary that reads the section is never sent it
// and claims consistency times for volumes the secondary holds consistent
// as of no time.
func TestFeaturesAnsweredOverALinkThatDuplicates(t *testing.T) {
	for _, tc := range []struct {
		name   string
		faults transport.Faults
	}{
		{"no faults", transport.Faults{}},
		{"duplicated frames", transport.Faults{Duplicate: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, map[string]int64{"a": 1 << 20})
			r.net.SetFaults(tc.faults)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conn, err := r.net.Dial(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if err := conn.Send(transport.EncodeHello(r.hello())); err != nil {
				t.Fatal(err)
			}
			typ, body, err := recvFrame(conn, 10*time.Second)
			if err != nil || typ != transport.TypeWelcome {
				t.Fatalf("answer to the hello: type %d, %v; want a Welcome", typ, err)
			}
			w, err := transport.DecodePosition(body)
			if err != nil || w.Features&transport.FeatureAsksPrimary == 0 {
				t.Fatalf("Welcome %+v (%v): want it to ask what the primary reads", w, err)
			}
			if err := conn.Send(transport.EncodeFeatures(transport.PrimaryReadsInconsistent)); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(3 * time.Second)
			for time.Now().Before(deadline) {
				typ, body, err := recvFrame(conn, time.Until(deadline))
				if err != nil {
					break
				}
				if typ != transport.TypeWelcome {
					continue
				}
				if p, err := transport.DecodePosition(body); err == nil && slices.Contains(p.Inconsistent, "a") {
					return
				}
			}
			st := r.sec.Stats()
			t.Fatalf("no Welcome naming volume a consistent as of no time within 3s of the Features frame (link %+v, corrupt frames %d): "+
				"the secondary ignored the primary's Features frame, so this primary is never told which volumes hold no consistent copy",
				r.net.Stats(), st.CorruptFrames)
		})
	}
}
