package secondary

import (
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"duplex/disk"
	"duplex/mover"
	"duplex/recordset"
	"duplex/transport"
)

// refusedHello dials r with h and returns the body of the Refuse that
// answers it.
func refusedHello(t *testing.T, r *rig, h transport.Hello) []byte {
	t.Helper()
	_, typ, body := r.dial(h)
	if typ != transport.TypeRefuse {
		t.Fatalf("frame type %d, want a refusal", typ)
	}
	return body
}

// refusedOn returns the body of the Refuse that ends the linked conn,
// past the acknowledgements before it.
func refusedOn(t *testing.T, conn transport.Conn) []byte {
	t.Helper()
	for {
		typ, body, err := recvFrame(conn, 10*time.Second)
		if err != nil {
			t.Fatalf("no refusal on the link: %v", err)
		}
		if typ == transport.TypeRefuse {
			return body
		}
	}
}

// linked dials r with its own Hello and returns the linked connection.
func linked(t *testing.T, r *rig) transport.Conn {
	t.Helper()
	conn, typ, _ := r.dial(r.hello())
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	return conn
}

// faultRig is a rig whose state file and identity are on an injector.
func faultRig(t *testing.T, sizes map[string]int64) *identityRig {
	t.Helper()
	r := &identityRig{rig: &rig{t: t, dir: t.TempDir(), sizes: sizes, subs: []string{"ss1"}}, in: disk.NewInjector(nil), logs: &syncBuffer{}}
	r.site = filepath.Join(r.dir, "site")
	r.edit = func(c *Config) {
		c.StatePath = filepath.Join(r.site, "state.json")
		c.FS = r.in
		c.CheckpointEvery = time.Hour
	}
	r.open()
	t.Cleanup(r.close)
	return r
}

// stopped stops r's secondary as a group it could not make durable does.
func stopped(r *rig) {
	r.sec.mu.Lock()
	r.sec.stop(errors.New("journal group 3: fsync: input/output error"))
	r.sec.mu.Unlock()
}

