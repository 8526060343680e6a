package secondary

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"duplex/consistency"
	"duplex/journal"
	"duplex/recordset"
	"duplex/transport"
	"duplex/volume"
)

// rig is one secondary over an in-memory link, with a hand-driven primary.
type rig struct {
	t      *testing.T
	dir    string
	sizes  map[string]int64
	subs   []string
	vols   map[string]*volume.Volume
	sec    *Secondary
	net    *transport.MemNetwork
	cancel context.CancelFunc
	done   chan error
	edit   func(*Config) // if set, changes the config of every open
}

const rigSession = "rig"

func newRig(t *testing.T, sizes map[string]int64, subsystems ...string) *rig {
	t.Helper()
	if len(subsystems) == 0 {
		subsystems = []string{"ss1"}
	}
	r := &rig{t: t, dir: t.TempDir(), sizes: sizes, subs: subsystems}
	r.open()
	t.Cleanup(r.close)
	return r
}

func (r *rig) config() Config {
	c := Config{Session: rigSession, Subsystems: r.subs, Volumes: r.vols,
		JournalDir: filepath.Join(r.dir, "journal"), StatePath: filepath.Join(r.dir, "state.json"),
		Limits: recordset.DefaultLimits, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if r.edit != nil {
		r.edit(&c)
	}
	return c
}

func (r *rig) openVolumes() {
	r.t.Helper()
	r.vols = map[string]*volume.Volume{}
	for name, size := range r.sizes {
		v, err := volume.Open(filepath.Join(r.dir, name+".img"), size)
		if err != nil {
			r.t.Fatal(err)
		}
		r.vols[name] = v
	}
}

// open opens the secondary (and its volumes) and runs it.
func (r *rig) open() {
	r.t.Helper()
	r.openVolumes()
	sec, err := Open(r.config())
	if err != nil {
		r.t.Fatalf("Open: %v", err)
	}
	r.sec = sec
	r.run()
}

func (r *rig) run() {
	r.net = transport.NewMemNetwork(1, transport.Faults{})
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan error, 1)
	sec, ln := r.sec, r.net
	go func() { r.done <- sec.Run(ctx, ln) }()
}

// stop stops the secondary and returns what Run returned.
func (r *rig) stop() error {
	if r.sec == nil {
		return nil
	}
	r.cancel()
	var err error
	select {
	case err = <-r.done:
	case <-time.After(30 * time.Second):
		r.t.Fatal("secondary did not stop within 30s")
	}
	r.net.Close()
	if cerr := r.sec.Close(); err == nil {
		err = cerr
	}
	for _, v := range r.vols {
		v.Close()
	}
	r.sec = nil
	return err
}

func (r *rig) close() { r.stop() }

func (r *rig) hello() transport.Hello {
	h := transport.Hello{Session: rigSession, Subsystems: r.subs, Instance: 7, Generation: 1}
	for name, size := range r.sizes {
		h.Volumes = append(h.Volumes, transport.VolumeInfo{Name: name, Size: size})
	}
	return h
}

// dial connects as a primary, sends h and returns the connection with the
// secondary's answer. Like the mover, it tells a secondary that asks what
// it reads, and returns the Welcome that answers.
func (r *rig) dial(h transport.Hello) (transport.Conn, byte, []byte) {
	r.t.Helper()
	return r.dialReading(h, true)
}

// dialReading is dial as a primary that, if answer is false, never answers
// a Welcome that asks what it reads: one from before transport.TypeFeatures.
func (r *rig) dialReading(h transport.Hello, answer bool) (transport.Conn, byte, []byte) {
	r.t.Helper()
	if !answer {
		return r.dialReads(h, 0, false)
	}
	return r.dialReads(h, transport.PrimaryReadsInconsistent, true)
}

