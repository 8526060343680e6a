package pair

import (
	"testing"
)

// TestSuspendAllClaimsNoTimeAfterItsMarkers: pair suspend --all over
// subsystems that cannot change together suspends one pair after another,
// each with its marker; a write of the application right after a pair's
// marker goes to its bitmap only. No pair may claim its secondary copy
// consistent as of a stamp taken after they were all suspended: the
// primary volume at that time holds the write, which the secondary never
// receives (until a resync).
func TestSuspendAllClaimsNoTimeAfterItsMarkers(t *testing.T) {
	mg, ss, mv := openWriteAfterSuspend(t)
	if _, err := mg.SuspendAll(); err != nil {
		t.Fatal(err)
	}
	ss.claimsNoTimeAfterMarker(t, mg, mv, "by suspend --all")
}
