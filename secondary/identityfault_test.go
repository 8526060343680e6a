package secondary

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"duplex/disk"
	"duplex/recordset"
	"duplex/transport"
)

// TestIdentityWriteFaults fails each step of an identity write (the temporary
// file's create, write and fsync, the rename over identity.json, the fsync
// of its directory) when a new primary process's first group is journaled:
// at the write naming that process pending before the group reaches the
// journal, and at the final write naming it once the group is there. The
// error must be reported, not swallowed; nothing acknowledged may be lost;
// and a secondary that crashes right after the fault (reopened from the same
// directory with the disk working again) must take the process's resend of
// the record set its journaled group holds part of, never refuse it for
// ever, and end where a run without the fault ends.
func TestIdentityWriteFaults(t *testing.T) {
	steps := []struct {
		name string
		op   disk.Op
	}{
		{"create", disk.OpCreate},
		{"write", disk.OpWrite},
		{"fsync", disk.OpSync},
		{"rename", disk.OpRename},
		{"fsync dir", disk.OpSyncDir},
	}
	t.Run("final write/retried with the next group", func(t *testing.T) {
		// Without a crash, the next group of the same process writes the
		// identity again: it names the process, nothing pending.
		r := newIdentityRig(t)
		conn, typ, _ := r.dial(r.hello())
		if typ != transport.TypeWelcome {
			t.Fatalf("frame type %d, want a welcome", typ)
		}
		r.in.Inject(disk.Fault{Op: disk.OpRename, Under: r.site, Skip: 1, Err: disk.EIO, Once: true})
		sendRecordSet(t, conn, subsystemSet("ss1", 1, 1_000, 4_000,
			recordset.Update{Volume: "a", Kind: recordset.KindWrite, Offset: 0, Length: 4096, Timestamp: 1_000},
			recordset.Update{Volume: "a", Kind: recordset.KindWrite, Offset: 4096, Length: 4096, Timestamp: 3_000}))
		sendRecordSet(t, conn, subsystemSet("ss2", 1, 0, 2_000))
		if reason, acked := answers(t, conn, 0); acked != 1 || r.in.Injected(disk.OpRename) == 0 {
			t.Fatalf("acknowledged through group %d (refusal %q), %d renames failed; want group 1 with the final identity write failed",
				acked, reason, r.in.Injected(disk.OpRename))
		}
		sendRecordSet(t, conn, subsystemSet("ss2", 2, 0, 5_000))
		if reason, acked := answers(t, conn, 1); acked != 2 {
			t.Fatalf("acknowledged through group %d (refusal %q), want 2", acked, reason)
		}
		if id := r.identityFile(); !strings.Contains(id, `"journaled_instance": "7"`) || strings.Contains(id, "pending") {
			t.Errorf("after the next group the identity is %s, want it to name process 7, nothing pending", id)
		}
	})
	for _, final := range []bool{false, true} {
		phase := "pending write"
		if final {
			phase = "final write"
		}
		for _, step := range steps {
			t.Run(phase+"/"+step.name, func(t *testing.T) { identityWriteFault(t, step.op, final) })
		}
	}
}

// identityRig is a secondary whose state file and identity sit alone in a
// directory of their own on a disk that can fail there, and which
// checkpoints only when closed: every operation on that directory while it
// runs is an identity write.
type identityRig struct {
	*rig
	in   *disk.Injector
	site string
	logs *syncBuffer
}

func newIdentityRig(t *testing.T) *identityRig {
	t.Helper()
	r := &identityRig{rig: &rig{t: t, dir: t.TempDir(), sizes: map[string]int64{"a": 1 << 20}, subs: []string{"ss1", "ss2"}},
		in: disk.NewInjector(nil), logs: &syncBuffer{}}
	r.site = filepath.Join(r.dir, "site")
	r.edit = func(c *Config) {
		c.StatePath = filepath.Join(r.site, "state.json")
		c.FS = r.in
		c.CheckpointEvery = time.Hour
		c.Logger = slog.New(slog.NewTextHandler(r.logs, nil))
	}
	r.open()
	t.Cleanup(r.close)
	return r
}

// crash abandons the running secondary as kill -9 would: nothing is
// checkpointed; its applier is stopped and its journal closed only so that
// the next Open in this process finds them let go.
func (r *identityRig) crash() {
	r.t.Helper()
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		r.t.Fatal("secondary did not stop within 30s")
	}
	r.net.Close()
	s := r.sec
	s.mu.Lock()
	if !s.closing {
		s.closing = true
		close(s.applyQ)
	}
	s.mu.Unlock()
	<-s.applyDone
	s.bg.Wait()
	s.journal.Close()
	for _, v := range r.vols {
		v.Close()
	}
	r.sec = nil
}

func (r *identityRig) identityFile() string {
	b, err := os.ReadFile(IdentityPath(filepath.Join(r.site, "state.json")))
	if err != nil {
		return err.Error()
	}
	return strings.Join(strings.Fields(string(b)), " ")
}

