// Package mover is the primary data mover of the method: steps (c) and (e).
//
// Every interval it drains each subsystem's sidefile, with that subsystem's
// horizon, into one record set per subsystem, numbers the time-interval
// group, and sends the record sets to the secondary. An idle subsystem still
// reports its horizon, so it never holds consistency back: by a heartbeat to
// a secondary that takes bundles (the record sets and heartbeats of an
// interval then travel in one frame, acknowledged by one receipt), by an
// empty record set to one that does not. With bundles an idle interval
// costs one small frame and one receipt, not a record set, frame and
// acknowledgement per subsystem. The record sets of a burst of writes wait
// in the sidefile while the burst lasts, within Config.BurstWait (burst.go),
// so that the primary's CPU serves the writes first. It keeps every record set until the secondary acknowledges it as
// journaled, and only then releases its bytes from the sidefile, so the
// sidefile limit bounds everything held for replication.
//
// A cut waits for the copies among the updates it drains (initial copies,
// resyncs) to read their data from the primary volume, within
// Config.CopyReadWait (once for every subsystem's copies: stuck disks
// under several subsystems hold a cut one wait, not one each; timed from
// the capture of the newest copy, so that reads a start after a crash gave
// up are not waited for again): a copy still reading then is given up and
// left out,
// and Abandoned reports it, so that a stuck disk under one pair's copy
// does not stop every other volume's replication; the pair manager
// suspends that pair.
//
// Record sets are numbered contiguously per subsystem. The numbering continues
// from what the secondary reports in its Welcome, so a restarted primary picks
// up where the secondary is. After a reconnect, or when acknowledgements stop
// progressing for the retransmit time (a frame was lost or corrupted), every
// unacknowledged record set is sent again; the secondary discards duplicates.
//
// A record set never exceeds what the secondary accepts: the limits its
// Welcome announces (the baseline when it announces none). Record sets
// formed before the Welcome, to the limits assumed, are re-formed to them.
// Limits that cannot carry the largest update a subsystem captures
// (subsystem.MaxUpdate) would have every such record set refused for ever:
// the mover does not take that link, and says why with both numbers.
package mover

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"duplex/recordset"
	"duplex/sidefile"
	"duplex/subsystem"
	"duplex/timer"
	"duplex/transport"
)

// Config configures a Mover.
type Config struct {
	Session    string
	Subsystems []*subsystem.Subsystem
	Timer      *timer.Timer
	Interval   time.Duration // time-interval group length; default 20ms
	Dialer     transport.Dialer
	// Retransmit is how long acknowledgements may stall while record sets are
	// outstanding before all of them are sent again; default 25 intervals,
	// at least 500ms. It does not run while the secondary says it waits on
	// its disk (transport.Position.Waited), nor for Retransmit after: what
	// was sent meanwhile waits read ahead or in the link's buffers, not lost.
	Retransmit time.Duration
	// Window bounds the bytes sent but not yet accepted by the secondary, so
	// that queueing on the link stays short and a retransmission is not
	// mistaken for a loss; default 16 MiB.
	Window int64
	// OnAcked, if set, is called for every update the secondary has
	// journaled (with the mover's lock held: keep it short).
	OnAcked func(recordset.Update)
	// Silence is how long the secondary may send nothing after a frame it
	// answers went out (record sets, or an idle primary's heartbeats)
	// before the connection is given up and redialled (a stream
	// desynchronised by corruption delivers nothing, a partition that
	// drops every packet resets nothing), and how long a
	// send may wait on a secondary that neither takes nor says anything
	// (see HeldSend); default max(4 × Retransmit, 5s).
	Silence time.Duration
	// HeldSend is how long a send may wait on a secondary that takes
	// nothing but answers (a secondary waiting on a slow disk sends
	// receipts) while it acknowledges nothing new: beyond it the disk is
	// taken as hung and the link given up, so that the session sees it
	// down; default 12 × Silence.
	//
	// It bounds too how long record sets sent may wait for the secondary to
	// acknowledge anything new while it answers (a disk hung for good:
	// its receipts would keep the silence time from ever running out).
	HeldSend time.Duration
	// Coupled says the session is a member of a coupled group: its
	// secondary, its journal's file system down to the journal's reserve,
	// may take nothing until groups held for a silent member are applied.
	// One that is not coupled at its reserve has no room for a resync
	// alone, and takes groups all the same (see heldWhyLocked).
	Coupled bool
	// HandshakeTimeout bounds the wait for the secondary's Welcome; default 10s.
	HandshakeTimeout time.Duration
	// Limits bound the record sets formed; zero fields mean
	// recordset.DefaultLimits. Those the secondary announces in its Welcome
	// bound them further: every record set sent fits both.
	Limits recordset.Limits
	// Generation is sent in the Hello: the history of the primary's data,
	// which the secondary must follow.
	Generation transport.Generation
	// OverwriteSecondary, if not nil, is sent in the Hello: the operator's
	// consent that a secondary following that generation (zero: none) have
	// its copies overwritten by this primary's (transport.Hello.Overwrite).
	OverwriteSecondary *transport.Generation
	// Compressor, if set, compresses each record set sent to a secondary
	// that takes compressed ones (transport.FeatureZstd); one that does
	// not gets them plain. Record sets are formed, sized and held plain:
	// compression changes only what the link carries.
	Compressor *transport.Compressor
	// NoIndexedAcks has the primary announce no
	// transport.PrimaryReadsIndexedAcks, so the secondary names the
	// subsystems in its acknowledgements, as it does to a primary from
	// before them: for tests of version skew.
	NoIndexedAcks bool
	// BurstWait bounds how long a burst's record sets wait in the
	// sidefile before they are sent (burst.go): a turn that brings 1 MiB
	// or more of large writes waits while the writes go on at that rate and every
	// sidefile holds less than 0.9 of what it holds before pacing, so that
	// the primary's CPU serves the writes rather than their sends; default
	// 1s, negative: never.
	BurstWait time.Duration
	// CopyReadWait bounds how long a cut waits for a copy's read of the
	// primary volume (an initial copy, a resync), from the copy's capture,
	// before it gives the copy
	// up (subsystem.DrainWithin) and cuts without it: every subsystem's
	// record sets wait for the read meanwhile. The copies given up are
	// for the pair manager to act on (Abandoned); default 30s, negative:
	// for ever.
	CopyReadWait time.Duration
	Logger       *slog.Logger
}

type held struct {
	sub      *sub
	rs       *recordset.RecordSet
	size     *recordset.Sizer // of rs, against the secondary's limits
	cost     int64
	sent     bool
	everSent bool
	sentAt   time.Time
	outAt    time.Time     // when it first went out in full (see awaitedSince)
	formed   uint64        // order of forming, across subsystems: the order of sending
	first    time.Duration // Mover.elapsed when its first updates were read (rs.ReadTime is the wall time of its last)
	queued   bool          // in the send queue
	counted  bool          // its cost is in Mover.inflight: sent, and not yet received
	gone     bool          // released or dropped: the send queue skips it
}

// sub is one subsystem's share of the mover. Its held record sets are in
// sequence order with contiguous numbers, so an acknowledgement releases
// them from the front and finds one by its number at once: the work of an
// acknowledgement is what it releases, whatever else is held.
type sub struct {
	ss       *subsystem.Subsystem
	id       string
	index    uint16 // in the Hello's Subsystems, which heartbeats name it by
	held     []*held
	local    uint64 // last sequence number given
	released uint64 // last sequence number acknowledged
	received uint64 // last sequence number the secondary accepted in order
	ahead    uint64 // highest sequence number the secondary holds beyond a gap
}

// at returns the held record set numbered seq, or nil.
func (s *sub) at(seq uint64) *held {
	if len(s.held) == 0 || seq < s.held[0].rs.Seq {
		return nil
	}
	if i := seq - s.held[0].rs.Seq; i < uint64(len(s.held)) {
		return s.held[i]
	}
	return nil
}

func (s *sub) last() *held {
	if len(s.held) == 0 {
		return nil
	}
	return s.held[len(s.held)-1]
}

// Mover ships record sets from the subsystems to the secondary.
type Mover struct {
	cfg      Config
	log      *slog.Logger
	instance uint64
	// hook, if set, is called at named points of a session, without locks
	// held, so that tests can act (Drop) at exact moments.
	hook func(point string)
	// wait pauses between two dials (sleep; tests record the pauses).
	wait func(ctx context.Context, d time.Duration)
	// elapsed reads a monotonic clock (sinceStart), which the mover's own
	// bounds are measured on: a step of the wall clock must not stretch
	// them. Tests move it.
	elapsed func() time.Duration
	// copyReadTimer times a cut's wait for the copies' reads (time.After
	// unless a test counts and ends the waits).
	copyReadTimer func(d time.Duration) <-chan time.Time

	// cutMu is held by Cut and Drop while they drain the subsystems (see
	// Cut), before m.mu; drains is Cut's buffer, under it.
	cutMu  sync.Mutex
	drains []drained
	// taken is cut's, reused: what it took from each subsystem.
	taken []subsystem.Taken
	// forDrop are the copies a cut gave up, still reading, for a Drop
	// that came while it waited for them: the Drop marks them.
	forDrop []recordset.Update

	mu sync.Mutex
	// limits and maxFrame are what the secondary accepts: assumed from
	// Config until a Welcome announces them.
	limits   recordset.Limits
	maxFrame int
	subs     []*sub // in the order of Config.Subsystems
	byID     map[string]*sub
	group    uint64
	formed   uint64 // record sets formed so far
	// queue holds the record sets to send, in the order formed; resend
	// those to send again first. Entries sent or gone meanwhile are
	// skipped when reached.
	queue, resend []*held
	// Totals over the held record sets, kept as they change so that
	// nothing that runs per acknowledgement or per status walks them all.
	heldSets    int
	heldBytes   int64
	withUpdates int    // held record sets that carry updates
	outstanding int    // held record sets sent on the current connection
	inflight    int64  // cost of those sent and not yet received
	aheadOf     []*sub // subsystems the secondary holds record sets of beyond a gap
	// bundles says the secondary of the current connection takes bundles
	// (transport.FeatureBundles): the record sets of an interval travel in
	// one frame, and an idle subsystem reports its horizon by a heartbeat
	// in it rather than by an empty record set of its own. beats are the
	// heartbeats of the last cut, until sent.
	bundles bool
	// namesRefusals: the current connection's secondary names the kinds
	// of its refusals (transport.FeatureNamesRefusals).
	namesRefusals bool
	beats         []transport.Heartbeat
	based         bool
	acked         transport.Position
	// named holds the tables of a Position by name, by index (ackLocked).
	named       transport.IndexedTables
	indexedAcks uint64 // see Stats.IndexedAcks
	// cutAt is when the last Cut formed record sets, burstAt when the
	// last one that brought a burst's weight did; quiescing counts the
	// Quiesce calls under way: they say whether record sets may wait
	// (burst.go).
	cutAt, burstAt time.Duration // elapsed readings; zero: none yet
	quiescing      int
	// cutting says a Cut has drained updates not yet formed into held
	// record sets: Quiesce must not take them for shipped.
	cutting bool
	// abandoned are the copies cuts gave up, without their data, until
	// Abandoned takes them.
	abandoned []recordset.Update
	// dropping counts the Drops waiting for cutMu; stopWait, while a cut
	// waits for copies' reads, ends that wait when a Drop comes (see Drop).
	dropping int
	stopWait chan struct{}
	// holds counts the HoldCuts not yet released: no cut forms a group
	// meanwhile.
	holds int
	// freeAt is when the secondary last reported its journal's free space
	// (acked.JournalFree): while the link is down, how old that word is.
	freeAt    time.Time
	connected bool
	linkSince time.Time // when connected last changed
	// failedDial is when the last dial that found no secondary began: see
	// Stats.FailedDialBegan.
	failedDial time.Time
	// dialRefused: the secondary refused the session of that dial (see
	// Stats.FailedDialRefused).
	dialRefused bool
	lastAck     time.Time
	// waited is how long the secondary last said it has waited on its
	// disk (transport.Position.Waited), zero once a Position says no
	// more; waitedAt is when the last Position that said so came.
	waited     time.Duration
	waitedAt   time.Time
	waitBegan  time.Time // the earliest the wait can have begun, by its receipts (see maybeRetransmit)
	progressAt time.Time // the last acknowledgement that brought something new (see Stats.LastAckedTime)
	lastRecv   time.Time // any frame from the secondary
	linkAcked  time.Time // its last Welcome or receipt (see Stats.LinkAckedAt)
	unanswered time.Time // the first frame since lastRecv gone out in full (see frameSent)
	sendBegan  time.Time // when the frame being sent, or the last, began to go, its rate wait over (see heard)
	resends    uint64
	reconnect  uint64
	sentBytes  uint64
	ackedBytes uint64 // data of the updates released: journaled at the secondary
	lastErr    string // why the link last failed, in words; cleared by progress
	lastErrAt  time.Time
	// lastErrRefused: lastErr is the secondary's refusal (see
	// Stats.LastErrorRefused).
	lastErrRefused bool
	repeats        transport.Repeats
	refusals       uint64 // sessions the secondary refused
	staleRefusals  uint64 // of them, those of a stale record set (see Stats.StaleRefusals)
	lastStale      string // the last of those's reason (see Stats.LastStaleRefusal)
	lastRefusal    string // why it refused the last one
	// refused is the last refusal as the secondary's frame said it (see
	// Stats.LastRefusalPasses, LastRefusalKind, LastRefusalReason).
	refused  transport.Refusal
	conn     transport.Conn // the current connection, if any
	work     chan struct{}  // new record sets to send
	progress chan struct{}  // closed and replaced on every acknowledgement, a Drop, and a cut's end while a Quiesce waits

	// base is the secondary's position at this process's first contact:
	// all it holds of the primary's earlier runs, whose captured updates
	// beyond it died with them (see Stats.Base).
	base    transport.Position
	hasBase bool

	// compress says record sets go compressed on the current connection
	// (Config.Compressor, and a secondary that takes them). plainBytes and
	// wireBytes count the record sets sent, plain and as the link carried
	// them; encoded is the session's buffer for compressing a set of its
	// own, sets those for compressing a bundle's.
	compress   bool
	plainBytes uint64
	wireBytes  uint64
	encoded    []byte
	sets       []setBuffers

	// journaled are the record sets released since the session goroutine
	// last handed their updates' buffers back to the subsystems. It hands
	// them back only between its sends: a release can come while it
	// encodes the same record set again (a retransmission, a resend after
	// a reconnect), and a buffer reused by a later write meanwhile would
	// go out as that write's data.
	journaled []*held
	recycled  []*held // the session goroutine's: journaled's other array
	// own are the session's buffers for the frames it encodes.
	own frameBufs
}

