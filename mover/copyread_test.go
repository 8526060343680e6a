package mover

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"sync"
	"testing"
	"time"

	"duplex/recordset"
	"duplex/sidefile"
	"duplex/transport"
)

// TestAcknowledgementsDoNotWaitForACopysVolumeRead: a cut waits for the
// copies among the updates it drains to read their data from the primary
// volume (a resync, an initial copy). An acknowledgement that comes
// meanwhile must still release its record sets' sidefile room at once: a
// slow or hung volume read must not hold the acknowledgements of every
// subsystem back, and the writers waiting for room with them. Once the read
// is done, the copy ships with the data it read, after the record sets cut
// before it and before those cut after.
func TestAcknowledgementsDoNotWaitForACopysVolumeRead(t *testing.T) {
	// Room for two 4 KiB updates: two writes fill ss2's sidefile.
	p := startPrimary(t, options{subsystems: []string{"ss1", "ss2"}, sidefile: 2 * sidefile.Cost(4096)})
	l, _ := p.accept(t)
	l.welcome(transport.Position{Through: map[string]uint64{"ss1": 0, "ss2": 0}})

	old := bytes.Repeat([]byte{0x11}, 4096)
	p.write(t, "ss1", old, 0) // not a hole: the copy reads it
	p.write(t, "ss2", bytes.Repeat([]byte{0x21}, 4096), 0)
	p.write(t, "ss2", bytes.Repeat([]byte{0x22}, 4096), 4096)
	p.mover.Cut()
	first := l.recordSets(2)
	if n := len(first["ss2"].Updates); n != 2 {
		t.Fatalf("ss2's first record set holds %d updates, want the 2 writes", n)
	}

	// The copy's update is captured; its read of the volume hangs.
	release, copied, cut := p.cutDuringCopy(t, "ss1", 0, 4096)

	// A writer waits for room in ss2's full sidefile.
	third := bytes.Repeat([]byte{0x23}, 4096)
	wrote := make(chan error, 1)
	go func() { wrote <- p.subs["ss2"].Write(context.Background(), volName("ss2"), third, 8192) }()
	waitFor(t, "the writer to wait for sidefile room", func() bool { return p.subs["ss2"].Sidefile().Stats().Waiting == 1 })

	l.ack(transport.Position{Through: map[string]uint64{"ss1": first["ss1"].Seq, "ss2": first["ss2"].Seq}})
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatal(err)
		}
	case <-cut:
		t.Fatal("the cut ended while the copy's read still hangs")
	case <-time.After(deadline):
		t.Fatalf("the acknowledgement of ss2's record set %d has not released its sidefile room while a copy of ss1 reads the volume "+
			"(ss2 sidefile %+v): acknowledgements wait for volume reads, and writers for them", first["ss2"].Seq, p.subs["ss2"].Sidefile().Stats())
	}
	if got, want := p.used("ss2"), sidefile.Cost(len(third)); got != want {
		t.Fatalf("ss2's sidefile holds %d bytes once the acknowledgement is taken, want the third write's %d", got, want)
	}
	select {
	case <-cut:
		t.Fatal("the cut ended while the copy's read still hangs")
	default:
	}

	release()
	if err := <-copied; err != nil {
		t.Fatal(err)
	}
	<-cut
	second := l.recordSets(2)
	us := second["ss1"].Updates
	if len(us) != 1 || us[0].Kind != recordset.KindCopy || !bytes.Equal(us[0].Data, old) {
		t.Fatalf("ss1's second record set holds %+v, want the copy of the 4 KiB written", us)
	}
	if second["ss1"].Seq != first["ss1"].Seq+1 || second["ss1"].Group != first["ss1"].Group+1 {
		t.Fatalf("ss1's record sets %d (group %d) then %d (group %d)", first["ss1"].Seq, first["ss1"].Group, second["ss1"].Seq, second["ss1"].Group)
	}
	if us[0].Timestamp > second["ss1"].Horizon {
		t.Fatalf("copy stamped %d after its record set's horizon %d", us[0].Timestamp, second["ss1"].Horizon)
	}
	// The third write was captured after the cut drained ss2, or before:
	// it is in this record set or the next, never lost.
	if us := second["ss2"].Updates; len(us) > 0 && (len(us) != 1 || !bytes.Equal(us[0].Data, third)) {
		t.Fatalf("ss2's second record set holds %+v, want at most the third write", us)
	} else if len(us) == 0 {
		p.mover.Cut()
		if us := l.recordSets(2)["ss2"].Updates; len(us) != 1 || !bytes.Equal(us[0].Data, third) {
			t.Fatalf("ss2's third record set holds %+v, want the third write", us)
		}
	}
}

