package pair

import (
	"errors"
	"testing"
	"time"
)

// inEffect fails t unless err, the answer to an operator's command (what)
// on a pair state's disk that answers, is nil or ErrSaveHung, and then
// waits, up to 10 s, for vol's pair to be as ok wants and no save of the
// pair state under way. The rigs' SaveWait is short (200 ms), and a
// loaded machine's fsyncs may take longer: the command is then answered
// in effect but not yet saved, or not yet in effect, in effect once the
// save ends. Either is the command taking effect as asked; only how soon
// it is saved differs, which the test that follows does not depend on
// once the save ended.
func inEffect(t *testing.T, mg *Manager, what string, err error, vol string, ok func(Pair) bool) {
	t.Helper()
	if err != nil && !errors.Is(err, ErrSaveHung) {
		t.Fatalf("%s: %v", what, err)
	}
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		var p Pair
		for _, q := range mg.Pairs() {
			if q.Volume == vol {
				p = q
			}
		}
		if ok(p) && mg.SaveUnderWay() == 0 {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("%s (answered %v): not in effect and saved 10 s later: %+v", what, err, p)
		}
	}
}

// isSuspended and isResumed are inEffect's tests of a suspension and a
// resume.
func isSuspended(p Pair) bool { return p.State == Suspended }
func isResumed(p Pair) bool   { return p.State != Suspended && !p.Deleted }
func isDeleted(p Pair) bool   { return p.Deleted }
