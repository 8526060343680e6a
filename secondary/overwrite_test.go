package secondary

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"duplex/apply"
	"duplex/disk"
	"duplex/recordset"
	"duplex/transport"
)

// consistentCopies has the rig's primary (data generation 1) copy vol1
// and vol2 whole, then write to vol1: both copies consistent.
func consistentCopies(t *testing.T, r *rig) {
	t.Helper()
	conn, typ, _ := r.dial(r.hello())
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	sendAndWait(t, conn,
		writeSet(1, 10_000, mark("vol1", recordset.StateFirstCopy), mark("vol2", recordset.StateFirstCopy), write("vol1", 0), write("vol2", 0)),
		writeSet(2, 20_000, mark("vol1", recordset.StateCopyEnd), mark("vol2", recordset.StateCopyEnd)),
		writeSet(3, 30_000, write("vol1", 4096)))
	conn.Close()
	for _, vol := range []string{"vol1", "vol2"} {
		if v := r.sec.Volume(vol); !v.Consistent {
			t.Fatalf("after its copy, %s is reported %+v, want consistent", vol, v)
		}
	}
}

// freshHello is the Hello of a primary with a new pair state: data
// generation 2, another process; consent, if not nil, the operator's
// consent to overwrite the copies of the secondary following it.
func freshHello(r *rig, consent *transport.Generation) transport.Hello {
	h := r.hello()
	h.Instance, h.Generation, h.Overwrite = 9, 2, consent
	return h
}

func generation(g transport.Generation) *transport.Generation { return &g }

func refusal(t *testing.T, r *rig, h transport.Hello, want ...string) string {
	t.Helper()
	_, typ, body := r.dial(h)
	if typ != transport.TypeRefuse {
		t.Fatalf("frame type %d, want a refusal", typ)
	}
	reason, err := refusalReason(body)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range want {
		if !strings.Contains(reason, w) {
			t.Errorf("refusal %q does not say %s", reason, w)
		}
	}
	return reason
}

// TestAPrimaryWithNoRecordOfTheCopiesIsRefusedUnlessTheOperatorConsents:
// a primary of another data generation (its pair state new: a replacement
// primary, an empty state directory) would overwrite the secondary's
// consistent copies with its first copies. It is refused, the refusal
// naming the copies, duplex promote and the consent for this secondary's
// generation, and within transport's 1 KiB; the copies stay consistent. A
// consent for another generation is none. The consent for this one is
// taken: the secondary forgets its copies (state file first), follows the
// primary's generation, and the primary's first copy makes vol1 its own
// again, consistent.
func TestAPrimaryWithNoRecordOfTheCopiesIsRefusedUnlessTheOperatorConsents(t *testing.T) {
	r := newRig(t, map[string]int64{"vol1": 1 << 20, "vol2": 1 << 20})
	consistentCopies(t, r)
	reason := refusal(t, r, freshHello(r, nil), `"vol1", a copy consistent as of 1970-01-01T00:00:00.00003`, `"vol2", a copy consistent as of`,
		"has no record", "duplex promote", "--overwrite-secondary 0000000000000001")
	t.Logf("refused (%d bytes): %s", len(reason), reason)
	if len(reason) >= 1024 {
		t.Errorf("the refusal is %d bytes, cut at 1024: %q", len(reason), reason)
	}
	refusal(t, r, freshHello(r, generation(3)), "names generation 0000000000000003, not this secondary's")
	for _, vol := range []string{"vol1", "vol2"} {
		if v := r.sec.Volume(vol); !v.Consistent {
			t.Errorf("refused, %s is reported %+v, want its copy consistent", vol, v)
		}
	}
	if g, _ := r.sec.Generation(); g != 1 {
		t.Errorf("refused, the secondary follows generation %s, want 1", g)
	}

	conn, typ, _ := r.dial(freshHello(r, generation(1)))
	if typ != transport.TypeWelcome {
		t.Fatalf("with the consent: frame type %d, want a welcome", typ)
	}
	if g, _ := r.sec.Generation(); g != 2 {
		t.Errorf("with the consent, the secondary follows generation %s, want 2", g)
	}
	st, err := apply.ReadState(r.config().StatePath)
	if err != nil {
		t.Fatal(err)
	}
	for _, vol := range []string{"vol1", "vol2"} {
		if v := r.sec.Volume(vol); v.Consistent || !v.NoWholeCopy {
			t.Errorf("with the consent, %s is reported %+v, want no copy: not consistent, no whole copy", vol, v)
		}
		if v := st.Volumes[vol]; !v.Inconsistent || st.Forgotten[vol] == 0 {
			t.Errorf("with the consent, the state file holds %s as %+v, forgotten at %d; want it forgotten, no copy", vol, v, st.Forgotten[vol])
		}
	}
	// The new primary's first copy of vol1.
	sendAndWait(t, conn,
		writeSet(4, 40_000, mark("vol1", recordset.StateFirstCopy), write("vol1", 0)),
		writeSet(5, 50_000, mark("vol1", recordset.StateCopyEnd)))
	if v := r.sec.Volume("vol1"); !v.Consistent {
		t.Errorf("after the new primary's first copy, vol1 is reported %+v, want consistent", v)
	}
	if v := r.sec.Volume("vol2"); v.Consistent {
		t.Errorf("vol2, not copied by the new primary, is reported %+v, want not consistent", v)
	}
	// The consent given again (a flag left on the primary's command
	// line) forgets nothing: the secondary follows that primary.
	conn.Close()
	if _, typ, _ := r.dial(freshHello(r, generation(1))); typ != transport.TypeWelcome {
		t.Fatalf("the same primary again: frame type %d, want a welcome", typ)
	}
	if v := r.sec.Volume("vol1"); !v.Consistent {
		t.Errorf("the consent given again, vol1 is reported %+v, want still consistent", v)
	}
}