// frameBufs hold a frame as it goes out: its encoding without the data
// recordset.EncodeSplit leaves out (frame), that data (ins), the vector
// of the two (vec); and the record sets' plain size and what the link
// carries of them.
type frameBufs struct {
	frame       []byte
	ins         []recordset.Insert
	vec         [][]byte
	plain, wire int
}

// setBuffers are the buffers one record set of a bundle is compressed in:
// its plain encoding, and its link form.
type setBuffers struct{ plain, link []byte }

// New returns a Mover; Run starts it.
func New(cfg Config) *Mover {
	if cfg.Interval <= 0 {
		cfg.Interval = 20 * time.Millisecond
	}
	if cfg.Retransmit <= 0 {
		cfg.Retransmit = max(25*cfg.Interval, 500*time.Millisecond)
	}
	if cfg.Silence <= 0 {
		cfg.Silence = max(4*cfg.Retransmit, 5*time.Second)
	}
	if cfg.HeldSend <= 0 {
		cfg.HeldSend = 12 * cfg.Silence
	}
	if cfg.Window <= 0 {
		cfg.Window = 16 << 20
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	if cfg.BurstWait == 0 {
		cfg.BurstWait = time.Second
	}
	if cfg.CopyReadWait == 0 {
		cfg.CopyReadWait = DefaultCopyReadWait
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m := &Mover{
		cfg: cfg, log: cfg.Logger.With("component", "mover"), instance: rand.Uint64() | 1,
		limits: cfg.Limits.Effective(), maxFrame: int(transport.BaselineLimits.MaxFrame),
		byID: map[string]*sub{}, work: make(chan struct{}, 1), progress: make(chan struct{}), linkSince: time.Now(), wait: sleep, elapsed: sinceStart, copyReadTimer: time.After,
	}
	for i, ss := range cfg.Subsystems {
		s := &sub{ss: ss, id: ss.ID(), index: uint16(i)}
		m.subs = append(m.subs, s)
		m.byID[s.id] = s
	}
	return m
}

// Run cuts time-interval groups and ships them until ctx ends.
func (m *Mover) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		m.link(ctx)
	}()
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil
		case <-t.C:
			m.Cut()
		}
	}
}

// Cut forms the next time-interval group now: one record set per subsystem,
// or several where one would exceed what the secondary accepts.
//
// The drain waits for the copies among the updates to read their data
// from the primary volume (a resync, an initial copy), every subsystem's
// at once, within one Config.CopyReadWait. It waits under
// cutMu, not m.mu: acknowledgements, which release sidefile room under
// m.mu, must not wait for a slow or hung volume read, nor the writers
// waiting for that room with them. cutMu keeps cuts (and Drop) one at a
// time, so the record sets of a subsystem enter held in sequence order;
// the group is numbered and formed under m.mu once every subsystem is
// drained, as one step.
func (m *Mover) Cut() {
	m.cutMu.Lock()
	defer m.cutMu.Unlock()
	if m.held() {
		return
	}
	m.cut()
}

// tryCut is Cut unless a cut (or a Drop) is under way, which it does not
// wait for, or cuts are held (see HoldCuts): it reports whether it cut.
func (m *Mover) tryCut() bool {
	if !m.cutMu.TryLock() {
		return false
	}
	defer m.cutMu.Unlock()
	if m.held() {
		return false
	}
	m.cut()
	return true
}

// HoldCuts keeps every cut from forming a group, heartbeats included,
// until release is called (once; later calls do nothing). The pair
// manager holds them from before a Drop until it has captured again the
// markers the Drop took (the pairs' suspensions): any group formed in
// between, even one without updates, would reach the secondary before
// them, and the secondary would take the suspended pairs' volumes as
// duplex, consistent as of that group's time, without the writes
// dropped. Nothing of those pairs is captured meanwhile, so nothing
// waits for the cuts held.
func (m *Mover) HoldCuts() (release func()) {
	m.mu.Lock()
	m.holds++
	m.mu.Unlock()
	return sync.OnceFunc(func() {
		m.mu.Lock()
		m.holds--
		m.mu.Unlock()
	})
}

// held says whether cuts are held (see HoldCuts).
func (m *Mover) held() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.holds > 0
}

// expired is a wait's bound already past.
var expired = func() <-chan time.Time {
	ch := make(chan time.Time)
	close(ch)
	return ch
}()

// cut is Cut with cutMu held.
func (m *Mover) cut() {
	m.mu.Lock()
	m.cutting = true
	m.mu.Unlock()
	drains := m.drains[:0]
	var lost []recordset.Update
	// Every subsystem is taken first, then the copies' reads of all are
	// waited for at once: one CopyReadWait for the stuck disks of several
	// subsystems, not one each after the other. The wait is timed from the
	// capture of the newest copy reading, which has it whole: the reads a
	// start after a crash gave up, captured a CopyReadWait before, are not
	// waited for again.
	taken := m.taken[:0]
	reading := false
	var newest time.Time
	for _, s := range m.subs {
		d := s.ss.Take()
		if d.Reading() {
			reading = true
			if d.Newest().After(newest) {
				newest = d.Newest()
			}
		}
		taken = append(taken, d)
	}
	late, dropping := false, false
	var waited time.Duration
	if reading {
		began := time.Now()
		var bound <-chan time.Time
		if m.cfg.CopyReadWait >= 0 {
			bound = expired
			if left := m.cfg.CopyReadWait - time.Since(newest); left > 0 {
				bound = m.copyReadTimer(left)
			}
		}
		stop := m.waitUntilDrop()
		for i := range taken {
			if !taken[i].Wait(bound, stop) {
				late = true
				break
			}
		}
		m.mu.Lock()
		m.stopWait = nil
		m.mu.Unlock()
		select {
		case <-stop:
			dropping = late
		default:
		}
		// What this cut waited, not the bound: a copy whose read began
		// a CopyReadWait before (a start gave it up) is given up at once.
		waited = time.Since(began)
	}
	for i := range taken {
		switch {
		case dropping:
			// The Drop that waits for this cut drops all it holds:
			// these copies go with the rest, marked by it, not given
			// up for a read that outlasted its wait.
			m.forDrop = append(m.forDrop, taken[i].GiveUp()...)
		case late:
			lost = append(lost, taken[i].GiveUp()...)
		}
		drains = append(drains, drained{ups: taken[i].Updates, horizon: taken[i].Horizon, read: time.Now().UnixNano(), at: m.elapsed()})
	}
	clear(taken)
	m.taken = taken
	for _, u := range lost {
		m.log.Error("a copy's read of the primary volume did not complete in time: copy given up, the other updates ship without it",
			"volume", u.Volume, "offset", u.Offset, "length", u.Length, "waited", waited, "copy_read_wait", m.cfg.CopyReadWait)
	}
	m.mu.Lock()
	m.abandoned = append(m.abandoned, lost...)
	m.group++
	g := m.group
	m.beats = m.beats[:0]
	var weight int64
	for i, s := range m.subs {
		d := &drains[i]
		weight += burstWeight(d.ups)
		m.pack(s, g, d.ups, d.horizon, d.read, d.at)
	}
	m.cutBurst(weight, m.elapsed())
	m.cutting = false
	if m.quiescing > 0 {
		// A Quiesce that found this cut under way waits for its end.
		close(m.progress)
		m.progress = make(chan struct{})
	}
	m.mu.Unlock()
	clear(drains) // the updates are held's now
	m.drains = drains
	select {
	case m.work <- struct{}{}:
	default:
	}
}

// waitUntilDrop returns what ends a cut's wait for copies' reads when a
// Drop comes: a Drop (a suspension of the session) waits for the cut
// under way, and must not wait as long as a hung read.
func (m *Mover) waitUntilDrop() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.dropping > 0 {
		return closedStop
	}
	m.stopWait = make(chan struct{})
	return m.stopWait
}

// closedStop is a wait's stop already closed.
var closedStop = func() chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}()

// DefaultCopyReadWait is Config.CopyReadWait's default: far beyond a read
// of a copy's region from a disk that works, even a loaded one, and short
// enough that the sidefiles of a busy primary do not fill in the meantime
// for long.
const DefaultCopyReadWait = 30 * time.Second

