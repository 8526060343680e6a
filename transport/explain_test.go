package transport

import (
	"testing"
	"time"
)

func TestRepeatsLogsARecurringErrorOnceAMinute(t *testing.T) {
	var r Repeats
	t0 := time.Unix(1000, 0)
	step := func(text string, at time.Duration, wantLog bool, wantUnlogged int) {
		t.Helper()
		log, unlogged := r.Log(text, t0.Add(at))
		if log != wantLog || unlogged != wantUnlogged {
			t.Fatalf("Log(%q) at +%s = %v, %d; want %v, %d", text, at, log, unlogged, wantLog, wantUnlogged)
		}
	}
	step("refused", 0, true, 0)
	step("refused", time.Second, false, 0)
	step("refused", 5*time.Second, false, 0)
	step("refused", RepeatEvery, true, 2)
	step("refused", RepeatEvery+time.Second, false, 0)
	step("unknown authority", RepeatEvery+2*time.Second, true, 0) // another error is news
	step("unknown authority", RepeatEvery+3*time.Second, false, 0)
	r.Reset() // the link came up: the next failure is news
	step("unknown authority", RepeatEvery+4*time.Second, true, 0)
	// A retry comes from a new local port: the same error.
	step("read tcp 127.0.0.1:42800->127.0.0.1:7402: connection reset by peer", RepeatEvery+5*time.Second, true, 0)
	step("read tcp 127.0.0.1:42846->127.0.0.1:7402: connection reset by peer", RepeatEvery+6*time.Second, false, 0)
}