// dialReads is dial as a primary that answers a Welcome that asks what it
// reads, if answer, with reads.
func (r *rig) dialReads(h transport.Hello, reads uint64, answer bool) (transport.Conn, byte, []byte) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := r.net.Dial(ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { conn.Close() })
	conn = settledConn{conn, r.sec}
	if err := conn.Send(transport.EncodeHello(h)); err != nil {
		r.t.Fatal(err)
	}
	typ, body, err := recvFrame(conn, 10*time.Second)
	if err != nil {
		r.t.Fatalf("no answer to the hello: %v", err)
	}
	if !answer || typ != transport.TypeWelcome {
		return conn, typ, body
	}
	if w, err := transport.DecodePosition(body); err != nil || w.Features&transport.FeatureAsksPrimary == 0 {
		return conn, typ, body
	}
	if err := conn.Send(transport.EncodeFeatures(reads)); err != nil {
		r.t.Fatal(err)
	}
	if typ, body, err = recvFrame(conn, 10*time.Second); err != nil {
		r.t.Fatalf("no answer to the features: %v", err)
	}
	if w, err := transport.DecodePosition(body); typ == transport.TypeWelcome && (err != nil || w.Features&transport.FeatureAsksPrimary != 0) {
		// The primary tells the answer from a repeat of the first
		// Welcome by this alone.
		r.t.Fatalf("the Welcome that answers the features asks again (%+v, %v)", w, err)
	}
	return conn, typ, body
}

// settledConn is the primary's end of a link that, on each acknowledgement,
// waits until the secondary has applied every group it journaled to apply
// so far. The acknowledgement goes out once a group is journaled, before it
// is applied; the tests check what the volumes hold right after it.
type settledConn struct {
	transport.Conn
	sec *Secondary
}

func (c settledConn) Recv() ([]byte, error) {
	f, err := c.Conn.Recv()
	if err == nil && len(f) > 0 && (f[0] == transport.TypeAck || f[0] == transport.TypeIndexedAck) {
		// The ack is queued under mu, in the same hold that hands the
		// group to the applier: once mu is ours, the group is handed over.
		c.sec.mu.Lock()
		c.sec.waitApplied()
		c.sec.mu.Unlock()
	}
	return f, err
}

// recvFrame waits at most d for the next frame.
func recvFrame(conn transport.Conn, d time.Duration) (byte, []byte, error) {
	type res struct {
		f   []byte
		err error
	}
	ch := make(chan res, 1)
	go func() {
		f, err := conn.Recv()
		ch <- res{f, err}
	}()
	select {
	case x := <-ch:
		if x.err != nil {
			return 0, nil, x.err
		}
		return transport.Open(x.f)
	case <-time.After(d):
		conn.Close()
		return 0, nil, fmt.Errorf("no frame within %s", d)
	}
}

func sendRecordSet(t *testing.T, conn transport.Conn, rs *recordset.RecordSet) {
	t.Helper()
	f, err := recordset.Encode([]byte{transport.TypeRecordSet}, rs)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.Send(transport.Seal(f)); err != nil {
		t.Fatal(err)
	}
}

// answers reads the secondary's frames until it refuses, the connection
// ends, or it acknowledges a journaled group after group after. It returns
// the refusal reason ("" if none) and the highest group acknowledged.
func answers(t *testing.T, conn transport.Conn, after uint64) (refusal string, acked uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		typ, body, err := recvFrame(conn, time.Until(deadline))
		if err != nil {
			return "", acked
		}
		switch typ {
		case transport.TypeRefuse:
			reason, err := refusalReason(body)
			if err != nil {
				t.Fatal(err)
			}
			return reason, acked
		case transport.TypeAck:
			p, err := transport.DecodePosition(body)
			if err != nil {
				t.Fatal(err)
			}
			acked = max(acked, p.Group)
			if acked > after {
				return "", acked
			}
		}
	}
	return "", acked
}

func writeSet(seq uint64, ts int64, ups ...recordset.Update) *recordset.RecordSet {
	return subsystemSet("ss1", seq, ts, ts+1000, ups...)
}

func subsystemSet(sub string, seq uint64, ts, horizon int64, ups ...recordset.Update) *recordset.RecordSet {
	for i := range ups {
		if ups[i].Kind == recordset.KindWrite && ups[i].Data == nil {
			ups[i].Data = make([]byte, ups[i].Length)
		}
		if ups[i].Timestamp == 0 {
			ups[i].Timestamp = ts + int64(i)
		}
		ups[i].Seq = seq*100 + uint64(i)
	}
	return &recordset.RecordSet{Session: rigSession, Subsystem: sub, Seq: seq, Group: seq, ReadTime: ts, Horizon: horizon, Updates: ups}
}