// Abandoned returns the copies cut without their data since the last call
// (see Config.CopyReadWait): their regions are missing at the secondary,
// and the pairs they belong to must copy them again.
func (m *Mover) Abandoned() []recordset.Update {
	m.mu.Lock()
	defer m.mu.Unlock()
	ups := m.abandoned
	m.abandoned = nil
	return ups
}

// drained is what Cut took from one subsystem: its updates and horizon,
// the wall time they were read at, and when on the mover's clock.
type drained struct {
	ups     []recordset.Update
	horizon int64
	read    int64
	at      time.Duration
}

// pack forms one subsystem's drained updates into record sets, each within
// the secondary's limits. A record set not yet on the wire (link down or
// window full) grows first, so a backlog costs one frame per subsystem rather
// than one per interval. A record set followed by another of the same drain
// is complete only through its own last update, and its horizon says so:
// claiming the drain's horizon would let the secondary form a consistency
// group without the updates still to come.
func (m *Mover) pack(s *sub, g uint64, ups []recordset.Update, horizon, read int64, at time.Duration) {
	id := s.id
	h := s.last()
	if h != nil && h.everSent {
		h = nil
	}
	if h == nil && len(ups) == 0 && m.bundles {
		// Idle: its record sets through s.local hold every update stamped
		// at or before horizon, and a heartbeat says so at the cost of a
		// few bytes, not of a record set, frame and acknowledgement.
		m.beats = append(m.beats, transport.Heartbeat{Subsystem: s.index, Seq: s.local, Horizon: horizon})
		return
	}
	grown := h != nil
	for {
		if h == nil {
			s.local++
			h = &held{sub: s, size: recordset.NewSizer(m.cfg.Session, id), rs: &recordset.RecordSet{
				Session: m.cfg.Session, Subsystem: id, Seq: s.local, Group: g, ReadTime: read, Horizon: horizon}, first: at}
			m.formed++
			h.formed = m.formed
			s.held = append(s.held, h)
			m.heldSets++
			m.enqueue(h)
			grown = false
		}
		before, had := h.cost, len(h.rs.Updates) > 0
		n := 0
		for n < len(ups) && m.fits(h, &ups[n], grown) {
			h.add(&ups[n])
			n++
		}
		if n == 0 && len(h.rs.Updates) == 0 && len(ups) > 0 {
			// Capture splits updates so that one always fits; send it
			// alone anyway rather than hold it for ever.
			m.log.Error("update larger than the secondary accepts in a record set", "subsystem", id,
				"volume", ups[0].Volume, "offset", ups[0].Offset, "length", ups[0].Length)
			h.add(&ups[0])
			n = 1
		}
		m.heldBytes += h.cost - before
		if !had && n > 0 {
			m.withUpdates++
		}
		h.rs.Updates = append(h.rs.Updates, ups[:n]...)
		h.rs.Group, h.rs.ReadTime = g, read
		ups = ups[n:]
		if len(ups) == 0 {
			h.rs.Horizon = horizon
			return
		}
		if n > 0 {
			h.rs.Horizon = h.rs.Highest()
		}
		h = nil
	}
}

// fits reports whether u may join h: within the secondary's limits, and
// within the coalescing bounds for a record set grown from an earlier cut.
func (m *Mover) fits(h *held, u *recordset.Update, grown bool) bool {
	if grown && (len(h.rs.Updates) >= coalesceUpdates || h.cost+sidefile.Cost(len(u.Data)) > coalesceBytes) {
		return false
	}
	return h.size.Fits(u, m.limits) && h.size.SizeWith(u.Volume, len(u.Data))+transport.FrameOverhead <= m.maxFrame
}

func (h *held) add(u *recordset.Update) {
	h.size.Add(u)
	h.cost += sidefile.Cost(len(u.Data))
}

// Bounds on a record set grown while it waits to be sent.
const (
	coalesceUpdates = 4096
	coalesceBytes   = 4 << 20
)

// enqueue puts h in the send queue, once.
func (m *Mover) enqueue(h *held) {
	if h.queued || h.gone {
		return
	}
	h.queued = true
	m.queue = append(m.queue, h)
}

// markSent records h as on the wire of the current connection.
func (m *Mover) markSent(h *held, now time.Time) {
	if !h.sent {
		h.sent = true
		m.outstanding++
	}
	h.everSent, h.sentAt = true, now
	if !h.counted && h.rs.Seq > h.sub.received {
		h.counted = true
		m.inflight += h.cost
	}
}

// markUnsent makes h wait to be sent again, ahead of record sets never sent.
func (m *Mover) markUnsent(h *held) {
	if h.sent {
		h.sent = false
		m.outstanding--
	}
	m.uncount(h)
	if !h.queued && !h.gone {
		h.queued = true
		m.resend = append(m.resend, h)
	}
}

func (m *Mover) uncount(h *held) {
	if h.counted {
		h.counted = false
		m.inflight -= h.cost
	}
}

// advanceReceived records that the secondary accepted s's record sets
// through seq in order: those are no longer in flight.
func (m *Mover) advanceReceived(s *sub, seq uint64) {
	if seq <= s.received {
		return
	}
	from := s.received + 1
	if len(s.held) > 0 {
		from = max(from, s.held[0].rs.Seq)
	}
	for q := from; q <= seq; q++ {
		h := s.at(q)
		if h == nil {
			break
		}
		m.uncount(h)
	}
	s.received = seq
}

// release gives up s's front record set, journaled at the secondary.
func (m *Mover) release(s *sub) {
	h := s.held[0]
	s.held[0] = nil
	s.held = s.held[1:]
	if len(s.held) == 0 {
		s.held = nil // let the array go
	}
	for _, u := range h.rs.Updates {
		if u.Kind != recordset.KindMarker {
			m.ackedBytes += uint64(len(u.Data))
		}
		if m.cfg.OnAcked != nil {
			m.cfg.OnAcked(u)
		}
	}
	s.ss.Sidefile().Release(h.cost)
	if h.rs.Seq > s.released {
		s.released = h.rs.Seq
	}
	m.forget(h)
	m.journaled = append(m.journaled, h)
}

// recycle hands the buffers of the record sets released so far back to
// their subsystems. Only the session goroutine calls it, between its
// sends: nothing encodes a record set then.
func (m *Mover) recycle() {
	m.mu.Lock()
	hs := m.journaled
	m.journaled = m.recycled[:0]
	m.mu.Unlock()
	for _, h := range hs {
		h.sub.ss.Recycle(h.rs.Updates)
	}
	clear(hs)
	m.recycled = hs
}

// forget takes h out of the totals; the send queue skips it.
func (m *Mover) forget(h *held) {
	if h.sent {
		h.sent = false
		m.outstanding--
	}
	m.uncount(h)
	h.gone = true
	m.heldSets--
	m.heldBytes -= h.cost
	if len(h.rs.Updates) > 0 {
		m.withUpdates--
	}
}

// rebuild recomputes the totals and the send queue from the held record
// sets, after a change to many of them (a reconnect, a re-forming, a Drop).
func (m *Mover) rebuild() {
	m.heldSets, m.heldBytes, m.withUpdates, m.outstanding, m.inflight = 0, 0, 0, 0, 0
	clear(m.queue)
	clear(m.resend)
	m.queue, m.resend = m.queue[:0], m.resend[:0]
	for _, s := range m.subs {
		for _, h := range s.held {
			m.heldSets++
			m.heldBytes += h.cost
			if len(h.rs.Updates) > 0 {
				m.withUpdates++
			}
			h.counted, h.queued = false, false
			if h.sent {
				m.outstanding++
				if h.rs.Seq > s.received {
					h.counted = true
					m.inflight += h.cost
				}
			} else {
				h.queued = true
				m.queue = append(m.queue, h)
			}
		}
	}
	slices.SortFunc(m.queue, func(a, b *held) int { return cmp.Compare(a.formed, b.formed) })
}

// maxRedial is the longest pause between two dials of the secondary while
// it cannot be reached or refuses the primary. The pauses double up to it,
// so a secondary that refuses is asked at most once a second, not hammered;
// but the link must come back soon after the secondary would take it again
// (restarted once its disk was freed, a fence refused): while it is down
// with the sidefile full, writes wait, and suspend_after running out
// meanwhile suspends the session and resyncs what a prompt relink would
// have shipped. At 5 s the link could come back 5 s late.
const maxRedial = time.Second

func (m *Mover) link(ctx context.Context) {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		dialed := time.Now()
		conn, err := m.cfg.Dialer.Dial(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			why := transport.Explain(err, "primary")
			m.mu.Lock()
			m.lastErr, m.lastErrAt, m.lastErrRefused = why, time.Now(), false
			m.failedDial, m.dialRefused = dialed, false
			m.mu.Unlock()
			// Retries meet the same error again and again: it is logged
			// once, and then once a minute while it lasts.
			if ok, unlogged := m.repeats.Log(why, time.Now()); ok {
				attrs := []any{"err", why, "retry_in", backoff}
				if unlogged > 0 {
					attrs = append(attrs, "unlogged_repeats", unlogged)
				}
				m.log.Warn("cannot reach secondary", attrs...)
			}
			m.wait(ctx, backoff)
			backoff = min(2*backoff, maxRedial)
			continue
		}
		m.mu.Lock()
		m.reconnect++
		m.mu.Unlock()
		var linked bool
		err = m.session(ctx, conn, &linked)
		conn.Close()
		m.mu.Lock()
		m.setConnected(false)
		m.bundles, m.beats, m.compress, m.namesRefusals = false, nil, false, false
		// The wait was that connection's secondary's word.
		m.waited = 0
		m.encoded, m.sets, m.own = nil, nil, frameBufs{} // the session's: let them go
		for _, s := range m.subs {
			for _, h := range s.held {
				h.sent = false
			}
		}
		m.rebuild()
		why := transport.Explain(err, "primary")
		refused := errors.Is(err, ErrRefused)
		if err != nil && ctx.Err() == nil {
			m.lastErr, m.lastErrAt, m.lastErrRefused = why, time.Now(), refused
			if !linked {
				m.failedDial, m.dialRefused = dialed, refused
			}
		}
		if refused && ctx.Err() == nil {
			m.refusals++
			m.lastRefusal = err.Error()
			m.refused = transport.Refusal{Reason: err.Error()}
			if re := (*RefusedError)(nil); errors.As(err, &re) {
				m.refused = re.Refusal
			}
			if m.refused.Kind == transport.RefusalStale {
				m.staleRefusals++
				m.lastStale = m.refused.Reason
			}
		}
		m.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		if linked {
			// A failure after a link is news, however like the last.
			m.repeats.Reset()
		}
		if ok, unlogged := m.repeats.Log(why, time.Now()); ok {
			attrs := []any{"peer", conn.Peer(), "err", why}
			if unlogged > 0 {
				attrs = append(attrs, "unlogged_repeats", unlogged)
			}
			var re *RefusedError
			switch {
			case errors.As(err, &re) && re.Passing:
				// The secondary said it takes this primary again by
				// itself (a disk it retries, a record it writes again, an
				// apply under way, a stale record set this primary's
				// suspension drops): the retries end it, nobody need act.
				m.log.Warn("the secondary refused the session for now: it takes this primary again by itself, shortly", attrs...)
			case refused:
				// Retrying cannot help until an operator acts: say so loudly.
				m.log.Error("the secondary refused the session until an operator acts: its refusal says what to do", attrs...)
			case errors.Is(err, ErrLimits):
				m.log.Error("refusing the secondary's limits", attrs...)
			case errors.Is(err, ErrDropped):
				// The session's suspension: its caller said why.
				m.log.Info("link restarted: what was held for the secondary was dropped", attrs...)
			default:
				m.log.Warn("link to secondary lost", attrs...)
			}
		}
		if linked && !refused {
			// The secondary was reachable and took the session: a new
			// failure starts a new backoff. A refusal (a record set it
			// will not accept) would recur at once: keep backing off, up
			// to maxRedial.
			backoff = 50 * time.Millisecond
		}
		m.wait(ctx, backoff)
		backoff = min(2*backoff, maxRedial)
	}
}

