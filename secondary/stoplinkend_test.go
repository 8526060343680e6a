package secondary

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
)

// TestTheLinkEndOfAStopIsNotAWarningAgain: a secondary that stops (here:
// applying failed) logs why at Error, and refuses the linked primary,
// which ends its link. The link's end is logged at Info, as the stop's
// consequence, not at Warn as a fault of the link's with the read of the
// connection the refusal closed: one failure, one line at Warn or above.
func TestTheLinkEndOfAStopIsNotAWarningAgain(t *testing.T) {
	logs := &syncBuffer{}
	r := &rig{t: t, dir: t.TempDir(), sizes: map[string]int64{"vol1": 1 << 20}, subs: []string{"ss1"},
		edit: func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(logs, nil)) }}
	r.open()
	t.Cleanup(r.close)
	conn := linked(t, r)
	sendAndWait(t, conn, writeSet(1, 1000, write("vol1", 0)))
	r.sec.stopApplying(errors.New("apply group 2: input/output error"))
	refusedOn(t, conn)
	line := waitLogged(t, logs, "peer=mem-primary")
	if !strings.Contains(line, "level=INFO") || !strings.Contains(line, "the secondary stopped") {
		t.Errorf("the link's end of a stop logged as %q, want at Info, saying the secondary stopped", line)
	}
	var loud []string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			loud = append(loud, l)
		}
	}
	if len(loud) != 1 || !strings.Contains(loud[0], "secondary stopped") {
		t.Errorf("lines at Warn or above for one stop: %q; want the stop's alone", loud)
	}
}
