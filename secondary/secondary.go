// Package secondary is the secondary processor of the method: it receives the
// time-interval groups of record sets (step e), forms consistency groups (step
// f), and shadows them, journaled first, onto the secondary volumes in
// sequence-consistent order (step g).
//
// For each group the order is: append to the journal and fsync; acknowledge to
// the primary (the record sets are now safe here); apply to the volumes in
// timestamp order. Every CheckpointEvery (100ms by default) the volumes are
// fsynced, "applied through group G" is written to the state file atomically,
// and journal segments that are wholly applied are removed. A crash at any
// point leaves the volumes at a group boundary once Open has replayed the
// journal from the state file's group, idempotently. The link is read
// while a group is journaled: the groups of the record sets that arrive
// meanwhile are journaled together, each a record of its own, with one
// fsync (a group commit), so that a slow fsync delays the groups behind it
// by one more fsync, not by one each. The primary is told that their record
// sets arrived before they are journaled (a receipt, which acknowledges no
// group), so that it sends the next ones while the journal is written. What
// the secondary tells a primary (its Welcome, the acknowledgements, a
// refusal) is decided under its lock, in that order, but sent by a
// goroutine of the connection (outbox.go): a primary that stops reading
// holds up nothing but its own connection, which the send timeout then
// gives up.
//
// When a group cannot be made durable (the journal's disk is full, a write or
// an fsync fails, a volume cannot be written), the secondary stops: it
// acknowledges nothing more, tells the primary why, and refuses every primary
// until it is closed and opened again, while it goes on serving status and
// the read-only exports at the last applied group (but once writing the
// volumes back failed: their disk may hold later writes without earlier
// ones under pages the cache may drop, so reads fail). A failed fsync cannot be
// retried (the kernel may have dropped the pages it could not write), so
// only a new Open, which reopens and replays the journal, resumes
// replication: a restart, or site.RunSecondary's retry, which closes the
// stopped secondary (Stopped) and opens it again after a backoff. The
// primary meanwhile paces its writes and then suspends the pairs into
// bitmaps.
//
// Readers of the secondary volumes (the read-only exports) take a shared lock
// that applying a group holds exclusively, so a reader never sees half a group.
//
// A resync is held. The primary sends pair-state markers in the stream
// (package recordset), and the secondary follows each volume's pair state
// through the journaled groups (pairstate.go). When a group holds the start
// of a resync of a volume whose copy was consistent, that group and every
// later one are journaled and acknowledged (so the primary frees its
// sidefile) but not applied: the volumes, the exports and the consistency
// time stay at the last group before the resync. The group that ends the last
// open resync applies every held group, read back from the journal, under one
// exclusion of readers. The state file names only applied groups, together
// with the volumes' pair states as of them; only applied groups are released
// from the journal; Open replays the journal only up to the first resync that
// never ended. A hold is bounded by the journal's room: near the limit the
// secondary gives it up, journaled, and the held volumes are reported not
// consistent until a later copy of them ends (holdrelease.go). A volume's
// first initial copy is not held: that volume is not consistent until it
// ends, and the others go on; every volume the secondary first learns of is
// recorded as never copied, so only a copy's end, never writes alone, makes
// it consistent. Status reports the applied
// group and its time, which a restart reports again, and the free space of
// the journal's file system goes to the primary in every acknowledgement, so
// that it refuses to start a resync the journal cannot hold.
//
// The volumes held consistent as of no time go to the primary too (the
// inconsistent section of a Position), but only to a primary that said it
// reads them: a primary from before that section refuses a Welcome or an
// Ack that carries it as malformed, and would never link. The Welcome asks
// (transport.FeatureAsksPrimary); a primary that answers with a Features
// frame saying transport.PrimaryReadsInconsistent is welcomed again, with
// the section, and its Acks carry it; any other primary never gets it. The
// Welcome that answers no longer asks, which tells it from a repeat of the
// first on a link that duplicates frames. Only one Features frame is
// answered, and only before any record set or heartbeat arrived on the
// connection: a Welcome amid acknowledgements would go back on what they
// said. Other frames before it (a repeated Hello) do not count. A primary
// whose Features frame also says transport.PrimaryReadsIndexedAcks is
// acknowledged from then on by transport.TypeIndexedAck, whose tables name
// the subsystems by their index in its Hello: an idle session sends one
// acknowledgement per interval, each naming every subsystem twice, names
// the primary decoded and looked up one by one. One whose Features frame
// says transport.PrimaryReadsWaited is told, in the receipts sent while the
// receiver waits on its disk, that it waits (answerWhileBusy).
package secondary

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	gomaps "maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"duplex/apply"
	"duplex/consistency"
	"duplex/disk"
	"duplex/history"
	"duplex/journal"
	"duplex/recordset"
	"duplex/transport"
	"duplex/volume"
)

// Config configures a Secondary.
type Config struct {
	Session    string
	Subsystems []string
	Volumes    map[string]*volume.Volume
	JournalDir string
	StatePath  string
	Limits     recordset.Limits
	// MaxFrame is the largest frame the link delivers (the listener's;
	// default transport.DefaultMaxFrame). With Limits it is announced in
	// the Welcome, so the primary forms nothing this secondary refuses.
	MaxFrame int
	// PrimaryPairState names, in what the secondary tells its operator to
	// do, the primary's pair state directory: a promoted site's is not
	// SESSION.primary beside its config (the default).
	PrimaryPairState string
	// Checkpoint is how often a group without updates is journaled when only
	// the time advances: at idle the consistency time reported moves once a
	// Checkpoint, since only a journaled time survives a restart. Default 1s.
	Checkpoint time.Duration
	// CheckpointEvery is how often the applied groups are flushed and
	// recorded in the state file (and the journal trimmed); default 100ms.
	CheckpointEvery time.Duration
	// OnApplied, if set, is called after each group is applied, while readers
	// are still excluded: tests check invariants there. The group's update
	// data is valid only during the call (its frame is then recycled).
	OnApplied func(g *consistency.Group)
	Logger    *slog.Logger
	// FS holds the journal and the state file (default disk.OS).
	FS disk.FS
	// Context, if set, ends Open's replay of the journal early (a daemon
	// asked to stop while it starts): Open then fails with ErrInterrupted
	// at a group boundary of the replay, the journal and the state file as
	// they were. The volumes may hold some of the groups replayed, which
	// the next start replays again, as it does after a crash.
	Context context.Context
	// JournalFree returns the free bytes of the journal's file system
	// (default statfs): the primary checks a resync fits before starting it.
	JournalFree func() (uint64, error)
	// LargestGroup, if set, is the largest consistency group to expect (the
	// primary's sidefile limit bounds it): Open refuses a journal whose file
	// system has no room for it (see journal.Needs).
	LargestGroup int64
	// Plain keeps the secondary from announcing transport.FeatureZstd, so
	// that the primary sends it record sets uncompressed, as it does to a
	// secondary from before compression.
	Plain bool
	// Gate, if set, holds applying at a coupled group's master
	// consistency time (gate.go): no update stamped after its limit is
	// applied, also by Open's replay of the journal.
	Gate Gate
	// History, if its Dir is set, keeps the undo of every group applied
	// (package history), for RecoverTo.
	History HistoryConfig
	// NoIndexedAcks has the secondary name the subsystems in every
	// acknowledgement (transport.TypeAck), as a secondary from before
	// transport.TypeIndexedAck did whatever the primary reads: for tests
	// of version skew.
	NoIndexedAcks bool
	// MaxViewBytes, if set, replaces MaxViewBytes, the memory one read
	// view (and a drill's, its writes' index with it) may hold (tests).
	MaxViewBytes int64
	// SlowDisk is how long the journal's write and fsync of a group, the
	// writes of a group to the volumes or a checkpoint's fsync of them
	// may take before status (Stats.DiskWait) and the log say that the
	// secondary waits on its disk (default DefaultSlowDisk).
	SlowDisk time.Duration
	// Retries says that the site closes this secondary and opens it
	// again by itself after it stops (site.RunSecondary): what the
	// primary and the log are told, in place of "restart the secondary".
	Retries bool
}

// Secondary receives, journals and applies.
type Secondary struct {
	cfg     Config
	log     *slog.Logger
	journal *journal.Journal
	targets map[string]apply.Target
	// hist keeps the undo of the groups applied; nil without history.
	hist *history.Log
	// recovering releases the hold (history.Log.Hold) of the point the
	// state file names while the volumes may not be at it: a RecoverTo
	// that named it failed before the undo after it was voided. Guarded
	// by mu.
	recovering func()
	// unkept is the state file's HistoryUnkept as the secondary opened.
	unkept  uint64
	sources map[string]history.Source
	// rviews are the open read views (Pin).
	rviews readViews
	// testPinAtReading, if set, is called as PinAt begins to read the
	// undo of the groups after its point (tests).
	testPinAtReading func()
	// testPinAtRead, if set, is called once PinAt has read that undo,
	// before it lays it under the view (tests).
	testPinAtRead func()
	// testRecovering, if set, is called once RecoverTo (or UndoRanges)
	// has chosen the point p it takes the volumes back to, before it
	// names p in the state file and reads p's undo (tests).
	testRecovering func(p history.Point)
	// testRecorded, if set, is called once RecoverTo has recorded its
	// point as the group the state file names, before it takes the
	// volumes there (tests).
	testRecorded func()

	// frames recycles the received frame buffers (frames.go).
	frames frameLedger

	view sync.RWMutex // held exclusively while a group is applied
	// torn says why the volumes may hold part of a group: an apply failed
	// part-way, and until a restart replays the journal they are at no
	// group, so they are neither read nor fenced. Guarded by view.
	torn error
	// unreadable is why the volumes are read at no group since writing
	// them back failed (unwritten): the pages the kernel could not write
	// may be dropped from its cache at any moment, and read again from a
	// disk that holds older data under them while it holds the newer
	// writes of other blocks, volumes or groups; until the journal is
	// replayed by a new Open, a reader would see a later write without an
	// earlier one. Set once, read without the view lock.
	unreadable atomic.Pointer[error]

	// order is the subsystems' names, sorted once: every Position sent
	// names them in its tables.
	order transport.TableOrder

	// journalEpoch counts the changes of the journal's size (a group
	// appended, segments released), and room is the last reading of its
	// file system's free space: receipts reuse it while the epoch stays
	// (room.go).
	journalEpoch atomic.Uint64
	room         freeReading
	// writing is the room the records the receiver is writing take in
	// the journal until they are synced, which a receipt sent meanwhile
	// (answerWhileBusy) takes off room's reading, taken before.
	writing atomic.Int64
	// segmentSize is the journal's, fixed once Open has checked its room
	// (checkRoom, which sizes the segments again where the journal sizes
	// them to its file system): read through the journal it waits for the
	// journal's lock, held over an fsync.
	segmentSize int64
	// disk is what waits on the disk, and since when (diskwait.go).
	disk diskWaits

	// repeats keeps a primary refused at every retry from flooding the log.
	repeats transport.Repeats

	mu sync.Mutex // serialises processing of record sets

	// Journaled groups are applied by a goroutine of their own (applier),
	// so that journaling group N+1 (its write and fsync) overlaps applying
	// group N and the volumes' fsync at a checkpoint. The receiver hands
	// each journaled group over, in order, on applyQ. When the queue is
	// full it waits for room without mu (handing), so that status, a fence
	// and Close are not held up for as long as the volumes take a group;
	// the applier never takes mu. A coupled secondary's receiver never
	// waits for the applier: what its Gate holds waits in the journal
	// (gate.go).
	applyQ    chan applyJob
	applyDone chan struct{} // closed when the applier has returned
	// ckReq asks the checkpointer for a checkpoint if one is due. The
	// applier never waits for a checkpoint: the volumes' fsync can take
	// hundreds of milliseconds on a busy disk, and an applier waiting for
	// it held back the consistency time and, once applyQ was full, the
	// receiver and every acknowledgement with it.
	ckReq   chan struct{}
	ckDone  chan struct{} // closed when the checkpointer has returned
	closing bool          // applyQ is closed; guarded by mu
	// handing says a receiver is journaling a group without mu
	// (journalUnlocked) or handing a journaled group over without mu,
	// waiting for room in applyQ; guarded by mu. Until it is done
	// nothing else is journaled or handed over, and applyQ stays open, so
	// the groups reach the applier in the order they were journaled.
	// handed is signalled when it ends.
	handing bool
	handed  *sync.Cond
	bg      sync.WaitGroup
	// queued is the last group handed to the applier (or applied at Open),
	// which a restart recovers to; guarded by mu.
	queued position
	// dataQueued is the last group handed to the applier with its data,
	// which aliases the frames it came in: a group a Gate holds journaled
	// ahead is read back from the journal, and its frames are free once
	// the group before it is applied. Guarded by mu.
	dataQueued uint64

	// posMu guards what the applier changes: the applied position, the
	// applied counts and why applying failed. Taken after mu, never before.
	posMu   sync.Mutex
	posCond *sync.Cond  // signalled whenever durable or applyErr changes
	durable apply.State // applied: the volumes are at this group
	// applyErr is why a journaled group could not be applied or
	// checkpointed; from then on nothing more is applied until a restart.
	applyErr error
	applied  appliedStats
	// journaled is the last group in the journal, which is ahead of durable
	// while a resync holds the volumes.
	journaled position
	// forgotten are the volumes a primary linked without, each with the
	// last group journaled then: a group through it, handed to the
	// applier before, replayed after a restart or a point of the history
	// recover --at reaches, carries pair states that still name the
	// volume (withoutForgottenLocked). The state file keeps it
	// (apply.State.Forgotten). Replaced, never changed in place: the
	// states published share it. Guarded by posMu and mu.
	forgotten map[string]uint64
	// unconfigured are the journaled groups Open found naming volumes the
	// config no longer has (unconfigured.go). Guarded by mu.
	unconfigured unconfiguredGroups
	pairs        *pairStates // as of journaled
	held         heldGroups
	former       *consistency.Former
	conn         transport.Conn
	out          *outbox // sends to conn, in the order decided under mu
	// readRoom is the read-ahead bound of the latest link served.
	readRoom *readRoom
	// peerReads are the features the primary on conn said it reads
	// (transport.TypeFeatures).
	peerReads uint64
	// ackIndex is the order of the subsystems in the Hello on conn, by
	// which its acknowledgements name them once the primary said it reads
	// transport.TypeIndexedAck; nil: by name.
	ackIndex *transport.SubsystemIndex
	instance uint64 // of the primary process whose record sets the former holds
	fenced   bool   // recover took over: no primary may write here any more
	// unrecorded is why a fence that holds is not recorded in the
	// identity (it lasts only until a restart), and ckFailed says it is
	// that Fence's checkpoint of the applied group failed (the identity
	// was never written): recover failed, and the operator must not write
	// to the volumes. Nil while no fence holds, or once one is recorded.
	unrecorded error
	ckFailed   bool
	// fencing counts the fences under way: no primary is taken, but the
	// volumes are not fenced yet (and a fence that is refused leaves them
	// unfenced), so neither status nor a refusal says they are.
	fencing int
	// prefence is the identity from before the fence this run made, which
	// UndoFence writes back; nil without one.
	prefence *identity
	stopped  error // why groups can no longer be made durable; nil while running
	// stoppedCh is closed when stopped is set (Stopped).
	stoppedCh chan struct{}
	ident     identity
	// replaying is Open's Context while it replays the journal.
	replaying   context.Context
	lastJournal time.Time
	// linkedAt is when the linked primary linked: a last error from
	// before it is about a link this one has superseded.
	linkedAt time.Time
	buf      []byte // a journal record's headers and small updates, reused
	// unflushed are the volumes written since the last checkpoint took
	// them, guarded by flushMu: whoever applies (Open's replay, then the
	// applier) adds to it, and a checkpoint takes it. stateGroup is the
	// group the state file names; ckMu orders the checkpoints (the
	// checkpointer's, Fence's, Close's) and guards stateGroup and
	// lastCheckpoint.
	ckMu      sync.Mutex
	flushMu   sync.Mutex
	unflushed map[string]apply.Target
	// unstarted are the volumes written since the checkpointer last
	// started their writeback (startWriteback), guarded by flushMu.
	unstarted map[string]apply.Target
	// unwritten is why the volumes may not hold what was applied to them
	// since the state file's group, guarded by ckMu: writing them back
	// failed (the writeback startWriteback started, or a checkpoint's
	// fsync). The kernel may have let go of the pages, and a later fsync
	// then finds nothing to write and succeeds: no checkpoint of this
	// process records a group after it, and a restart replays them.
	unwritten  error
	stateGroup uint64
	// restate says the state file is to be written though the applied
	// group is the one it names: its pair states changed (a volume
	// forgotten, forgetUnnamedLocked). Guarded by ckMu.
	restate        bool
	lastCheckpoint time.Time
	// owed is what a checkpoint could not do (the state file's write, or
	// the journal's release after it), retried on a backoff
	// (retryRelease); guarded by ckMu.
	owed owedRelease
	// owedText says what owed holds, for Stats (CheckpointOwed); nil
	// while nothing is owed.
	owedText atomic.Pointer[string]
	stats    Stats
	// formedTime is the time of the last group formed on the linked
	// primary's connection, journaled or not (receive journals an empty
	// one only every Checkpoint). A coupled secondary publishes it; status
	// does not report it, since a restart would not. Guarded by mu.
	formedTime int64
	// beforeLink, if set, is called by serve once a Hello has passed the
	// checks made outside the critical section that links the primary,
	// just before it: tests land a Fence or a stop there.
	beforeLink func()
	// unzstd decodes compressed record sets, never to more than the
	// largest record set Limits accept.
	unzstd *transport.Decompressor
	gated  gated
	// pending are the groups formed and not yet journaled, to be journaled
	// together (commitPending); guarded by mu, and empty whenever mu is
	// let go of.
	pending []*consistency.Group
	// tracing: the log takes debug records, and each group's steps are
	// timed (grouptrace.go). traces, arrivedFrom and reads are guarded by
	// mu.
	tracing     bool
	traces      map[*consistency.Group]*groupTrace
	arrivedFrom frameTimes // of the frame the Former is taking
	reads       []setRead  // of the record sets taken whose horizons no group formed passed
}