// start is the origin of sinceStart.
var start = time.Now()

// sinceStart reads the monotonic clock that time.Now's readings carry,
// which no step of the wall clock moves; it is never zero.
func sinceStart() time.Duration { return time.Since(start) + 1 }

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// refusalOr returns why the secondary refused the TLS handshake, if it
// said so, else err, the Hello's failed send. TLS 1.3 checks the
// primary's certificate after the primary's part of the handshake is done:
// the secondary's refusal comes as an alert that the first read returns, and
// a send may fail first, for a connection already closed. The caller closes
// conn, which ends the read if nothing comes.
func refusalOr(conn transport.Conn, err error) error {
	got := make(chan error, 1)
	go func() {
		_, rerr := conn.Recv()
		got <- rerr
	}()
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case rerr := <-got:
		if transport.RefusedTLS(rerr) {
			return rerr
		}
	case <-t.C:
	}
	return err
}

// ErrRefused is returned when the secondary refuses the session.
var ErrRefused = errors.New("secondary refused the session")

// RefusedError is the secondary's refusal of a session, as its Refuse
// frame said it; errors.Is(err, ErrRefused) holds for it.
type RefusedError struct{ transport.Refusal }

func (e *RefusedError) Error() string { return ErrRefused.Error() + ": " + e.Reason }

// Is makes a RefusedError an ErrRefused.
func (e *RefusedError) Is(target error) bool { return target == ErrRefused }

// Refused is the error of a Refuse frame's body. One that does not
// decode is refused all the same, as lasting and unnamed
// (transport.DecodeRefuse), with what could be read of its reason: the
// secondary ends the session after it whatever it said.
func Refused(body []byte) *RefusedError {
	r, _ := transport.DecodeRefuse(body)
	return &RefusedError{r}
}

// namedByWords is r, from a secondary that names no kinds
// (transport.FeatureNamesRefusals), named by its words: such a secondary
// refused a stale record set in staleWords, the one refusal it sent on a
// link that the primary acts on by what it is. It sent that refusal as
// lasting, having no kind to say why it passes, but it passes as a named
// one does: the pair manager's suspension on the kind drops the record
// set, and the secondary takes the next connection. Read as lasting, the
// status would send an operator to act on what ends by itself, and
// duplex pair --wait would give up on it at once.
func namedByWords(r transport.Refusal) transport.Refusal {
	if r.Kind == transport.RefusalUnnamed && strings.Contains(r.Reason, staleWords) {
		r.Kind, r.Passing = transport.RefusalStale, true
	}
	return r
}

// staleWords are in the reason of the refusal of a stale record set by a
// secondary from before refusal kinds (consistency.ErrStale's words, as
// they were then): what such a secondary says is fixed, whatever a later
// build says, so these never change.
const staleWords = "update stamped at or before the consistency time"

func (m *Mover) session(ctx context.Context, conn transport.Conn, linked *bool) error {
	names := make([]string, len(m.cfg.Subsystems))
	for i, ss := range m.cfg.Subsystems {
		names[i] = ss.ID()
	}
	m.mu.Lock()
	instance := m.instance
	m.mu.Unlock()
	// A secondary that stops reading (stopped, hung on its disk) would hold
	// a send for ever, and the link would never count as down: a send on
	// which it takes nothing for the silence time gives the link up, as
	// its silence does. The end of ctx ends a send in progress too.
	conn.SetSendTimeout(m.cfg.Silence)
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	hello := transport.Hello{Session: m.cfg.Session, Subsystems: names, Instance: instance, Generation: m.cfg.Generation,
		Overwrite: m.cfg.OverwriteSecondary}
	for _, ss := range m.cfg.Subsystems {
		for _, name := range ss.VolumeNames() {
			if v, ok := ss.Volume(name); ok {
				hello.Volumes = append(hello.Volumes, transport.VolumeInfo{Name: name, Size: v.Size()})
			}
		}
	}
	if err := conn.Send(transport.EncodeHello(hello)); err != nil {
		return refusalOr(conn, err)
	}
	welcome, err := m.awaitWelcome(ctx, conn, false)
	if err != nil {
		return err
	}
	if welcome.Features&transport.FeatureAsksPrimary != 0 {
		// The secondary sends what a primary from before some part of a
		// Position cannot read only once told this one reads it; it
		// answers with its Welcome again, which the link goes on from.
		reads := transport.PrimaryReadsInconsistent | transport.PrimaryReadsIndexedAcks | transport.PrimaryReadsWaited
		if m.cfg.NoIndexedAcks {
			reads &^= transport.PrimaryReadsIndexedAcks
		}
		if err := conn.Send(transport.EncodeFeatures(reads)); err != nil {
			return err
		}
		if welcome, err = m.awaitWelcome(ctx, conn, true); err != nil {
			return err
		}
	}
	if err := m.welcome(welcome, instance, conn); err != nil {
		return err
	}
	if m.hook != nil {
		m.hook("welcomed")
	}
	*linked = true
	// A secondary waiting on a slow disk reads only so far ahead and then
	// nothing until its disk answers, while it sends a receipt every
	// second: under a load that fills the sockets' buffers a send waits on
	// it for as long as the disk, and cut by the send timeout the link
	// would be redialled, and all outstanding sent again, while the
	// secondary was reachable and busy. Its answers keep the send waiting;
	// one that neither takes nor answers anything for the silence time is
	// given up, as before.
	conn.SetAnswered(m.heard)
	if sb, ok := conn.(transport.SendBegins); ok {
		// HeldSend counts from a frame's first byte on the link, not
		// from its wait at the link's rate limit, which is no sign of a
		// hung disk.
		sb.SetSendBegins(m.sendBegins)
	}
	defer func() {
		m.mu.Lock()
		if m.conn == conn {
			m.conn = nil
		}
		m.mu.Unlock()
	}()
	m.log.Info("linked to secondary", "peer", conn.Peer(), "group", welcome.Group, "consistency_time", time.Unix(0, welcome.Time).UTC())

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	recvErr := make(chan error, 1)
	go func() {
		recvErr <- m.receive(conn)
		cancel()
	}()
	// The link's end ends a send under way: one waiting for the link's
	// rate limit (minutes for a large frame at a low rate) would otherwise
	// keep a link whose secondary is gone counted as up until it is over.
	stopClose := context.AfterFunc(sctx, func() { conn.Close() })
	defer stopClose()
	// A send waiting for the link's rate limit holds the loop below, and
	// its silence check, for as long as the wait: a secondary gone silent
	// (its host off, the network cut) with a record set unanswered would
	// keep the link counted as up until it is over. Its silence is judged
	// meanwhile too, and ends the link, which ends the wait.
	silent := make(chan error, 1)
	go func() {
		t := time.NewTicker(max(m.cfg.Silence/10, 10*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-t.C:
				if err := m.checkSilence(); err != nil {
					silent <- err
					cancel()
					return
				}
			}
		}
	}()
	tick := time.NewTicker(max(m.cfg.Interval, 10*time.Millisecond))
	defer tick.Stop()
	wait := time.NewTimer(time.Hour)
	wait.Stop()
	defer wait.Stop()
	for {
		m.recycle()
		left, deferred := m.deferral(m.elapsed())
		sets, beats, bundles, maxFrame := m.unsent(conn, !deferred)
		if len(sets) > 0 && m.hook != nil {
			m.hook("encode")
		}
		if bundles {
			err = m.sendBundles(conn, sets, beats, maxFrame)
		} else {
			for _, h := range sets {
				if err = m.sendRecordSet(conn, h); err != nil {
					break
				}
			}
		}
		// A send given up as stalled closed the connection itself, which
		// ends the receive too: its error says why, the receive's not.
		if err != nil && (sctx.Err() == nil || errors.Is(err, transport.ErrStalled)) {
			return m.sendFailed(ctx, err, recvErr)
		}
		var waited <-chan time.Time
		if deferred {
			wait.Reset(left)
			waited = wait.C
			if m.hook != nil {
				m.hook("deferred")
			}
		}
		select {
		case <-waited:
		case <-sctx.Done():
			conn.Close()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			select {
			case err := <-silent:
				return err
			default:
			}
			return <-recvErr
		case <-m.work:
		case <-tick.C:
			m.maybeRetransmit()
			if err := m.checkSilence(); err != nil {
				return err
			}
		}
		wait.Stop()
	}
}

// refusalGrace bounds how long a failed send waits for the receive's
// cause, which comes as soon as the connection's end reaches it.
const refusalGrace = time.Second

// sendFailed returns why the session ends after a send failed with err: a
// secondary that refuses the session (or speaks of an instance a Drop gave
// up) sends its reason and closes the connection, and a send under way
// may find it closed before the receive has read that reason. The link
// must count a refusal as one (its status, its log's error, its backoff),
// not as a lost link: the receive's cause is awaited, briefly.
func (m *Mover) sendFailed(ctx context.Context, err error, recvErr <-chan error) error {
	t := time.NewTimer(refusalGrace)
	defer t.Stop()
	select {
	case rerr := <-recvErr:
		if errors.Is(rerr, ErrRefused) || errors.Is(rerr, ErrDropped) {
			return rerr
		}
	case <-t.C:
	case <-ctx.Done():
	}
	return err
}

// sendRecordSet sends h in a frame of its own.
func (m *Mover) sendRecordSet(conn transport.Conn, h *held) error {
	m.mu.Lock()
	compress := m.compress
	m.mu.Unlock()
	b, n, err := m.emit(conn, func(b *frameBufs) error {
		f := append(b.frame[:0], transport.TypeRecordSet)
		f, plain, err := m.appendSet(f, &b.ins, h, compress)
		if err != nil {
			return err
		}
		b.plain, b.wire = plain, len(f)-1+inserted(b.ins)
		b.frame = transport.Seal(f)
		return nil
	})
	if err != nil {
		return err
	}
	m.frameSent(n, h)
	m.setsSent(b.plain, b.wire)
	return nil
}

// emit encodes a frame with encode in the session's buffers and sends it.
// It returns the buffers and the frame's length on the link.
func (m *Mover) emit(conn transport.Conn, encode func(*frameBufs) error) (*frameBufs, int, error) {
	b := &m.own
	b.reset()
	if err := encode(b); err != nil {
		return nil, 0, err
	}
	m.mu.Lock()
	m.sendBegan = time.Now()
	m.mu.Unlock()
	n, err := sendFrame(conn, b)
	if errors.Is(err, transport.ErrStalled) {
		err = m.stalledSend(err)
	}
	return b, n, err
}

// sendBegins stamps sendBegan anew once a frame's wait at the link's rate
// limit is over (transport.SendBegins).
func (m *Mover) sendBegins() {
	m.mu.Lock()
	m.sendBegan = time.Now()
	m.mu.Unlock()
}