// TestEveryRefusalSaysWhetherItPasses feeds every refusal the secondary
// sends a primary to the primary's reading of it (mover.Refused, whose
// Passing a stop waits on): a refusal passes only if the secondary takes
// the primary again by itself, shortly; one that waits for an operator
// lasts. The words are free to change: the flag is what the stop reads,
// and the kind, which only a stale record set's names, what the pair
// manager acts on.
// Where a passing refusal's cause can be undone here, the next dial is
// welcomed with no operator acting.
func TestEveryRefusalSaysWhetherItPasses(t *testing.T) {
	two := map[string]int64{"vol1": 1 << 20, "vol2": 1 << 20}
	// The refusals the primary acts on by kind; every other is unnamed.
	named := map[string]transport.RefusalKind{
		"a record set stamped at or before its consistency time": transport.RefusalStale,
	}
	for _, tc := range []struct {
		name    string
		passing bool
		says    string // a part of the reason
		refusal func(t *testing.T) []byte
	}{
		{"another session", false, "is not this secondary's session", func(t *testing.T) []byte {
			r := newRig(t, two)
			h := r.hello()
			h.Session = "other"
			return refusedHello(t, r, h)
		}},
		{"other subsystems", false, "differ from the secondary's", func(t *testing.T) []byte {
			r := newRig(t, two)
			h := r.hello()
			h.Subsystems = []string{"ss9"}
			return refusedHello(t, r, h)
		}},
		{"no volumes named", false, "named no volumes", func(t *testing.T) []byte {
			r := newRig(t, two)
			h := r.hello()
			h.Volumes = nil
			return refusedHello(t, r, h)
		}},
		{"a volume it cannot hold", false, "bytes at the primary but", func(t *testing.T) []byte {
			r := newRig(t, map[string]int64{"vol1": 1 << 20})
			h := r.hello()
			h.Volumes[0].Size *= 2
			return refusedHello(t, r, h)
		}},
		{"no data generation", false, "names no data generation", func(t *testing.T) []byte {
			r := newRig(t, two)
			linked(t, r).Close()
			h := r.hello()
			h.Instance, h.Generation = 9, 0
			return refusedHello(t, r, h)
		}},
		{"another data generation", false, "duplex promote", func(t *testing.T) []byte {
			r := newRig(t, two)
			consistentCopies(t, r)
			return refusedHello(t, r, freshHello(r, nil))
		}},
		{"a consent while a resync holds", false, "holds the secondary", func(t *testing.T) []byte {
			r := newRig(t, two)
			consistentCopies(t, r)
			conn := linked(t, r)
			sendAndWait(t, conn, writeSet(4, 40_000, mark("vol1", recordset.StateSuspended)),
				writeSet(5, 50_000, mark("vol1", recordset.StateResync), write("vol1", 8192)))
			conn.Close()
			return refusedHello(t, r, freshHello(r, generation(1)))
		}},
		{"a copy the primary does not name", false, "does not name volume", func(t *testing.T) []byte {
			r := newRig(t, two)
			consistentCopies(t, r)
			h := r.hello()
			h.Instance = 9
			h.Volumes = []transport.VolumeInfo{{Name: "vol1", Size: 1 << 20}}
			return refusedHello(t, r, h)
		}},
		{"fenced", false, "fenced by duplex recover", func(t *testing.T) []byte {
			r := newRig(t, two)
			linked(t, r).Close()
			if _, err := r.sec.Fence(); err != nil {
				t.Fatal(err)
			}
			return refusedHello(t, r, r.hello())
		}},
		{"fenced, to a consent", false, "does not lift a fence", func(t *testing.T) []byte {
			r := newRig(t, two)
			consistentCopies(t, r)
			if _, err := r.sec.Fence(); err != nil {
				t.Fatal(err)
			}
			return refusedHello(t, r, freshHello(r, generation(1)))
		}},
		{"stopped on a disk fault, until an operator restarts it", false, "then restart the secondary", func(t *testing.T) []byte {
			r := newRig(t, two)
			stopped(r)
			return refusedHello(t, r, r.hello())
		}},
		{"stopped on a disk fault, opened again by the site", true, "retries by itself", func(t *testing.T) []byte {
			r := &rig{t: t, dir: t.TempDir(), sizes: two, subs: []string{"ss1"}, edit: func(c *Config) { c.Retries = true }}
			r.open()
			t.Cleanup(r.close)
			stopped(r)
			return refusedHello(t, r, r.hello())
		}},
		{"stopped on a disk fault while linked, until an operator restarts it", false, "then restart the secondary", func(t *testing.T) []byte {
			r := newRig(t, two)
			conn := linked(t, r)
			r.sec.stopApplying(errors.New("apply group 3: input/output error"))
			return refusedOn(t, conn)
		}},
		{"stopped on a disk fault while linked, opened again by the site", true, "retries by itself", func(t *testing.T) []byte {
			r := &rig{t: t, dir: t.TempDir(), sizes: two, subs: []string{"ss1"}, edit: func(c *Config) { c.Retries = true }}
			r.open()
			t.Cleanup(r.close)
			conn := linked(t, r)
			r.sec.stopApplying(errors.New("apply group 3: input/output error"))
			return refusedOn(t, conn)
		}},
		{"the generation it follows not recorded", true, "cannot record the data generation it follows", func(t *testing.T) []byte {
			r := faultRig(t, two)
			r.in.Inject(disk.Fault{Op: disk.OpRename, Under: r.site, Err: disk.EIO})
			body := refusedHello(t, r.rig, r.hello())
			r.in.Clear()
			linked(t, r.rig)
			return body
		}},
		{"a consent's forgotten copies not recorded", true, "could not record them forgotten", func(t *testing.T) []byte {
			r := faultRig(t, two)
			consistentCopies(t, r.rig)
			r.in.Inject(disk.Fault{Op: disk.OpRename, Under: r.site, Err: disk.EIO})
			body := refusedHello(t, r.rig, freshHello(r.rig, generation(1)))
			r.in.Clear()
			if _, typ, _ := r.dial(freshHello(r.rig, generation(1))); typ != transport.TypeWelcome {
				t.Errorf("the consent again, the disk back: frame type %d, want a welcome", typ)
			}
			return body
		}},
		{"a consent's generation not recorded", true, "cannot record the data generation it follows", func(t *testing.T) []byte {
			r := faultRig(t, two)
			consistentCopies(t, r.rig)
			// The state file's rename goes through, the identity's fails.
			r.in.Inject(disk.Fault{Op: disk.OpRename, Under: r.site, Skip: 1, Err: disk.EIO, Once: true})
			body := refusedHello(t, r.rig, freshHello(r.rig, generation(1)))
			if _, typ, _ := r.dial(freshHello(r.rig, generation(1))); typ != transport.TypeWelcome {
				t.Errorf("the consent again, the disk back: frame type %d, want a welcome", typ)
			}
			return body
		}},
		{"applying the groups that waited, at another primary's link", true, "it takes a primary again once they are applied", func(t *testing.T) []byte {
			r, open := applyingWaitingGroups(t)
			defer open()
			h := r.hello()
			h.Instance = 11
			return refusedHello(t, r, h)
		}},
		{"fenced while applying the groups that waited", false, "is fencing the secondary", func(t *testing.T) []byte {
			r, open := applyingWaitingGroups(t)
			defer open()
			// The fence begins once this primary's Hello passed the
			// first look at the fence, before the hold that links it.
			r.sec.beforeLink = func() {
				r.sec.beforeLink = nil
				go r.sec.Fence()
				waitGate(t, "the fence under way", func() bool {
					r.sec.mu.Lock()
					defer r.sec.mu.Unlock()
					return r.sec.fencing > 0
				})
			}
			h := r.hello()
			h.Instance = 11
			return refusedHello(t, r, h)
		}},
		{"a record set it cannot apply", false, "cannot apply", func(t *testing.T) []byte {
			r := newRig(t, map[string]int64{"vol1": 1 << 20})
			conn := linked(t, r)
			sendRecordSet(t, conn, writeSet(1, 10_000, write("vol1", 4<<20)))
			return refusedOn(t, conn)
		}},
		// The primary suspends its pairs on it by itself, which drops
		// the record set, and its next connection is taken.
		{"a record set stamped at or before its consistency time", true, "stamped at or before the consistency time", func(t *testing.T) []byte {
			r := newRig(t, map[string]int64{"vol1": 1 << 20})
			conn := linked(t, r)
			sendAndWait(t, conn, writeSet(1, 10_000, write("vol1", 0)), writeSet(2, 20_000, write("vol1", 4096)))
			sendRecordSet(t, conn, writeSet(3, 5_000, write("vol1", 8192)))
			body := refusedOn(t, conn)
			// The primary, its pairs suspended, dials again and is taken.
			linked(t, r).Close()
			return body
		}},
		{"a frame larger than it accepts", false, "larger than this secondary accepts", func(t *testing.T) []byte {
			r := &rig{t: t, dir: t.TempDir(), sizes: map[string]int64{"vol1": 1 << 20}, subs: []string{"ss1"}, edit: func(c *Config) { c.MaxFrame = 64 << 10 }}
			r.open()
			t.Cleanup(r.close)
			conn := linked(t, r)
			big := write("vol1", 0)
			big.Length = 128 << 10
			sendRecordSet(t, conn, writeSet(1, 10_000, big))
			return refusedOn(t, conn)
		}},
		// Its next dial applies them again, from the group applied, as
		// a record not written is written again at the next dial.
		{"the groups that waited failing to apply at the link", true, "applying the journaled groups that waited", func(t *testing.T) []byte {
			r := withoutVol2(t, killedWithGroupsUnapplied(t))
			r.sec.targets["vol1"] = failingTarget{r.sec.targets["vol1"]}
			h := r.hello()
			h.Instance = 9
			return refusedHello(t, r, h)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := tc.refusal(t)
			// The frame's own kind: the primary's reading names a
			// secondary's from before kinds by its words.
			if sent, err := transport.DecodeRefuse(body); err != nil || sent.Kind != named[tc.name] {
				t.Errorf("the refusal names kind %d (%v), want %d: %q", sent.Kind, err, named[tc.name], sent.Reason)
			}
			got := mover.Refused(body)
			if !errors.Is(got, mover.ErrRefused) {
				t.Fatalf("the primary reads %v, not a refusal", got)
			}
			if got.Passing != tc.passing {
				t.Errorf("the primary reads passing %v, want %v: %q", got.Passing, tc.passing, got.Reason)
			}
			if !strings.Contains(got.Reason, tc.says) {
				t.Errorf("the refusal %q does not say %q", got.Reason, tc.says)
			}
		})
	}
}