// applyJob is a journaled group for the applier, with the pair states as
// of it.
type applyJob struct {
	g    *consistency.Group
	vols map[string]apply.VolumeState
	// through and time, when g is nil, name a journaled group to apply
	// (with those a resync held before it) read back from the journal:
	// the groups a Gate holds journaled ahead of the applier (gate.go).
	// size bounds its journal record.
	through uint64
	time    int64
	size    int64
	trace   *groupTrace // its steps so far, when tracing
}

// appliedStats are the Stats the applier keeps, guarded by posMu.
type appliedStats struct {
	groups, updates, bytes uint64
	wall                   time.Time
}

// position is a journaled group's place in the stream.
type position struct {
	Group   uint64
	Time    int64
	Through map[string]uint64
}

// heldGroups are the journaled groups not applied because a resync is open.
type heldGroups struct {
	Groups uint64
	Bytes  int64
	Since  time.Time // when the hold began
}

// Stats is a snapshot for status and metrics.
type Stats struct {
	Connected bool
	Peer      string
	Group     uint64 // last group applied: the volumes are at this group
	// Time is the consistency time of Group, journaled, which a restart
	// reports too; the empty groups formed at idle and not journaled do not
	// move it.
	Time int64
	// JournaledGroup is the last group journaled (and acknowledged); ahead
	// of Group by HeldGroups while a resync holds the volumes.
	JournaledGroup uint64
	HeldGroups     uint64
	HeldBytes      int64
	Resyncing      []string // volumes whose resync holds the secondary
	GroupsApplied  uint64
	UpdatesApplied uint64
	BytesApplied   uint64
	// BytesJournaled is the data of the updates (writes and copies) in
	// the groups journaled: applied too, or held by a resync.
	BytesJournaled  uint64
	RecordSets      uint64
	Duplicates      uint64
	Early           uint64
	CorruptFrames   uint64
	Refused         uint64
	Laggard         string
	LaggardHorizon  int64
	JournalBytes    int64
	LastAppliedWall time.Time
	// LastError is why the last primary was refused, at LastErrorAt. It
	// is cleared once a primary that linked after it has a group
	// journaled: replication makes progress again, so whatever refused
	// the one before is gone. A refusal while a primary is linked (of
	// another one, or of the linked one's record set, which ends its
	// link) stays until the next link journals a group.
	LastError   string
	LastErrorAt time.Time
	// HoldsReleased counts the holds given up for lack of journal room;
	// LastHoldRelease says which, when and with what numbers.
	HoldsReleased   uint64
	LastHoldRelease string
	// Stopped is why the secondary stopped receiving, "" while it runs.
	Stopped string
	// GroupsWait says why journaled groups wait unapplied for a primary
	// (they name volumes the config no longer has: unconfiguredGroups),
	// naming the volumes and what the operator does; "" while none do.
	GroupsWait string
	// DiskWait says what has waited on the disk for Config.SlowDisk or
	// longer, and since when: a hung disk returns no error to stop at.
	DiskWait string
	// CheckpointOwed says what a checkpoint could not do and is retried
	// on a backoff (the state file's write, or the journal's release of
	// its applied segments), since when, how often it failed and at what
	// cost; "" while nothing is owed.
	CheckpointOwed string
	// CoupledTime is what a coupled secondary publishes: every update
	// stamped at or before it is journaled here, and a restart or recover
	// can apply through it (while a resync holds the volumes, the applied
	// group's time).
	CoupledTime int64
	// GateLimit is the Gate's limit as the applier last saw it, and
	// GatedGroups the groups journaled that it holds unapplied.
	GateLimit   int64
	GatedGroups uint64
	// JournalFullSince is when the groups the Gate holds left the
	// journal's file system no room for another (zero while there is):
	// nothing is acknowledged meanwhile.
	JournalFullSince time.Time

	// RecordSetBytes counts the record sets received in their plain
	// encodings, RecordSetWireBytes what they took on the link:
	// compressed where the primary compressed them.
	RecordSetBytes     uint64
	RecordSetWireBytes uint64

	// History says how far back RecoverTo reaches: from HistoryOldest
	// (Unix ns, of group HistoryOldestGroup) to HistoryNewest;
	// HistoryOldest is 0 without history or before any group is kept.
	History            bool
	HistoryOldest      int64
	HistoryOldestGroup uint64
	HistoryBytes       int64
	// HistoryNewest is the newest point RecoverTo and PinAt reach: the
	// applied group's time or, with part of the next group applied
	// through a Gate's limit, its newest step at or before the limit
	// (Time counts the part, through the limit itself).
	HistoryNewest int64
	// HistoryOverLimit says that the history is kept over its window or
	// MaxBytes: a trim of its old end was stopped by readers of the past
	// holding it (recover --at, a view of a past time as it opens), since
	// when, and what happens next; "" while it is not.
	HistoryOverLimit string
}

// MaxGroupBytes bounds one journaled consistency group. A group gathers every
// record set up to the slowest subsystem's horizon, so it can be far larger
// than one record set; the primary's sidefile limits bound it in practice.
const MaxGroupBytes = 2 << 30

// groupLimits decode journaled groups: their size was accepted when they were
// formed, and refusing one on replay would stop the secondary for good.
var groupLimits = recordset.Limits{MaxHeader: 1 << 30, MaxPayload: MaxGroupBytes, MaxRecords: 1 << 26}

// ErrInterrupted is returned by Open when its Context ended during the
// replay of the journal.
var ErrInterrupted = errors.New("start interrupted")

// ErrOtherSession is wrapped by Open's refusal of a state file that names
// another session: the config points at another session's site directory.
var ErrOtherSession = errors.New("another session's site directory")

// ErrStopped is returned when the secondary stops because it cannot make a
// group durable; continuing could acknowledge what is not safe.
var ErrStopped = errors.New("secondary stopped")

// stop records why groups can no longer be made durable. Called with s.mu held.
func (s *Secondary) stop(err error) {
	if s.stopped != nil {
		return
	}
	s.stopped = err
	s.stats.Stopped = err.Error()
	close(s.stoppedCh)
	until := "until restarted"
	if s.cfg.Retries {
		until = "until it is closed and opened again, which the site retries"
	}
	s.log.Error("secondary stopped: it cannot make consistency groups durable, acknowledges nothing more and refuses every primary "+until+"; "+
		"the volumes stay at the last applied group", "group", s.appliedState().Group, "err", err)
}

// Stopped is closed once the secondary has stopped: a group could not be
// made durable (Stats.Stopped says why), and nothing more is journaled,
// applied or acknowledged until it is closed and opened again.
func (s *Secondary) Stopped() <-chan struct{} { return s.stoppedCh }

// stoppedRefusal is what a primary is told. It passes only if the site
// opens the secondary again by itself (Config.Retries): otherwise it lasts
// until an operator restarts the secondary. Called with s.mu held.
func (s *Secondary) stoppedRefusal() transport.Refusal {
	then := "fix the disk or free space, then restart the secondary"
	if s.cfg.Retries {
		then = "the secondary retries by itself, with a backoff: it opens its journal and volumes again and resumes once the disk works"
	}
	return transport.Refusal{Reason: fmt.Sprintf("secondary stopped at group %d: %v; %s", s.appliedState().Group, s.stopped, then), Passing: s.cfg.Retries}
}

