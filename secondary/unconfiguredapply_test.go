package secondary

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"duplex/apply"
	"duplex/transport"
)

// offsetGatedTarget holds a write at off until gate is closed; the others
// go through.
type offsetGatedTarget struct {
	apply.Target
	off  int64
	gate <-chan struct{}
	// at is closed once the write at off waits at the gate.
	at   chan struct{}
	once *sync.Once
}

func (t offsetGatedTarget) WriteAt(p []byte, off int64) error {
	if off == t.off {
		t.once.Do(func() { close(t.at) })
		<-t.gate
	}
	return t.Target.WriteAt(p, off)
}

// withoutVol2 is the rig of a copy of killedWithGroupsUnapplied's disk
// started without vol2: groups 3 (vol2's write, then vol1's at 8192) and
// 4 (vol1's at 12288) wait for a primary without vol2.
func withoutVol2(t *testing.T, dir string) *rig {
	t.Helper()
	r := &rig{t: t, dir: dir, sizes: map[string]int64{"vol1": 1 << 20}, subs: []string{"ss1"}}
	r.open()
	t.Cleanup(r.close)
	return r
}

// readsBoth reads vol1's two blocks that groups 3 and 4 write, as one read.
func readsBoth(r *rig) ([]byte, error) {
	p := make([]byte, 8192)
	err := r.sec.ReadAt("vol1", p, 8192)
	return p, err
}

// atGroup4 says what is wrong with p, vol1's blocks at 8192 and 12288,
// unless they hold groups 3 and 4 both.
func atGroup4(p []byte) string {
	if !bytes.Equal(p[:4096], bytes.Repeat([]byte{1}, 4096)) || !bytes.Equal(p[4096:], bytes.Repeat([]byte{4}, 4096)) {
		return "not at group 4"
	}
	return ""
}

// applyChildEnv names, in a child process of the test binary, the disk
// of killedWithGroupsUnapplied it starts without vol2 and applies the
// waiting groups of, until it is killed.
const applyChildEnv = "DUPLEX_TEST_WAITING_APPLY_DIR"