func identityWriteFault(t *testing.T, op disk.Op, final bool) {
	r := newIdentityRig(t)
	first := recordset.Update{Volume: "a", Kind: recordset.KindWrite, Offset: 0, Length: 4096, Timestamp: 1_000, Data: bytes.Repeat([]byte{0xa1}, 4096)}
	second := recordset.Update{Volume: "a", Kind: recordset.KindWrite, Offset: 4096, Length: 4096, Timestamp: 3_000, Data: bytes.Repeat([]byte{0xa2}, 4096)}
	// The primary's record sets, per subsystem in order: group 1 ends at
	// 2000, between first and second, so it holds part of ss1's first.
	sets := map[string][]*recordset.RecordSet{
		"ss1": {subsystemSet("ss1", 1, 1_000, 4_000, first, second)},
		"ss2": {subsystemSet("ss2", 1, 0, 2_000), subsystemSet("ss2", 2, 0, 5_000)},
	}

	conn, typ, _ := r.dial(r.hello()) // process 7, which the secondary's generation now follows
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	skip := 0
	if final {
		skip = 1 // past the pending write's one operation of the kind
	}
	r.in.Inject(disk.Fault{Op: op, Under: r.site, Skip: skip, Err: disk.EIO, Once: true})
	sendRecordSet(t, conn, sets["ss1"][0])
	sendRecordSet(t, conn, sets["ss2"][0])
	reason, acked := answers(t, conn, 0)
	if r.in.Injected(op) == 0 {
		t.Fatalf("the %s fault never fired (acknowledged through group %d, refusal %q)", op, acked, reason)
	}
	const want = "input/output error"
	if final {
		// Journaled: acknowledged, and the failure said.
		if acked != 1 {
			t.Fatalf("group 1 journaled before the identity write failed, yet acknowledged through %d (refusal %q)", acked, reason)
		}
		if logs := r.logs.String(); !strings.Contains(logs, want) {
			t.Errorf("the failed identity write is not reported: the log does not say %q:\n%s", want, logs)
		}
	} else {
		// Nothing journaled yet: nothing acknowledged, the secondary
		// stops and says why.
		if acked != 0 {
			t.Fatalf("group 1 acknowledged although the identity write before its journaling failed")
		}
		if !strings.Contains(reason, want) {
			t.Errorf("the primary was told %q, want the reason (%q)", reason, want)
		}
		if st := r.sec.Stats(); !strings.Contains(st.Stopped, want) {
			t.Errorf("Stats().Stopped = %q, want the reason (%q)", st.Stopped, want)
		}
	}
	t.Logf("identity on disk at the crash: %s", r.identityFile())

	r.crash()
	r.in.Clear()
	if strings.Contains(r.identityFile(), "pending_instance") {
		// Open settles the pending process against the journal and
		// writes the identity again: that write failing too must stop
		// Open with the reason, and leave the next Open to succeed.
		r.in.Inject(disk.Fault{Op: disk.OpRename, Under: IdentityPath(filepath.Join(r.site, "state.json")), Err: disk.EIO, Once: true})
		r.openVolumes()
		sec, err := Open(r.config())
		for _, v := range r.vols {
			v.Close()
		}
		if err == nil {
			sec.Close()
			t.Fatal("Open succeeded although the identity it settled could not be written")
		}
		if !strings.Contains(err.Error(), "identity") || !strings.Contains(err.Error(), want) {
			t.Errorf("Open failed with %q, want it to name the identity and the reason (%q)", err, want)
		}
		r.in.Clear()
	}
	r.open()
	conn, typ, body := r.dial(r.hello()) // process 7 again, resending what is not journaled
	if typ != transport.TypeWelcome {
		reason, _ := refusalReason(body)
		t.Fatalf("after the crash process 7 is refused (%q): frame type %d, want a welcome", reason, typ)
	}
	welcome, err := transport.DecodePosition(body)
	if err != nil {
		t.Fatal(err)
	}
	if final && welcome.Group < 1 {
		t.Fatalf("after the crash the secondary holds group %d: group 1, acknowledged, is lost", welcome.Group)
	}
	for _, sub := range []string{"ss1", "ss2"} {
		for _, rs := range sets[sub] {
			if rs.Seq > welcome.Through[sub] {
				sendRecordSet(t, conn, rs)
			}
		}
	}
	if reason, acked := answers(t, conn, 1); reason != "" || acked != 2 {
		t.Fatalf("after the crash process 7 resent what the secondary had not journaled whole (welcome at group %d, through %v; identity %s): "+
			"refusal %q, acknowledged through group %d, want group 2 (every resend is refused the same way: stuck)",
			welcome.Group, welcome.Through, r.identityFile(), reason, acked)
	}
	for deadline := time.Now().Add(10 * time.Second); r.sec.Stats().Group < 2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("group 2 not applied 10s after its acknowledgment (applied through %d)", r.sec.Stats().Group)
		}
	}
	got := make([]byte, 8192)
	if err := r.sec.ReadAt("a", got, 0); err != nil {
		t.Fatal(err)
	}
	if w := append(bytes.Clone(first.Data), second.Data...); !bytes.Equal(got, w) {
		t.Fatalf("volume a after the resend starts %s, want both writes (%#x, %#x)", describe(got), first.Data[0], second.Data[0])
	}
	if id := r.identityFile(); !strings.Contains(id, `"journaled_instance": "7"`) || strings.Contains(id, "pending") {
		t.Errorf("after the resend the identity is %s, want it to name process 7, whose groups the journal ends with, nothing pending", id)
	}
}

// describe names the fill of each 4 KiB block of b.
func describe(b []byte) string {
	var s []string
	for off := 0; off < len(b); off += 4096 {
		s = append(s, fmt.Sprintf("%#x", b[off]))
	}
	return strings.Join(s, ", ")
}