// TestUpdatesTheSecondaryCannotApplyAreRefusedNotJournaled: a record set with
// an update for a volume the secondary does not have, or past a volume's end,
// is refused before it is journaled or acknowledged, with a reason that names
// the update; the secondary keeps running and restarts cleanly.
func TestUpdatesTheSecondaryCannotApplyAreRefusedNotJournaled(t *testing.T) {
	const size = 1 << 20
	for _, tc := range []struct {
		name string
		up   recordset.Update
		want []string
	}{
		{"unknown volume", recordset.Update{Volume: "zz", Kind: recordset.KindWrite, Offset: 0, Length: 4096}, []string{`"zz"`}},
		{"write past the end", recordset.Update{Volume: "a", Kind: recordset.KindWrite, Offset: size - 512, Length: 4096}, []string{`"a"`, "1048064", "1048576"}},
		{"trim past the end", recordset.Update{Volume: "a", Kind: recordset.KindTrim, Offset: size, Length: 1 << 20}, []string{`"a"`, "1048576"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, map[string]int64{"a": size})
			conn, typ, _ := r.dial(r.hello())
			if typ != transport.TypeWelcome {
				t.Fatalf("answer to a matching hello: frame type %d, want a welcome", typ)
			}
			// A good record set first, so the bad one is not the first.
			sendRecordSet(t, conn, writeSet(1, 1000, recordset.Update{Volume: "a", Kind: recordset.KindWrite, Offset: 0, Length: 4096}))
			if reason, acked := answers(t, conn, 0); acked != 1 {
				t.Fatalf("a good record set: acknowledged through group %d, want 1 (refusal %q)", acked, reason)
			}
			sendRecordSet(t, conn, writeSet(2, 5000, tc.up))
			reason, acked := answers(t, conn, 1)
			if acked > 1 {
				t.Fatalf("the secondary acknowledged group %d holding an update it cannot apply (refusal %q)", acked, reason)
			}
			if g := r.sec.journal.LastIndex(); g != 1 {
				t.Fatalf("journal holds group %d, want 1: nothing that holds the bad update may be journaled (refusal %q)", g, reason)
			}
			if reason == "" {
				t.Fatal("the secondary neither refused the record set nor acknowledged it")
			}
			for _, w := range tc.want {
				if !strings.Contains(reason, w) {
					t.Errorf("refusal %q does not name %s", reason, w)
				}
			}
			t.Logf("refused: %s", reason)
			if g := r.sec.journal.LastIndex(); g != 1 {
				t.Errorf("journal holds group %d: want 1: nothing that holds the bad update may be journaled", g)
			}
			if err := r.stop(); err != nil {
				t.Errorf("the secondary stopped with %v: a refused record set must not stop it", err)
			}
			r.open() // replay must succeed
		})
	}
}

// TestHelloWithOtherVolumesIsRefused: a primary whose volumes the secondary
// does not have, or of other sizes, is refused at connect with both sides'
// values in the reason.
func TestHelloWithOtherVolumesIsRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		vols []transport.VolumeInfo
		want []string
	}{
		{"other size", []transport.VolumeInfo{{Name: "a", Size: 2 << 20}, {Name: "b", Size: 1 << 20}}, []string{`"a"`, "2097152", "1048576"}},
		{"volume missing here", []transport.VolumeInfo{{Name: "a", Size: 1 << 20}, {Name: "b", Size: 1 << 20}, {Name: "c", Size: 1 << 20}}, []string{`"c"`}},
		{"no volumes", nil, []string{"volume"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, map[string]int64{"a": 1 << 20, "b": 1 << 20})
			h := r.hello()
			h.Volumes = tc.vols
			_, typ, body := r.dial(h)
			if typ != transport.TypeRefuse {
				t.Fatalf("answer to a hello with volumes %v: frame type %d, want a refusal", tc.vols, typ)
			}
			reason, _ := refusalReason(body)
			for _, w := range tc.want {
				if !strings.Contains(reason, w) {
					t.Errorf("refusal %q does not name %s", reason, w)
				}
			}
			t.Logf("refused: %s", reason)
		})
	}
}

