package e2e

import (
	"strings"
	"testing"
)

// TestDaemonsResumeWaitWithNothingToCopy: `duplex pair resume --wait` of a
// pair suspended and resumed with no write in between has nothing to copy;
// the pair is duplex again at once and the command returns, where it waited
// for ever on a pair left pending. The same for --all.
func TestDaemonsResumeWaitWithNothingToCopy(t *testing.T) {
	t.Parallel()
	s := newSession(t, sessionOpts{name: "e2e-resume-wait", volSize: 16 << 20, token: "secret"})
	s.start()
	s.waitLinked()
	for _, args := range [][]string{{"vol2"}, {"--all"}} {
		what := strings.Join(args, " ")
		if code, out, errOut := runDuplex(t, append([]string{"pair", "suspend", "--config", s.path}, args...)...); code != 0 {
			t.Fatalf("pair suspend %s exited %d\nstdout: %s\nstderr: %s", what, code, out, errOut)
		}
		// runDuplex fails the test if the command has not returned within a minute.
		code, out, errOut := runDuplex(t, append([]string{"pair", "resume", "--wait", "--config", s.path}, args...)...)
		if code != 0 {
			t.Fatalf("pair resume --wait %s exited %d\nstdout: %s\nstderr: %s", what, code, out, errOut)
		}
		t.Logf("pair resume --wait %s:\n%s", what, out)
		for _, v := range s.primaryStatus().Volumes {
			if v.State != "duplex" {
				t.Errorf("after pair resume --wait %s returned, %s is %s", what, v.Name, v.State)
			}
		}
	}
}
