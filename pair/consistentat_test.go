package pair

import (
	"testing"

	"duplex/transport"
)

// TestConsistentAtClaimsNoMoreThanHolds: given an acknowledgement newer
// than the one the pair was last updated with, only a duplex pair with no
// resync holding the secondary moves to the time it recovers to; every
// other pair keeps what the pair manager gave it, capped under a hold.
func TestConsistentAtClaimsNoMoreThanHolds(t *testing.T) {
	const t1, t2, t3 = 100, 200, 300
	for _, c := range []struct {
		name string
		p    Pair
		pos  transport.Position
		want int64
	}{
		{"duplex: the session's time", Pair{Volume: "v", State: Duplex, Consistent: t1}, transport.Position{Time: t2}, t2},
		{"duplex, nothing acknowledged yet", Pair{Volume: "v", State: Duplex, Consistent: t1}, transport.Position{}, t1},
		{"duplex under a hold", Pair{Volume: "v", State: Duplex, Consistent: t2}, transport.Position{Time: t3, Recoverable: t1}, t1},
		{"duplex, its copy's end not applied", Pair{Volume: "v", State: Duplex, CopyEnd: t3}, transport.Position{Time: t2}, 0},
		{"duplex, the secondary says inconsistent", Pair{Volume: "v", State: Duplex, Consistent: t1}, transport.Position{Time: t2, Inconsistent: []string{"v"}}, 0},
		{"first copy", Pair{Volume: "v", State: Pending, FirstCopy: true}, transport.Position{Time: t2}, 0},
		{"inconsistent resync", Pair{Volume: "v", State: Pending, Inconsistent: true, Consistent: t1}, transport.Position{Time: t2}, 0},
		{"suspended: its suspension time", Pair{Volume: "v", State: Suspended, Since: t1, Consistent: t1}, transport.Position{Time: t3}, t1},
		{"suspended under a hold", Pair{Volume: "v", State: Suspended, Since: t2, Consistent: t2}, transport.Position{Time: t3, Recoverable: t1}, t1},
		{"pending resync: as before it", Pair{Volume: "v", State: Pending, Since: t1, Consistent: t1}, transport.Position{Time: t3}, t1},
	} {
		if got := c.p.ConsistentAt(c.pos); got != c.want {
			t.Errorf("%s: ConsistentAt = %d, want %d", c.name, got, c.want)
		}
	}
}