// Open opens the journal and the state file and applies every journaled group
// after the last applied one, so the volumes are at a group boundary.
func Open(cfg Config) (*Secondary, error) {
	if cfg.Checkpoint <= 0 {
		cfg.Checkpoint = time.Second
	}
	if cfg.CheckpointEvery <= 0 {
		cfg.CheckpointEvery = 100 * time.Millisecond
	}
	if cfg.SlowDisk <= 0 {
		cfg.SlowDisk = DefaultSlowDisk
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	st, err := apply.ReadStateFS(cfg.FS, cfg.StatePath)
	if errors.Is(err, disk.ErrDamaged) {
		return nil, fmt.Errorf("secondary: %w: it holds the group applied to the volumes and each volume's pair state, which nothing else holds, "+
			"and the secondary never writes it anew over what it held: put back a copy of it, then start the secondary again; without one, %s", err, cfg.wayForward())
	}
	if err != nil {
		return nil, err
	}
	if st.Session != "" && st.Session != cfg.Session {
		return nil, fmt.Errorf("secondary: state %s belongs to session %q, not %q: %w", cfg.StatePath, st.Session, cfg.Session, ErrOtherSession)
	}
	st.Session = cfg.Session
	if st.Through == nil {
		st.Through = map[string]uint64{}
	}
	if err := disk.Or(cfg.FS).MkdirAll(filepath.Dir(cfg.StatePath), 0o755); err != nil {
		return nil, fmt.Errorf("secondary: %w", err)
	}
	ident, err := readIdentity(disk.Or(cfg.FS), IdentityPath(cfg.StatePath), cfg.wayForward())
	if err != nil {
		return nil, err
	}
	j, err := journal.Open(cfg.JournalDir, journal.Options{MaxRecord: MaxGroupBytes, FS: cfg.FS, LargestRecord: cfg.LargestGroup, Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("secondary: %w", err)
	}
	seeded, upgraded := seedVolumes(&st, slices.Sorted(gomaps.Keys(cfg.Volumes)))
	if upgraded {
		cfg.Logger.Info("the state file is from a version before pair states: each volume is named duplex, consistent as of the applied group, as that version took them",
			"state", cfg.StatePath, "group", st.Group, "volumes", slices.Sorted(gomaps.Keys(st.Volumes)))
		if ident.Generation == 0 && ident.Fenced == "" && !ident.AdoptsFirst {
			// That version predates data generations too: following
			// none says nothing of a lost identity, and it took the
			// first primary that linked. Recorded before the state is
			// upgraded, so a kill between leaves it so.
			ident.AdoptsFirst = true
			if err := writeIdentity(disk.Or(cfg.FS), IdentityPath(cfg.StatePath), ident); err != nil {
				j.Close()
				return nil, fmt.Errorf("secondary: %w", err)
			}
		}
	}
	if resolveForgotten(&st, j.LastIndex()) || seeded {
		// Durable before anything arrives: a restart, recover and the
		// journal's readers (RecoversTo) start from it too. After the
		// journal's own checks, whose message says what the disk lacks.
		if err := apply.WriteStateFS(cfg.FS, cfg.StatePath, st); err != nil {
			j.Close()
			return nil, fmt.Errorf("secondary: %w", err)
		}
	}
	s := &Secondary{cfg: cfg, log: cfg.Logger.With("component", "secondary"), journal: j, durable: st, targets: map[string]apply.Target{},
		unflushed: map[string]apply.Target{}, unstarted: map[string]apply.Target{}, stateGroup: st.Group, lastCheckpoint: time.Now(), ident: ident, fenced: ident.Fenced != "",
		journaled: position{Group: st.Group, Time: st.Time, Through: maps(st.Through)}, pairs: newPairStates(st.Volumes), stoppedCh: make(chan struct{}),
		forgotten: st.Forgotten, segmentSize: j.SegmentSize()}
	s.tracing = traceOn(s.log)
	s.posCond = sync.NewCond(&s.posMu)
	s.rviews.maxView = cfg.MaxViewBytes
	s.gated.done = make(chan struct{})
	s.handed = sync.NewCond(&s.mu)
	s.order = transport.NewTableOrder(cfg.Subsystems)
	lim := cfg.Limits.Effective()
	if s.unzstd, err = transport.NewDecompressor(lim.MaxHeader + lim.MaxPayload + 4); err != nil {
		j.Close()
		return nil, fmt.Errorf("secondary: %w", err)
	}
	for n, v := range cfg.Volumes {
		s.targets[n] = v
	}
	if err := s.openHistory(); err != nil {
		j.Close()
		return nil, err
	}
	// checkpoint expects s.mu held, as it is when groups arrive.
	s.mu.Lock()
	s.replaying = cfg.Context
	err = s.replay()
	s.replaying = nil
	if err == nil {
		s.releaseAtStart()
	}
	if err == nil {
		// Settled now, while the journal still ends with the pending group
		// if it was journaled: trimming it later must not change the answer.
		err = s.setIdentity(s.ident.settled(s.journaled.Group))
	}
	s.mu.Unlock()
	if err == nil {
		err = s.checkRoom()
	}
	if err != nil {
		s.ckMu.Lock()
		s.stopReleaseRetriesLocked()
		s.ckMu.Unlock()
		j.Close()
		s.closeHistory()
		return nil, err
	}
	// The check sized the segments again to the room left beside what
	// cannot be released (a resync's held groups): the reserve kept
	// beside a hold is that of the segments the journal closes at now,
	// not of those journal.Open sized counting every segment as room.
	s.segmentSize = j.SegmentSize()
	s.former = consistency.New(cfg.Session, cfg.Subsystems, s.start())
	s.queued = position{Group: s.durable.Group, Time: s.durable.Time, Through: maps(s.durable.Through)}
	s.frames.applied, s.dataQueued = s.queued.Group, s.queued.Group
	// Room for one group applied and one waiting: enough to keep the disk
	// busy with both, and a bound on the memory held by journaled groups.
	s.applyQ, s.applyDone = make(chan applyJob, 1), make(chan struct{})
	s.ckReq, s.ckDone = make(chan struct{}, 1), make(chan struct{})
	if cfg.Gate != nil {
		s.gated.kick = make(chan struct{}, 1)
	}
	if n := len(s.gated.pending); n > 0 {
		// The applier reads them back from the journal as the limit
		// reaches each.
		last := s.gated.pending[n-1]
		s.queued = position{Group: last.through, Time: last.time}
		s.gated.ahead, s.gated.pending = s.gated.pending, nil
	}
	go s.applier()
	go s.checkpointer()
	return s, nil
}

// start is where a new primary process resumes: after the last journaled
// group, held or not.
func (s *Secondary) start() consistency.Start {
	return consistency.Start{Time: s.journaled.Time, Through: maps(s.journaled.Through)}
}

func maps(m map[string]uint64) map[string]uint64 {
	out := make(map[string]uint64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// interrupted is ErrInterrupted, saying where, if Open's Context ended
// while it replays the journal.
func (s *Secondary) interrupted(index uint64) error {
	if s.replaying == nil || s.replaying.Err() == nil {
		return nil
	}
	return fmt.Errorf("%w before replaying journaled group %d (the state file names group %d, and the next start replays from there)",
		ErrInterrupted, index, s.stateGroup)
}

// replay reads the journal after the applied group. It follows the
// pair-state markers through every journaled group, then applies the groups
// through the last one after which no resync is open: groups of a resync
// that never completed stay journaled and unapplied, so the volumes recover
// to the last group before it.
func (s *Secondary) replay() error {
	last := s.journal.LastIndex()
	if last != 0 && last < s.durable.Group {
		return fmt.Errorf("secondary: journal %s ends at group %d but group %d was applied: journal lost", s.cfg.JournalDir, last, s.durable.Group)
	}
	// A fenced secondary applies no journaled group again, and one taken
	// back in time (RecoverTo) released the groups after its own.
	if first := s.journal.FirstIndex(); first > s.durable.Group+1 && s.ident.Fenced == "" {
		return fmt.Errorf("secondary: journal %s starts at group %d, after applied group %d: groups missing", s.cfg.JournalDir, first, s.durable.Group)
	}
	through := s.durable.Group
	var vols map[string]apply.VolumeState
	limit, gated := int64(0), s.cfg.Gate != nil
	if gated {
		limit, _ = s.cfg.Gate.Limit()
	}
	// beyond is the first journaled group past the Gate's limit, whose
	// updates through the limit are applied; pending are the groups past
	// it after which no resync is open, which the applier applies as the
	// limit reaches each.
	var beyond *consistency.Group
	var beyondVols map[string]apply.VolumeState
	var pending []applyJob
	// replay are the groups to apply, each a point of its own (history,
	// views) as the applier makes it: a group held by a coupled
	// secondary's Gate when it stopped is applied here, and a time inside
	// a run of them must reach the newest before it, not the group before
	// them all. A resync's held groups are applied as parts of the group
	// that ends it.
	var replay []applyJob
	err := s.journal.Replay(s.durable.Group, func(index uint64, data []byte) error {
		if err := s.interrupted(index); err != nil {
			return err
		}
		if s.ident.Fenced != "" && index <= s.durable.RecoveredFrom {
			// Undone by recover --at: the volumes hold none of it, so
			// neither do the pair states, the held groups or the journaled
			// position.
			return nil
		}
		g, err := s.decodeJournaled(index, data)
		if err != nil {
			return err
		}
		if err := s.checkGroup(g); err != nil {
			return err
		}
		s.unconfigured.note(index, s.unconfiguredIn(g))
		s.pairs.step(g, s.journaled.Time)
		if len(s.forgotten) != 0 {
			// Journaled before the volume was forgotten: its markers are
			// the old pair's.
			s.pairs.vols = s.withoutForgottenLocked(index, s.pairs.vols)
			s.pairs.unknownValid = false
		}
		s.journaled = position{Group: index, Time: g.Time, Through: maps(g.Through)}
		if s.pairs.holding() {
			s.hold(g)
			return nil
		}
		if gated && (g.Time > limit || len(pending) > 0) {
			if beyond == nil && index == through+1 {
				beyond, beyondVols = g, s.pairs.snapshot()
			}
			pending = appendAhead(pending, applyJob{through: index, time: g.Time, vols: s.pairs.snapshot(), size: groupSize(g)})
			s.held = heldGroups{}
			return nil
		}
		through, vols, s.held = index, s.pairs.snapshot(), heldGroups{}
		replay = appendAhead(replay, applyJob{through: index, vols: vols})
		return nil
	})
	if err != nil {
		return fmt.Errorf("secondary: replay: %w", err)
	}
	if s.ident.Fenced != "" && through > s.durable.Group && through <= s.durable.RecoveredFrom {
		// Undone by recover --at.
		through = s.durable.Group
	}
	if s.ident.Fenced != "" && through > s.durable.Group {
		// A fence checkpoints before it returns, so these groups were
		// applied before a fence that did not (an older version), and the
		// volumes may have been written since: applied again, they would
		// overwrite those writes.
		s.log.Warn("fenced: the journaled groups after the state file's group are not applied again: they were applied before the fence, and the volumes may have been written since",
			"groups", through-s.durable.Group, "state_group", s.durable.Group, "through", through)
		through = s.durable.Group
	}
	if s.ident.Fenced != "" {
		// Nothing after the state file's group is applied again: no
		// group waits either.
		beyond, pending = nil, nil
		s.unconfigured = unconfiguredGroups{}
	}
	if s.unconfigured.from != 0 {
		if err := s.waitForUnconfigured(gated && (beyond != nil || len(pending) > 0)); err != nil {
			return err
		}
		replay, s.unconfigured.jobs = splitJobs(replay, s.unconfigured.from)
		through = s.durable.Group
		if n := len(replay); n > 0 {
			through = replay[n-1].number()
		}
	}
	if beyond != nil {
		if err := s.undoPastLimit(through, beyond.Number, limit); err != nil {
			return fmt.Errorf("secondary: replay: %w", err)
		}
	}
	replayed := through - s.durable.Group
	if replayed > 0 {
		if err := s.applyJournaled(replay); err != nil {
			return fmt.Errorf("secondary: replay: %w", err)
		}
	}
	if beyond != nil {
		if err := s.applyPrefix(beyond, limit, beyondVols); err != nil {
			return fmt.Errorf("secondary: replay: %w", err)
		}
	}
	if n := len(pending); n > 0 {
		s.gated.pending = pending
		s.log.Info("coupled: journaled groups past the master time wait for it", "groups", pending[n-1].through-through,
			"master_time", time.Unix(0, limit).UTC())
	}
	if err := s.checkpoint(); err != nil {
		return fmt.Errorf("secondary: replay: %w", err)
	}
	if replayed > 0 {
		s.log.Info("replayed journal", "groups", replayed, "through", s.durable.Group, "consistency_time", time.Unix(0, s.durable.Time).UTC())
	}
	if s.pairs.holding() {
		s.log.Warn("resync in progress: journaled groups held until it completes; the volumes stay at the last group before it",
			"held_groups", s.held.Groups, "held_bytes", s.held.Bytes, "volumes", s.pairs.resyncing(), "consistency_time", time.Unix(0, s.durable.Time).UTC())
	}
	return nil
}

// checkRoom checks the journal's room once replay has released what it
// could. journal.Open counted every segment but the active one as room; the
// held groups of a resync in progress are not, as nothing after the applied
// group is released until the resync completes: a journal full of them would
// otherwise be accepted and fail its first append, stopping the secondary
// again on every restart.
func (s *Secondary) checkRoom() error {
	err := s.journal.CheckRoom(s.durable.Group)
	if err == nil {
		return nil
	}
	if !s.pairs.holding() {
		return fmt.Errorf("secondary: %w", err)
	}
	return fmt.Errorf("secondary: the resync of %s in progress holds %d groups (%s) in the journal after applied group %d, "+
		"which cannot be released until the resync completes, so they are not room: %w "+
		"(grow the file system or free space on it), then restart the secondary; "+
		"giving up the hold, by declaring the resyncing volumes inconsistent, is not available at a restart "+
		"(while it runs, the secondary gives a hold up itself before the journal fills, so something else filled this file system)",
		strings.Join(s.pairs.resyncing(), ", "), s.held.Groups, mib(s.held.Bytes), s.durable.Group, err)
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func (s *Secondary) decodeJournaled(index uint64, data []byte) (*consistency.Group, error) {
	g, session, err := consistency.DecodeGroup(data, groupLimits)
	if err != nil {
		return nil, fmt.Errorf("journal record %d: %w", index, err)
	}
	if session != s.cfg.Session || g.Number != index {
		return nil, fmt.Errorf("journal record %d: group %d of session %q", index, g.Number, session)
	}
	return g, nil
}

// hold counts g among the groups journaled but not applied.
func (s *Secondary) hold(g *consistency.Group) {
	if s.held.Groups == 0 {
		s.held.Since = time.Now()
	}
	s.held.Groups++
	for _, u := range g.Updates {
		s.held.Bytes += int64(len(u.Data))
	}
}

var errEnough = errors.New("enough")

// applyJournaled applies the groups of jobs, in order (applyLocked), all
// under one exclusion of readers.
func (s *Secondary) applyJournaled(jobs []applyJob) error {
	s.view.Lock()
	defer s.view.Unlock()
	err := s.applyLocked(jobs)
	if err != nil && s.torn == nil {
		s.torn = fmt.Errorf("applying the groups after group %d failed part-way (%w): the volumes may hold part of them; "+
			"restart the secondary to replay the journal", s.durable.Group, err)
	}
	return err
}

// applyLocked applies, for each job in order, every journaled group after
// the one applied before it through the job's group, reading them back
// from the journal: the groups before the job's own belong to a resync
// and are no state the primary ever had. Only the last job may carry its
// group (the one just journaled), which is applied from memory. Once a
// job's group is applied the volumes are at it: the applied position
// moves to it, with the job's pair states (vols), and OnApplied sees it.
func (s *Secondary) applyLocked(jobs []applyJob) error {
	k := 0 // the job the next group applied belongs to
	var final *consistency.Group
	applyOne := func(g *consistency.Group) error {
		s.diskBegin(waitApply, fmt.Sprintf("applying group %d to the volumes", g.Number))
		defer s.diskEnd(waitApply)
		job := jobs[k]
		g = s.withoutForgottenUpdates(g)
		if err := s.capture(g, g.Number != job.number(), job.vols); err != nil {
			return err
		}
		if err := s.keepForViews(g); err != nil {
			return err
		}
		touched, err := apply.Updates(g, s.targets)
		if err != nil {
			return err
		}
		s.flushMu.Lock()
		for name, t := range touched {
			s.unflushed[name] = t
			s.unstarted[name] = t
		}
		s.flushMu.Unlock()
		var n uint64
		for _, u := range g.Updates {
			if u.Kind != recordset.KindMarker {
				n += uint64(len(u.Data))
			}
		}
		s.posMu.Lock()
		s.applied.groups++
		s.applied.updates += uint64(len(g.Updates))
		s.applied.bytes += n
		s.posMu.Unlock()
		final = g
		if g.Number == job.number() {
			s.reached(g, job.vols)
			k++
		}
		return nil
	}
	last := jobs[len(jobs)-1]
	upTo := last.number()
	if last.g != nil {
		upTo--
	}
	if upTo > s.durable.Group {
		err := s.journal.Replay(s.durable.Group, func(index uint64, data []byte) error {
			if index > upTo {
				return errEnough
			}
			if err := s.interrupted(index); err != nil {
				return err
			}
			g, err := s.decodeJournaled(index, data)
			if err != nil {
				return err
			}
			if err := applyOne(g); err != nil {
				return err
			}
			if index == upTo {
				return errEnough
			}
			return nil
		})
		if err != nil && !errors.Is(err, errEnough) {
			return err
		}
		if final == nil || final.Number != upTo {
			return fmt.Errorf("secondary: journal %s: held groups through %d not found", s.cfg.JournalDir, upTo)
		}
	}
	if last.g != nil {
		return applyOne(last.g)
	}
	return nil
}

// reached moves the applied position to g, just applied, with the pair
// states vols. Called by the applier (or Open) with readers excluded.
func (s *Secondary) reached(g *consistency.Group, vols map[string]apply.VolumeState) {
	if s.cfg.OnApplied != nil {
		s.cfg.OnApplied(g)
	}
	s.posMu.Lock()
	vols = s.withoutForgottenLocked(g.Number, vols)
	s.durable = apply.State{Session: s.cfg.Session, Group: g.Number, Time: g.Time, Through: maps(g.Through), Volumes: vols,
		Forgotten: s.forgotten}
	if s.gated.partial <= g.Time {
		s.gated.partial = 0
	}
	s.applied.wall = time.Now()
	s.posCond.Broadcast()
	s.posMu.Unlock()
}

// appliedState is a copy of the applied position.
func (s *Secondary) appliedState() apply.State {
	s.posMu.Lock()
	defer s.posMu.Unlock()
	st := s.durable
	st.Through = maps(st.Through)
	return st
}

// enqueue hands a journaled group to the applier. The state file follows at
// a later checkpoint: until then the journal still holds the group, and a
// restart applies it again. Called with s.mu held; while the applier is two
// groups behind it waits for room, which holds the primary back through the
// acknowledgements it then waits for. It waits without s.mu (the volumes
// may take minutes over a backlog, and status, a fence and Close must not
// wait as long), and takes s.mu again before it returns: the caller then
// finds the connection replaced, the secondary fenced or stopped, as
// anything may have happened meanwhile but the journaling or handing over
// of another group (handing). The group counts as queued from the start:
// a fence waits until it is applied. A coupled secondary's never waits:
// what its Gate holds waits in the journal (journalAhead). While it waits
// the primary on conn is sent a receipt every roomAnswer: an applier held
// by a slow disk (a volume write or fsync of seconds) would otherwise
// have the receiver say nothing for as long, and the primary give up the
// link for silence and redial, resending everything outstanding.
func (s *Secondary) enqueue(conn transport.Conn, g *consistency.Group, vols map[string]apply.VolumeState) error {
	if s.closing {
		return fmt.Errorf("apply group %d: secondary closed", g.Number)
	}
	s.queued = position{Group: g.Number, Time: g.Time, Through: maps(g.Through)}
	job := applyJob{g: g, vols: vols, trace: s.takeTrace(g)}
	if s.cfg.Gate != nil {
		s.journalAhead(job)
		return nil
	}
	s.dataQueued = g.Number
	select {
	case s.applyQ <- job:
		return nil
	default:
	}
	s.handing = true
	s.mu.Unlock()
	quiet := s.answerWhileBusy(conn)
	// The applier takes it whatever happens meanwhile (after a failure it
	// drains the queue), and Close leaves applyQ open until it has.
	s.applyQ <- job
	quiet()
	s.mu.Lock()
	s.handing = false
	s.handed.Broadcast()
	return nil
}

// awaitHandedLocked waits until no group is being handed over. Called with
// s.mu held, which it lets go of while it waits.
func (s *Secondary) awaitHandedLocked() {
	for s.handing {
		s.handed.Wait()
	}
}

// applier applies the journaled groups handed to it, in order, and asks
// the checkpointer for a checkpoint after each. After a failure it applies
// nothing more (the journal holds the rest, and a restart replays it) and
// stops the secondary; it drains applyQ all the same, so the receiver never
// blocks on it.
func (s *Secondary) applier() {
	defer close(s.applyDone)
	defer close(s.ckReq)
	q := s.applyQ
	for {
		job, ok := s.nextJob(&q)
		if !ok {
			return
		}
		if s.applyFailure() != nil {
			s.frames.appliedThrough(job.number())
			continue
		}
		var start time.Time
		if job.trace != nil {
			start = time.Now()
		}
		err := s.applyGated(&job)
		// Nothing reads the group's data after this, whether applied or
		// not: a failure leaves the rest to a restart's replay.
		s.frames.appliedThrough(job.number())
		if errors.Is(err, errGateClosed) {
			// Closing or fenced while the gate holds: the journal keeps
			// the group for the next start, which replays it through the
			// limit (a fenced one does not).
			s.posMu.Lock()
			s.gated.skipped = job.number()
			// Its data is recycled (appliedThrough): read back from the
			// journal if an undone fence hands it back.
			passed := applyJob{through: job.number(), time: job.groupTime(), vols: job.vols, size: job.size}
			if job.g != nil {
				passed.size = groupSize(job.g)
			}
			s.gated.passed = append(s.gated.passed, passed)
			s.posCond.Broadcast()
			s.posMu.Unlock()
			continue
		}
		if err != nil {
			s.failApplying(err)
			continue
		}
		s.logApplied(&job, start)
		select {
		case s.ckReq <- struct{}{}:
		default: // one is asked for already
		}
	}
}

// startWriteback starts writing back what the groups applied since the
// last call wrote, so that the next checkpoint's fsync of the volumes is
// short: a burst of every page written over CheckpointEvery queues on the
// disk beside the journal's fsync of the next group, and holds it up. The
// checkpointer calls it, not the applier: sync_file_range waits when the
// disk's queue is full, and an applier waiting on it held the consistency
// time back by as much. It makes nothing durable (the checkpoint still
// fsyncs), but a failure is one of writing the volumes back: a file system
// may tell it only to this call and drop the pages (ext4, after a failed
// delayed allocation), so that the checkpoint's fsync would succeed over
// data that is gone. It stops the secondary, and no checkpoint records the
// groups since the state file's (unwritten): a restart replays them.
func (s *Secondary) startWriteback() error {
	s.flushMu.Lock()
	touched := s.unstarted
	if len(touched) == 0 {
		s.flushMu.Unlock()
		return nil
	}
	s.unstarted = map[string]apply.Target{}
	s.flushMu.Unlock()
	if err := apply.StartWriteback(touched); err != nil {
		err = fmt.Errorf("secondary: writing the applied groups back: %w", err)
		s.ckMu.Lock()
		s.unwrittenLocked(err)
		s.ckMu.Unlock()
		return err
	}
	return nil
}

// unwrittenLocked records that writing the volumes back failed, the first
// time. Called with s.ckMu held.
func (s *Secondary) unwrittenLocked(err error) {
	if s.unwritten == nil {
		s.unwritten = err
		why := fmt.Errorf("writing the volumes back after group %d failed (%w): what their disk holds of the groups since is not known, "+
			"and the pages it could not write may be dropped from the cache at any moment; they are read again once the secondary is opened again "+
			"and its journal replayed", s.stateGroup, err)
		s.unreadable.Store(&why)
	}
}

// checkpointer checkpoints every CheckpointEvery while groups are applied,
// beside the applier, which goes on applying meanwhile, and after each
// group applied starts writing it back (startWriteback). A checkpoint that
// fails stops the secondary as a failed apply does.
func (s *Secondary) checkpointer() {
	defer close(s.ckDone)
	for range s.ckReq {
		if s.applyFailure() != nil {
			continue
		}
		var start, ck time.Time
		if s.tracing {
			start = time.Now()
		}
		if err := s.startWriteback(); err != nil {
			s.failApplying(err)
			continue
		}
		if s.tracing {
			ck = time.Now()
		}
		if err := s.checkpointIfDue(); err != nil {
			s.failApplying(err)
		}
		s.logCheckpoint(start, ck)
	}
}

// failApplying records why applying or checkpointing stopped, and stops the
// secondary.
func (s *Secondary) failApplying(err error) {
	s.posMu.Lock()
	first := s.applyErr == nil
	if first {
		s.applyErr = err
	}
	s.posCond.Broadcast()
	s.posMu.Unlock()
	if !first {
		return
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		s.stopApplying(err)
	}()
}

// applyFailure is why applying stopped, nil while it goes on.
func (s *Secondary) applyFailure() error {
	s.posMu.Lock()
	defer s.posMu.Unlock()
	return s.applyErr
}

// stopApplying stops the secondary after a journaled group could not be
// applied, and tells the primary why. Outside the applier, which must not
// wait for s.mu.
func (s *Secondary) stopApplying(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stop(err)
	if s.conn != nil {
		s.endLocked(s.conn, transport.EncodeRefuse(s.stoppedRefusal()))
	}
}

// sendLocked queues frame f for the primary on conn, if conn is still the
// linked connection (a replaced one is closed: nothing reaches it). The
// outbox sends it, so that a primary that stops reading holds nothing here.
// Called with s.mu held.
func (s *Secondary) sendLocked(conn transport.Conn, f []byte) {
	if s.conn == conn && s.out != nil {
		s.out.put(f)
	}
}

// endLocked queues f as the last frame for the primary on conn, which the
// outbox closes once f is sent; it reports whether conn is the linked
// connection. Called with s.mu held.
func (s *Secondary) endLocked(conn transport.Conn, f []byte) bool {
	if s.conn != conn || s.out == nil {
		return false
	}
	s.out.end(f)
	return true
}

// waitAppliedThrough waits until the applier has applied group queued, or
// failed, and returns the group applied, why applying stopped, and why the
// volumes are at no group boundary. Called without s.mu: the applier is
// handed nothing more meanwhile only if the caller sees to that.
func (s *Secondary) waitAppliedThrough(queued uint64) (applied uint64, applyErr, torn error) {
	s.posMu.Lock()
	for s.durable.Group < queued && s.gated.skipped < queued && s.applyErr == nil {
		s.posCond.Wait()
	}
	// Groups a stopped Gate skipped count as done: the volumes are at its
	// limit, which is where a coupled secondary fences.
	applied, applyErr = max(s.durable.Group, s.gated.skipped), s.applyErr
	s.posMu.Unlock()
	s.view.RLock()
	torn = s.torn
	s.view.RUnlock()
	return applied, applyErr, torn
}

// waitApplied waits until the applier has applied every group handed to it,
// or failed. Called with s.mu held, so that no group is handed over
// meanwhile.
func (s *Secondary) waitApplied() {
	s.posMu.Lock()
	defer s.posMu.Unlock()
	for s.durable.Group < s.queued.Group && s.gated.skipped < s.queued.Group && s.applyErr == nil {
		s.posCond.Wait()
	}
}

// checkpoint makes the applied groups durable on the volumes, records
// "applied through group G" in the state file, and removes wholly applied
// journal segments. Batching it over several groups saves the volumes' and
// the state file's fsyncs on every group; only the journal's remains.
// Open's replay, the checkpointer, Fence and Close call it; receiving,
// journaling and applying go on meanwhile.
func (s *Secondary) checkpoint() error {
	s.ckMu.Lock()
	defer s.ckMu.Unlock()
	return s.checkpointLocked()
}

// checkpointIfDue checkpoints if CheckpointEvery has passed since the last.
func (s *Secondary) checkpointIfDue() error {
	s.ckMu.Lock()
	defer s.ckMu.Unlock()
	if time.Since(s.lastCheckpoint) < s.cfg.CheckpointEvery {
		return nil
	}
	return s.checkpointLocked()
}

func (s *Secondary) checkpointLocked() error {
	_, err := s.checkpointRecording()
	return err
}

// checkpointRecording is checkpointLocked, which also says whether the
// state file records the applied state (or already did): a checkpoint
// whose journal's release (or history's trim) failed after the state
// file was written returns its error, and recorded. Called with ckMu
// held.
func (s *Secondary) checkpointRecording() (recorded bool, err error) {
	s.lastCheckpoint = time.Now()
	st := s.appliedState()
	if st.Group == s.stateGroup && !s.restate {
		return true, nil
	}
	if s.unwritten != nil {
		return false, fmt.Errorf("secondary: group %d not recorded: the volumes may not hold the groups after %d (%w): restart the secondary, which applies its journal",
			st.Group, s.stateGroup, s.unwritten)
	}
	// Taken after st: every volume a group through st.Group wrote is in
	// it. Groups the applier applies meanwhile add to a new set, for the
	// next checkpoint; their writes may reach the disk with this one's
	// fsync, which a restart's replay of them from st.Group rewrites.
	s.flushMu.Lock()
	targets := s.unflushed
	s.unflushed = map[string]apply.Target{}
	s.flushMu.Unlock()
	// The group counts as recorded, and the volumes as flushed, only once
	// the state file names it: a checkpoint whose state file could not be
	// written leaves both for the next one (Fence's, Close's), which would
	// otherwise find nothing to write and report a state file it never
	// wrote. One whose fsync of the volumes failed leaves them unwritten,
	// and no later one records a group.
	s.diskBegin(waitCheckpoint, fmt.Sprintf("recording group %d applied (fsync of the volumes and the state file, release of the journal)", st.Group))
	written, err := s.persist(st, targets)
	s.diskEnd(waitCheckpoint)
	if written {
		s.stateGroup, s.restate = st.Group, false
		s.owedLocked(st.Group, err)
	} else {
		s.flushMu.Lock()
		for name, t := range targets {
			s.unflushed[name] = t
		}
		s.flushMu.Unlock()
		if s.unwritten == nil {
			// The state file's write failed, not the volumes' fsync:
			// retried on its own, the session perhaps journaling
			// nothing for hours.
			s.owedRecordLocked(err)
		}
	}
	return written, err
}

// persist fsyncs the volumes a state covers, then writes the state and trims
// the journal. Every group through st.Group was applied before the fsync
// started, so the state never claims more than the volumes hold. written
// says whether the state file names st.Group, even if trimming then failed.
func (s *Secondary) persist(st apply.State, targets map[string]apply.Target) (written bool, err error) {
	if err := apply.Flush(targets); err != nil {
		// Not retried: after a failed fsync the pages may be clean and
		// not on the disk, and the next fsync succeeds.
		s.unwrittenLocked(err)
		return false, err
	}
	st.HistoryUnkept = s.historyUnkept(st.Group)
	if err := apply.WriteStateFS(s.cfg.FS, s.cfg.StatePath, st); err != nil {
		return false, err
	}
	return true, s.releaseThrough(st.Group)
}

// releaseThrough releases the journal's segments, and trims the history,
// through group, which the state file names.
func (s *Secondary) releaseThrough(group uint64) error {
	before := s.journal.Bytes()
	err := s.journal.Release(group)
	if s.journal.Bytes() != before {
		s.journalEpoch.Add(1)
	}
	if err != nil {
		return fmt.Errorf("secondary: %w", err)
	}
	if s.hist != nil {
		if err := s.hist.Trim(group); err != nil {
			return fmt.Errorf("secondary: %w", err)
		}
	}
	return nil
}

// owedRelease is what a checkpoint could not do, retried on its own after
// a backoff, for as long as the secondary is open: the state file's write
// (record), or the journal's release (releaseThrough) after the state file
// was written, whose segments stay on the disk until it is done. The next
// group's checkpoint does either, but a session may journal nothing for
// hours: a state file not written meanwhile has a kill replay the groups
// again, and a release not done holds the journal's space. A try costs
// the checkpoint's writes: for the state file, an fsync of the volumes
// written since the last and a write, fsync and rename of the state file;
// for the release, a removal and an fsync of the journal's directory.
type owedRelease struct {
	record   bool   // the state file does not name the applied group
	through  uint64 // the release owed through this group, 0 for none
	attempts int
	since    time.Time // the first failure of this episode
	err      error     // the last failure
	at       time.Time // when err happened
	timer    *time.Timer
	closed   bool // the secondary closes: no retry from now on
}

// Backoff of the release's retries: from a second, doubled, up to a
// minute.
const (
	releaseRetryFirst = time.Second
	releaseRetryMax   = time.Minute
)

// owedLocked records the outcome, err, of the release through group of a
// checkpoint that wrote the state file: a failure is retried (the first
// of an episode logged by the checkpoint's caller), a success makes any
// release owed through an earlier group done. Called with ckMu held.
func (s *Secondary) owedLocked(group uint64, err error) {
	o := &s.owed
	o.record = false
	if err == nil {
		if o.through == 0 || group >= o.through {
			if o.timer != nil {
				o.timer.Stop()
			}
			*o = owedRelease{closed: o.closed}
		}
		s.publishOwedLocked()
		return
	}
	o.through = max(o.through, group)
	s.owedFailedLocked(err)
}

// owedRecordLocked records that a checkpoint could not write the state file
// (err), which is then retried. Called with ckMu held.
func (s *Secondary) owedRecordLocked(err error) {
	s.owed.record = true
	s.owedFailedLocked(err)
}

// owedFailedLocked notes a failure, err, of what is owed, and schedules its
// retry. Called with ckMu held.
func (s *Secondary) owedFailedLocked(err error) {
	o := &s.owed
	if o.since.IsZero() {
		o.since = time.Now()
	}
	o.err, o.at = err, time.Now()
	if o.timer == nil && !o.closed {
		o.timer = time.AfterFunc(min(releaseRetryFirst<<min(o.attempts, 16), releaseRetryMax), s.retryRelease)
	}
	s.publishOwedLocked()
}

// retryRelease does what is owed again (the checkpoint, or the release
// alone), and schedules the next try if it fails again; only its success
// is logged, the failure being the one the checkpoint's caller logged.
func (s *Secondary) retryRelease() {
	s.ckMu.Lock()
	defer s.ckMu.Unlock()
	o := &s.owed
	o.timer = nil
	if o.closed || (!o.record && o.through == 0) {
		return
	}
	o.attempts++
	record, through, attempts, since := o.record, o.through, o.attempts, o.since
	if record {
		if s.unwritten != nil {
			// The volumes' writeback failed: no checkpoint records a
			// group again until a restart, which says so.
			*o = owedRelease{closed: o.closed}
			s.publishOwedLocked()
			return
		}
		if recorded, _ := s.checkpointRecording(); recorded {
			// A release that failed after it is owed, and logged once
			// it is done.
			s.log.Info("recorded the groups applied that a checkpoint could not record", "group", s.stateGroup,
				"attempts", attempts, "failing_for", time.Since(since).Round(time.Millisecond))
		}
		return
	}
	err := s.releaseThrough(through)
	s.owedLocked(through, err)
	if err == nil {
		s.log.Info("released the journal's applied segments that a checkpoint could not release", "through_group", through,
			"attempts", attempts, "failing_for", time.Since(since).Round(time.Millisecond))
	}
}

// publishOwedLocked publishes what is owed for Stats, which must not wait
// for ckMu: a checkpoint holds it through its fsyncs, on a disk that may
// have stopped answering. Called with ckMu held.
func (s *Secondary) publishOwedLocked() {
	o := s.owed
	tries := "1 try"
	if o.attempts > 0 {
		tries = fmt.Sprintf("%d tries", o.attempts+1)
	}
	var text string
	switch {
	case o.record:
		text = fmt.Sprintf("the state file could not record the groups applied since %s (%s, the last at %s: %v): "+
			"it names group %d, from which a restart replays the journal; tried again after a backoff, at most every %s, "+
			"each try an fsync of the volumes written since and a write of the state file",
			o.since.UTC().Format(time.RFC3339), tries, o.at.UTC().Format(time.RFC3339), o.err, s.stateGroup, releaseRetryMax)
	case o.through != 0:
		text = fmt.Sprintf("the journal's release of its applied segments through group %d has failed since %s (%s, the last at %s: %v): "+
			"they stay on the disk meanwhile (journal_bytes); tried again after a backoff, at most every %s, each try a removal and "+
			"an fsync of the journal's directory, and at the next start if the secondary stops first",
			o.through, o.since.UTC().Format(time.RFC3339), tries, o.at.UTC().Format(time.RFC3339), o.err, releaseRetryMax)
	}
	if text == "" {
		s.owedText.Store(nil)
		return
	}
	s.owedText.Store(&text)
}

// releaseAtStart releases the journal's segments of the groups the state
// file names. A checkpoint that wrote it may have failed to release them,
// or been killed before it did; and the replay's checkpoint, with no group
// to apply, writes nothing and releases nothing, so they would stay on the
// disk until a primary sends a group. A failure is retried as a
// checkpoint's is (owedLocked); it does not fail the start, whose state
// file holds what the volumes do.
func (s *Secondary) releaseAtStart() {
	s.ckMu.Lock()
	defer s.ckMu.Unlock()
	if s.stateGroup == 0 {
		return
	}
	before := s.journal.Bytes()
	err := s.releaseThrough(s.stateGroup)
	if err != nil {
		s.log.Warn("the state file records the groups applied, but releasing the journal's segments they fill failed at the start: "+
			"it is tried again after a backoff (from a second up to a minute) until it succeeds", "through_group", s.stateGroup, "err", err)
	} else if after := s.journal.Bytes(); after < before {
		s.log.Info("released the journal's applied segments that were not released before the last stop", "through_group", s.stateGroup,
			"bytes", before-after)
	}
	s.owedLocked(s.stateGroup, err)
}

// stopReleaseRetriesLocked ends the retries of an owed release: the journal
// closes. Called with ckMu held.
func (s *Secondary) stopReleaseRetriesLocked() {
	s.owed.closed = true
	if s.owed.timer != nil {
		s.owed.timer.Stop()
		s.owed.timer = nil
	}
}

// Position returns what the volumes hold: the applied group and its
// consistency time. Groups journaled beyond it (held by a resync) are not
// part of it.
func (s *Secondary) Position() transport.Position {
	st := s.appliedState()
	return transport.Position{Group: st.Group, Time: st.Time, Through: st.Through}
}

// Run accepts primaries on ln until ctx ends or a group cannot be made durable.
func (s *Secondary) Run(ctx context.Context, ln transport.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	// Cancelled before the wait above, whatever ends Run, so that the
	// connections are closed.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// Every connection being served is closed at the end, linked or not:
	// serve lets go of s.conn before it waits for its outbox, whose send
	// to a primary that stopped reading (a refusal) would otherwise hold
	// the shutdown for the send timeout. Closed outside s.mu, and all at
	// once: a TLS close sends close_notify, which such a primary holds for
	// up to 5 s, so the shutdown waits that long once, not once for each.
	var live struct {
		sync.Mutex
		conns map[transport.Conn]struct{}
		ended bool
	}
	live.conns = map[transport.Conn]struct{}{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-ctx.Done()
		// A receiver waiting for journal room while the Gate holds
		// (awaitRoomLocked) would wait for ever: the groups the Gate
		// holds are left to the journal (the next start replays them
		// through its limit).
		s.gated.end()
		live.Lock()
		live.ended = true
		conns := slices.Collect(gomaps.Keys(live.conns))
		live.Unlock()
		var closing sync.WaitGroup
		for _, c := range conns {
			closing.Add(1)
			go func() {
				defer closing.Done()
				c.Close()
			}()
		}
		closing.Wait()
	}()
	for {
		conn, err := ln.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil {
				if c := context.Cause(ctx); !errors.Is(c, context.Canceled) {
					return c
				}
				s.mu.Lock()
				stopped := s.stopped
				s.mu.Unlock()
				if stopped != nil {
					return fmt.Errorf("%w: %v", ErrStopped, stopped)
				}
				return nil
			}
			var he *transport.HandshakeError
			if errors.As(err, &he) {
				s.refusedHandshake(he.Peer, he.Err)
				continue
			}
			return err
		}
		live.Lock()
		ended := live.ended
		if !ended {
			live.conns[conn] = struct{}{}
		}
		live.Unlock()
		if ended {
			conn.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.logLinkEnd(ctx, s.serve(conn))
			live.Lock()
			delete(live.conns, conn)
			live.Unlock()
		}()
	}
}

// lasting is a refusal that lasts until an operator acts: a primary's
// stop gives up on it at once.
func lasting(reason string) transport.Refusal { return transport.Refusal{Reason: reason} }

// passing is a refusal that the secondary lifts by itself, shortly: a
// primary's stop waits for it as for a link that may come back.
func passing(reason string) transport.Refusal {
	return transport.Refusal{Reason: reason, Passing: true}
}

// linkEnd is why a linked primary's link ended, and which primary it was:
// serve's error once the primary linked, which Run logs.
type linkEnd struct {
	peer       string
	subsystems []string
	instance   uint64
	linkedFor  time.Duration
	// unlinked: the secondary had unlinked it before it ended (a newer
	// link, a fence, a stop); sendErr: sending to the primary failed,
	// which closes the connection, so that reading then fails too.
	unlinked bool
	sendErr  error
	// stopped: why the secondary had stopped when the link ended, which
	// ended it (the stop refuses the primary and closes the connection),
	// and which stop logged, at Error.
	stopped error
	err     error
}

func (e *linkEnd) Error() string {
	msg := fmt.Sprintf("the link of the primary at %s (subsystems %s, instance %x) ended after %s: %v",
		e.peer, strings.Join(e.subsystems, ","), e.instance, e.linkedFor.Round(time.Millisecond), e.err)
	if e.sendErr != nil {
		msg += fmt.Sprintf(" (sending to it had failed: %v)", e.sendErr)
	}
	return msg
}

func (e *linkEnd) Unwrap() error { return e.err }

// logLinkEnd logs why a primary's link ended (err, serve's): at Info for
// an end links come to (the primary closed it between frames, the
// secondary unlinked it, refused it, or is shutting down), at Warn for a
// fault (the connection reset or cut in the middle of a frame, frames out
// of step, a send that failed before the primary's end was read), with the
// primary and the error; a stop's at Info, the stop having said why at
// Error. A
// connection that ended before it linked was reported where it was
// refused.
func (s *Secondary) logLinkEnd(ctx context.Context, err error) {
	var e *linkEnd
	if !errors.As(err, &e) {
		if err != nil {
			s.log.Debug("connection ended before it linked", "err", err)
		}
		return
	}
	attrs := []any{"peer", e.peer, "subsystems", e.subsystems, "instance", fmt.Sprintf("%x", e.instance),
		"linked_for", e.linkedFor.Round(time.Millisecond), "err", e.err}
	if e.sendErr != nil {
		attrs = append(attrs, "send_err", e.sendErr)
	}
	switch {
	case errors.Is(e.err, errRefused):
		// The refusal was logged, at Warn, where it was made.
		s.log.Info("the primary's link ended: refused", attrs...)
	case e.stopped != nil:
		// A consequence of the stop, which was logged at Error: the
		// connection's read or send then fails for the close alone.
		s.log.Info("the primary's link ended: the secondary stopped", append(attrs, "stopped", e.stopped)...)
	case errors.Is(e.err, io.EOF):
		// Read to its end: what the primary sent was read, and a send
		// that failed meanwhile found its end closed.
		s.log.Info("the primary's link ended: the primary closed it", attrs...)
	case e.sendErr != nil:
		// What the primary sent and was not read yet is lost with the
		// connection: the next link's Welcome says what to send again.
		s.log.Warn("the primary's link ended: sending to it failed", attrs...)
	case e.unlinked || errors.Is(e.err, errReplaced):
		s.log.Info("the primary's link ended: unlinked by the secondary (a newer link, a fence or a stop)", attrs...)
	case ctx.Err() != nil:
		s.log.Info("the primary's link ended: the secondary is shutting down", attrs...)
	default:
		s.log.Warn("the primary's link ended", attrs...)
	}
}

// refuse tells the primary why, and closes the connection. A connection not
// (or no longer) linked is sent the refusal here, outside s.mu: a primary
// that does not read holds only its own serve.
func (s *Secondary) refuse(conn transport.Conn, r transport.Refusal) error {
	s.mu.Lock()
	linked := s.conn == conn && s.out != nil
	err := s.refuseLocked(conn, r)
	s.mu.Unlock()
	if !linked {
		conn.Send(transport.EncodeRefuse(r))
		conn.Close()
	}
	return err
}

// refuseLocked counts the refusal and, if conn is the linked connection,
// queues it, after which the outbox closes the connection; refuse sends it
// to any other. Called with s.mu held.
func (s *Secondary) refuseLocked(conn transport.Conn, r transport.Refusal) error {
	reason := r.Reason
	// A refused primary dials again and again: the same reason is logged
	// once, and then once a minute while it lasts.
	if ok, unlogged := s.repeats.Log(reason, time.Now()); ok {
		attrs := []any{"peer", conn.Peer(), "reason", reason, "passes", r.Passing}
		if unlogged > 0 {
			attrs = append(attrs, "unlogged_repeats", unlogged)
		}
		s.log.Warn("refusing primary", attrs...)
	}
	s.stats.Refused++
	s.stats.LastError, s.stats.LastErrorAt = reason, time.Now()
	s.endLocked(conn, transport.EncodeRefuse(r))
	return fmt.Errorf("%w: %s", errRefused, reason)
}

// errRefused is the error of a connection the secondary refused, which
// refuseLocked logged.
var errRefused = errors.New("refused the primary")

// refusedHandshake counts and reports a connection whose TLS handshake
// failed: the primary's certificate was not accepted, or it does not speak
// TLS. The primary learns only that the handshake failed, so the reason in
// words is here, in the log (once while it recurs) and in LastError.
func (s *Secondary) refusedHandshake(peer string, err error) {
	why := transport.Explain(err, "secondary")
	if ok, unlogged := s.repeats.Log(why, time.Now()); ok {
		attrs := []any{"peer", peer, "err", why}
		if unlogged > 0 {
			attrs = append(attrs, "unlogged_repeats", unlogged)
		}
		s.log.Warn("refused connection: TLS handshake failed", attrs...)
	}
	s.mu.Lock()
	s.stats.Refused++
	s.stats.LastError = fmt.Sprintf("refused a primary at %s: TLS handshake: %s", peer, why)
	s.stats.LastErrorAt = time.Now()
	s.mu.Unlock()
}

// serve serves one primary connection. Once the primary is linked, its
// error is a *linkEnd, saying why the link ended; before, what it returns
// was reported where the connection was refused.
func (s *Secondary) serve(conn transport.Conn) (err error) {
	defer conn.Close()
	if err := transport.Handshake(context.Background(), conn); err != nil {
		var he *transport.HandshakeError
		if errors.As(err, &he) {
			s.refusedHandshake(he.Peer, he.Err)
		} else {
			s.refusedHandshake(conn.Peer(), err)
		}
		return err
	}
	hello, err := s.awaitHello(conn)
	if errors.Is(err, transport.ErrPeerSpeaksTLS) {
		s.refusedHandshake(conn.Peer(), err)
		return err
	}
	if err != nil {
		s.log.Warn("bad hello", "peer", conn.Peer(), "err", err)
		return err
	}
	s.mu.Lock()
	fenced, stopped := s.fenced || s.fencing > 0, s.stopped
	var refusal transport.Refusal
	if stopped != nil {
		refusal = s.stoppedRefusal()
	}
	s.mu.Unlock()
	if stopped != nil {
		return s.refuse(conn, refusal)
	}
	if fenced {
		s.mu.Lock()
		reason := s.fencedRefusalLocked(hello)
		s.mu.Unlock()
		return s.refuse(conn, lasting(reason))
	}
	if hello.Session != s.cfg.Session {
		return s.refuse(conn, lasting(fmt.Sprintf("session %q is not this secondary's session %q", hello.Session, s.cfg.Session)))
	}
	if !sameSet(hello.Subsystems, s.cfg.Subsystems) {
		return s.refuse(conn, lasting(fmt.Sprintf("primary subsystems %v differ from the secondary's %v", hello.Subsystems, s.cfg.Subsystems)))
	}
	if reason := s.checkVolumes(hello.Volumes); reason != "" {
		return s.refuse(conn, lasting(reason))
	}
	if s.beforeLink != nil {
		s.beforeLink()
	}

	s.mu.Lock()
	// The Welcome says what is journaled, and a new process's former
	// starts from it: a group being journaled is in it first.
	s.awaitHandedLocked()
	// Checked again in the hold that links: a Fence or a stop since the
	// checks above found no primary to disconnect, and only this keeps
	// this one out.
	switch {
	case s.stopped != nil:
		refusal = s.stoppedRefusal()
	case s.fenced || s.fencing > 0 || s.ident.Fenced != "":
		// A fence begun since the first look, which may wait for the
		// apply below to end: it lasts, and is what the operator must
		// hear of, not the apply.
		refusal = lasting(s.fencedRefusalLocked(hello))
	case s.unconfigured.applying:
		// Before generationLocked, which acts on a primary's consent to
		// overwrite (the copies forgotten, its generation followed): a
		// primary refused changes nothing, and the one whose link
		// applies the groups is not refused after them for a
		// generation another brought meanwhile.
		refusal = passing("the secondary is applying the journaled groups that waited for a primary without the volumes they " +
			"name, at another primary's link: it takes a primary again once they are applied")
	default:
		refusal = s.generationLocked(hello)
	}
	if refusal.Reason == "" {
		refusal = lasting(s.unnamedCopiesLocked(hello.Volumes))
	}
	if refusal.Reason != "" {
		s.mu.Unlock()
		return s.refuse(conn, refusal)
	}
	s.forgetUnnamedLocked(hello.Volumes)
	if s.unconfigured.from != 0 {
		// s.mu is let go while they are applied, and taken again.
		if err := s.applyUnconfiguredLocked(); err != nil {
			s.mu.Unlock()
			// The volumes may hold part of the groups (s.torn) until
			// the primary's next dial applies the rest, from the group
			// applied, with no operator acting (or a restart replays
			// the journal): it passes.
			return s.refuse(conn, passing(err.Error()))
		}
		// A stop or a fence may have come meanwhile, which only this
		// keeps the primary out of; and the linked primary's receiver may
		// be recording its process in the identity (journalUnlocked),
		// which generationLocked may write too.
		s.awaitHandedLocked()
		if s.stopped != nil {
			refusal = s.stoppedRefusal()
		} else {
			refusal = s.generationLocked(hello)
		}
		if refusal.Reason != "" {
			s.mu.Unlock()
			return s.refuse(conn, refusal)
		}
	}
	replaced := s.conn
	if replaced != nil {
		s.out.end(nil)
	}
	// The Welcome is queued first, under mu: what it says is the state
	// every acknowledgement queued after it goes on from.
	out := newOutbox(conn, s.log)
	s.conn, s.out = conn, out
	// The idle time is claimed only from groups formed on this link.
	s.formedTime = 0
	// The same primary process reconnecting still holds everything not yet
	// journaled here, so what was received stays and it resends only beyond
	// it. A new primary process starts from what is journaled.
	if hello.Instance == 0 || hello.Instance != s.instance {
		start := s.start()
		// Only the process that sent the journaled groups can resend a
		// record set partly in them; from it, the journaled part is skipped.
		// Being welcomed is not enough: the identity names a process only
		// once a group of its record sets is journaled (commit), and one
		// left pending by a failed write is named if the journal holds
		// its group, as a restart would name it (Open).
		start.Resent = hello.Instance != 0 && hello.Instance == s.ident.settled(s.journaled.Group).Instance
		s.former = consistency.New(s.cfg.Session, s.cfg.Subsystems, start)
		s.instance = hello.Instance
	}
	// Until the primary says what it reads, it is sent only what every
	// primary reads.
	s.peerReads, s.ackIndex = 0, nil
	pos := s.welcomeLocked()
	out.put(s.order.EncodePosition(transport.TypeWelcome, pos))
	s.stats.Connected, s.stats.Peer = true, conn.Peer()
	s.linkedAt = time.Now()
	s.mu.Unlock()
	if replaced != nil {
		// Outside the lock: closing a TLS connection sends close_notify,
		// which a primary that stopped reading holds for up to 5 s.
		replaced.Close()
	}
	// A refusal after a link is news, however like the last.
	s.repeats.Reset()
	s.log.Info("primary linked", "peer", conn.Peer(), "group", pos.Group)
	linkedAt := time.Now()
	defer func() {
		s.mu.Lock()
		// Unlinked already: a newer link replaced it, or a fence or a
		// stop cut it off.
		unlinked, stopped := s.conn != conn, s.stopped
		if !unlinked {
			s.conn, s.out = nil, nil
			s.stats.Connected = false
		}
		s.mu.Unlock()
		// A refusal queued last is sent before the connection closes;
		// one that cannot be sent gives up at the send timeout.
		out.end(nil)
		out.wait()
		err = &linkEnd{peer: conn.Peer(), subsystems: hello.Subsystems, instance: hello.Instance, linkedFor: time.Since(linkedAt),
			unlinked: unlinked, sendErr: out.failed(), stopped: stopped, err: err}
	}()

	if fb, ok := conn.(transport.FrameBuffers); ok {
		fb.SetFrameAlloc(getFrame)
	}
	// Frames are read on a goroutine of their own, so that the frames
	// that arrive while a group is journaled (an fsync may take hundreds
	// of milliseconds on a busy disk) are read meanwhile, and are then
	// received together: their groups are journaled with one fsync,
	// instead of one each, in turn, every one of which waited for the
	// fsyncs of all before it.
	frames := make(chan arrival, maxBatch)
	done := make(chan struct{})
	defer close(done)
	room := newReadRoom(2 * int64(s.maxFrame()))
	s.mu.Lock()
	s.readRoom = room
	s.mu.Unlock()
	go s.readFrames(conn, frames, room, done)
	var batch []inbound
	// batchHeld: the bytes of batch, released to room once received.
	var batchHeld int64
	// data counts the frames of record sets and heartbeats: once one came,
	// the primary has gone on from a Welcome and a Features frame is too
	// late. answered: a Features frame was answered.
	corrupt, data, answered := 0, 0, false
	// ending receives what arrived before the link's end, as it would have
	// been had it been read alone, and returns why the link ended: frames
	// read whole and checked are not dropped for what came after them (a
	// refusal, frames out of step, the end of the stream), nor the record
	// sets they bring counted but never taken.
	ending := func(why error) error {
		if len(batch) == 0 {
			return why
		}
		err := s.receive(conn, batch, hello.Subsystems)
		switch {
		case err == nil:
			return why
		case why == nil:
			return fmt.Errorf("receiving the %d frames read before a refusal: %w", len(batch), err)
		}
		return fmt.Errorf("receiving the %d frames read before the link ended (%v): %w", len(batch), why, err)
	}
	for {
		if len(batch) > 0 && (len(frames) == 0 || len(batch) >= maxBatch) {
			if err := s.receive(conn, batch, hello.Subsystems); err != nil {
				return fmt.Errorf("receiving %d frames: %w", len(batch), err)
			}
			clear(batch)
			batch = batch[:0]
			room.release(batchHeld)
			batchHeld = 0
		}
		a := <-frames
		if a.typ != transport.TypeRecordSet && a.typ != transport.TypeBundle || a.open != nil || a.bad != nil || a.err != nil || a.refuse != "" {
			// Only a data frame that decoded joins the batch.
			room.release(a.held())
		} else {
			batchHeld += a.held()
		}
		if a.err != nil {
			return ending(fmt.Errorf("reading the next frame: %w", a.err))
		}
		if a.refuse != "" {
			for _, err := range a.corrupt {
				s.countCorrupt(conn, err)
			}
			if err := ending(nil); err != nil {
				return err
			}
			return s.refuse(conn, lasting(a.refuse))
		}
		if a.open != nil {
			s.countCorrupt(conn, a.open)
			// Several in a row: the stream is out of step (a corrupted
			// length); a new connection resynchronises it.
			if corrupt++; corrupt >= 3 {
				return ending(fmt.Errorf("%d corrupt frames in a row: %w", corrupt, a.open))
			}
			continue
		}
		corrupt = 0
		switch a.typ {
		case transport.TypeRecordSet, transport.TypeBundle:
			data++
		case transport.TypeFeatures:
			if a.bad != nil {
				s.countCorrupt(conn, a.bad)
				continue
			}
			if answered || data > 0 {
				// Only the answer to the Welcome, once (a link may repeat
				// it): a second Welcome amid acknowledgements would go
				// back on what they said.
				s.log.Warn("ignoring a Features frame after the primary went on from the Welcome", "peer", conn.Peer())
				continue
			}
			answered = true
			s.mu.Lock()
			if s.conn == conn {
				s.peerReads = a.reads
				if a.reads&transport.PrimaryReadsIndexedAcks != 0 && !s.cfg.NoIndexedAcks {
					// The Hello's order is the one its heartbeats use.
					s.ackIndex = transport.NewSubsystemIndex(hello.Subsystems)
				}
				pos := s.welcomeLocked()
				// Asked and answered: a Welcome that still asks is a
				// repeat of the first, which the primary skips.
				pos.Features &^= transport.FeatureAsksPrimary
				s.out.put(s.order.EncodePosition(transport.TypeWelcome, pos))
			}
			s.mu.Unlock()
			continue
		default:
			s.log.Warn("ignoring unexpected frame", "peer", conn.Peer(), "type", a.typ)
			continue
		}
		for _, err := range a.corrupt {
			s.countCorrupt(conn, err)
		}
		if a.bad != nil {
			s.countCorrupt(conn, a.bad)
			continue
		}
		s.mu.Lock()
		s.stats.RecordSetBytes += a.plain
		s.stats.RecordSetWireBytes += a.wire
		s.mu.Unlock()
		batch = append(batch, a.in)
	}
}

// maxBatch bounds the frames read ahead of the one being received (readRoom
// their bytes), and received together.
const maxBatch = 64

// welcomeLocked is the Welcome for the linked primary: where it goes on
// from, what the secondary takes, and the rest of its position. Called with
// s.mu held.
func (s *Secondary) welcomeLocked() transport.Position {
	pos := transport.Position{Group: s.journaled.Group, Time: s.journaled.Time, Through: maps(s.journaled.Through), Received: s.former.Received(),
		JournalFree: s.reportedFree()}
	pos.Recoverable = s.recoverable(pos.Time)
	pos.Features = transport.FeatureBundles | transport.FeatureAsksPrimary | transport.FeatureNamesRefusals
	if !s.cfg.Plain {
		pos.Features |= transport.FeatureZstd
	}
	pos.Inconsistent = s.inconsistentLocked()
	if lim := s.Limits(); lim != transport.BaselineLimits {
		// Only limits other than the baseline are announced, so a
		// secondary with the baseline keeps the Welcome of before.
		pos.Limits = lim
	}
	return pos
}

// inconsistentLocked is what a Position tells the linked primary of the
// volumes held consistent as of no time: nothing to a primary that did not
// say it reads that section, which a primary from before it refuses as
// malformed (it then claims times for them as such a primary always did).
// Called with s.mu held.
func (s *Secondary) inconsistentLocked() []string {
	if s.peerReads&transport.PrimaryReadsInconsistent == 0 {
		return nil
	}
	return s.pairs.inconsistent()
}

func (s *Secondary) maxFrame() int {
	if s.cfg.MaxFrame > 0 {
		return s.cfg.MaxFrame
	}
	return transport.DefaultMaxFrame
}

// Limits are what the secondary accepts in a record set and a frame.
func (s *Secondary) Limits() transport.Limits {
	l := s.cfg.Limits.Effective()
	return transport.Limits{MaxHeader: uint64(l.MaxHeader), MaxPayload: uint64(l.MaxPayload), MaxRecords: uint64(l.MaxRecords), MaxFrame: uint64(s.maxFrame())}
}

// checkUpdate says why an update cannot be applied to the secondary volumes,
// or nil if it can.
func (s *Secondary) checkUpdate(u *recordset.Update) error {
	v, ok := s.cfg.Volumes[u.Volume]
	if !ok {
		return fmt.Errorf("no secondary volume %q (the secondary has %s)", u.Volume, s.volumeList())
	}
	if size := uint64(v.Size()); u.Offset > size || u.Length > size-u.Offset {
		return fmt.Errorf("volume %q: [%d, +%d) lies past its end at %d bytes", u.Volume, u.Offset, u.Length, size)
	}
	return nil
}

func (s *Secondary) volumeList() string {
	names := make([]string, 0, len(s.cfg.Volumes))
	for n, v := range s.cfg.Volumes {
		names = append(names, fmt.Sprintf("%q (%d bytes)", n, v.Size()))
	}
	slices.Sort(names)
	if len(names) == 0 {
		return "no volumes"
	}
	return strings.Join(names, ", ")
}

// checkRecordSet refuses, before anything of it is accepted, a record set
// holding an update the volumes cannot take: journaled, it would be
// acknowledged and then fail in apply, on every restart.
func (s *Secondary) checkRecordSet(rs *recordset.RecordSet) error {
	for i := range rs.Updates {
		u := &rs.Updates[i]
		// Only a marker is decoded as one: for a write, DecodeMarker builds
		// an error, several allocations for every update received.
		if u.Kind == recordset.KindMarker {
			if m, err := recordset.DecodeMarker(*u); err == nil && m.State == recordset.StateHoldReleased {
				return fmt.Errorf("record set %s/%d: update %d of %d: a %v marker, which only a secondary writes", rs.Subsystem, rs.Seq, i+1, len(rs.Updates), m.State)
			}
		}
		if err := s.checkUpdate(u); err != nil {
			return fmt.Errorf("record set %s/%d: update %d of %d (%s, ts %d): %w", rs.Subsystem, rs.Seq, i+1, len(rs.Updates), u.Kind, u.Timestamp, err)
		}
	}
	return nil
}

// checkGroup is the same check for a journaled group before it is replayed:
// a journal written before updates were checked on arrival may hold one that
// cannot be applied, and replaying part of the group would break it.
func (s *Secondary) checkGroup(g *consistency.Group) error {
	for i := range g.Updates {
		u := &g.Updates[i]
		if _, ok := s.cfg.Volumes[u.Volume]; !ok {
			// The old pair's, forgotten, or a volume taken out of the
			// config whose groups wait for a primary (unconfiguredIn).
			continue
		}
		if err := s.checkUpdate(u); err != nil {
			return fmt.Errorf("journal %s: group %d cannot be applied: update %d of %d (%s, ts %d): %w; "+
				"nothing of the group was applied: give the secondary the volumes the group was journaled for, "+
				"or re-create the secondary (remove its journal, state and volume images) for a full copy",
				s.cfg.JournalDir, g.Number, i+1, len(g.Updates), u.Kind, u.Timestamp, err)
		}
	}
	return nil
}

// checkVolumes says why the secondary cannot hold the primary's volumes, or ""
// if it can. Extra volumes here are harmless: nothing is sent for them.
func (s *Secondary) checkVolumes(vols []transport.VolumeInfo) string {
	if len(vols) == 0 {
		return "the primary named no volumes: it cannot be checked against the secondary's " + s.volumeList()
	}
	var problems []string
	for _, pv := range vols {
		v, ok := s.cfg.Volumes[pv.Name]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("primary volume %q (%d bytes) has no secondary volume", pv.Name, pv.Size))
		case v.Size() != pv.Size:
			problems = append(problems, fmt.Sprintf("volume %q is %d bytes at the primary but %d bytes at the secondary", pv.Name, pv.Size, v.Size()))
		}
	}
	if len(problems) == 0 {
		return ""
	}
	return strings.Join(problems, "; ") + " (the secondary has " + s.volumeList() + ")"
}

func (s *Secondary) countCorrupt(conn transport.Conn, err error) {
	s.log.Warn("discarding corrupt frame", "peer", conn.Peer(), "err", err)
	s.mu.Lock()
	s.stats.CorruptFrames++
	s.mu.Unlock()
}

var errReplaced = errors.New("connection replaced by a newer one")

// receive takes what a batch of frames brought, frame by frame: record
// sets, in order, then heartbeats of idle subsystems (named by their index
// in names, the Hello's subsystems); then it forms and commits what
// consistency groups it can, and sends one receipt. The frames read while
// the last group was journaled come in one batch, and their groups are
// journaled with one fsync.
//
// Each frame is the buffer its record sets alias; it is recycled once
// nothing reads it (frameLedger).
func (s *Secondary) receive(conn transport.Conn, batch []inbound, names []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Another receiver handing its group over goes first: the groups of
	// these frames are journaled after it, and the frames are recycled
	// only after groups handed over later.
	s.awaitHandedLocked()
	if s.conn != conn {
		return errReplaced
	}
	held := make([]*ledgerFrame, len(batch))
	for i, in := range batch {
		held[i] = s.frames.add(in.buf)
	}
	defer func() {
		// Under s.mu, which receive lets go of only while it hands a
		// group over, when no other receiver takes anything: every group
		// formed from these frames is journaled by now, and handed to the
		// applier at or before the queued one, unless a group waits in
		// s.pending, which only an error before commitPending leaves:
		// then nothing is released, and the frames it reads go to the
		// collector past the ledger's bound.
		if len(s.pending) == 0 {
			s.frames.release(s.former, s.dataQueued)
		}
	}()
	took := false
	for i, in := range batch {
		ok, err := s.take(conn, in.sets, in.beats, names, held[i])
		if err != nil {
			// The groups formed from the frames before are journaled
			// all the same: the Former holds them no more.
			if cerr := s.commitPending(conn); cerr != nil {
				return cerr
			}
			return err
		}
		if !ok {
			continue
		}
		took = true
		if s.tracing {
			s.arrivedFrom = s.timesTaken(&batch[i])
		}
		if err := s.formGroups(conn); err != nil {
			return err
		}
	}
	if !took {
		return nil
	}
	if len(s.pending) > 0 {
		// Told before the groups are journaled, so that the primary sends
		// the next record sets while this batch is written: it counts
		// what it sent against its window until the secondary says it
		// arrived, and with that said only after the fsync the link and
		// the journal took turns. Nothing is acknowledged by it.
		s.receipt(conn)
	}
	defer s.receipt(conn)
	return s.commitPending(conn)
}

// formGroups forms every consistency group the record sets taken so far
// complete. One that may be journaled beside others (batchable) waits in
// s.pending, to be journaled with the groups of the frames after it under
// one fsync (commitPending); any other is journaled at once, after those
// pending. Called with s.mu held, which it lets go of only while it
// journals; s.pending is empty whenever it does.
func (s *Secondary) formGroups(conn transport.Conn) error {
	for {
		if s.conn != conn {
			// Handing a group over let go of the lock, and a newer connection
			// took over or a fence cut this one off.
			return errReplaced
		}
		if err := s.awaitRoomLocked(conn); err != nil {
			return err
		}
		g, ok := s.former.Form()
		if !ok {
			return nil
		}
		if len(g.Updates) == 0 && len(s.pending) == 0 && time.Since(s.lastJournal) < s.cfg.Checkpoint {
			s.formedTime = g.Time
			continue
		}
		s.traceFormed(g, &s.arrivedFrom)
		if s.batchable(g) {
			s.pending = append(s.pending, g)
			continue
		}
		if err := s.commitPending(conn); err != nil {
			return err
		}
		if err := s.commitOne(conn, g); err != nil {
			return err
		}
	}
}

// batchable reports whether g may be journaled with other groups under one
// fsync: nothing about it needs deciding before it is journaled (a primary
// process new to the journal, a resync's hold, a pair-state marker) and no
// Gate paces the journal. Called with s.mu held.
func (s *Secondary) batchable(g *consistency.Group) bool {
	if s.cfg.Gate != nil || s.pairs.holding() || s.ident.Instance != s.instance || s.instance == 0 {
		return false
	}
	for _, u := range g.Updates {
		if u.Kind == recordset.KindMarker {
			return false
		}
	}
	return true
}

// commitOne journals, acknowledges and applies g alone; a failure stops
// the secondary. Called with s.mu held.
func (s *Secondary) commitOne(conn transport.Conn, g *consistency.Group) error {
	if err := s.commit(conn, g); err != nil {
		return s.stopCommitting(conn, err)
	}
	if s.conn == conn {
		// Not once handing g over let go of the lock and another link
		// began: its idle time starts from its own groups.
		s.formedTime = g.Time
	}
	return nil
}

// stopCommitting stops the secondary after a group could not be made
// durable, and tells the primary why. Called with s.mu held.
func (s *Secondary) stopCommitting(conn transport.Conn, err error) error {
	s.stop(err)
	s.endLocked(conn, transport.EncodeRefuse(s.stoppedRefusal()))
	return fmt.Errorf("%w: %v", ErrStopped, err)
}

// commitPending journals the groups in s.pending, formed from the frames
// that arrived while the last group was journaled: each appended as a
// record of its own, then one fsync for all (a group commit), then each
// acknowledged and handed to the applier in order, as commit does for one.
// Nothing is acknowledged before that fsync returns. Called with s.mu held;
// it lets go of it while it writes, as commit does (handing).
func (s *Secondary) commitPending(conn transport.Conn) error {
	gs := s.pending
	s.pending = nil
	switch len(gs) {
	case 0:
		return nil
	case 1:
		return s.commitOne(conn, gs[0])
	}
	if err := s.applyFailure(); err != nil {
		return s.stopCommitting(conn, err)
	}
	for i, g := range gs {
		g.Number = s.journaled.Group + 1 + uint64(i)
	}
	s.handing = true
	s.mu.Unlock()
	quiet := s.answerWhileBusy(conn)
	s.diskBegin(waitJournal, fmt.Sprintf("journaling groups %d to %d", gs[0].Number, gs[len(gs)-1].Number))
	var start, synced time.Time
	if s.tracing {
		start = time.Now()
	}
	var err error
	for _, g := range gs {
		// s.buf is the receiver's while it hands over (nothing else
		// journals meanwhile); each record is written before the next
		// is encoded into it.
		var parts [][]byte
		var sum uint32
		var buf []byte
		if buf, parts, sum, err = consistency.EncodeGroupParts(s.buf[:0], s.cfg.Session, g); err != nil {
			break
		}
		s.buf = buf[:0]
		size := 0
		for _, p := range parts {
			size += len(p)
		}
		s.writing.Add(journal.RecordSpace(int64(size)))
		err = s.journal.AppendParts(g.Number, parts, sum)
		s.journalEpoch.Add(1)
		if err != nil {
			err = fmt.Errorf("journal group %d: %w", g.Number, err)
			break
		}
	}
	if err == nil {
		if err = s.journal.Sync(); err != nil {
			err = fmt.Errorf("journal groups %d to %d: %w", gs[0].Number, gs[len(gs)-1].Number, err)
		}
	}
	s.diskEnd(waitJournal)
	quiet()
	if s.tracing {
		synced = time.Now()
	}
	s.mu.Lock()
	s.handing = false
	s.handed.Broadcast()
	if err != nil {
		return s.stopCommitting(conn, err)
	}
	s.traceJournaled(gs, start, synced)
	// Every group of the batch is durable now: all are acknowledged before
	// any is handed to the applier, which may have to wait for room, so
	// that an applier behind holds back none of their acknowledgements.
	// Nothing takes s.mu between the two loops but while a hand-over waits
	// (handing), and what decides from the journaled position waits for
	// that (awaitHandedLocked).
	acked := make([]acknowledged, len(gs))
	for i, g := range gs {
		acked[i] = s.acknowledgeLocked(conn, g)
		if s.conn == conn {
			s.formedTime = g.Time
		}
	}
	for i, g := range gs {
		if err := s.handOverLocked(conn, g, nil, acked[i]); err != nil {
			return s.stopCommitting(conn, err)
		}
	}
	return nil
}

// take gives the Former the record sets and heartbeats of one frame, and
// reports whether it took any; the frame's ledger entry f records the
// record sets the Former holds from it. Called with s.mu held.
func (s *Secondary) take(conn transport.Conn, sets []*recordset.RecordSet, beats []transport.Heartbeat, names []string, f *ledgerFrame) (took bool, err error) {
	for _, rs := range sets {
		if err := s.checkRecordSet(rs); err != nil {
			return false, s.refuseLocked(conn, lasting(fmt.Sprintf("refusing a record set the secondary cannot apply: %v", err)))
		}
		out, err := s.former.Add(rs)
		if out == consistency.Accepted || out == consistency.Early {
			// Whatever the error: an early set after it may have failed
			// its check, and this one is held all the same.
			f.took(s.former, rs)
		}
		if errors.Is(err, consistency.ErrStale) || errors.Is(err, consistency.ErrOutOfOrder) {
			// Taking it would drop the update, or form a group that no
			// order by stamp fits, which the journal cannot hold: either
			// comes of the primary's timer, input the secondary never
			// stops over. The next connection starts afresh from what is
			// journaled, and no process is trusted to resend what is
			// journaled any more: the groups formed before it are
			// journaled first, as this process's.
			if err := s.commitPending(conn); err != nil {
				return false, err
			}
			if s.conn != conn {
				return false, errReplaced
			}
			s.instance = 0
			werr := s.setIdentityUnlocked(conn, "recording that no primary process may resend what is journaled", func(id identity) identity {
				id.Instance, id.PendingInstance, id.PendingGroup = 0, 0, 0
				return id
			})
			if werr != nil {
				s.log.Error("cannot record the primary's instance", "err", werr)
			}
			if s.conn != conn {
				// Cut off or replaced while the disk took it.
				return false, errReplaced
			}
			// Sent again, the record set is refused again: only the
			// primary's suspension, and the resync that stamps its
			// updates anew, ends it. The kind is what has the primary
			// suspend, by itself, which drops the record set: its next
			// connection is taken, so the refusal passes.
			r := passing(fmt.Sprintf("refusing a record set: %v", err))
			r.Kind = transport.RefusalStale
			return false, s.refuseLocked(conn, r)
		}
		if err != nil {
			s.log.Warn("discarding record set", "err", err)
			continue
		}
		took = true
		s.stats.RecordSets++
		switch out {
		case consistency.Duplicate:
			s.stats.Duplicates++
		case consistency.Early, consistency.Dropped:
			s.stats.Early++
		}
	}
	for _, b := range beats {
		if int(b.Subsystem) >= len(names) {
			s.log.Warn("discarding heartbeat of an unknown subsystem", "index", b.Subsystem, "subsystems", len(names))
			continue
		}
		if err := s.former.Heartbeat(names[b.Subsystem], b.Seq, b.Horizon); err != nil {
			s.log.Warn("discarding heartbeat", "err", err)
			continue
		}
		took = true
	}
	return took, nil
}

// receipt tells the primary what arrived in order, so that it retransmits
// only what is missing, and that the link carries its record sets. The
// time it acknowledges is the journaled group's own, what a restart or
// recover leaves the volumes at and prints: the empty groups formed since
// are not journaled (one is, once a Checkpoint), and a later time from them
// would have the primary claim, and show, a consistency time nothing
// durable here confirms.
func (s *Secondary) receipt(conn transport.Conn) { s.receiptOf(conn, s.receiptFree(), 0) }

// receiptOf is receipt, saying free of the journal's file system, and
// that the receiver has waited on its disk for waited (not zero) to a
// primary that reads it (transport.Position.Waited).
func (s *Secondary) receiptOf(conn transport.Conn, free uint64, waited time.Duration) {
	t := s.journaled.Time
	if s.peerReads&transport.PrimaryReadsWaited == 0 {
		waited = 0
	}
	s.sendLocked(conn, s.encodeAckLocked(transport.Position{
		Group: s.journaled.Group, Time: t, Through: s.journaled.Through, Received: s.former.Received(), Ahead: s.former.Ahead(),
		JournalFree: free, Recoverable: s.recoverable(t), Inconsistent: s.inconsistentLocked(), Waited: waited}))
}

// encodeAckLocked returns the frame of an acknowledgement of pos for the
// linked primary: its tables by index where it reads that, by name
// otherwise. Called with s.mu held.
func (s *Secondary) encodeAckLocked(pos transport.Position) []byte {
	if s.ackIndex != nil {
		return s.ackIndex.EncodeAck(pos)
	}
	return s.order.EncodePosition(transport.TypeAck, pos)
}

// recoverable is the Recoverable of a Position of time t: while a resync
// holds the volumes, the applied group's time, which a restart or recover
// leaves them at (RecoversTo), however far the journal has gone; for a
// coupled secondary, its Gate's limit where that is before t (a restart or
// recover applies through it and no further); otherwise zero, t itself.
// Called with s.mu held.
func (s *Secondary) recoverable(t int64) int64 {
	at := t
	if s.pairs.holding() {
		// The last group handed to the applier: journaled, so a restart
		// applies it even if the applier has not yet.
		at = min(at, s.queued.Time)
	}
	if s.cfg.Gate != nil {
		limit, _ := s.cfg.Gate.Limit()
		at = min(at, limit)
	}
	if at >= t {
		return 0
	}
	// A hold over no applied group recovers to nothing; the wire has no
	// zero for that, and a nanosecond past the epoch says as much.
	return max(at, 1)
}

// commit journals, acknowledges and applies one group. Called with s.mu held.
func (s *Secondary) commit(conn transport.Conn, g *consistency.Group) error {
	if err := s.applyFailure(); err != nil {
		return err
	}
	g.Number = s.journaled.Group + 1
	rel := s.releaseIfShort(g)
	// The updates' data is journaled from the frames it arrived in, not
	// copied into the record first, and the record-set checksums verified
	// on arrival cover it: the journal record's checksum is combined from
	// them, not read. s.buf holds the rest (headers, small updates).
	buf, parts, sum, err := consistency.EncodeGroupParts(s.buf[:0], s.cfg.Session, g)
	if err != nil {
		return err
	}
	s.buf = buf[:0]
	// The identity must name, after a crash at any point, the process
	// whose group the journal ends with (Open settles a pending process
	// against the journal): now is whom it names with the journal as it
	// is, then whom once g is journaled. It is written before g whenever
	// it would not settle to then with g journaled. A process left
	// pending by a failed write is settled before another takes its
	// place: replaced as it was, a crash before g reaches the journal
	// forgot the process that formed the last journaled group, whose
	// resend was then refused as stale.
	now := s.ident.settled(s.journaled.Group)
	then := now
	then.Instance = s.instance
	var ids identityWrites
	written := s.ident
	if s.ident.settled(g.Number) != then {
		id := then
		if now.Instance != s.instance && s.instance != 0 {
			// Named pending with g first, so that the journal decides
			// (Open): the former process if g is not journaled, the new
			// one if it is. Each may then skip exactly the updates it
			// sent. A process that names none (0) is named at once:
			// nobody may skip anything.
			id = now
			id.PendingInstance, id.PendingGroup = s.instance, g.Number
		}
		ids.before, written = &id, id
	}
	if written != then {
		// Once g is journaled: the process named, nothing pending. A
		// failure leaves it pending, which settles the same.
		ids.after = &then
	}
	var start time.Time
	if s.tracing {
		start = time.Now()
	}
	if err := s.journalUnlocked(conn, g.Number, parts, sum, ids); err != nil {
		return fmt.Errorf("journal group %d: %w", g.Number, err)
	}
	if s.tracing {
		s.traceJournaled([]*consistency.Group{g}, start, time.Now())
	}
	return s.journaledLocked(conn, g, rel)
}

// journaledLocked acknowledges g, journaled and synced, and hands it to the
// applier (or holds it, while a resync holds the volumes); rel is the hold
// journaling it gave up, if any. Called with s.mu held.
func (s *Secondary) journaledLocked(conn transport.Conn, g *consistency.Group, rel *holdRelease) error {
	return s.handOverLocked(conn, g, rel, s.acknowledgeLocked(conn, g))
}

// acknowledged is what acknowledging a group found, for handing it over.
type acknowledged struct {
	// wasHolding: a resync held the volumes before the group; holding:
	// one holds them from it on.
	wasHolding, holding bool
	vols                map[string]apply.VolumeState // the pair states as of the group
}

// acknowledgeLocked steps the pair states through g, journaled and synced,
// acknowledges it, and moves the journaled position to it. Called with
// s.mu held.
func (s *Secondary) acknowledgeLocked(conn transport.Conn, g *consistency.Group) acknowledged {
	s.lastJournal = time.Now()
	if s.stats.LastError != "" && s.stats.LastErrorAt.Before(s.linkedAt) {
		s.stats.LastError, s.stats.LastErrorAt = "", time.Time{}
	}
	// Journaled is safe: acknowledge before applying so the primary can release
	// its sidefile while the volumes are written. The pair states go first:
	// the acknowledgement says whether a resync holds the volumes from g on.
	a := acknowledged{wasHolding: s.pairs.holding()}
	s.pairs.step(g, s.journaled.Time)
	s.sendLocked(conn, s.encodeAckLocked(transport.Position{Group: g.Number, Time: g.Time, Through: g.Through, Received: s.former.Received(),
		JournalFree: s.reportedFree(), Recoverable: s.recoverable(g.Time), Inconsistent: s.inconsistentLocked()}))
	s.journaled = position{Group: g.Number, Time: g.Time, Through: maps(g.Through)}
	for _, u := range g.Updates {
		if u.Kind != recordset.KindMarker {
			s.stats.BytesJournaled += uint64(len(u.Data))
		}
	}
	a.holding = s.pairs.holding()
	if !a.holding {
		a.vols = s.pairs.snapshot()
	}
	return a
}

// handOverLocked hands g, acknowledged (a) on conn, to the applier, or
// holds it while a resync holds the volumes. Called with s.mu held, which
// it lets go of while it waits for room (enqueue).
func (s *Secondary) handOverLocked(conn transport.Conn, g *consistency.Group, rel *holdRelease, a acknowledged) error {
	if a.holding {
		if !a.wasHolding {
			s.log.Info("resync began: holding the volumes at the last consistent group until it completes",
				"volumes", s.pairs.resyncing(), "group", s.queued.Group, "consistency_time", time.Unix(0, s.queued.Time).UTC())
		}
		s.hold(g)
		s.takeTrace(g)
		return nil
	}
	switch {
	case rel != nil:
		s.released(rel, g)
		s.held = heldGroups{}
	case a.wasHolding:
		s.log.Info("resync complete: applying the held groups", "groups", s.held.Groups+1, "bytes", s.held.Bytes,
			"held_for", time.Since(s.held.Since).Round(time.Millisecond))
		s.held = heldGroups{}
	}
	return s.enqueue(conn, g, a.vols)
}

// identityWrites is what journaling the first group of a primary process
// writes to the identity around it (commit): before, the process named
// pending with the group; after, once the group is journaled, the process
// named. Nil: nothing to write.
type identityWrites struct{ before, after *identity }

// journalUnlocked appends group n (parts joined, whose checksum is sum) to the
// journal and fsyncs it without s.mu, so that status, a fence and a new
// link do not wait on the disk, which may take seconds over an fsync. It
// hands the journal over as enqueue hands the applier a group (handing):
// until it takes s.mu again nothing else is journaled or handed over, and
// whatever decides from the journaled position (a link's Welcome, a fence)
// waits for it (awaitHandedLocked); what only reports it (status) reports
// the group before, which is what is durable until the fsync returns.
// The identity ids names is written in the same hand-over, each copy
// fsynced twice, as slow as the journal's on a slow disk: under s.mu the
// primary would hear nothing for as long, and give the link up, and
// status would wait. A failure to write ids.before fails the group, not
// journaled; one to write ids.after leaves the process pending, which
// names it all the same once the journal holds the group. s.ident is
// what was written, once s.mu is taken again: nothing that reads it runs
// meanwhile but status (and a fence, or a Welcome, waits for the hand-over).
// Called with s.mu held, which it holds again when it returns.
func (s *Secondary) journalUnlocked(conn transport.Conn, n uint64, parts [][]byte, sum uint32, ids identityWrites) error {
	written, wrote := s.ident, false
	s.handing = true
	s.mu.Unlock()
	quiet := s.answerWhileBusy(conn)
	var err error
	if ids.before != nil {
		s.diskBegin(waitJournal, fmt.Sprintf("recording the primary process of group %d", n))
		if err = writeIdentity(disk.Or(s.cfg.FS), IdentityPath(s.cfg.StatePath), *ids.before); err != nil {
			err = fmt.Errorf("the primary process that sent it: %w", err)
		} else {
			written, wrote = *ids.before, true
		}
		s.diskEnd(waitJournal)
	}
	if err == nil {
		s.diskBegin(waitJournal, fmt.Sprintf("journaling group %d", n))
		size := 0
		for _, p := range parts {
			size += len(p)
		}
		s.writing.Add(journal.RecordSpace(int64(size)))
		err = s.journal.AppendParts(n, parts, sum)
		s.journalEpoch.Add(1)
		if err == nil {
			err = s.journal.Sync()
		}
		s.diskEnd(waitJournal)
	}
	if err == nil && ids.after != nil {
		s.diskBegin(waitJournal, fmt.Sprintf("recording the primary process of group %d", n))
		if werr := writeIdentity(disk.Or(s.cfg.FS), IdentityPath(s.cfg.StatePath), *ids.after); werr != nil {
			// Left pending: a restart still names this process, the one
			// whose group the journal ends with.
			s.log.Error("cannot record the primary process whose group was journaled", "group", n, "err", werr)
		} else {
			written, wrote = *ids.after, true
		}
		s.diskEnd(waitJournal)
	}
	quiet()
	s.mu.Lock()
	if wrote {
		s.ident = written
	}
	s.handing = false
	s.handed.Broadcast()
	return err
}

// answerWhileBusy sends the primary on conn a receipt firstAnswer in, and
// then every roomAnswer, while the receiver waits on the disk without s.mu
// (handing): the journal's write and fsync, or the applier, held by a
// volume's, taking the next group. The primary gives up a link on which
// the secondary says nothing for its silence time (5 s by default) and
// redials, resending everything outstanding, while an fsync on a busy or
// failing disk can take longer; and it sends again what it has not heard
// arrived once its resend timer runs out, which the first receipt comes
// before, and which the receipts hold for the wait by saying how long it
// has lasted (transport.Position.Waited, to a primary that reads it). A group journaled alone (a new primary process's first, a
// marker's, every group of a coupled secondary's) has had no receipt
// before it. The receipt acknowledges nothing new: the journaled position
// moves only once the fsync returned (acknowledgeLocked); what arrived in
// order, which it says besides, is no claim of durability. It is sent
// under s.mu, which status takes too, so it does nothing that may wait on
// the disk: the free space is the last reading less what is being written
// (s.writing), not a new statfs. Called without s.mu, while the receiver
// hands the journal or a group over (handing), and the func before it
// takes s.mu again.
func (s *Secondary) answerWhileBusy(conn transport.Conn) (quiet func()) {
	var (
		mu   sync.Mutex
		t    *time.Timer
		done bool
	)
	began := time.Now()
	mu.Lock()
	defer mu.Unlock()
	t = time.AfterFunc(firstAnswer, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		mu.Lock()
		defer mu.Unlock()
		// Once the receiver has s.mu again the group may be
		// acknowledged, and no receipt is owed.
		if done {
			return
		}
		var free uint64
		if n, ok := s.room.last(); ok {
			free = s.netOfReserve(n - min(n, uint64(max(s.writing.Load(), 0))))
		}
		// Saying it waits keeps the primary from sending again, every
		// resend period of the wait, what it sent since: read ahead, or
		// in the link's buffers, none of it lost.
		s.receiptOf(conn, free, max(time.Since(began), time.Nanosecond))
		t.Reset(roomAnswer)
	})
	return func() {
		mu.Lock()
		defer mu.Unlock()
		done = true
		t.Stop()
		s.writing.Store(0)
	}
}

func (s *Secondary) awaitHello(conn transport.Conn) (transport.Hello, error) {
	type result struct {
		h   transport.Hello
		err error
	}
	ch := make(chan result, 1)
	go func() {
		f, err := conn.Recv()
		if err != nil {
			ch <- result{err: err}
			return
		}
		typ, body, err := transport.Open(f)
		if err != nil {
			ch <- result{err: err}
			return
		}
		if typ != transport.TypeHello {
			ch <- result{err: fmt.Errorf("expected hello, got frame type %d", typ)}
			return
		}
		h, err := transport.DecodeHello(body)
		ch <- result{h: h, err: err}
	}()
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case r := <-ch:
		return r.h, r.err
	case <-t.C:
		conn.Close()
		return transport.Hello{}, errors.New("no hello within 10s")
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// Fence stops replication into the secondary for good, across restarts: the
// current primary is disconnected and every later one refused, and the
// volumes start a data generation of their own, recorded before Fence
// returns. What is journaled is already applied, so the volumes are at a
// group boundary, and checkpointed: the state file names that group before
// Fence returns, so no restart applies a group over what is written to the
// volumes after it. An error means the fence holds only until a restart, or,
// after an apply failed part-way, that there is no group boundary to fence
// at: Fence then refuses and changes nothing until a restart has replayed.
func (s *Secondary) Fence() (transport.Position, error) { return s.fence(false) }

// FenceToRecover is Fence for recover --at, which takes the volumes back
// (RecoverTo) before anyone may write to them: only a secondary fenced
// that way may be taken back. On a secondary fenced already it changes
// nothing.
func (s *Secondary) FenceToRecover() (transport.Position, error) { return s.fence(true) }

func (s *Secondary) fence(recoverAt bool) (transport.Position, error) {
	var linked transport.Conn
	defer func() {
		// After the unlock below: closing a TLS connection sends
		// close_notify, which a primary that stopped reading holds for up
		// to 5 s, and status, a new primary and the applier's hand-over
		// must not wait on it. Unlinked, the primary is sent nothing more.
		if linked != nil {
			linked.Close()
		}
	}()
	s.mu.Lock()
	defer s.mu.Unlock()
	// First no primary may hand over groups: the linked one is unlinked and
	// a new one refused (generationLocked), so what is left to apply ends
	// with the group queued last.
	s.fencing++
	defer func() { s.fencing-- }()
	// A coupled secondary fences at the Gate's limit: what it journaled
	// past it stays unapplied.
	s.gated.stop()
	if s.conn != nil {
		s.out.end(nil)
		linked = s.conn
		s.conn, s.out = nil, nil
		s.stats.Connected = false
	}
	refuse := func(err error) (transport.Position, error) {
		// Nothing recorded: an unfenced restart replays the journal.
		return transport.Position{}, err
	}
	for {
		// What is journaled is applied first, and the volumes flushed: the
		// position fenced at is the last journaled group, as a restart
		// would leave it. Without s.mu, which status takes: a backlog of
		// large groups, and flushing it, can take minutes, and status
		// shows meanwhile how far applying has got. A group being
		// journaled (journalUnlocked) is queued once it is: waited for.
		s.awaitHandedLocked()
		queued := s.queued.Group
		s.mu.Unlock()
		applied, applyErr, torn := s.waitAppliedThrough(queued)
		var ckErr error
		if applyErr == nil && torn == nil && applied >= queued {
			// Once Fence returns the volumes may be written by others: the
			// state file must name the group they hold first, or a restart
			// (after kill -9 as well) would apply the groups after the one
			// it names again, over those writes. Groups journaled beyond it
			// are held by an unfinished resync, and a restart holds them
			// the same way: no primary ends it.
			s.ckMu.Lock()
			recorded, err := s.checkpointRecording()
			s.ckMu.Unlock()
			if err != nil && recorded {
				// The state file names the group: only the journal's
				// space waits, its release retried (owedLocked).
				s.log.Warn(releaseFailed("the applied group the fence is at"), "err", err)
				err = nil
			}
			ckErr = err
		}
		s.mu.Lock()
		if torn != nil {
			// The volumes are at no group the primary ever had: there is no
			// position to fence at until a restart has replayed the journal.
			return refuse(fmt.Errorf("secondary: fence refused: %w", torn))
		}
		if applyErr != nil || applied < queued {
			// The applier stopped and skips what was queued after the
			// failure: groups journaled and acknowledged, which a fenced
			// restart would never apply. Only an unfenced restart replays
			// them.
			return refuse(fmt.Errorf("secondary: fence refused: applying stopped at group %d with group %d journaled (%v): "+
				"restart the secondary, which applies its journal, then recover again", applied, queued, applyErr))
		}
		if ckErr != nil {
			// The primary stays cut off until a restart all the same.
			s.fenced = true
			s.unrecorded, s.ckFailed = fmt.Errorf("the checkpoint of the applied group %d failed: %w", applied, ckErr), true
			return transport.Position{}, fmt.Errorf("secondary: fence: the applied group is not recorded (%w): "+
				"do not write to the volumes; restart the secondary, which applies its journal, and recover again", ckErr)
		}
		s.awaitHandedLocked()
		if s.queued.Group == queued {
			break
		}
		// A group handed over as the fence began (a receive that had it
		// under way): applied and recorded too.
	}
	// Persisted before anyone writes to the volumes: a restart must not let
	// the old primary in again, and from here the volumes start a history of
	// their own. Fenced from here even if it cannot be written: until a
	// restart.
	s.fenced = true
	var err error
	if s.ident.Fenced == "" {
		prev := s.ident
		s.prefence = &prev
		id := s.ident
		id.Follows, id.Generation = id.Generation, transport.NewGeneration()
		id.Fenced = time.Now().UTC().Format(time.RFC3339Nano)
		id.RecoverAt = recoverAt
		if recoverAt {
			// The part of the next group applied through a coupled
			// Gate's limit stays in the volumes; only this says so
			// after a restart, which applies nothing more once fenced.
			d := s.appliedState()
			s.posMu.Lock()
			if s.gated.partial > d.Time {
				id.FencedPart = s.gated.partial
			}
			s.posMu.Unlock()
		}
		if err = s.setIdentity(id); err != nil {
			err = fmt.Errorf("secondary: fence: %w", err)
			s.unrecorded, s.ckFailed = err, false
		} else {
			s.unrecorded, s.ckFailed = nil, false
			s.log.Warn("fenced: the volumes start a data generation of their own", "generation", id.Generation.String(), "followed", id.Follows.String())
		}
	}
	st := s.appliedState()
	return transport.Position{Group: st.Group, Time: st.Time, Through: st.Through}, err
}

// UndoFence undoes the fence this run made, for a promotion in place that
// failed after it: the switchover it was for did not take place, and the
// primary it cut off goes on replicating here. The identity from before the
// fence is written back and the primary is taken again; the volumes are as
// the fence left them, at the group the state file names (nothing was
// written to them: the promotion never recorded itself), so replication
// goes on from there. It fails, the fence holding, when this run made no
// fence to undo (one recorded before, or whose checkpoint failed) or the
// identity cannot be written. A crash before it is done leaves the fence
// recorded: the safe side, since the primary cannot tell.
func (s *Secondary) UndoFence() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	// No receiver writes the identity once fenced (the link is cut off),
	// but one cut off while it wrote may not have taken s.mu again.
	s.awaitHandedLocked()
	if s.prefence == nil || !s.fenced || s.ckFailed {
		return errors.New("secondary: undo the fence: no fence of this run to undo")
	}
	if err := s.setIdentity(*s.prefence); err != nil {
		return fmt.Errorf("secondary: undo the fence: the fence holds: %w", err)
	}
	s.prefence = nil
	s.fenced, s.unrecorded = false, nil
	// A coupled secondary's fence stopped its gate, and the applier skipped
	// the groups journaled past the limit: left so, it would skip every
	// group the primary sends from now on, journaled and acknowledged but
	// never applied while the process runs.
	s.rearmGate()
	s.log.Warn("unfenced: the fence of a promotion that failed is undone; the primary is taken again", "generation", s.ident.Generation.String())
	return nil
}

// Stats returns a snapshot.
func (s *Secondary) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, _ := s.statsLocked()
	return st
}

