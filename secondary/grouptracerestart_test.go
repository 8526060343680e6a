package secondary

import (
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// At debug level the receiver, the Former, the journal and the applier
// each time a group's steps, and the applier and the checkpointer log
// them. Under a stream of record sets, with status read throughout,
// checkpoints due at every group and a restart of the secondary part-way
// through the stream, that must share nothing unguarded (run under
// -race), hold nothing back, and leave the volume as sent: each group
// logged at most once, its steps in order.
func TestDebugTraceUnderTrafficAndARestart(t *testing.T) {
	r := newStorageRig(t, nil)
	r.stop()
	logs := &syncBuffer{}
	r.cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r.cfg.CheckpointEvery = time.Millisecond
	const total = 300
	write := func(seq uint64) (int64, byte) { return int64(seq%64) * 4096, byte(seq*7 + 1) }
	// poll reads the secondary's status until stop is closed, as a
	// monitor does while groups are traced.
	poll := func(s *Secondary, stop <-chan struct{}, wg *sync.WaitGroup) {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			s.Stats()
			s.DiskWait()
			time.Sleep(200 * time.Microsecond)
		}
	}
	var resentFrom uint64
	phase := func(from, to uint64, waitFor uint64, slow bool) {
		r.start()
		if !r.sec.tracing {
			t.Fatal("the secondary does not trace at debug level")
		}
		if slow {
			// The applier falls behind the receiver: the stop comes
			// while journaled groups wait for it (Close applies them)
			// and at times before record sets sent are journaled,
			// which the primary sends again after the restart. Set
			// before the link is made: only what the link brings reads
			// the targets.
			r.sec.targets["vol1"] = slowTarget{r.sec.targets["vol1"], 2 * time.Millisecond}
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go poll(r.sec, stop, &wg)
		defer func() { close(stop); wg.Wait() }()
		l, p, reason := r.connect()
		if l == nil {
			t.Fatalf("refused: %s", reason)
		}
		if got := p.Received["ss1"]; got+1 < from {
			t.Fatalf("the welcome says record set %d received, want at least %d", got, from-1)
		} else {
			from = got + 1
		}
		resentFrom = from
		for seq := from; seq <= to; seq++ {
			off, b := write(seq)
			l.send(seq, off, b)
		}
		if waitFor > 0 {
			if acked, reason := l.journaled(waitFor); acked < waitFor {
				t.Fatalf("group %d acknowledged, want %d (refusal %q)", acked, waitFor, reason)
			}
		}
	}
	// Stopped with record sets sent but not yet all journaled or applied.
	phase(1, total/2, total/4, true)
	r.stop()
	phase(1, total, 0, false)
	deadline := time.Now().Add(time.Minute)
	for st := r.sec.Stats(); st.Time < int64(total)*1000 || st.Group != st.JournaledGroup; st = r.sec.Stats() {
		if st.Stopped != "" {
			t.Fatalf("stopped: %s", st.Stopped)
		}
		if time.Now().After(deadline) {
			t.Fatalf("applied group %d (time %d) of %d journaled a minute after the last record set was sent, want time %d",
				st.Group, st.Time, st.JournaledGroup, total*1000)
		}
		time.Sleep(time.Millisecond)
	}
	want := make([]byte, rigVolSize)
	for seq := uint64(1); seq <= total; seq++ {
		off, b := write(seq)
		for i := range 4096 {
			want[off+int64(i)] = b
		}
	}
	got := make([]byte, rigVolSize)
	if err := r.vol.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if i := firstDiff(want, got); i >= 0 {
		t.Fatalf("the volume differs from what was sent at byte %d (block %d): got %#x, want %#x", i, i/4096, got[i], want[i])
	}

	keys := []string{"cut_ms", "arrived_ms", "formed_ms", "journal_ms", "synced_ms", "apply_ms", "applied_ms"}
	seen := map[string]int{}
	checkpoints := 0
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, `msg=checkpointer`) {
			checkpoints++
		}
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
	}
	for g, n := range seen {
		if n != 1 {
			t.Errorf("group %s logged %d times, want once", g, n)
		}
	}
	if len(seen) < total/2 {
		t.Errorf("%d groups logged as applied of %d record sets", len(seen), total)
	}
	t.Logf("%d groups logged, %d checkpointer lines, resent from %d", len(seen), checkpoints, resentFrom)
}
