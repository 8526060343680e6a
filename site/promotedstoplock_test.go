package site

import (
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestARestartWhileThePromotedSitesHungWriteHoldsTheLockSaysWhy: a
// client's write to vol1 hangs on its disk at a promoted site's stop,
// which gives it up (and vol1's close with it) and keeps the promotion
// directory's LOCK until it ends: the write may still land. The stop says
// so in its log, and a start of the promoted site in the same process
// meanwhile is refused saying why: this process's last run holds the
// directory for the write to vol1 its stop gave up, not another process.
// Once the disk answers, LetGo is closed, the log says the directory was
// let go, and a start goes on. Before, the stop's log said nothing of the
// LOCK, and the start was refused as if another process held the changed
// regions.
func TestARestartWhileThePromotedSitesHungWriteHoldsTheLockSaysWhy(t *testing.T) {
	p, logs, h := stoppedWithAWriteHung(t, 500*time.Millisecond)
	if len(logs.lines("the promotion directory stays locked", "a write to volume vol1")) == 0 {
		t.Errorf("the stop's log does not say it keeps the promotion directory locked for vol1's write:\n%s", logs.String())
	}
	select {
	case <-p.LetGo():
		t.Fatal("the stopped promoted site says it let its promotion directory go with vol1's write under way")
	default:
	}
	p2, err := OpenPromoted(p.cfg, slog.New(slog.DiscardHandler), PromotedOptions{slowDisk: 200 * time.Millisecond})
	if err == nil {
		p2.close()
		t.Fatal("a promoted site started in the process while the stopped one's write to vol1 hangs")
	}
	t.Logf("the start meanwhile: %v", err)
	for _, want := range []string{"this process's last run of the promoted site", "a write to volume vol1", "let go once"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the start meanwhile was refused with %q: want it to say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "another process") {
		t.Errorf("the start meanwhile was refused with %q: it blames another process", err)
	}
	h.release()
	select {
	case <-p.LetGo():
	case <-time.After(10 * time.Second):
		t.Fatal("the stopped promoted site has not let its promotion directory go 10 s after the disk answered")
	}
	if len(logs.lines("let go of the promotion directory")) == 0 {
		t.Errorf("the log does not say the directory was let go:\n%s", logs.String())
	}
	awaitPromotedDirLetGo(t, p.cfg)
	p3, err := OpenPromoted(p.cfg, slog.New(slog.DiscardHandler), PromotedOptions{})
	if err != nil {
		t.Fatalf("a start once the stopped promoted site let its directory go: %v", err)
	}
	p3.close()
}
