package pair

import (
	"context"
	"log/slog"
	"testing"

	"duplex/disk"
	"duplex/recordset"
)

// A resume lets the manager's lock go while it saves the pending state;
// what the other operations do meanwhile must leave the resume's marker,
// its state in memory and the operator's word agreeing.

// An inconsistent resume asked while a plain resume of the same pair saves
// records its acceptance meanwhile: the plain resume saved the pair as a
// plain resync and must announce it so. Taking the acceptance for its
// marker, it announced an inconsistent resync (the secondary holding
// nothing for it) while the primary took the copy for a consistent one,
// and claimed the pair's time of suspension for a copy landing in region
// order over it.
func TestAnInconsistentResumeAskedWhileAResumeIsSavedDoesNotChangeItsMarker(t *testing.T) {
	dir := t.TempDir()
	const size = 4 << 20
	ss, vols := subsystemAB(t, dir, size, nil)
	h := &heldSaves{FS: disk.OS}
	mg, err := Open(Options{Dir: savePairs(t, dir, true, duplexAB(size)...), FS: h, Logger: slog.New(slog.DiscardHandler)}, &idleMover{}, vols)
	if err != nil {
		t.Fatal(err)
	}
	if err := mg.Suspend("a"); err != nil {
		t.Fatal(err)
	}
	if err := ss.Write(context.Background(), "a", make([]byte, 4096), 0); err != nil {
		t.Fatal(err)
	}
	ss.Drain() // the suspension's marker: the secondary has it

	h.Arm()
	resumed := make(chan error, 1)
	go func() { resumed <- mg.Resume("a") }()
	<-h.Entered()
	accepted := make(chan error, 1)
	go func() { accepted <- mg.ResumeInconsistent("a") }()
	h.await(t, "the inconsistent resume asked", func() bool {
		mg.mu.Lock()
		defer mg.mu.Unlock()
		return mg.markers.inconsistent["a"]
	})
	h.Release()
	if err := <-resumed; err != nil {
		t.Fatal(err)
	}
	<-accepted // refused or not, it comes after the plain resume

	ups, _, _ := ss.Drain()
	var got []recordset.Marker
	for _, u := range ups {
		if m, err := recordset.DecodeMarker(u); err == nil && u.Kind == recordset.KindMarker && u.Volume == "a" && m.State == recordset.StateResync {
			got = append(got, m)
		}
	}
	if len(got) == 0 {
		t.Fatal("no resync marker of a captured")
	}
	p := mg.Pairs()[0]
	if got[0].Inconsistent != p.Inconsistent {
		t.Errorf("the resume's resync marker says inconsistent=%v, the pair (%s) says inconsistent=%v", got[0].Inconsistent, p.State, p.Inconsistent)
	}
}

// The operator suspends, by hand, a pair the session suspended itself while
// the session's resume of it (the link back) saves: the operator's word
// stands, as it does when it comes before the session's resume looks (the
// pair is then no longer the session's to resume) or after it (the pair is
// suspended again). The session resumed it all the same, and the suspend
// returned success with the pair pending.
func TestAHandSuspendWhileTheSessionsResumeIsSavedStands(t *testing.T) {
	bothWays(t, "suspend", "suspend --all", func(t *testing.T, all bool, name string) {
		r, h := heldRig(t)
		r.mv.setConnected(false)
		if !r.mg.suspendSession(reasonLinkDown, false) {
			t.Fatal("setup: the session did not suspend")
		}
		r.write("a", 0, 4096)
		r.write("b", 0, 4096)
		r.mv.setConnected(true)

		h.Arm()
		resumed := make(chan error, 1)
		go func() {
			_, err := r.mg.resumeAll(true)
			resumed <- err
		}()
		<-h.Entered()
		suspended := make(chan error, 1)
		go func() {
			if all {
				_, err := r.mg.SuspendAll()
				suspended <- err
				return
			}
			suspended <- r.mg.Suspend("a")
		}()
		h.await(t, "the "+name+" taking pair a", func() bool { return !r.pair("a").Auto })
		h.Release()
		if err := <-resumed; err != nil {
			t.Fatal(err)
		}
		if err := <-suspended; err != nil {
			t.Fatal(err)
		}
		want := []string{"a"}
		if all {
			want = []string{"a", "b"}
		}
		for _, vol := range want {
			if p := r.pair(vol); p.State != Suspended || p.Auto {
				t.Errorf("pair %s after the %s answered: %s, auto %v; want suspended by hand", vol, name, p.State, p.Auto)
			}
		}
		// What is on disk says so too.
		r.crash()
		for _, vol := range want {
			if p := r.pair(vol); p.State != Suspended || p.Auto {
				t.Errorf("pair %s restarted: %s, auto %v; want suspended by hand", vol, p.State, p.Auto)
			}
		}
	})
}

// A pair deleted while its resume saves stays deleted: the resume, which
// saved it pending, leaves it out (resume --all resumes the others), and
// the deletion's save writes it. Resumed all the same, the pair would be
// pending again (a copy clears Deleted) after the delete answered.
func TestAPairDeletedWhileItsResumeIsSavedStaysDeleted(t *testing.T) {
	bothWays(t, "resume", "resume --all", func(t *testing.T, all bool, name string) {
		r, h := heldRig(t)
		if _, err := r.mg.SuspendAll(); err != nil {
			t.Fatal(err)
		}
		r.write("a", 0, 4096)
		r.write("b", 0, 4096)

		h.Arm()
		type result struct {
			names []string
			err   error
		}
		resumed := make(chan result, 1)
		go func() {
			if all {
				names, err := r.mg.ResumeAll()
				resumed <- result{names, err}
				return
			}
			resumed <- result{[]string{"a"}, r.mg.Resume("a")}
		}()
		<-h.Entered()
		deleted := make(chan error, 1)
		go func() {
			_, err := r.mg.Delete("a")
			deleted <- err
		}()
		h.await(t, "the delete taking pair a", func() bool { return r.pair("a").Deleted })
		h.Release()
		res := <-resumed
		if err := <-deleted; err != nil {
			t.Fatal(err)
		}
		if all {
			if res.err != nil || len(res.names) != 1 || res.names[0] != "b" {
				t.Errorf("%s answered %v, %v; want b resumed alone", name, res.names, res.err)
			}
			if p := r.pair("b"); p.State != Pending && p.State != Duplex {
				t.Errorf("pair b after the %s: %s, want pending or duplex", name, p.State)
			}
		} else if res.err == nil {
			t.Errorf("the resume of a deleted meanwhile answered success")
		}
		if p := r.pair("a"); !p.Deleted {
			t.Errorf("pair a after the delete answered: %s, not deleted", p.State)
		}
		r.crash()
		if p := r.pair("a"); !p.Deleted {
			t.Errorf("pair a restarted: %s, not deleted", p.State)
		}
	})
}