// Snapshot returns the Stats and the view of each of vols as of one
// instant: every volume's time is that of the group Stats reports, never of
// a group applied between two reads.
func (s *Secondary) Snapshot(vols []string) (Stats, []VolumeView) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, durable := s.statsLocked()
	views := make([]VolumeView, len(vols))
	for i, vol := range vols {
		views[i] = s.volumeLocked(vol, durable)
	}
	return st, views
}

// reportedLocked returns the applied state as status reports it: the
// applied group's own time, linked or not, which is what a restart, a fence
// and recover report for it. The empty groups formed at idle since are not
// journaled (receive journals one once a Checkpoint), so their later time
// was in memory only: reported while linked, it was lost by a kill -9, and
// the operator who read "consistent as of T" found an earlier time for the
// same data afterwards. The idle time reaches status once an empty group
// carrying it is journaled and applied, so an idle secondary's lag rises to
// about a Checkpoint and falls back, as the primary's (from the journaled
// acknowledgements) always did. Called with s.mu and s.posMu held; Through
// is left out (not reported, and not to be shared).
func (s *Secondary) reportedLocked() apply.State {
	st := s.durable
	st.Through = nil
	return st
}

// statsLocked returns the Stats and the applied state they were read from.
// Called with s.mu held.
func (s *Secondary) statsLocked() (Stats, apply.State) {
	st := s.stats
	st.DiskWait = s.diskWaitText(time.Now())
	st.Laggard, st.LaggardHorizon = s.former.Laggard()
	st.JournalBytes = s.journal.Bytes()
	s.posMu.Lock()
	durable := s.reportedLocked()
	st.Group, st.Time = durable.Group, max(durable.Time, s.gated.partial)
	st.GateLimit = s.gated.limit
	if s.cfg.Gate != nil && s.journaled.Group > durable.Group+s.held.Groups {
		st.GatedGroups = s.journaled.Group - durable.Group - s.held.Groups
	}
	st.GroupsApplied, st.UpdatesApplied, st.BytesApplied, st.LastAppliedWall = s.applied.groups, s.applied.updates, s.applied.bytes, s.applied.wall
	s.posMu.Unlock()
	st.JournaledGroup = s.journaled.Group
	st.CoupledTime = s.coupledTimeLocked()
	st.HeldGroups, st.HeldBytes = s.held.Groups, s.held.Bytes
	s.historyStats(&st, durable)
	st.Resyncing = s.pairs.resyncing()
	st.GroupsWait = s.unconfigured.why
	if owed := s.owedText.Load(); owed != nil {
		st.CheckpointOwed = *owed
	}
	return st, durable
}