// stalledSend says why a send the secondary took nothing of was given up
// (err), as the mover judged it (heard): the transport knows only its
// send timeout, while the wait went on for as long as the secondary
// answered, up to HeldSend with nothing acknowledged.
func (m *Mover) stalledSend(err error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	since := m.sendBegan
	if m.lastAck.After(since) {
		since = m.lastAck
	}
	quiet := time.Since(m.lastRecv)
	switch {
	case quiet >= m.cfg.Silence:
		return fmt.Errorf("the secondary sent nothing for %s with a send waiting on it: %w", quiet.Round(time.Millisecond), err)
	case time.Since(since) >= m.cfg.HeldSend:
		return fmt.Errorf("the secondary acknowledged nothing new for %s though it answered, with a send waiting on it (%s): %w",
			time.Since(since).Round(time.Millisecond), m.heldWhyLocked(), err)
	}
	return err
}

// reset empties b, keeping its arrays: a frame whose encoding failed
// leaves its data in them.
func (b *frameBufs) reset() {
	clear(b.ins)
	clear(b.vec)
	b.ins, b.vec, b.frame = b.ins[:0], b.vec[:0], b.frame[:0]
}

// sendFrame sends b's frame with the data recordset.EncodeSplit left out
// of it (b.ins) put back in, in one vectored write, and returns the
// frame's length.
func sendFrame(conn transport.Conn, b *frameBufs) (int, error) {
	if len(b.ins) == 0 {
		return len(b.frame), conn.Send(b.frame)
	}
	vec := b.vec[:0]
	at := 0
	for _, in := range b.ins {
		vec = append(vec, b.frame[at:in.At], in.Data)
		at = in.At
	}
	vec = append(vec, b.frame[at:])
	n := len(b.frame) + inserted(b.ins)
	err := transport.SendVec(conn, vec)
	// Not kept referring to the updates' data, which is released once
	// the secondary has journaled it.
	clear(vec)
	clear(b.ins)
	b.vec, b.ins = vec[:0], b.ins[:0]
	return n, err
}

// inserted is the length of the data EncodeSplit left out.
func inserted(ins []recordset.Insert) int {
	n := 0
	for _, in := range ins {
		n += len(in.Data)
	}
	return n
}

// appendSet appends h's record set to dst as the link carries it: its
// plain encoding, with the data EncodeSplit leaves out appended to ins, or
// compressed where the connection compresses, and returns the length of
// the plain encoding. Compressed, it reuses the session's buffer: only the
// session's goroutine calls it so.
func (m *Mover) appendSet(dst []byte, ins *[]recordset.Insert, h *held, compress bool) ([]byte, int, error) {
	if !compress {
		n, before := len(dst), inserted(*ins)
		var err error
		if dst, *ins, err = recordset.EncodeSplit(dst, *ins, h.rs); err != nil {
			return dst, 0, fmt.Errorf("encode record set %s/%d: %w", h.rs.Subsystem, h.rs.Seq, err)
		}
		return dst, len(dst) - n + inserted(*ins) - before, nil
	}
	plain, err := recordset.Encode(m.encoded[:0], h.rs)
	if err != nil {
		return dst, 0, fmt.Errorf("encode record set %s/%d: %w", h.rs.Subsystem, h.rs.Seq, err)
	}
	m.encoded = plain
	return m.cfg.Compressor.Compress(dst, plain), len(plain), nil
}

// compressSets returns the link forms of batch's record sets, sized plain
// at sizes, in batch's order: compressed on as many goroutines as the
// Compressor has encoders, as the record sets of different subsystems
// (and the successive ones of a subsystem) are independent, and one
// goroutine would hold the link to what one core compresses. They are the
// session's buffers, valid until the next call.
func (m *Mover) compressSets(batch []*held, sizes []int) ([][]byte, error) {
	for len(m.sets) < len(batch) {
		m.sets = append(m.sets, setBuffers{})
	}
	out, errs := make([][]byte, len(batch)), make([]error, len(batch))
	compress := func(i int) {
		h, b := batch[i], &m.sets[i]
		plain, err := recordset.Encode(b.plain[:0], h.rs)
		switch {
		case err != nil:
			errs[i] = fmt.Errorf("encode record set %s/%d: %w", h.rs.Subsystem, h.rs.Seq, err)
		case len(plain) != sizes[i]:
			errs[i] = fmt.Errorf("record set %s/%d encoded to %d bytes, not the %d it was sized at", h.rs.Subsystem, h.rs.Seq, len(plain), sizes[i])
		default:
			b.plain = plain
			b.link = m.cfg.Compressor.Compress(b.link[:0], plain)
			out[i] = b.link
		}
	}
	workers := min(len(batch), m.cfg.Compressor.Parallel())
	var next atomic.Int64
	work := func() {
		for i := int(next.Add(1) - 1); i < len(batch); i = int(next.Add(1) - 1) {
			compress(i)
		}
	}
	var wg sync.WaitGroup
	for range workers - 1 {
		wg.Go(work)
	}
	work()
	wg.Wait()
	return out, errors.Join(errs...)
}

// setsSent counts record sets sent: plain bytes, and what the link took.
func (m *Mover) setsSent(plain, wire int) {
	m.mu.Lock()
	m.plainBytes += uint64(plain)
	m.wireBytes += uint64(wire)
	m.mu.Unlock()
}

// sendBundles sends the record sets in as few bundle frames as fit within
// maxFrame, in order, and the heartbeats after them: a heartbeat counts
// only once the record sets it names are in. A record set that fits a
// frame only alone goes in a record-set frame of its own.
func (m *Mover) sendBundles(conn transport.Conn, sets []*held, beats []transport.Heartbeat, maxFrame int) error {
	var batch []*held
	var sizes []int
	total := 0
	flush := func(bs []transport.Heartbeat) error {
		if len(batch) == 0 && len(bs) == 0 {
			return nil
		}
		// Sized plain (sizes), so that the frame, decoded, is within
		// maxFrame; the link sizes are known once they are compressed.
		links := sizes
		m.mu.Lock()
		compress := m.compress
		m.mu.Unlock()
		var packed [][]byte
		if compress {
			var err error
			if packed, err = m.compressSets(batch, sizes); err != nil {
				return err
			}
			links = make([]int, len(batch))
			for i, set := range packed {
				links[i] = len(set)
			}
		}
		sets, lens, plain := batch, sizes, total
		b, n, err := m.emit(conn, func(b *frameBufs) error {
			f := b.frame[:0]
			wire := plain
			if compress {
				f = transport.BeginBundle(f, links, bs)
				wire = 0
				for _, set := range packed {
					f, wire = append(f, set...), wire+len(set)
				}
			} else {
				f = transport.BeginBundle(f, lens, bs)
				for i, h := range sets {
					at, before := len(f), inserted(b.ins)
					var err error
					if f, b.ins, err = recordset.EncodeSplit(f, b.ins, h.rs); err != nil {
						return fmt.Errorf("encode record set %s/%d: %w", h.rs.Subsystem, h.rs.Seq, err)
					}
					if got := len(f) - at + inserted(b.ins) - before; got != lens[i] {
						return fmt.Errorf("record set %s/%d encoded to %d bytes, not the %d it was sized at", h.rs.Subsystem, h.rs.Seq, got, lens[i])
					}
				}
			}
			b.frame = transport.Seal(f)
			b.plain, b.wire = plain, wire
			return nil
		})
		if err != nil {
			return err
		}
		m.frameSent(n, batch...)
		m.setsSent(b.plain, b.wire)
		batch, sizes, total = batch[:0], sizes[:0], 0
		return nil
	}
	for _, h := range sets {
		size := recordset.EncodedSize(h.rs)
		if transport.BundleOverhead(1, 0)+size > maxFrame {
			if err := flush(nil); err != nil {
				return err
			}
			if err := m.sendRecordSet(conn, h); err != nil {
				return err
			}
			continue
		}
		// A large record set begins a frame: the secondary reads such a
		// frame so that its first record set's data lies on page
		// boundaries, where its volumes' direct writes take it without a
		// copy (transport.FramePlacer), and only the first's.
		if len(batch) > 0 && (size >= transport.PlaceMin || transport.BundleOverhead(len(batch)+1, 0)+total+size > maxFrame) {
			if err := flush(nil); err != nil {
				return err
			}
		}
		batch, sizes, total = append(batch, h), append(sizes, size), total+size
	}
	for len(beats) > 0 || len(batch) > 0 {
		k := min(len(beats), max(0, (maxFrame-transport.BundleOverhead(len(batch), 0)-total)/transport.HeartbeatSize))
		if k == 0 && len(batch) == 0 {
			// Not one heartbeat fits a frame: the record sets report.
			m.log.Error("heartbeats do not fit the secondary's frames", "max_frame", maxFrame)
			break
		}
		if err := flush(beats[:k]); err != nil {
			return err
		}
		beats = beats[k:]
	}
	return nil
}

// awaitWelcome reads the secondary's Welcome. answer: the Welcome that
// answers a Features frame, which no longer asks; one that still asks is a
// repeat of the first (a link that duplicates frames), and is skipped.
func (m *Mover) awaitWelcome(ctx context.Context, conn transport.Conn, answer bool) (transport.Position, error) {
	type result struct {
		p   transport.Position
		err error
	}
	ch := make(chan result, 1)
	go func() {
		for {
			f, err := conn.Recv()
			if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
				// Its log and status say why: a TLS handshake this primary
				// did not start, a refusal it could not send.
				err = fmt.Errorf("%w (the secondary closed the connection before welcoming this primary: its log and status say why)", err)
			}
			if err != nil {
				ch <- result{err: err}
				return
			}
			typ, body, err := transport.Open(f)
			if err != nil {
				ch <- result{err: fmt.Errorf("welcome: %w", err)}
				return
			}
			switch typ {
			case transport.TypeWelcome:
				p, err := transport.DecodePosition(body)
				if err == nil && answer && p.Features&transport.FeatureAsksPrimary != 0 {
					m.log.Debug("skipping a repeated Welcome that asks again while awaiting the answer to the Features frame", "peer", conn.Peer())
					continue
				}
				ch <- result{p: p, err: err}
			case transport.TypeRefuse:
				ch <- result{err: Refused(body)}
			default:
				ch <- result{err: fmt.Errorf("expected welcome, got frame type %d", typ)}
			}
			return
		}
	}()
	t := time.NewTimer(m.cfg.HandshakeTimeout)
	defer t.Stop()
	select {
	case r := <-ch:
		return r.p, r.err
	case <-t.C:
		conn.Close()
		return transport.Position{}, fmt.Errorf("no welcome from %s within %s", conn.Peer(), m.cfg.HandshakeTimeout)
	case <-ctx.Done():
		conn.Close()
		return transport.Position{}, ctx.Err()
	}
}

// ErrDropped ends a session whose record sets a Drop gave up, during its
// handshake or after; the link reconnects under the new instance.
var ErrDropped = errors.New("replication state dropped: reconnecting under a new instance")