// TestReplayOfAPoisonedJournalSaysWhichGroupAndUpdate: a journal written
// before updates were checked on arrival may hold one that cannot be applied
// (past its volume's end); replaying it fails with an error naming the group,
// the update, the volume and its size, and the journal. (An update of a
// volume the config does not have waits for a primary instead: see
// TestAVolumeOutOfTheConfigAfterAKillWithItsGroupsUnapplied.)
func TestReplayOfAPoisonedJournalSaysWhichGroupAndUpdate(t *testing.T) {
	for _, tc := range []struct {
		name string
		up   recordset.Update
		want []string
	}{
		{"past the end", recordset.Update{Volume: "a", Kind: recordset.KindWrite, Offset: 1<<20 - 512, Length: 4096, Timestamp: 1500, Seq: 3},
			[]string{"group 1", "update 2 of 2", `"a"`, "1048064", "4096", "1048576"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, map[string]int64{"a": 1 << 20})
			if err := r.stop(); err != nil {
				t.Fatal(err)
			}
			j, err := journal.Open(r.config().JournalDir, journal.Options{MaxRecord: MaxGroupBytes})
			if err != nil {
				t.Fatal(err)
			}
			tc.up.Data = make([]byte, tc.up.Length)
			good := recordset.Update{Volume: "a", Kind: recordset.KindWrite, Offset: 0, Length: 512, Timestamp: 1400, Seq: 2, Data: make([]byte, 512)}
			g := &consistency.Group{Number: 1, Time: 2000, Through: map[string]uint64{"ss1": 1}, Updates: []recordset.Update{good, tc.up}}
			data, err := consistency.EncodeGroup(nil, rigSession, g)
			if err != nil {
				t.Fatal(err)
			}
			if err := j.Append(1, data); err != nil {
				t.Fatal(err)
			}
			if err := j.Sync(); err != nil {
				t.Fatal(err)
			}
			j.Close()
			r.openVolumes()
			defer func() {
				for _, v := range r.vols {
					v.Close()
				}
			}()
			sec, err := Open(r.config())
			if err == nil {
				sec.Close()
				t.Fatal("Open replayed a group with an update it cannot apply")
			}
			for _, w := range append(tc.want, r.config().JournalDir) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("replay error %q does not name %s", err, w)
				}
			}
			t.Logf("replay: %v", err)
		})
	}
}

// TestUpdateStampedBeforeTheConsistencyTimeIsRefused: an update of a new
// primary process stamped at or before the consistency time the secondary
// already reached (its clock is behind) is refused with a reason that says
// so, never dropped silently.
func TestUpdateStampedBeforeTheConsistencyTimeIsRefused(t *testing.T) {
	r := newRig(t, map[string]int64{"a": 1 << 20})
	conn, typ, _ := r.dial(r.hello())
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	sendRecordSet(t, conn, writeSet(1, 10_000, recordset.Update{Volume: "a", Kind: recordset.KindWrite, Offset: 0, Length: 4096}))
	if reason, acked := answers(t, conn, 0); acked != 1 {
		t.Fatalf("acknowledged through group %d, want 1 (refusal %q)", acked, reason)
	}
	conn.Close()

	h := r.hello()
	h.Instance++ // a new primary process
	conn, typ, _ = r.dial(h)
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	// Stamped an hour before what the secondary holds, horizon after it.
	stale := writeSet(2, 5_000, recordset.Update{Volume: "a", Kind: recordset.KindWrite, Offset: 4096, Length: 4096})
	stale.Horizon = 50_000
	sendRecordSet(t, conn, stale)
	reason, acked := answers(t, conn, 1)
	if reason == "" {
		t.Fatalf("an update stamped before the consistency time was not refused (acknowledged through group %d, consistency time %d)",
			acked, r.sec.Stats().Time)
	}
	for _, w := range []string{"5000", "11000", "clock"} {
		if !strings.Contains(reason, w) {
			t.Errorf("refusal %q does not name %s", reason, w)
		}
	}
	t.Logf("refused: %s", reason)
}

