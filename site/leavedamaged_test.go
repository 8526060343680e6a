package site

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"duplex/config"
	"duplex/control"
	"duplex/coupling"
)

// A promoted site whose record of the leave its switchover owes is
// damaged owes the leave all the same: its changes say so (a rejoin of the
// old primary is refused meanwhile), and the log says what to do, since
// the membership the leave takes out is lost with the record and no leave
// can be made without it.
func TestADamagedLeaveOwedIsOwedAllTheSame(t *testing.T) {
	for name, content := range damagedLeaves {
		t.Run(name, func(t *testing.T) {
			cfg := damagedLeave(t, content)
			// Written by finishLeave's goroutine too, which reads the
			// record again while the test reads the log.
			var logged syncBuffer
			log := slog.New(slog.NewTextHandler(&logged, nil))
			if g, unread := leaveOwed(nil, cfg, log); g != "g" || !strings.Contains(unread, "damaged") {
				t.Errorf("the leave owed with %s damaged (%q): %q (%q), want group g, said damaged", leavePath(cfg), content, g, unread)
			}
			ctx, stop := context.WithCancel(t.Context())
			done, ended := finishLeave(ctx, cfg, nil, coupling.NewMemStore(), log)
			select {
			case <-done:
				t.Errorf("the leave owed is done with %s damaged", leavePath(cfg))
			default:
			}
			// The log is read once its goroutine is done with it.
			stop()
			waitEnded(t, ended)
			wantWords(t, "the log", strings.ReplaceAll(logged.String(), `\"`, `"`), leavePath(cfg), "damaged", "duplex couple remove a", "then remove")
		})
	}
}

// A rejoin refused while the other site owes its coupled group a leave
// says, when that site owes it because its record of the leave is damaged,
// that it is, naming the file and what to do there: waiting, as the
// refusal says otherwise, ends never.
func TestARejoinRefusedForADamagedLeaveSaysSo(t *testing.T) {
	for name, content := range damagedLeaves {
		t.Run(name, func(t *testing.T) {
			cfg := damagedLeave(t, content)
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			var ch control.Changes
			ch.CouplingLeaveOwed, ch.CouplingLeaveUnread = leaveOwed(nil, cfg, log)
			err := refuseWhileLeaveOwed(cfg, ch)
			if err == nil {
				t.Fatal("a rejoin is not refused while the leave is owed")
			}
			wantWords(t, "the refusal", err.Error(), leavePath(cfg), "damaged", "duplex couple remove a", "then remove", "duplex rejoin again")
		})
	}
}

// damagedLeaves are contents of a damaged record of a leave owed.
var damagedLeaves = map[string]string{"null": "null\n", "{}": "{}\n", "cut short": `{"group":"g","mem`}

