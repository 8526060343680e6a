package secondary

import (
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"duplex/recordset"
	"duplex/transport"
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

// A group's cut is the primary's read of the sidefile that reached its
// time, whichever frame completes it. A record set that arrives ahead of
// one still missing (the frame that brought the missing one was lost or
// corrupt, and is resent) is formed into a group only with the frame that
// fills the gap, which the primary read before it: timed from that frame,
// the group was cut before its own consistency time (cut_ms negative, the
// link step taking the difference).
func TestTheCutOfAGroupIsTheReadThatReachedItsTime(t *testing.T) {
	for _, c := range []struct {
		name   string
		frames [][]uint64 // the record sets of each frame, read and stamped at seq ms
		beat   int64      // with the last frame, a heartbeat through its last set of this horizon (ms), if set
		groups int
	}{
		{"a set ahead of a missing one", [][]uint64{{2}, {1}}, 0, 1},
		{"in order", [][]uint64{{1}, {2}}, 0, 2},
		// A set sent again beside the heartbeat of a later read: the group
		// goes as far as the heartbeat's horizon, which no set's read
		// reached; the read that stamped it is the heartbeat's, unknown.
		{"a heartbeat past a set's read", [][]uint64{{1}}, 3, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			var buf syncBuffer
			log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
			r := newLagRig(t, Config{Logger: log}, nil)
			sent := uint64(0)
			for i, seqs := range c.frames {
				var sets [][]byte
				for _, seq := range seqs {
					ts := int64(seq) * int64(time.Millisecond)
					sets = append(sets, encodeSet(t, &recordset.RecordSet{Session: "s", Subsystem: "ss1", Seq: seq, Group: seq, ReadTime: ts, Horizon: ts,
						Updates: []recordset.Update{{Volume: "vol1", Kind: recordset.KindWrite, Offset: seq * 4096, Length: 4096,
							Timestamp: ts - 1, Seq: seq, Data: make([]byte, 4096)}}}))
				}
				var beats []transport.Heartbeat
				if c.beat != 0 && i == len(c.frames)-1 {
					beats = []transport.Heartbeat{{Subsystem: 0, Seq: seqs[len(seqs)-1], Horizon: c.beat * int64(time.Millisecond)}}
				}
				if err := r.conn.Send(transport.EncodeBundle(transport.Bundle{Sets: sets, Beats: beats})); err != nil {
					t.Fatal(err)
				}
				sent += uint64(len(seqs))
				r.waitStats(t, 10*time.Second, func(st Stats) bool { return st.RecordSets >= sent }, "the frame's sets taken")
			}
			through := int64(max(2, c.beat)) * int64(time.Millisecond)
			r.waitStats(t, 10*time.Second, func(st Stats) bool { return st.Time >= through }, "applied through the last horizon")
			var lines []string
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
				lines = nil
				for _, line := range strings.Split(buf.String(), "\n") {
					if strings.Contains(line, `msg="group applied"`) {
						lines = append(lines, line)
					}
				}
				if len(lines) >= c.groups || time.Now().After(deadline) {
					break
				}
			}
			if len(lines) != c.groups {
				t.Fatalf("%d groups logged as applied, want %d:\n%s", len(lines), c.groups, buf.String())
			}
			for _, line := range lines {
				vals := map[string]string{}
				for _, f := range strings.Fields(line) {
					if k, v, ok := strings.Cut(f, "="); ok {
						vals[k] = v
					}
				}
				if cut, err := strconv.ParseFloat(vals["cut_ms"], 64); err != nil || cut != 0 {
					t.Errorf("group %s, no later read reaching its time: cut_ms %s, want 0 (%v): %s", vals["group"], vals["cut_ms"], err, line)
				}
			}
		})
	}
}