// welcome aligns the mover with the secondary's durable position and makes
// conn the current connection, in one step: a Drop either comes before it
// (the Welcome answers the instance of before the Drop, whose record sets
// the secondary still holds, so it is refused) or after it (and closes conn).
func (m *Mover) welcome(p transport.Position, instance uint64, conn transport.Conn) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.instance != instance {
		return fmt.Errorf("welcome from %s: %w", conn.Peer(), ErrDropped)
	}
	if !m.based {
		// First contact: continue the secondary's numbering. Nothing was sent
		// yet, so renumbering held record sets is safe.
		for _, s := range m.subs {
			for _, h := range s.held {
				h.rs.Seq += p.Through[s.id]
			}
			s.local += p.Through[s.id]
			s.released = p.Through[s.id]
		}
		m.cfg.Timer.AtLeast(p.Time)
		for _, s := range m.subs {
			for _, h := range s.held {
				if h.rs.Lowest() != 0 && h.rs.Lowest() <= p.Time {
					m.log.Error("primary clock is behind the secondary's consistency time; updates stamped before it would be ignored",
						"subsystem", h.rs.Subsystem, "lowest", h.rs.Lowest(), "consistency_time", p.Time)
				}
			}
		}
		m.based = true
	}
	for _, s := range m.subs {
		if got, want := p.Through[s.id], s.released; got < want {
			return fmt.Errorf("secondary holds subsystem %s only through record set %d, but %d was acknowledged before: the secondary lost journaled data", s.id, got, want)
		}
	}
	if err := m.adoptLimits(p, conn); err != nil {
		return err
	}
	m.setConnected(true)
	// The dials that failed before speak of a secondary out of reach, or
	// refusing, no longer: a stop that begins after this link is lost
	// must wait for a dial of its own to fail.
	m.failedDial, m.dialRefused = time.Time{}, false
	if m.heldSets == 0 {
		m.lastErr, m.lastErrAt, m.lastErrRefused = "", time.Time{}, false
	}
	m.lastAck = time.Now()
	m.lastRecv = m.lastAck
	m.linkAcked = m.lastAck
	// The secondary says what it still holds; only the rest is sent again.
	for _, s := range m.subs {
		s.received = max(p.Through[s.id], p.Received[s.id])
		for _, h := range s.held {
			if h.rs.Seq <= s.received {
				h.sent = true
			}
		}
	}
	if !m.hasBase {
		m.base, m.hasBase = p, true
	}
	m.rebuild()
	m.ackLocked(p)
	m.conn = conn
	m.bundles, m.beats = p.Features&transport.FeatureBundles != 0, nil
	m.namesRefusals = p.Features&transport.FeatureNamesRefusals != 0
	m.compress = m.cfg.Compressor != nil && p.Features&transport.FeatureZstd != 0
	if m.cfg.Compressor != nil && !m.compress {
		m.log.Warn("the secondary takes no compressed record sets: sending them plain", "peer", conn.Peer())
	}
	return nil
}

// ErrLimits is returned when the limits a secondary announces cannot carry
// the primary's largest update: every record set holding one would be
// refused, so the link is not taken until an operator raises them.
var ErrLimits = errors.New("the secondary's limits cannot carry the primary's largest update")

// adoptLimits takes the limits the secondary announced for the record sets
// to come and re-forms the held record sets that exceed them; the
// secondary must not be sent what it refuses, or it refuses it for ever.
// Called with m.mu held.
func (m *Mover) adoptLimits(p transport.Position, conn transport.Conn) error {
	a := p.Announced()
	lim := recordset.Limits{MaxHeader: clampInt(a.MaxHeader), MaxPayload: clampInt(a.MaxPayload), MaxRecords: clampInt(a.MaxRecords)}
	maxFrame := clampInt(a.MaxFrame)
	if err := m.carriesLargest(lim, maxFrame); err != nil {
		return fmt.Errorf("welcome from %s: %w", conn.Peer(), err)
	}
	// Config's limits bound what this primary forms whatever the
	// secondary accepts.
	own := m.cfg.Limits.Effective()
	lim = recordset.Limits{MaxHeader: min(lim.MaxHeader, own.MaxHeader), MaxPayload: min(lim.MaxPayload, own.MaxPayload), MaxRecords: min(lim.MaxRecords, own.MaxRecords)}
	if lim != m.limits || maxFrame != m.maxFrame {
		m.log.Info("secondary's limits", "max_header", lim.MaxHeader, "max_payload", lim.MaxPayload, "max_records", lim.MaxRecords, "max_frame", maxFrame)
	}
	m.limits, m.maxFrame = lim, maxFrame
	var over []*held
	for _, s := range m.subs {
		for _, h := range s.held {
			if h.rs.Seq > p.Through[s.id] && !m.fitsWhole(h) {
				over = append(over, h)
			}
		}
	}
	if len(over) == 0 {
		return nil
	}
	for _, s := range m.subs {
		id := s.id
		if p.Received[id] > p.Through[id] || p.Ahead[id] > p.Through[id] {
			// Re-formed sets are numbered afresh from what is journaled,
			// which would clash with the sets the secondary holds beyond
			// it: a new instance makes it discard those first.
			m.instance = rand.Uint64() | 1
			return fmt.Errorf("record set %s/%d exceeds the limits %s announced: re-forming the record sets under a new instance", over[0].rs.Subsystem, over[0].rs.Seq, conn.Peer())
		}
	}
	m.log.Warn("held record sets exceed the secondary's limits: re-forming them", "sets", len(over))
	m.reform(p.Through)
	m.rebuild()
	return nil
}

// carriesLargest says why no record set within lim and maxFrame carries an
// update of the largest size the subsystems capture, or nil.
func (m *Mover) carriesLargest(lim recordset.Limits, maxFrame int) error {
	for _, ss := range m.cfg.Subsystems {
		vol := ""
		for _, name := range ss.VolumeNames() {
			if len(name) > len(vol) {
				vol = name
			}
		}
		sz := recordset.NewSizer(m.cfg.Session, ss.ID())
		if size := sz.SizeWith(vol, subsystem.MaxUpdate) + transport.FrameOverhead; !sz.FitsData(vol, subsystem.MaxUpdate, lim) || size > maxFrame {
			return fmt.Errorf("%w: it accepts record sets of at most %d header bytes, %d payload bytes and %d records in frames of at most %d bytes; "+
				"a record set of subsystem %s with one update of %d bytes needs a payload of %d bytes and a frame of %d bytes: raise the secondary's limits",
				ErrLimits, lim.MaxHeader, lim.MaxPayload, lim.MaxRecords, maxFrame, ss.ID(), subsystem.MaxUpdate, subsystem.MaxUpdate, size)
		}
	}
	return nil
}

// fitsWhole reports whether h, as formed, is within the limits in use.
func (m *Mover) fitsWhole(h *held) bool {
	sz := recordset.NewSizer(m.cfg.Session, h.sub.id)
	for i := range h.rs.Updates {
		if !m.fits(&held{size: sz}, &h.rs.Updates[i], false) {
			return false
		}
		sz.Add(&h.rs.Updates[i])
	}
	return true
}

// reform splits every held record set not yet journaled (beyond through)
// to the limits in use and numbers them afresh from through, per
// subsystem, in the order they were formed. A part followed by another of
// the same set is complete only through its own last update, as in pack.
func (m *Mover) reform(journaled map[string]uint64) {
	through := maps.Clone(journaled)
	if through == nil {
		through = map[string]uint64{}
	}
	for _, s := range m.subs {
		id := s.id
		var out []*held
		for _, h := range s.held {
			if h.rs.Seq <= through[id] {
				out = append(out, h) // journaled: released by the acknowledgement
				continue
			}
			out = m.reformOne(h, out, through)
		}
		s.held = out
	}
}

// reformOne appends h re-formed to the limits in use to out, numbered on
// from through.
func (m *Mover) reformOne(h *held, out []*held, through map[string]uint64) []*held {
	id := h.sub.id
	ups := h.rs.Updates
	for {
		through[id]++
		part := &held{sub: h.sub, size: recordset.NewSizer(m.cfg.Session, id), everSent: h.everSent, formed: h.formed, first: h.first, rs: &recordset.RecordSet{
			Session: h.rs.Session, Subsystem: id, Seq: through[id], Group: h.rs.Group, ReadTime: h.rs.ReadTime, Horizon: h.rs.Horizon}}
		n := 0
		for n < len(ups) && m.fits(part, &ups[n], false) {
			part.add(&ups[n])
			n++
		}
		if n == 0 && len(ups) > 0 {
			part.add(&ups[0]) // alone, as pack sends it
			n = 1
		}
		part.rs.Updates = ups[:n:n]
		ups = ups[n:]
		out = append(out, part)
		if len(ups) == 0 {
			break
		}
		part.rs.Horizon = part.rs.Highest()
	}
	h.sub.local = through[id]
	return out
}

func clampInt(v uint64) int {
	if v > math.MaxInt {
		return math.MaxInt
	}
	return int(v)
}

func (m *Mover) receive(conn transport.Conn) error {
	corrupt := 0
	// The tables of each indexed Ack, decoded into the same slices.
	var tables transport.IndexedTables
	for {
		f, err := conn.Recv()
		if err != nil {
			m.mu.Lock()
			dropped := m.conn != conn
			m.mu.Unlock()
			if dropped {
				// Drop closed it: that, not the close, is why it ends.
				return fmt.Errorf("receive from %s: %w", conn.Peer(), ErrDropped)
			}
			return err
		}
		if m.hook != nil {
			m.hook("frame")
		}
		typ, body, err := transport.Open(f)
		if err != nil {
			m.log.Warn("discarding corrupt frame from secondary", "err", err)
			// Several in a row: the stream itself is out of step.
			if corrupt++; corrupt >= 3 {
				return fmt.Errorf("%d corrupt frames in a row from the secondary: %w", corrupt, err)
			}
			continue
		}
		corrupt = 0
		m.mu.Lock()
		current := m.conn == conn
		if current {
			m.lastRecv = time.Now()
		}
		m.mu.Unlock()
		if !current {
			// Dropped: what the secondary says is about record sets of
			// the instance before the Drop, not of those formed since.
			return fmt.Errorf("receive from %s: %w", conn.Peer(), ErrDropped)
		}
		switch typ {
		case transport.TypeAck:
			p, err := transport.DecodePosition(body)
			if err != nil {
				m.log.Warn("discarding malformed ack", "err", err)
				continue
			}
			m.mu.Lock()
			if m.conn != conn {
				m.mu.Unlock()
				return fmt.Errorf("receive from %s: %w", conn.Peer(), ErrDropped)
			}
			m.ackLocked(p)
			m.linkAcked = time.Now()
			m.mu.Unlock()
		case transport.TypeIndexedAck:
			p, err := transport.DecodeIndexedAck(body, len(m.subs), &tables)
			if err != nil {
				m.log.Warn("discarding malformed ack", "err", err)
				continue
			}
			m.mu.Lock()
			if m.conn != conn {
				m.mu.Unlock()
				return fmt.Errorf("receive from %s: %w", conn.Peer(), ErrDropped)
			}
			m.ackIndexedLocked(p, tables)
			m.indexedAcks++
			m.linkAcked = time.Now()
			m.mu.Unlock()
		case transport.TypeRefuse:
			re := Refused(body)
			m.mu.Lock()
			named := m.namesRefusals
			m.mu.Unlock()
			if !named {
				re.Refusal = namedByWords(re.Refusal)
			}
			return re
		default:
			m.log.Warn("ignoring unexpected frame from secondary", "type", typ)
		}
	}
}

// ackLocked takes what the secondary says it holds, in a Position whose
// tables name the subsystems (a Welcome, a TypeAck). Called with m.mu held.
func (m *Mover) ackLocked(p transport.Position) {
	t := &m.named
	t.Through = m.indexed(t.Through[:0], p.Through)
	t.Received = m.indexed(t.Received[:0], p.Received)
	t.Ahead = m.indexed(t.Ahead[:0], p.Ahead)
	m.ackIndexedLocked(p, *t)
}

// indexed appends the entries of a table by name to dst by the
// subsystems' indices, leaving out names of no subsystem of this primary.
func (m *Mover) indexed(dst []transport.Entry, table map[string]uint64) []transport.Entry {
	for name, seq := range table {
		if s := m.byID[name]; s != nil {
			dst = append(dst, transport.Entry{Index: int(s.index), Seq: seq})
		}
	}
	return dst
}