// damagedLeave is the config of a promoted site of coupled session a
// whose record of the leave owed holds content.
func damagedLeave(t *testing.T, content string) *config.Config {
	t.Helper()
	cfg := coupledSwitchoverConfig(t, "a")
	if err := os.MkdirAll(filepath.Dir(StatePath(cfg)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(leavePath(cfg), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestARejoinRefusedForALeaveNoneMakesSaysWhatToDo: a leave owed that the
// promoted site never makes (its record names another group or session
// than its config's, or cannot be read at all) is owed all the same, and
// the refusal of a rejoin says so, naming the file and what to do there,
// not to wait for etcd, which is never asked.
func TestARejoinRefusedForALeaveNoneMakesSaysWhatToDo(t *testing.T) {
	for name, spoil := range map[string]func(path string) error{
		"another group": func(path string) error {
			return os.WriteFile(path, []byte(`{"group":"h","member":"a","membership":"1"}`+"\n"), 0o644)
		},
		"another session": func(path string) error {
			return os.WriteFile(path, []byte(`{"group":"g","member":"z","membership":"1"}`+"\n"), 0o644)
		},
		"a directory": func(path string) error { return os.Mkdir(path, 0o755) },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := coupledSwitchoverConfig(t, "a")
			if err := os.MkdirAll(filepath.Dir(StatePath(cfg)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := spoil(leavePath(cfg)); err != nil {
				t.Fatal(err)
			}
			var logged syncBuffer
			log := slog.New(slog.NewTextHandler(&logged, nil))
			ctx, stop := context.WithCancel(t.Context())
			done, ended := finishLeave(ctx, cfg, nil, coupling.NewMemStore(), log)
			defer waitEnded(t, ended)
			defer stop()
			select {
			case <-done:
				t.Fatalf("the leave owed is done with %s holding %s", leavePath(cfg), name)
			default:
			}
			var ch control.Changes
			ch.CouplingLeaveOwed, ch.CouplingLeaveUnread = leaveOwed(nil, cfg, log)
			err := refuseWhileLeaveOwed(cfg, ch)
			if err == nil {
				t.Fatal("a rejoin is not refused while the leave is owed")
			}
			wantWords(t, "the refusal", err.Error(), leavePath(cfg), "duplex couple remove", "then remove", "duplex rejoin again")
			if strings.Contains(err.Error(), "once duplex couple list") {
				t.Errorf("the refusal says to wait for a leave the promoted site never makes: %v", err)
			}
		})
	}
}

// TestALeaveThatCannotDialSaysSoNowAndThen: a promoted site that owes its
// coupled group a leave and cannot dial etcd for a reason that lasts (an
// empty password file, refused before any call) tries again every
// leaveRetry, as when etcd does not answer, and says so as rarely: the
// first attempt and every 60th, not a line a second for as long as it
// lasts.
func TestALeaveThatCannotDialSaysSoNowAndThen(t *testing.T) {
	defer func(r time.Duration) { leaveRetry = r }(leaveRetry)
	leaveRetry = time.Millisecond
	cfg := coupledSwitchoverConfig(t, "a")
	pw := filepath.Join(cfg.Dir, "etcd-password")
	if err := os.WriteFile(pw, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Coupling.Username, cfg.Coupling.PasswordFile = "u", pw
	if err := os.MkdirAll(filepath.Dir(StatePath(cfg)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writePendingLeave(nil, cfg, "1"); err != nil {
		t.Fatal(err)
	}
	var logged syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	defer cancel()
	done, ended := finishLeave(ctx, cfg, nil, nil, slog.New(slog.NewTextHandler(&logged, nil)))
	<-ctx.Done()
	select {
	case <-done:
		t.Fatal("the leave is done without etcd")
	default:
	}
	// The goroutine may log one more line as it sees ctx end.
	waitEnded(t, ended)
	lines := strings.Count(logged.String(), "is empty")
	if lines == 0 || lines > 10 {
		t.Errorf("%d lines said the password file is empty in 600 ms of attempts every millisecond; want the first and every 60th", lines)
	}
}

// TestALeaveOwedDoesNothingOnceItsSiteStopped: finishLeave's goroutine
// whose ctx ended (its site stopped) before it first ran asks etcd for
// nothing and says nothing, and says it ended. It made its first try
// regardless, logging that it cannot leave yet and tries again after the
// stop, and nothing waited for it: its log line landed in a test's buffer
// after the test read it.
func TestALeaveOwedDoesNothingOnceItsSiteStopped(t *testing.T) {
	cfg := coupledSwitchoverConfig(t, "a")
	if err := os.MkdirAll(filepath.Dir(StatePath(cfg)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writePendingLeave(nil, cfg, "1"); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(t.Context())
	stop()
	var logged syncBuffer
	done, ended := finishLeave(ctx, cfg, nil, coupling.NewMemStore(), slog.New(slog.NewTextHandler(&logged, nil)))
	waitEnded(t, ended)
	select {
	case <-done:
		t.Error("the leave owed is done after its site stopped")
	default:
	}
	if strings.Contains(logged.String(), "cannot leave") {
		t.Errorf("the leave owed was tried after its site stopped:\n%s", logged.String())
	}
	if _, err := os.Stat(leavePath(cfg)); err != nil {
		t.Errorf("the record of the leave owed is gone after its site stopped: %v", err)
	}
}

// waitEnded waits for finishLeave's ended, failing the test if it is not
// closed within 10s of its ctx's end.
func waitEnded(t *testing.T, ended <-chan struct{}) {
	t.Helper()
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("finishLeave's goroutine still runs 10s after its ctx ended")
	}
}

// syncBuffer is a bytes.Buffer safe for a logger's goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
