package site

import (
	"errors"
	"testing"
	"time"

	"duplex/failover"
)

// TestAPromotionMetByAStopWhileTheDiskHangsIsReported: a switchover's
// promotion in place that took effect as the operator's stop came, the
// close then hanging on the disk, ends Run with both: the promotion
// (PromotedError, which the daemon reports and whose kept listeners it
// closes) and the hang (ErrDiskHung). The primary has handed over: an
// error that says only that the disk hung, and that the next start
// replays the journal, hides that this site is the session's primary now.
func TestAPromotionMetByAStopWhileTheDiskHangsIsReported(t *testing.T) {
	h := hangingSecondary(t)
	// The promotion took effect as the stop came (see Run: one under way
	// when the stop began is the caller's to learn).
	h.cur.Load().promoted <- failover.Promotion{Session: h.cfg.Session, At: time.Now().UnixNano()}
	h.stop()
	var e runEnded
	select {
	case e = <-h.ended:
		h.ended <- e
	case <-time.After(time.Minute):
		t.Fatal("RunSecondary did not end a minute after the stop, the disk hanging")
	}
	if e.s != nil {
		e.s.HandOver().Close()
	}
	var promoted *PromotedError
	if !errors.As(e.err, &promoted) {
		t.Errorf("RunSecondary's error does not say the site was promoted: %v", e.err)
	}
	if !errors.Is(e.err, ErrDiskHung) {
		t.Errorf("RunSecondary's error does not say the disk hung: %v", e.err)
	}
}