// ackIndexedLocked takes what the secondary says it holds: p, whose tables
// t holds by subsystem index. Its work is the entries of the tables and
// the record sets it releases, never the record sets held. Called with
// m.mu held.
func (m *Mover) ackIndexedLocked(p transport.Position, t transport.IndexedTables) {
	progress := false
	for _, e := range t.Received {
		if s := m.sub(e.Index); s != nil && e.Seq > s.received {
			m.advanceReceived(s, e.Seq)
			progress = true
		}
	}
	for _, s := range m.aheadOf {
		s.ahead = 0
	}
	m.aheadOf = m.aheadOf[:0]
	for _, e := range t.Ahead {
		if s := m.sub(e.Index); s != nil && e.Seq > 0 {
			s.ahead = e.Seq
			m.aheadOf = append(m.aheadOf, s)
		}
	}
	for _, e := range t.Through {
		s := m.sub(e.Index)
		if s == nil {
			continue
		}
		m.advanceReceived(s, e.Seq)
		for len(s.held) > 0 && s.held[0].rs.Seq <= e.Seq {
			m.release(s)
			m.lastErr, m.lastErrAt, m.lastErrRefused = "", time.Time{}, false
			progress = true
		}
	}
	// What the tables said is in the subsystems' state now; a Position
	// kept with them would hold three maps for nothing.
	p.Through, p.Received, p.Ahead = nil, nil, nil
	// A wait is the word of the latest Position alone: the one that
	// follows it (the acknowledgement of the group it journaled) ends it.
	if p.Waited > 0 || m.waited > 0 {
		m.waitedAt = time.Now()
	}
	if p.Waited > 0 {
		// A receipt's time on the way puts the beginning it implies
		// after the true one: the earliest of the wait's is the nearest.
		// A shorter wait than the last is a new one.
		began := m.waitedAt.Add(-p.Waited)
		if m.waited == 0 || p.Waited < m.waited || began.Before(m.waitBegan) {
			m.waitBegan = began
		}
	}
	m.waited, p.Waited = p.Waited, 0
	switch {
	case p.Group > m.acked.Group || p.Time > m.acked.Time:
		m.acked = p
		progress = true
	case p.Group == m.acked.Group && p.Time == m.acked.Time:
		// A hold that began or ended with no group since: what the
		// secondary recovers to is its latest word.
		m.acked.Recoverable = p.Recoverable
		m.acked.Inconsistent = p.Inconsistent
	}
	// The free space is the secondary's now, even in a receipt or a Welcome
	// that brings no new group (a secondary restarted once its disk was
	// freed): an old figure would refuse resyncs that fit.
	m.acked.JournalFree, m.freeAt = p.JournalFree, time.Now()
	if progress {
		m.lastAck = time.Now()
		m.progressAt = m.lastAck
		close(m.progress)
		m.progress = make(chan struct{})
		select {
		case m.work <- struct{}{}:
		default:
		}
	}
}

// sub returns the subsystem of index i in the Hello, or nil: the decoder
// takes no index beyond the Hello's, and a table by name none of another
// primary.
func (m *Mover) sub(i int) *sub {
	if i < 0 || i >= len(m.subs) {
		return nil
	}
	return m.subs[i]
}

// unsent returns what to send on conn now: the record sets within the
// window (none unless sets), the heartbeats of the last cut if not yet sent, whether they go
// in bundles, and the largest frame the secondary takes.
func (m *Mover) unsent(conn transport.Conn, sets bool) (_ []*held, beats []transport.Heartbeat, bundles bool, maxFrame int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.conn != conn {
		// Dropped: record sets formed since are numbered for the next
		// instance, not for the one this connection speaks for.
		return nil, nil, false, 0
	}
	if m.bundles && len(m.beats) > 0 {
		beats = slices.Clone(m.beats)
		m.beats = m.beats[:0]
	}
	if !sets {
		return nil, beats, m.bundles, m.maxFrame
	}
	var out []*held
	now := time.Now()
	if len(m.resend) > 1 {
		slices.SortFunc(m.resend, func(a, b *held) int { return cmp.Compare(a.formed, b.formed) })
	}
	for _, q := range []*[]*held{&m.resend, &m.queue} {
		for len(*q) > 0 {
			h := (*q)[0]
			if !h.gone && !h.sent {
				if m.inflight > 0 && m.inflight+h.cost > m.cfg.Window {
					break
				}
				m.markSent(h, now)
				out = append(out, h)
			}
			h.queued = false
			(*q)[0] = nil
			*q = (*q)[1:]
		}
		if len(*q) > 0 {
			break
		}
	}
	if len(m.queue) == 0 {
		m.queue = nil // let the array go
	}
	return out, beats, m.bundles, m.maxFrame
}

// frameSent records a frame of n bytes holding hs as gone out in full.
// Retransmission and silence count from now, not from when the frame was
// taken to be sent: a frame that waited for the link's rate limit, or
// crossed a slow link, was not on its way before, and the secondary cannot
// have answered it.
func (m *Mover) frameSent(n int, hs ...*held) {
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sentBytes += uint64(n)
	for _, h := range hs {
		if h.sent {
			h.sentAt = now
			if h.outAt.IsZero() {
				h.outAt = now
			}
		}
	}
	if !m.unanswered.After(m.lastRecv) {
		m.unanswered = now
	}
}

// heard returns when the secondary of the current connection last sent
// anything, for a send it takes nothing of; or the zero time once the
// send has waited HeldSend with nothing acknowledged since it began. A
// secondary whose disk hangs for good goes on sending receipts while it
// waits: the send would wait for ever and the link count as up, which the
// session's suspension never sees as down, so with the sidefile full
// writes would wait for ever too. Given up, the link is down until a
// connection acknowledges something new.
func (m *Mover) heard() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	since := m.sendBegan
	if m.lastAck.After(since) {
		since = m.lastAck
	}
	if time.Since(since) >= m.cfg.HeldSend {
		return time.Time{}
	}
	return m.lastRecv
}

// checkSilence gives up a connection on which the secondary has sent nothing
// for too long since a frame went out that it answers: record sets, and
// the heartbeats of an idle primary too. A partition that drops every
// packet and resets nothing leaves an idle link open; judged by its record
// sets alone, with none outstanding, it would count as connected for ever
// while its heartbeats go nowhere.
func (m *Mover) checkSilence() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.unanswered.After(m.lastRecv) && time.Since(m.unanswered) > m.cfg.Silence {
		what := "heartbeats"
		if m.outstanding > 0 {
			what = "record sets outstanding"
		}
		return fmt.Errorf("nothing from the secondary for %s with %s: reconnecting", time.Since(m.lastRecv).Round(time.Millisecond), what)
	}
	if since := m.awaitedSince(); !since.IsZero() && time.Since(since) > m.cfg.HeldSend {
		return fmt.Errorf("nothing new acknowledged by the secondary for %s though it answers, with record sets sent awaiting it (%s): reconnecting",
			time.Since(since).Round(time.Millisecond), m.heldWhyLocked())
	}
	return nil
}

// heldWhyLocked says why a secondary that answers may acknowledge nothing
// new for HeldSend: its own word where its receipts say there is no room
// in its journal (JournalFree 1), which a coupled secondary holding
// groups past the master time while a member is silent says once its
// journal's file system is down to the reserve, taking nothing more until
// they are applied. The link is given up all the same: the session sees
// it down and suspends the pairs after suspend_after, rather than let
// writes wait for ever on a full sidefile. Called with m.mu held.
func (m *Mover) heldWhyLocked() string {
	switch {
	case m.acked.JournalFree == 1 && m.cfg.Coupled:
		return "it reports no room in its journal: a coupled secondary waits so for the groups it holds for a member that is silent to be applied, or for room on its file system"
	case m.acked.JournalFree == 1:
		// Not coupled: no room for a resync, which holds no group back.
		return "its disk may hang; it reports its journal's file system down to the reserve the journal keeps, which holds back " +
			"a resync's start, not the groups sent"
	}
	return "its disk may hang"
}

// awaitedSince returns since when record sets sent have waited for the
// secondary to acknowledge anything new: the later of its last progress
// and when the oldest record set it has not acknowledged first went out in
// full; zero when none sent awaits it. A secondary whose disk hangs for
// good goes on sending receipts while it waits, each saying nothing new:
// they keep the silence time from running out, and with what is sent
// fitting in the sockets' buffers no send is held (heard), so without
// this bound the link would count as up for ever, which the session's
// suspension never sees as down, and with the sidefile full the
// application's writes would wait for ever. A set still going out over a
// slow link has no outAt yet: only what the secondary has whole is
// awaited. Called with m.mu held.
func (m *Mover) awaitedSince() time.Time {
	var oldest time.Time
	for _, s := range m.subs {
		if len(s.held) == 0 {
			continue
		}
		if h := s.held[0]; !h.outAt.IsZero() && (oldest.IsZero() || h.outAt.Before(oldest)) {
			oldest = h.outAt
		}
	}
	if oldest.IsZero() {
		return oldest
	}
	if m.lastAck.After(oldest) {
		return m.lastAck
	}
	return oldest
}

// maybeRetransmit resends what the secondary has not accepted when its
// receipts have stalled: a lost or corrupted frame leaves a gap it waits on.
func (m *Mover) maybeRetransmit() {
	m.mu.Lock()
	defer m.mu.Unlock()
	again := false
	// Fast path: the secondary holds record sets beyond a gap, so the one at
	// the gap was lost; resend just that one, once it has had time to arrive.
	fast := max(4*m.cfg.Interval, 5*time.Millisecond)
	// A secondary waiting on its disk reads nothing until the wait is
	// over, and its receipts meanwhile report the same gap: the copy sent
	// since the wait began waits in the link's buffers, and each sent
	// every fast period after it would be a duplicate dropped.
	for _, s := range m.aheadOf {
		if h := s.at(s.received + 1); h != nil && h.sent && s.ahead > s.received && time.Since(h.sentAt) >= fast &&
			(m.waited == 0 || h.sentAt.Before(m.waitBegan)) {
			m.markUnsent(h)
			again = true
		}
	}
	// Nothing is lost for want of progress while the secondary waits on
	// its disk, nor until a resend period after: it takes nothing until
	// then, and what it has not read waits in the link's buffers. Its
	// receipts keep the link, HeldSend bounds how long (checkSilence).
	if time.Since(m.lastAck) < m.cfg.Retransmit || m.waited > 0 || time.Since(m.waitedAt) < m.cfg.Retransmit {
		if again {
			m.resends++
			select {
			case m.work <- struct{}{}:
			default:
			}
		}
		return
	}
	if m.outstanding == 0 {
		return
	}
	for _, s := range m.subs {
		for _, h := range s.held {
			if h.sent && h.rs.Seq > s.received && time.Since(h.sentAt) >= m.cfg.Retransmit {
				m.markUnsent(h)
				again = true
			}
		}
	}
	if !again {
		return
	}
	m.resends++
	select {
	case m.work <- struct{}{}:
	default:
	}
}