// TestAKillInTheMiddleOfTheWaitingGroupsApply: a primary links without
// vol2 and the groups that waited are applied, outside the secondary's
// main lock, in a process of their own, killed -9 (SIGKILL) once group 3
// is on vol1 and group 4's write waits. The next start applies what is
// left, once, in order: vol1 holds both groups, consistent as of group 4,
// nothing waits, and a primary without vol2 is welcomed without anything
// applied again.
func TestAKillInTheMiddleOfTheWaitingGroupsApply(t *testing.T) {
	if dir := os.Getenv(applyChildEnv); dir != "" {
		applyUntilKilled(t, dir)
		return
	}
	dir := killedWithGroupsUnapplied(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestAKillInTheMiddleOfTheWaitingGroupsApply$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), applyChildEnv+"="+dir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	marker := filepath.Join(dir, "at-group-4")
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, err := os.Stat(marker); err == nil {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("the applying process exited (%v) before group 4's write:\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-exited
			t.Fatalf("the applying process never reached group 4's write:\n%s", out.String())
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited
	if err := os.Remove(marker); err != nil {
		t.Fatal(err)
	}

	k := withoutVol2(t, dir)
	if st := k.sec.Stats(); st.Group != 4 || st.Time < 40_000 || st.GroupsWait != "" {
		t.Errorf("started after the kill: group %d time %d, groups wait %q; want group 4, time 40000 or later, nothing waiting", st.Group, st.Time, st.GroupsWait)
	}
	if p, err := readsBoth(k); err != nil {
		t.Errorf("vol1 after the kill's restart: %v", err)
	} else if why := atGroup4(p); why != "" {
		t.Errorf("vol1 after the kill's restart: %s", why)
	}
	if v := k.sec.Volume("vol1"); !v.Consistent || v.WaitsForPrimary {
		t.Errorf("vol1 after the kill's restart: %+v, want consistent", v)
	}
	applied := k.sec.Stats().GroupsApplied
	again := k.hello()
	again.Instance = 9
	if _, typ, body := k.dial(again); typ != transport.TypeWelcome {
		reason, _ := refusalReason(body)
		t.Fatalf("a primary without vol2 after the restart: frame type %d (%q), want a welcome", typ, reason)
	}
	if st := k.sec.Stats(); st.Group != 4 || st.GroupsApplied != applied {
		t.Errorf("linked after the restart: group %d, %d groups applied (was %d): want group 4, nothing applied again", st.Group, st.GroupsApplied, applied)
	}
}

// applyUntilKilled is the child of TestAKillInTheMiddleOfTheWaitingGroupsApply:
// it links a primary without vol2 over dir, and once the apply of the
// groups that waited reaches group 4's write, holds it there, says so
// (a file beside the images) and waits to be killed.
func applyUntilKilled(t *testing.T, dir string) {
	r := &rig{t: t, dir: dir, sizes: map[string]int64{"vol1": 1 << 20}, subs: []string{"ss1"}}
	r.open()
	gate, at := make(chan struct{}), make(chan struct{})
	var once sync.Once
	r.sec.targets["vol1"] = offsetGatedTarget{Target: r.sec.targets["vol1"], off: 12288, gate: gate, at: at, once: &once}
	without := r.hello()
	without.Instance = 9
	go r.dial(without)
	select {
	case <-at:
	case <-time.After(20 * time.Second):
		t.Fatal("the waiting groups' apply never reached group 4's write")
	}
	if err := os.WriteFile(filepath.Join(dir, "at-group-4"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Minute)
	t.Fatal("not killed within a minute")
}

// TestAFenceAndAReadWhileTheWaitingGroupsAreApplied: while a primary's
// link applies the groups that waited for it, outside the secondary's
// main lock, a fence (a promotion's, recover's) and a read come. Neither
// may see the volumes between groups 3 and 4: the read returns both or
// neither, and the fence returns no position, nor records one, until the
// apply is over, then fences at group 4. The primary whose link applied
// them is then refused, not linked over the fence, and a restart applies
// nothing again over the fenced volumes.
func TestAFenceAndAReadWhileTheWaitingGroupsAreApplied(t *testing.T) {
	r := withoutVol2(t, killedWithGroupsUnapplied(t))
	gate, at := make(chan struct{}), make(chan struct{})
	var once, opened sync.Once
	open := func() { opened.Do(func() { close(gate) }) }
	t.Cleanup(open)
	r.sec.targets["vol1"] = offsetGatedTarget{Target: r.sec.targets["vol1"], off: 12288, gate: gate, at: at, once: &once}
	without := r.hello()
	without.Instance = 9
	linked := make(chan byte, 1)
	go func() {
		_, typ, _ := r.dial(without)
		linked <- typ
	}()
	select {
	case <-at:
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting groups' apply never reached group 4's write")
	}
	type fenced struct {
		pos transport.Position
		err error
	}
	fence := make(chan fenced, 1)
	go func() {
		pos, err := r.sec.Fence()
		fence <- fenced{pos, err}
	}()
	type read struct {
		p   []byte
		err error
	}
	reading := make(chan read, 1)
	go func() {
		p, err := readsBoth(r)
		reading <- read{p, err}
	}()
	var early *fenced
	select {
	case f := <-fence:
		early = &f
	case <-time.After(300 * time.Millisecond):
	}
	if early != nil && early.err == nil {
		t.Errorf("fenced at group %d while group 4 was half applied", early.pos.Group)
	}
	select {
	case rd := <-reading:
		if rd.err == nil {
			t.Errorf("vol1 read while group 4 was half applied: %s", atGroup4(rd.p))
		}
	default:
	}
	if st, err := apply.ReadState(r.config().StatePath); err != nil || st.Group > 2 {
		t.Errorf("while group 4 is half applied, the state file names group %d (%v): want 2 at most", st.Group, err)
	}
	open()
	if early == nil {
		select {
		case f := <-fence:
			if f.err != nil {
				t.Logf("the fence refused: %v", f.err)
			} else if f.pos.Group != 4 {
				t.Errorf("fenced at group %d, want 4", f.pos.Group)
			}
			early = &f
		case <-time.After(10 * time.Second):
			t.Fatal("the fence has not returned 10s after the apply could go on")
		}
	}
	select {
	case rd := <-reading:
		if rd.err == nil && atGroup4(rd.p) != "" {
			t.Errorf("vol1 read over the apply: %s", atGroup4(rd.p))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the read has not returned 10s after the apply could go on")
	}
	typ := <-linked
	if early.err != nil {
		return
	}
	if typ != transport.TypeRefuse {
		t.Errorf("the primary whose link applied the groups, after a fence: frame type %d, want a refusal", typ)
	}
	if st, err := apply.ReadState(r.config().StatePath); err != nil || st.Group != 4 {
		t.Errorf("fenced, the state file names group %d (%v), want 4", st.Group, err)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	r.open()
	if st := r.sec.Stats(); st.Group != 4 {
		t.Errorf("the fenced secondary restarted at group %d, want 4", st.Group)
	}
	if p, err := readsBoth(r); err != nil || atGroup4(p) != "" {
		t.Errorf("the fenced secondary restarted: vol1 %v %s", err, atGroup4(p))
	}
}