// TestASecondaryWithoutItsIdentityFollowsNoPrimaryOverItsCopies: a
// secondary whose identity.json is gone (removed, as the advice for a
// damaged one allowed) follows no generation; holding consistent copies,
// it cannot tell the primary they came from from one with no record of
// them, whose first copies would overwrite them, and it refuses both,
// naming how to say which: identity.json written back with the primary's
// generation (then it takes it, the copies kept), or the consent for a
// secondary that follows none. A secondary without copies follows the
// first primary, as ever.
func TestASecondaryWithoutItsIdentityFollowsNoPrimaryOverItsCopies(t *testing.T) {
	r := newRig(t, map[string]int64{"vol1": 1 << 20, "vol2": 1 << 20})
	consistentCopies(t, r)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	path := IdentityPath(r.config().StatePath)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	r.open()
	refusal(t, r, r.hello(), "follows no data generation", `{"generation":"0000000000000001"}`, "--overwrite-secondary none", `"vol1", a copy consistent as of`)
	refusal(t, r, freshHello(r, nil), "follows no data generation", "(data generation 0000000000000002)")
	if g, _ := r.sec.Generation(); g != 0 {
		t.Errorf("refused, the secondary follows generation %s, want none", g)
	}

	// identity.json written back as the refusal says: the old primary
	// is taken, the copies kept.
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(`{"generation":"0000000000000001"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.open()
	if _, typ, _ := r.dial(r.hello()); typ != transport.TypeWelcome {
		t.Fatalf("identity written back: frame type %d, want a welcome", typ)
	}
	if v := r.sec.Volume("vol1"); !v.Consistent {
		t.Errorf("identity written back, vol1 is reported %+v, want its copy consistent", v)
	}

	// A secondary that holds no copy follows the first primary.
	fresh := newRig(t, map[string]int64{"vol1": 1 << 20})
	if _, typ, _ := fresh.dial(freshHello(fresh, nil)); typ != transport.TypeWelcome {
		t.Fatalf("a new secondary: frame type %d, want a welcome", typ)
	}
	if g, _ := fresh.sec.Generation(); g != 2 {
		t.Errorf("a new secondary follows generation %s, want 2", g)
	}
}

// TestAConsentKilledBetweenItsWritesCallsNoCopyConsistent: the consent
// forgets the copies in the state file, then writes the identity naming
// the new generation. A kill -9 between the two (the identity's rename
// failed, then the process crashed) leaves the secondary following the old
// generation with its copies called consistent by nothing, never the new
// primary followed over copies still called its own; the new primary is
// refused again without the consent, taken with it.
func TestAConsentKilledBetweenItsWritesCallsNoCopyConsistent(t *testing.T) {
	r := &identityRig{rig: &rig{t: t, dir: t.TempDir(), sizes: map[string]int64{"vol1": 1 << 20, "vol2": 1 << 20}, subs: []string{"ss1"}},
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
	consistentCopies(t, r.rig)
	// The state file's rename goes through, the identity's fails.
	r.in.Inject(disk.Fault{Op: disk.OpRename, Under: r.site, Skip: 1, Err: disk.EIO, Once: true})
	refusal(t, r.rig, freshHello(r.rig, generation(1)), "cannot record the data generation it follows")
	if n := r.in.Injected(disk.OpRename); n != 1 {
		t.Fatalf("%d renames failed, want the identity's", n)
	}
	r.crash()
	r.open()
	if g, _ := r.sec.Generation(); g != 1 {
		t.Errorf("killed between the writes, the secondary follows generation %s, want 1", g)
	}
	for _, vol := range []string{"vol1", "vol2"} {
		if v := r.sec.Volume(vol); v.Consistent {
			t.Errorf("killed between the writes, %s is reported %+v, want no copy called consistent", vol, v)
		}
	}
	refusal(t, r.rig, freshHello(r.rig, nil), "It holds no copy it calls consistent", "--overwrite-secondary 0000000000000001")
	if _, typ, _ := r.dial(freshHello(r.rig, generation(1))); typ != transport.TypeWelcome {
		t.Fatalf("with the consent again: frame type %d, want a welcome", typ)
	}
	if g, _ := r.sec.Generation(); g != 2 {
		t.Errorf("with the consent again, the secondary follows generation %s, want 2", g)
	}
}

// TestAConsentIsRefusedWhileAResyncHolds: the groups a resync holds
// journaled are the old primary's, and only its stream ends the hold; the
// consent is refused then, naming the resync and duplex promote, and the
// copies stay as they were.
func TestAConsentIsRefusedWhileAResyncHolds(t *testing.T) {
	r := newRig(t, map[string]int64{"vol1": 1 << 20, "vol2": 1 << 20})
	consistentCopies(t, r)
	conn, typ, _ := r.dial(r.hello())
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	sendAndWait(t, conn, writeSet(4, 40_000, mark("vol1", recordset.StateSuspended)),
		writeSet(5, 50_000, mark("vol1", recordset.StateResync), write("vol1", 8192)))
	conn.Close()
	if v := r.sec.Volume("vol1"); !v.Held {
		t.Fatalf("vol1 is reported %+v, want its resync holding the secondary", v)
	}
	refusal(t, r, freshHello(r, generation(1)), `a resync of "vol1" holds the secondary`, "duplex promote")
	if g, _ := r.sec.Generation(); g != 1 {
		t.Errorf("refused, the secondary follows generation %s, want 1", g)
	}
	if v := r.sec.Volume("vol2"); !v.Consistent {
		t.Errorf("refused, vol2 is reported %+v, want its copy consistent", v)
	}
}

// TestAConsentDoesNotLiftAFence: a fenced secondary (recover, promote or a
// switchover's promotion took its volumes over, and they may hold writes
// no primary has) refuses a primary with the operator's consent to
// overwrite its copies, whichever generation the consent names, the one
// it followed or the one the fence started: the consent is for copies a
// primary has no record of, not for a site that may be serving. The
// refusal says the consent cannot lift the fence, and the fence stays.
// Before, the refusal was the fence's alone, and the operator who had
// given the consent was not told it counted for nothing.
func TestAConsentDoesNotLiftAFence(t *testing.T) {
	r := newRig(t, map[string]int64{"vol1": 1 << 20, "vol2": 1 << 20})
	consistentCopies(t, r)
	if _, err := r.sec.Fence(); err != nil {
		t.Fatal(err)
	}
	fencedGen, fenced := r.sec.Generation()
	if !fenced || fencedGen == 1 {
		t.Fatalf("after the fence the secondary holds generation %s, fenced %v: the test needs a fence", fencedGen, fenced)
	}
	for _, consent := range []transport.Generation{1, fencedGen} {
		if reason := refusal(t, r, freshHello(r, generation(consent)), "fenced", "does not lift"); len(reason) >= 1024 {
			t.Errorf("the refusal is %d bytes, cut at 1024: %q", len(reason), reason)
		}
		if g, fenced := r.sec.Generation(); g != fencedGen || !fenced {
			t.Errorf("a consent naming %s: the secondary holds generation %s, fenced %v; want %s, fenced", consent, g, fenced, fencedGen)
		}
		for _, vol := range []string{"vol1", "vol2"} {
			if v := r.sec.Volume(vol); !v.Consistent {
				t.Errorf("a consent naming %s: %s is reported %+v, want its copy as the fence left it, consistent", consent, vol, v)
			}
		}
	}
}

// TestNoneConsentsOnlyForASecondaryThatFollowsNone: --overwrite-secondary
// none is the consent for a secondary that follows no generation (its
// identity removed). Against one that follows a generation it is a
// consent for other copies, refused as such: the copies stay, and the
// refusal names the secondary's generation as the one to consent for.
func TestNoneConsentsOnlyForASecondaryThatFollowsNone(t *testing.T) {
	r := newRig(t, map[string]int64{"vol1": 1 << 20, "vol2": 1 << 20})
	consistentCopies(t, r)
	refusal(t, r, freshHello(r, generation(0)), "names generation none, not this secondary's", "--overwrite-secondary 0000000000000001")
	if g, _ := r.sec.Generation(); g != 1 {
		t.Errorf("refused, the secondary follows generation %s, want 1", g)
	}
	for _, vol := range []string{"vol1", "vol2"} {
		if v := r.sec.Volume(vol); !v.Consistent {
			t.Errorf("refused, %s is reported %+v, want its copy consistent", vol, v)
		}
	}
}

// smallFS is a file system that says it has little room, so that the
// journal sizes its segments small (journal.Options.LargestRecord) and a
// test fills one quickly.
type smallFS struct{ *disk.Injector }

func (smallFS) Available(string) (int64, error) { return 8 << 20, nil }

// TestAConsentWhoseJournalReleaseFailsGoesOn: the consent forgets the
// copies, which its checkpoint records in the state file; the same
// checkpoint then releases the journal's applied segments, which fails
// here (a removal refused). The copies are forgotten all the same, and
// recorded so: the consent goes on, the secondary follows the new
// primary, and its log says the release failed, which the next
// checkpoint tries again. Before, the primary was refused saying the
// state file could not record the copies forgotten, which it had.
func TestAConsentWhoseJournalReleaseFailsGoesOn(t *testing.T) {
	in := disk.NewInjector(nil)
	logs := &syncBuffer{}
	r := &rig{t: t, dir: t.TempDir(), sizes: map[string]int64{"vol1": 4 << 20, "vol2": 4 << 20}, subs: []string{"ss1"}}
	r.edit = func(c *Config) {
		c.FS = smallFS{in}
		c.LargestGroup = 256 << 10
		c.CheckpointEvery = time.Hour
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
	}
	r.open()
	t.Cleanup(r.close)
	consistentCopies(t, r)
	// More than a segment of groups, all applied: the first segment is
	// the checkpoint's to release.
	conn, typ, _ := r.dial(r.hello())
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	var sets []*recordset.RecordSet
	for i := range 16 {
		u := recordset.Update{Volume: "vol1", Kind: recordset.KindWrite, Offset: uint64(i) * (256 << 10), Length: 200 << 10}
		sets = append(sets, writeSet(uint64(4+i), int64(40_000+10_000*i), u))
	}
	sendAndWait(t, conn, sets...)
	conn.Close()
	waitFor(t, "group 19 applied", func() bool { return r.sec.Stats().Group >= 19 })
	journalDir := r.config().JournalDir
	in.Inject(disk.Fault{Op: disk.OpRemove, Under: journalDir, Err: disk.EIO, Once: true})

	if _, typ, body := r.dial(freshHello(r, generation(1))); typ != transport.TypeWelcome {
		reason, _ := refusalReason(body)
		t.Fatalf("with the consent, the journal's release failing: frame type %d (%q), want a welcome", typ, reason)
	}
	if n := in.Injected(disk.OpRemove); n != 1 {
		t.Fatalf("%d removals failed, want the release's: the test did not reach it", n)
	}
	if g, _ := r.sec.Generation(); g != 2 {
		t.Errorf("with the consent, the secondary follows generation %s, want 2", g)
	}
	st, err := apply.ReadState(r.config().StatePath)
	if err != nil {
		t.Fatal(err)
	}
	for _, vol := range []string{"vol1", "vol2"} {
		if st.Forgotten[vol] == 0 {
			t.Errorf("the state file does not record %s forgotten: %v", vol, st.Forgotten)
		}
	}
	if !strings.Contains(logs.String(), "release") {
		t.Errorf("the log does not say the journal's release failed:\n%s", logs.String())
	}
}