// Drop gives up everything held for replication: every captured update and
// every unacknowledged record set is handed to mark (so the caller can record
// the changed regions in a bitmap) and its sidefile bytes are released. The
// numbering restarts from what the secondary acknowledged, under a new
// instance, so the secondary discards whatever it received but did not
// journal. This is how a session suspends when the link stays down with a
// full sidefile: memory is freed and writes go on.
//
// Drop is safe at any moment, the handshake included: a Welcome that answers
// a Hello sent before the Drop is refused, and the connection is reconnected
// under the new instance; an acknowledgement taken after the Drop is
// ignored, since it speaks of record sets given up.
func (m *Mover) Drop(mark func(recordset.Update)) {
	// cutMu keeps a Cut from forming record sets of updates drained before
	// the Drop after it. A copy still reading its data is given up at once:
	// mark needs its region, not its data, and a hung read must not hold
	// the Drop (nor the suspension that asks for it): a cut under way that
	// waits for one stops waiting, and hands its copies still reading
	// here.
	m.mu.Lock()
	m.dropping++
	if m.stopWait != nil {
		close(m.stopWait)
		m.stopWait = nil
	}
	m.mu.Unlock()
	m.cutMu.Lock()
	defer m.cutMu.Unlock()
	m.mu.Lock()
	m.dropping--
	m.mu.Unlock()
	for _, u := range m.forDrop {
		mark(u) // its room went with it
	}
	clear(m.forDrop)
	m.forDrop = m.forDrop[:0]
	for _, s := range m.subs {
		ups, _, _, gaveUp := s.ss.DrainWithin(0)
		var cost int64
		for _, u := range ups {
			mark(u)
			cost += sidefile.Cost(len(u.Data))
		}
		s.ss.Sidefile().Release(cost)
		for _, u := range gaveUp {
			mark(u) // its room went with it
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.subs {
		for _, h := range s.held {
			for _, u := range h.rs.Updates {
				mark(u)
			}
			s.ss.Sidefile().Release(h.cost)
			h.gone = true
		}
		s.held = nil
	}
	// The secondary may have journaled more than we saw acknowledged (the ack
	// was lost with the link): number afresh from what its next Welcome says.
	m.based = false
	for _, s := range m.subs {
		s.local, s.received, s.ahead = 0, 0, 0
	}
	m.aheadOf = nil
	m.bundles, m.beats = false, nil
	m.rebuild()
	m.instance = rand.Uint64() | 1
	if m.conn != nil {
		// What the secondary sends on it speaks of the old instance.
		m.conn.Close()
		m.conn = nil
		m.setConnected(false)
	}
	close(m.progress)
	m.progress = make(chan struct{})
}

// Quiesce cuts groups until every update captured so far, and every record
// set, is acknowledged by the secondary, or ctx ends.
//
// It cuts only while updates are captured and not yet formed into record
// sets; otherwise it waits. Cutting on every acknowledgement would form a
// record set per idle subsystem each time, and each brings an
// acknowledgement of its own: with many subsystems the stop would feed
// itself and never finish.
func (m *Mover) Quiesce(ctx context.Context) error {
	m.mu.Lock()
	m.quiescing++
	m.mu.Unlock()
	// Record sets a burst holds back are sent now (burst.go).
	select {
	case m.work <- struct{}{}:
	default:
	}
	defer func() {
		m.mu.Lock()
		m.quiescing--
		m.mu.Unlock()
	}()
	for {
		// A cut under way may wait for a copy's volume read, slow or hung:
		// Quiesce does not queue behind it, which would outlast ctx, but
		// waits for its end (or ctx) and cuts then. The end of a cut
		// closes the channel read before it was found under way.
		m.mu.Lock()
		before := m.progress
		m.mu.Unlock()
		busy := false
		if m.captured() > 0 {
			// Its own cut may wait as long: it stamps the horizon under
			// the subsystem's lock, and a stamp past the timer's lease
			// on disk waits for the lease's write (as may a write that
			// holds the lock meanwhile), on a disk that may have stopped
			// answering. The cut goes on without Quiesce once ctx ends,
			// as the one found under way does.
			cut := make(chan bool, 1)
			go func() { cut <- m.tryCut() }()
			select {
			case ok := <-cut:
				busy = !ok
			case <-ctx.Done():
				return fmt.Errorf("quiesce: %w", ctx.Err())
			}
		}
		m.mu.Lock()
		ch := m.progress
		if busy {
			ch = before
		}
		pending := m.withUpdates > 0 || m.cutting || busy
		m.mu.Unlock()
		if !pending {
			if m.captured() == 0 {
				return nil
			}
			continue
		}
		t := time.NewTimer(m.cfg.Interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("quiesce: %w", ctx.Err())
		case <-ch:
		case <-t.C:
		}
		t.Stop()
	}
}

// HeldOnly reports whether keep holds for every update the mover holds
// for the secondary (formed into record sets not yet acknowledged, or
// captured in a subsystem's sidefile), and how many held record sets carry
// updates. A cut or a Drop under way holds updates in neither place: it
// is waited for, until ctx ends, then HeldOnly answers false. Not
// queued behind it: a cut may wait for a copy's volume read, or for the
// write of the timer's lease, on a disk that stopped answering.
func (m *Mover) HeldOnly(ctx context.Context, keep func(*recordset.Update) bool) (withUpdates int, ok bool) {
	for !m.cutMu.TryLock() {
		t := time.NewTimer(time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, false
		case <-t.C:
		}
	}
	defer m.cutMu.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.forDrop) > 0 {
		return 0, false
	}
	for _, s := range m.subs {
		for _, h := range s.held {
			if h.gone {
				continue
			}
			for i := range h.rs.Updates {
				if !keep(&h.rs.Updates[i]) {
					return 0, false
				}
			}
		}
		if !s.ss.Sidefile().CapturedAll(keep) {
			return 0, false
		}
	}
	return m.withUpdates, true
}

// setConnected records the link's state; m.mu held.
func (m *Mover) setConnected(up bool) {
	if up != m.connected {
		m.connected, m.linkSince = up, time.Now()
	}
}

// Link reports whether the link to the secondary is up, and since when it
// has been up or down (down since New if it never came up).
func (m *Mover) Link() (up bool, since time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.connected, m.linkSince
}

func (m *Mover) captured() int {
	n := 0
	for _, s := range m.subs {
		n += s.ss.Sidefile().Stats().Captured
	}
	return n
}

// Stats is a snapshot for status and metrics.
type Stats struct {
	Connected bool
	Group     uint64             // last time-interval group formed
	Acked     transport.Position // the secondary's last acknowledged position (Acked.RecoversTo(): the time it recovers to), without its tables
	HeldSets  int
	HeldBytes int64
	// HeldWithUpdates counts the held record sets that carry updates: an
	// idle subsystem's record set, which only reports its horizon, holds
	// no sidefile bytes.
	HeldWithUpdates int
	Resends         uint64
	Connects        uint64
	BytesSent       uint64 // frames sent on the link, resends included
	// BytesAcked is the data of the updates (writes and copies) the
	// secondary acknowledged as journaled.
	BytesAcked    uint64
	LastAckedTime time.Time // the last acknowledgement of something new: a Welcome that brings nothing new is none
	// LinkAckedAt is when the secondary last acknowledged anything on
	// the link: a Welcome, a receipt of record sets or of an idle
	// primary's heartbeats, whether or not it brought anything new; zero
	// before the first. Its age says whether the secondary is heard now:
	// a partition that drops every packet leaves the link up for the
	// silence time, and the lag, which a backlog (a burst, a slow link)
	// or a resync's hold makes long, says it only of an idle link.
	LinkAckedAt time.Time
	LastError   string    // why the link last failed or was refused; cleared by progress
	LastErrorAt time.Time // when LastError was set
	// FailedDialBegan is when the last dial that did not link began, zero
	// if none did since the link was last welcomed: a dial sent before
	// the network came back may fail after it did, and only one begun
	// since says the secondary is still out of reach.
	FailedDialBegan time.Time
	// FailedDialRefused says that the secondary answered that dial, and
	// refused the session: it is reachable, and takes nothing from this
	// primary until what it refused for changes. Cleared with
	// FailedDialBegan by a link welcomed.
	FailedDialRefused bool
	// Refusals counts the sessions the secondary refused, LastRefusal says
	// why the last one was: the pair manager acts on each refusal once.
	Refusals    uint64
	LastRefusal string
	// LastRefusalPasses says that the secondary said the last refusal
	// passes (transport.Refusal.Passing): it takes this primary again by
	// itself, shortly, with no operator acting.
	LastRefusalPasses bool
	// LastRefusalKind is the kind of the last refusal
	// (transport.Refusal.Kind), what the pair manager acts on, and
	// LastRefusalReason its reason, as the secondary's frame said them.
	LastRefusalKind   transport.RefusalKind
	LastRefusalReason string
	// StaleRefusals counts, of Refusals, those of a stale record set
	// (transport.RefusalStale): a reader that looks now and then learns
	// of each, even where a refusal of another kind came after it.
	StaleRefusals uint64
	// LastStaleRefusal is the reason of the last of them, as the
	// secondary's frame said it: what the record set's stamps were
	// refused for (a clock gone back, a timer that stamped out of order),
	// kept where a refusal of another kind came after it.
	LastStaleRefusal string
	// LastErrorRefused says that LastError is the last refusal: the link
	// last failed because the secondary refused the session. It is
	// cleared with LastError.
	LastErrorRefused bool
	// Base, once Based, is the secondary's position at this process's
	// first contact: it holds nothing an earlier run of the primary
	// captured after Base.Time, so no volume there is consistent as of a
	// later time of that run.
	Base  transport.Position
	Based bool
	// JournalFreeAt is when the secondary last reported Acked.JournalFree:
	// with the link down, the figure is that old, and the secondary may
	// have been restarted with more room since.
	JournalFreeAt time.Time

	// RecordSetBytes counts the record sets sent in their plain
	// encodings, RecordSetWireBytes what they took on the link: less
	// where they went compressed. Compressing says the current
	// connection compresses them.
	RecordSetBytes     uint64
	RecordSetWireBytes uint64
	Compressing        bool
	// IndexedAcks counts the acknowledgements taken that named the
	// subsystems by index (transport.TypeIndexedAck).
	IndexedAcks uint64
	// SecondaryWaiting is how long the secondary said, in its last
	// receipt, it has waited on its disk (a journal fsync, the applier):
	// nothing is sent again for want of progress meanwhile. Zero when it
	// does not wait, or says nothing of it (a secondary of before).
	SecondaryWaiting time.Duration
	// BurstWait is how long a burst's record sets may wait (burst.go):
	// Config.BurstWait with its default, 0 when they never wait.
	BurstWait time.Duration
}

// Stats returns a snapshot.
func (m *Mover) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return Stats{Connected: m.connected, Group: m.group, Acked: m.acked, HeldSets: m.heldSets, HeldBytes: m.heldBytes,
		HeldWithUpdates: m.withUpdates, Resends: m.resends, Connects: m.reconnect, BytesSent: m.sentBytes, BytesAcked: m.ackedBytes,
		LastAckedTime: m.progressAt, LinkAckedAt: m.linkAcked, LastError: m.lastErr, LastErrorAt: m.lastErrAt, LastErrorRefused: m.lastErrRefused,
		FailedDialBegan: m.failedDial, FailedDialRefused: m.dialRefused, Refusals: m.refusals, LastRefusal: m.lastRefusal,
		LastRefusalPasses: m.refused.Passing, LastRefusalKind: m.refused.Kind, LastRefusalReason: m.refused.Reason,
		StaleRefusals: m.staleRefusals, LastStaleRefusal: m.lastStale, Base: m.base, Based: m.hasBase, JournalFreeAt: m.freeAt,
		RecordSetBytes: m.plainBytes, RecordSetWireBytes: m.wireBytes, Compressing: m.compress,
		IndexedAcks: m.indexedAcks, BurstWait: max(m.cfg.BurstWait, 0), SecondaryWaiting: m.waited}
}