// TestPartlyJournaledRecordSetResentAfterSecondaryRestart: the primary
// process that sent a record set of which a group holds only the first part
// resends it whole after the secondary restarts; the part already journaled
// is skipped, not refused, and the rest arrives.
func TestPartlyJournaledRecordSetResentAfterSecondaryRestart(t *testing.T) {
	r := newRig(t, map[string]int64{"a": 1 << 20}, "ss1", "ss2")
	conn, typ, _ := r.dial(r.hello())
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	first := recordset.Update{Volume: "a", Kind: recordset.KindWrite, Offset: 0, Length: 4096, Timestamp: 1_000}
	second := recordset.Update{Volume: "a", Kind: recordset.KindWrite, Offset: 4096, Length: 4096, Timestamp: 3_000}
	both := subsystemSet("ss1", 1, 1_000, 4_000, first, second)
	sendRecordSet(t, conn, both)
	sendRecordSet(t, conn, subsystemSet("ss2", 1, 0, 2_000)) // the group ends at 2000: between the two
	if reason, acked := answers(t, conn, 0); acked != 1 {
		t.Fatalf("acknowledged through group %d, want 1 (refusal %q)", acked, reason)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	r.open()
	conn, typ, _ = r.dial(r.hello()) // the same primary process
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	sendRecordSet(t, conn, subsystemSet("ss1", 1, 1_000, 4_000, first, second))
	sendRecordSet(t, conn, subsystemSet("ss2", 2, 0, 5_000))
	reason, acked := answers(t, conn, 1)
	if reason != "" || acked != 2 {
		t.Fatalf("the resent record set: refusal %q, acknowledged through group %d, want group 2", reason, acked)
	}
}

// TestFenceSurvivesRestart: after recover fenced the secondary, a restart
// does not let the old primary in again; the refusal names the generation
// recover started and the primary's.
func TestFenceSurvivesRestart(t *testing.T) {
	r := newRig(t, map[string]int64{"a": 1 << 20})
	conn, typ, _ := r.dial(r.hello())
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	sendRecordSet(t, conn, writeSet(1, 1000, recordset.Update{Volume: "a", Kind: recordset.KindWrite, Offset: 0, Length: 4096}))
	if reason, acked := answers(t, conn, 0); acked != 1 {
		t.Fatalf("acknowledged through group %d, want 1 (refusal %q)", acked, reason)
	}
	if _, err := r.sec.Fence(); err != nil {
		t.Fatal(err)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	r.open()
	h := r.hello()
	h.Instance++ // the old primary, restarted
	_, typ, body := r.dial(h)
	if typ != transport.TypeRefuse {
		t.Fatalf("after a fence and a restart the old primary got frame type %d, want a refusal", typ)
	}
	reason, _ := refusalReason(body)
	for _, w := range []string{"recover", h.Generation.String(), "re-create"} {
		if !strings.Contains(reason, w) {
			t.Errorf("refusal %q does not name %s", reason, w)
		}
	}
	t.Logf("refused: %s", reason)
}

// TestDivergedGenerationsRefused: a fresh secondary adopts the generation
// of the first primary, keeps it across a restart, and refuses a primary of
// another history with both generations and the ways on in the reason
// (this site promoted, or the consent to overwrite its copies).
func TestDivergedGenerationsRefused(t *testing.T) {
	r := newRig(t, map[string]int64{"a": 1 << 20})
	h := r.hello()
	h.Generation = 0x1111
	conn, typ, _ := r.dial(h)
	if typ != transport.TypeWelcome {
		t.Fatalf("a fresh secondary answered frame type %d, want a welcome: it adopts the primary's generation", typ)
	}
	conn.Close()
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	r.open()
	h.Instance++
	if _, typ, _ := r.dial(h); typ != transport.TypeWelcome {
		t.Fatalf("the same generation after a restart: frame type %d, want a welcome", typ)
	}
	other := h
	other.Instance++
	other.Generation = 0x2222
	_, typ, body := r.dial(other)
	if typ != transport.TypeRefuse {
		t.Fatalf("a primary of another generation got frame type %d, want a refusal", typ)
	}
	reason, _ := refusalReason(body)
	for _, w := range []string{"0000000000001111", "0000000000002222", "duplex promote", "--overwrite-secondary 0000000000001111"} {
		if !strings.Contains(reason, w) {
			t.Errorf("refusal %q does not name %s", reason, w)
		}
	}
	t.Logf("refused: %s", reason)
}