// TestQuiesceWaitsForACutWaitingOnACopysRead: the updates a cut has
// drained are shipped or not yet, whether or not a copy among them still
// reads the volume: a stop or a switchover that quiesces meanwhile must wait
// for them to be acknowledged like any other.
func TestQuiesceWaitsForACutWaitingOnACopysRead(t *testing.T) {
	p := startPrimary(t, options{subsystems: []string{"ss1"}})
	l, _ := p.accept(t)
	l.welcome(transport.Position{Through: map[string]uint64{"ss1": 0}})
	p.write(t, "ss1", bytes.Repeat([]byte{0x11}, 4096), 0)
	release, copied, cut := p.cutDuringCopy(t, "ss1", 0, 4096)

	quiesced := quiesceThenRelease(t, p, release, copied, cut)
	rs := l.recordSet()
	if n := len(rs.Updates); n != 2 {
		t.Fatalf("record set %d holds %d updates, want the write and the copy", rs.Seq, n)
	}
	select {
	case err := <-quiesced:
		t.Fatalf("Quiesce returned (%v) before the secondary acknowledged the record set of the write and the copy", err)
	default:
	}
	l.ack(transport.Position{Through: map[string]uint64{"ss1": rs.Seq}})
	if err := <-quiesced; err != nil {
		t.Fatalf("Quiesce once everything is acknowledged: %v", err)
	}
}

// cutDuringCopy starts a copy of [off, off+length) of ss's volume whose
// read of the volume hangs until release, and a Cut, and returns once the
// cut has drained the copy's update and waits for the read. copied gets
// the copy's result, cut is closed when the Cut returns.
func (p *primary) cutDuringCopy(t *testing.T, ss string, off, length int64) (release func(), copied <-chan error, cut <-chan struct{}) {
	t.Helper()
	release, copied = p.hangCopy(t, ss, off, length)
	done := make(chan struct{})
	go func() {
		p.mover.Cut()
		close(done)
	}()
	waitFor(t, "the cut to drain the copy", func() bool { return p.subs[ss].Sidefile().Stats().Captured == 0 })
	return release, copied, done
}

// hangCopy starts a copy of [off, off+length) of ss's volume whose read of
// the volume hangs until release, and returns once its update is captured
// and its read begun; copied gets the copy's result.
func (p *primary) hangCopy(t *testing.T, ss string, off, length int64) (release func(), copied <-chan error) {
	t.Helper()
	reading, hung := make(chan struct{}), make(chan struct{})
	var once, released sync.Once
	p.subs[ss].SetBeforeCopyRead(func(string, int64, int64) {
		once.Do(func() { close(reading) })
		<-hung
	})
	release = func() { released.Do(func() { close(hung) }) }
	t.Cleanup(release)
	result := make(chan error, 1)
	go func() { result <- p.subs[ss].Copy(context.Background(), volName(ss), off, length) }()
	<-reading
	return release, result
}

// TestQuiesceHonoursItsContextWhileACutWaitsOnACopysRead: a Quiesce that
// finds updates captured while a cut waits for a copy's volume read (the
// cut drained ss1 and hangs there, ss2 still holds a write) must still end
// with its context: a pair suspend --drain or a switchover, whose writes
// are held meanwhile, may not wait behind a hung volume read beyond its
// timeout. Once the read is done, a Quiesce under way ships the rest and
// returns as ever.
func TestQuiesceHonoursItsContextWhileACutWaitsOnACopysRead(t *testing.T) {
	p := startPrimary(t, options{subsystems: []string{"ss1", "ss2"}})
	l, _ := p.accept(t)
	l.welcome(transport.Position{Through: map[string]uint64{"ss1": 0, "ss2": 0}})
	p.write(t, "ss1", bytes.Repeat([]byte{0x11}, 4096), 0)
	release, copied, cut := p.cutDuringCopy(t, "ss1", 0, 4096)
	p.write(t, "ss2", bytes.Repeat([]byte{0x21}, 4096), 0)

	quiesceEndsWithItsContext(t, p, "a cut waits on a copy's read")

	quiesced := quiesceThenRelease(t, p, release, copied, cut)
	through := map[string]uint64{}
	var updates int
	for updates < 3 {
		rs := l.recordSet()
		through[rs.Subsystem] = max(through[rs.Subsystem], rs.Seq)
		updates += len(rs.Updates)
		l.ack(transport.Position{Through: maps.Clone(through)})
	}
	select {
	case err := <-quiesced:
		if err != nil {
			t.Fatalf("Quiesce once the read is done and everything is acknowledged: %v", err)
		}
	case <-time.After(deadline):
		t.Fatal("Quiesce did not return once everything was acknowledged")
	}
}

// quiesceEndsWithItsContext fails the test unless a Quiesce whose context
// ends after 50 ms returns DeadlineExceeded, while what holds up the cut.
func quiesceEndsWithItsContext(t *testing.T, p *primary, while string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	timedOut := make(chan error, 1)
	go func() { timedOut <- p.mover.Quiesce(ctx) }()
	select {
	case err := <-timedOut:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Quiesce while %s: %v, want DeadlineExceeded", while, err)
		}
	case <-time.After(deadline):
		t.Fatalf("Quiesce did not end with its context while %s: it waits for the cut, whatever its deadline", while)
	}
}

// quiesceThenRelease starts a Quiesce bounded by the test deadline, then
// lets the copy's held read go on and waits for it and its cut to end. It
// returns the channel of Quiesce's result.
func quiesceThenRelease(t *testing.T, p *primary, release func(), copied <-chan error, cut <-chan struct{}) <-chan error {
	t.Helper()
	quiesced := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		quiesced <- p.mover.Quiesce(ctx)
	}()
	release()
	if err := <-copied; err != nil {
		t.Fatal(err)
	}
	<-cut
	return quiesced
}