// applyingWaitingGroups is a secondary whose waiting groups are being
// applied at a primary's link, held at group 4's write until open.
func applyingWaitingGroups(t *testing.T) (r *rig, open func()) {
	t.Helper()
	r = withoutVol2(t, killedWithGroupsUnapplied(t))
	gate, at := make(chan struct{}), make(chan struct{})
	var once, opened sync.Once
	open = func() { opened.Do(func() { close(gate) }) }
	r.sec.targets["vol1"] = offsetGatedTarget{Target: r.sec.targets["vol1"], off: 12288, gate: gate, at: at, once: &once}
	without := r.hello()
	without.Instance = 9
	answered := make(chan struct{})
	go func() {
		defer close(answered)
		r.dial(without)
	}()
	select {
	case <-at:
	case <-time.After(10 * time.Second):
		open()
		t.Fatal("the waiting groups' apply never reached group 4's write")
	}
	// After the dial's own cleanup, which closes its connection, so run
	// before it and before the rig closes: the dial is answered once the
	// apply ends.
	t.Cleanup(func() {
		open()
		<-answered
	})
	return r, open
}

// The secondary's Welcome says that it names its refusals' kinds, so the
// primary reads an unnamed refusal as unnamed whatever its words.
func TestTheWelcomeSaysRefusalsAreNamed(t *testing.T) {
	r := newRig(t, map[string]int64{"vol1": 1 << 20})
	conn, typ, body := r.dial(r.hello())
	defer conn.Close()
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	p, err := transport.DecodePosition(body)
	if err != nil || p.Features&transport.FeatureNamesRefusals == 0 {
		t.Fatalf("the Welcome's features %b (%v): FeatureNamesRefusals not announced", p.Features, err)
	}
}
