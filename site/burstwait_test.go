package site

import (
	"testing"
	"time"

	"duplex/config"
)

// TestBurstWaitReachesTheMover: [primary] burst_wait is the mover's bound
// on a burst's wait, and the primary's status shows it; "off" (0 in the
// Config) is a mover that never waits, not the mover's default.
func TestBurstWaitReachesTheMover(t *testing.T) {
	for _, tc := range []struct {
		set  config.Duration
		want time.Duration
	}{
		{config.Duration(time.Second), time.Second}, // the default
		{config.Duration(250 * time.Millisecond), 250 * time.Millisecond},
		{0, 0}, // off
	} {
		cfg := linkConfig(t)
		cfg.Primary.Secondary = "127.0.0.1:1" // no secondary needed
		cfg.Primary.BurstWait = tc.set
		p, _, _ := runPrimary(t, cfg)
		if got := p.Mover().Stats().BurstWait; got != tc.want {
			t.Errorf("burst_wait %v: the mover waits up to %v, want %v", tc.set, got, tc.want)
		}
		st := p.Status()
		if st.BurstWaitSeconds == nil || *st.BurstWaitSeconds != tc.want.Seconds() {
			t.Errorf("burst_wait %v: status burst_wait_seconds %v, want %v", tc.set, st.BurstWaitSeconds, tc.want.Seconds())
		}
	}
}