// ReadAt reads a secondary volume at a group boundary. After an apply failed
// part-way the volumes are at none, and ReadAt fails until a restart.
func (s *Secondary) ReadAt(vol string, p []byte, off int64) error {
	v, ok := s.cfg.Volumes[vol]
	if !ok {
		return fmt.Errorf("secondary: no volume %q", vol)
	}
	s.view.RLock()
	defer s.view.RUnlock()
	if err := s.readsRefused(); err != nil {
		return fmt.Errorf("secondary: volume %s unreadable: %w", vol, err)
	}
	return v.ReadAt(p, off)
}

// readsRefused is why the volumes are read at no group (torn, unreadable),
// nil while they are read. Called with s.view held.
func (s *Secondary) readsRefused() error {
	if s.torn != nil {
		return s.torn
	}
	if why := s.unreadable.Load(); why != nil {
		return *why
	}
	return nil
}

// Close applies what is journaled, checkpoints and closes the journal. The
// volumes belong to the caller.
func (s *Secondary) Close() error {
	s.gated.end()
	s.mu.Lock()
	// A group being journaled or handed over is applied too: closing is
	// set only once it is queued.
	s.awaitHandedLocked()
	first := !s.closing
	if first {
		s.closing = true
		close(s.applyQ)
	}
	s.mu.Unlock()
	<-s.applyDone
	<-s.ckDone
	s.bg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ckMu.Lock()
	err := s.checkpointLocked()
	// The next start releases what is owed (releaseAtStart).
	s.stopReleaseRetriesLocked()
	s.ckMu.Unlock()
	if cerr := s.journal.Close(); err == nil {
		err = cerr
	}
	if cerr := s.closeHistory(); err == nil {
		err = cerr
	}
	return err
}
