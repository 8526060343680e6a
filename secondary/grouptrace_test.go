package secondary

import (
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"
)

// At debug level each group applied is logged once, with the times of its
// steps in the order a group takes them: a step that came out of order
// (a time taken at the wrong place) would make the log blame the wrong
// step for the lag.
func TestDebugLogTimesEachGroupsSteps(t *testing.T) {
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r := newLagRig(t, Config{Logger: log}, nil)
	const last = 5
	for seq := uint64(1); seq <= last; seq++ {
		r.send(t, seq, false)
	}
	r.waitStats(t, 10*time.Second, func(st Stats) bool { return st.Group >= last }, "applied")
	// The applier logs a group after its applied position is seen.
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(buf.String(), "group="+strconv.Itoa(last)+" ") && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	keys := []string{"cut_ms", "arrived_ms", "formed_ms", "journal_ms", "synced_ms", "apply_ms", "applied_ms"}
	seen := map[string]int{}
	for _, line := range strings.Split(buf.String(), "\n") {
		if !strings.Contains(line, `msg="group applied"`) {
			continue
		}
		vals := map[string]string{}
		for _, f := range strings.Fields(line) {
			if k, v, ok := strings.Cut(f, "="); ok {
				vals[k] = v
			}
		}
		seen[vals["group"]]++
		prev := -1e18
		for _, k := range keys {
			v, err := strconv.ParseFloat(vals[k], 64)
			if err != nil {
				t.Fatalf("%s: %s: %v", line, k, err)
			}
			if v < prev {
				t.Errorf("group %s: %s %.3f before the step ahead of it (%.3f): %s", vals["group"], k, v, prev, line)
			}
			prev = v
		}
		if vals["batch"] == "0" {
			t.Errorf("group %s: journaled under no fsync: %s", vals["group"], line)
		}
	}
	for g := 1; g <= last; g++ {
		if n := seen[strconv.Itoa(g)]; n != 1 {
			t.Errorf("group %d logged %d times, want once; log:\n%s", g, n, buf.String())
		}
	}
}

// Above debug level nothing is timed or kept per group.
func TestNoGroupTraceAboveDebug(t *testing.T) {
	r := newLagRig(t, Config{}, nil)
	for seq := uint64(1); seq <= 3; seq++ {
		r.send(t, seq, false)
	}
	r.waitStats(t, 10*time.Second, func(st Stats) bool { return st.Group >= 3 }, "applied")
	r.sec.mu.Lock()
	defer r.sec.mu.Unlock()
	if r.sec.tracing || r.sec.traces != nil {
		t.Fatalf("tracing %v with %d traces kept at the default level", r.sec.tracing, len(r.sec.traces))
	}
}
