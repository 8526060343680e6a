package e2e

import (
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"duplex/config"
	"duplex/nbd"
)

// TestCommitWaitCost measures what the commit wait of coupled sessions
// across hosts ([coupling] clock_uncertainty) adds to a write's latency: a
// primary at 0 (one host), one at 0.1 ms and one at 1 ms, written in turn,
// one 4 KiB write at a time, so that the machine's load falls on all three
// alike. A measurement, run with DUPLEX_BENCH=1; it asserts no time.
func TestCommitWaitCost(t *testing.T) {
	if os.Getenv("DUPLEX_BENCH") == "" {
		t.Skip("a measurement: run with DUPLEX_BENCH=1")
	}
	const writes = 2000
	bounds := []time.Duration{0, 100 * time.Microsecond, time.Millisecond}
	var conns []*nbd.Client
	for i, u := range bounds {
		s := newSession(t, sessionOpts{name: fmt.Sprintf("w%d", i), volSize: 16 << 20, edit: func(c *config.Config) {
			c.Coupling = config.Coupling{Group: "g", Etcd: []string{"http://127.0.0.1:1"}, Lease: config.Duration(10 * time.Second),
				Publish: config.Duration(20 * time.Millisecond), ClockUncertainty: config.Duration(u)}
		}})
		s.startPrimary()
		conns = append(conns, dialNBD(t, s.cfg.Primary.NBD, "vol1"))
	}
	lat := make([][]time.Duration, len(bounds))
	b := make([]byte, 4096)
	for n := range writes {
		for i, c := range conns {
			t0 := time.Now()
			if err := c.WriteAt(b, int64(n%2048)*4096); err != nil {
				t.Fatal(err)
			}
			lat[i] = append(lat[i], time.Since(t0))
		}
	}
	load, _ := os.ReadFile("/proc/loadavg")
	for i, u := range bounds {
		slices.Sort(lat[i])
		q := func(p float64) time.Duration { return lat[i][int(p*float64(len(lat[i])-1))].Round(time.Microsecond) }
		t.Logf("clock_uncertainty %-6s: write latency median %s, p90 %s, p99 %s over %d writes (load average %s)", u, q(0.5), q(0.9), q(0.99), writes, load[:14])
	}
}
