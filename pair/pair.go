// Package pair manages the pairs of a primary site: each primary volume and its
// secondary copy, in state pending (initial copy or resync running), duplex
// (every write is shadowed by the method) or suspended (writes are only
// recorded as changed regions in a bitmap).
//
// An initial copy runs while writes continue: copy updates are stamped by the
// common timer like writes and captured in the same sidefile, so the secondary
// applies them in timestamp order with the writes around them. A pair becomes
// duplex once the copy is done and the secondary's consistency time has passed
// the last copy update. A resume copies only the regions the bitmap marks.
//
// A copy whose read of the primary volume hangs is given up by the data
// mover, which ships the other volumes' updates without it; the pair is
// then suspended, saying why, its writes and the region given up tracked
// in its bitmap, until the operator resumes it (see suspendAbandoned); so
// is one whose read fails (see suspendReadFailed), and a pair whose volume
// fails a write already captured (see suspendWriteFailed). A copy that fails
// otherwise, by a fault that may pass (the activity log's disk, which every
// pair shares, fails or is full), keeps its regions to copy and waits,
// longer after each failure in a row, while the copies of the pairs after
// it go on; status says why (see copyFailed).
//
// State (pairs and bitmaps) is written atomically to a directory. A primary
// that did not stop cleanly learns from its activity log (package actlog)
// which regions may hold acknowledged writes the secondary never journaled,
// and copies exactly those again before it serves I/O; a pair that was in
// the middle of a resync copies what the resync had left and those regions;
// without a usable log, or for a pair in its first copy, it copies the whole
// volume (holes are sent as zeroes, without data). Where those copies are a
// resync that must first wait for the secondary's journal room (a whole
// volume, or regions too large for the sidefiles), the restart suspends
// every pair together and resumes them together once the room is checked,
// so the secondary's volumes stay at one time throughout (see
// awaitRoomAtStart).
package pair

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"duplex/actlog"
	"duplex/bitmap"
	"duplex/consistency"
	"duplex/disk"
	"duplex/mover"
	"duplex/ratelimit"
	"duplex/recordset"
	"duplex/sidefile"
	"duplex/subsystem"
	"duplex/timer"
	"duplex/transport"
)

// State is a pair's state.
type State string

const (
	Pending   State = "pending"
	Duplex    State = "duplex"
	Suspended State = "suspended"
)

// Pair is one volume's replication state.
type Pair struct {
	Volume    string `json:"volume"`
	Subsystem string `json:"subsystem"`
	State     State  `json:"state"`
	Size      int64  `json:"size"`
	// CopyTotal and Copied measure the current initial copy or resync.
	CopyTotal int64 `json:"copy_total"`
	Copied    int64 `json:"copied"`
	// CopyEnd is the timestamp of the last copy update: the pair is duplex
	// once the secondary's consistency time reaches it.
	CopyEnd int64 `json:"copy_end"`
	// Auto marks a suspension the session made itself (link down with a
	// full sidefile); it resumes by itself when the link returns.
	Auto bool `json:"auto,omitempty"`
	// Reason says why the session suspended the pair itself.
	Reason string `json:"reason,omitempty"`
	// Consistent is the last time the secondary copy of this volume was
	// consistent with the others: for a duplex pair the session's consistency
	// time, for a suspended one the time it was suspended (Since) once the
	// secondary acknowledged that far, in all cases no later than the
	// secondary recovers to. Zero says none: a
	// duplex pair whose copy's end the secondary journaled but holds
	// unapplied has none until that end is applied, and a pair in its
	// first copy (FirstCopy) has none at all.
	Consistent int64 `json:"consistent"`
	// Since is the time a suspended or deleted pair's secondary copy is
	// consistent as of once the secondary recovers past it, kept until the
	// pair is duplex again with its copy's end recoverable. While a resync
	// of another volume holds the secondary behind, the suspension (or the
	// copy's end) is journaled but not applied: Consistent is then Since
	// capped by the time the secondary recovers to (see claim). Until the
	// secondary acknowledged the suspension, Since is only what it will
	// hold: the writes before the suspension, and its marker, may still
	// be in the sidefile, and die there with the process (see rebase).
	Since int64 `json:"since,omitempty"`
	// EndAt and AfterEnd: the pair was suspended or deleted, at AfterEnd,
	// after the end of its copy (stamped EndAt) was captured but before the
	// secondary applied that end. The secondary applies the copy, which
	// overwrites the image Since names, then the suspension: once it
	// recovers past EndAt it holds the volume as of AfterEnd, which becomes
	// Since. Zero when no such end is on its way.
	EndAt    int64 `json:"end_at,omitempty"`
	AfterEnd int64 `json:"after_end,omitempty"`
	// Resynced is the bytes copied by the last completed copy or resync.
	Resynced int64  `json:"resynced"`
	Waiting  string `json:"waiting,omitempty"` // why a resync does not start (markers.go)
	Deleted  bool   `json:"deleted,omitempty"`
	// FirstCopy says the pair never completed its first copy: the secondary
	// has no consistent copy of it, and a resume announces a first copy
	// again, not a resync that would hold the other volumes.
	FirstCopy bool `json:"first_copy,omitempty"`
	// Inconsistent says a resync the operator accepted as inconsistent
	// (ResumeInconsistent) ran over the secondary's copy, or the secondary
	// said its copy is consistent as of no time (it gave up the hold of the
	// pair's resync for lack of journal room): it holds no consistent copy
	// of the pair until a copy of it ends.
	Inconsistent bool `json:"inconsistent,omitempty"`
	// RejoinOwed says the pair was made suspended for the other site's
	// rejoin (WriteSuspended) and that rejoin's regions, where the other
	// site may hold writes this one never had, are not added yet
	// (AddChanged): resumed before, the pair would go duplex over them. A
	// record written before this field existed has none, and resumes as it
	// did: refusing there would hold for ever the pairs an older run's
	// rejoin already resumed, whose request never comes again.
	RejoinOwed bool `json:"rejoin_owed,omitempty"`
	// RejoinOwedGuessed says RejoinOwed was set at a start from a state an
	// earlier version saved, which kept no record of the request
	// (owedBeforeKept): the pair may also be one the request resumed and
	// a suspension by hand left as the promotion made it, whose request
	// never comes again. The status says so, and the way out.
	RejoinOwedGuessed bool `json:"rejoin_owed_guessed,omitempty"`
	// CopyFailing says why a pending pair's copy does not go on: its last
	// try failed, and it waits to be tried again (see copyFailed). Not
	// saved: a start tries at once.
	CopyFailing string `json:"-"`
	// CopyFailingSince is when the failures in a row of that copy began:
	// how long it has gone without progress, which a monitor alerts on
	// (the copy is tried again for ever). Zero while it does not fail.
	CopyFailingSince time.Time `json:"-"`
}

type persisted struct {
	Clean bool `json:"clean"`
	// NoLog says the run that wrote the state had no activity log: its
	// writes are marked nowhere, so after its unclean stop the log (even if
	// it opens again) holds only older marks, and every pair is copied in
	// full.
	NoLog bool `json:"no_activity_log,omitempty"`
	// RejoinOwedKept says the pairs' rejoin_owed is this version's
	// record: a state without it was saved by a version that kept none,
	// and a promoted site's pairs are then told from their fields
	// (Options.RejoinSince).
	RejoinOwedKept bool    `json:"rejoin_owed_kept,omitempty"`
	Pairs          []*Pair `json:"pairs"`
}

// Volume is what the manager needs to know of a configured volume.
type Volume struct {
	Name      string
	Subsystem Subsystem
	Size      int64
}

// Subsystem is what the manager needs of the storage subsystem that holds a
// volume (package subsystem): it copies regions for initial copies and
// resyncs, and switches a volume between capturing its writes and tracking
// them in a change bitmap.
type Subsystem interface {
	ID() string
	Sidefile() *sidefile.Sidefile
	// Stamp returns a timestamp later than every update captured so far.
	Stamp() int64
	Suspend(vol string, bm *bitmap.Bitmap)
	Resume(vol string) *bitmap.Bitmap
	Tracking(vol string) *bitmap.Bitmap
	Copy(ctx context.Context, vol string, off, length int64) error
	// CopyReporting is Copy calling captured once the copy is captured,
	// before its read of the volume (see subsystem.CopyReporting).
	CopyReporting(ctx context.Context, vol string, off, length int64, captured func()) error
	CopyHole(ctx context.Context, vol string, off, length int64) (bool, error)
	// FailedWrites returns the captured updates whose writes to the
	// primary volume failed since the last call.
	FailedWrites() []subsystem.FailedWrite
}

// Mover is what the manager needs of the data mover (package mover): the
// secondary's acknowledged consistency time and the link state, a way to
// drop what is held when the session suspends itself, and the copies it
// gave up.
type Mover interface {
	Stats() mover.Stats
	// Drop discards every captured update not yet acknowledged, handing
	// each to mark first.
	Drop(mark func(recordset.Update))
	// Abandoned returns the copies the mover cut without, their reads of
	// the primary volume not done in time (mover.Config.CopyReadWait),
	// since the last call.
	Abandoned() []recordset.Update
}

var (
	_ Subsystem = (*subsystem.Subsystem)(nil)
	_ Mover     = (*mover.Mover)(nil)
)

// Options configure a Manager.
type Options struct {
	Dir          string        // state directory
	SuspendAfter time.Duration // link down this long with a full sidefile: suspend
	Logger       *slog.Logger
	// ActivityLog, when set, is the open activity log, and Recovered the
	// regions it held from the previous run: after an unclean stop only those
	// are copied again. Without it, an unclean stop means a full copy.
	ActivityLog *actlog.Log
	Recovered   map[string][][2]int64
	// FS holds the pair state and the bitmaps (default disk.OS).
	FS disk.FS
	// CopyRate, if set, paces the data of initial copies and resyncs.
	CopyRate *ratelimit.Limiter
	// CopyReadWait bounds how long the start waits for a read of a primary
	// volume by a crash recovery's copy, from its capture, as the data
	// mover waits for a copy's read (mover.Config.CopyReadWait, whose
	// default it shares), and from the end of the last recovery read since
	// (see recoveryReads), and for its capture as long, from its start;
	// negative: for ever.
	CopyReadWait time.Duration
	// RejoinSince, at a promoted site running as the primary of the
	// reverse direction (or promoted back), is the time its pair state
	// was made suspended as of for the old primary's rejoin (the
	// promotion's consistency time, WriteSuspended's since); 0 elsewhere.
	// A state saved by a version that kept no RejoinOwed then has it set
	// on each pair still as WriteSuspended left it (see owedBeforeKept).
	RejoinSince int64
	// SaveWait is how long an operator's command waits for the save of
	// the state it changed (default DefaultSaveWait): a disk that stops
	// answering holds the save, and the command is then answered in
	// effect, not yet saved (ErrSaveHung), the save going on.
	SaveWait time.Duration
	// copyReadTimer, if set, stands in for time.After in the start's waits
	// for a recovery copy's read of vol: tests count the waits under way,
	// and end those of the volumes whose reads hang.
	copyReadTimer func(vol string, d time.Duration) <-chan time.Time
}

// Manager runs the pairs of a primary.
type Manager struct {
	opts  Options
	log   *slog.Logger
	mover Mover
	vols  map[string]Volume
	order []string

	// dropMu is held by the session's suspension from its pairs'
	// suspension until the updates it drops are in their bitmaps, and
	// taken by what resumes a pair before mu (see suspendSession).
	dropMu sync.Mutex
	// saveMu orders saves: a save writes the state it read under mu, so
	// one that read earlier must not write after one that read later.
	saveMu sync.Mutex
	// written holds, per volume, the bitmap bytes a save last wrote (under
	// saveMu): an unchanged bitmap is not written again, so a save costs
	// the bitmaps that changed, not an fsync for every pending pair.
	written map[string][]byte
	// savedState is the pair state a save last wrote (under saveMu): the
	// same again is not written (and fsynced) again. savedPairs is the
	// same state decoded, and stateWritten when it was written.
	savedState   []byte
	savedPairs   persisted
	stateWritten time.Time
	// saving is when the write of a save under way began (unix ns), 0
	// while none is: a disk that stops answering holds it, and with it
	// the pair manager's loop (see SaveUnderWay).
	saving atomic.Int64
	// saves is the context of every save's rename; giveUp ends it at a
	// stop that could not wait for the disk (see CloseWithin).
	saves  context.Context
	giveUp context.CancelFunc

	// status is the pairs' states as of the last release of mu, which
	// Pairs answers from: an operation may hold mu while it waits for a
	// subsystem's ordering lock (a marker, a stamp), held in turn by a
	// write waiting for a slow disk, and status must still answer then.
	// Every release of mu publishes it (see unlock).
	status atomic.Pointer[published]

	mu     sync.Mutex
	pairs  map[string]*Pair
	copies map[string]*bitmap.Bitmap // regions still to copy, per pending pair
	wake   chan struct{}
	dirty  bool // an operation changed a pair: save at once
	// changes counts the changes of pair states: a save unsticks the
	// activity-log marks of a pair only if nothing changed since it read
	// the state it wrote.
	changes uint64
	// copyVol and stopCopy name the pair whose regions copyOne is copying
	// and cancel that copy: a pair that stops being pending stops its copy
	// at once, even one waiting for sidefile space.
	copyVol  string
	stopCopy context.CancelFunc
	// givenUp is closed once the mover gave up a copy of copyVol's, its
	// read of the volume hung (a cut's wait ran out, see suspendAbandoned)
	// or under way at a Drop (see suspendSession): copyOne then stops
	// waiting for it (releaseCopier).
	givenUp chan struct{}
	// suspendedAt holds, per pair suspended (or deleted) in this run, the
	// time of its last suspension, later than every copy of it captured
	// before: the mover's report of such a copy given up, which may come
	// after the operator resumed the pair, is not of the pair as it is by
	// then (see suspendAbandoned).
	suspendedAt map[string]int64
	// resuming holds the pairs whose resume saves the pending state
	// (saveResuming), under mu while the write goes on: the operator's
	// suspension of one meanwhile sets it false. A resume answered not
	// yet in effect, its save hung, must not take effect once the disk
	// answers over the suspension that was answered after it.
	resuming map[string]bool
	// unstick holds pairs that became duplex: their sticky activity-log
	// marks go once the state on disk says duplex, not before (a crash in
	// between would find neither the marks nor a pending state).
	unstick map[string]bool
	// recovering holds, per duplex pair whose regions a crash recovery
	// copied, the stamp of the recovery's end: the previous run's marks
	// stay until the secondary acknowledged through it (see recover).
	recovering map[string]int64
	// firstEnds holds, per pair whose first copy's end this run captured
	// and the secondary has not yet acknowledged, that end's stamp: the end
	// is in the stream ahead of anything captured later, so a resume is a
	// resync over the full copy the secondary will hold, not a first copy
	// again. Dropped, the end is forgotten and the first copy is announced
	// again; acknowledged, the pair's FirstCopy is cleared for good.
	firstEnds map[string]int64
	downAt    time.Time // touched only by autoSuspend
	// announcing is closed once the markers put off for the timer's
	// lease by announceWithin (the session's suspension's announced
	// again after its drop, a deletion's) are captured; nil if none
	// wait.
	announcing chan struct{}
	// watcher is closed once the watcher of the last Run has ended (see
	// awaitWatcher).
	watcher chan struct{}
	// staleRefusals is the mover's count of stale record sets' refusals
	// already handled (touched only by autoSuspend): a count, not the
	// last refusal's kind, so that a refusal of another kind after one
	// between two looks hides nothing.
	staleRefusals uint64
	// staleOwed is set while the session's suspension for a stale record
	// set the secondary refused is put off for the timer's lease (touched
	// only by autoSuspend).
	staleOwed bool
	// failedLeft and abandonedLeft hold the failed writes and the copies
	// the mover gave up whose pairs' suspensions were put off for the
	// timer's lease, to suspend them once it is written (see
	// suspendWriteFailed, suspendAbandoned). Under mu.
	failedLeft    []subsystem.FailedWrite
	abandonedLeft []recordset.Update
	leaseWaits    leaseWaits
	markers       markerState // inconsistent resumes and journal room (markers.go)
	// unbased holds, per pair, the Since it was opened with, until the
	// mover's first contact says what the secondary holds of the runs
	// before this one (see rebase).
	unbased map[string]int64
	// unended holds, per pair, the EndAt it was opened with, until the
	// mover's first contact says whether the secondary journaled that end
	// before the last run stopped (see rebase).
	unended map[string]int64
	// retries holds, per pending pair whose copy's last try failed, when
	// it is tried again (see copyFailed), by the clock now.
	retries map[string]*copyRetry
	// copyFailures counts the copy tries that failed (see copyFailed)
	// since the start.
	copyFailures atomic.Uint64
	now          func() time.Time
	// saveEvery is how often Run saves the pair state and sweeps the
	// activity log with nothing changed; tests lengthen it.
	saveEvery time.Duration
	// noLog says a save recorded that this run has no log, its activity
	// log having failed (see goOnWithoutLog): every later save says so
	// too. Set (under saveMu) only once that save is written: a log whose
	// fallback could not be saved stays on, and marks every write
	// acknowledged. noLogAsked says the fallback was asked; noLogSaved
	// that it said the state was saved; noLogSaveErr is why that state
	// could not be saved, last time.
	noLog, noLogAsked, noLogSaved bool
	noLogSaveErr                  string
	// closed says Close saved the state of the stop (under saveMu): the
	// fallback's saves are refused from then on (see goOnWithoutLog).
	closed bool
	// opening is set while Open stamps the markers the start makes
	// before it serves, and startHung is the first of them given up
	// for the timer's lease (see startFailed).
	opening   bool
	startHung error
}

// ErrUnknownVolume is returned for a volume the session does not have.
var ErrUnknownVolume = errors.New("no such volume in this session")

// Open loads the pair state from opts.Dir. A volume without state starts as a
// pending pair with a full initial copy.
func Open(opts Options, m Mover, volumes []Volume) (*Manager, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := disk.Or(opts.FS).MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("pair state %s: %w", opts.Dir, err)
	}
	mg := &Manager{opts: opts, log: opts.Logger.With("component", "pairs"), mover: m, vols: map[string]Volume{},
		pairs: map[string]*Pair{}, copies: map[string]*bitmap.Bitmap{}, wake: make(chan struct{}, 1), unstick: map[string]bool{},
		recovering: map[string]int64{}, firstEnds: map[string]int64{}, unbased: map[string]int64{}, unended: map[string]int64{},
		retries: map[string]*copyRetry{}, now: time.Now, saveEvery: time.Second}
	mg.saves, mg.giveUp = context.WithCancel(context.Background())
	for _, v := range volumes {
		mg.vols[v.Name] = v
		mg.order = append(mg.order, v.Name)
	}
	st, found, err := readPersisted(mg.opts.FS, opts.Dir)
	if err != nil {
		return nil, err
	}
	if !found {
		st.Clean = true
	}
	if found && !st.RejoinOwedKept && opts.RejoinSince != 0 {
		mg.owedBeforeKept(st.Pairs, opts.RejoinSince)
	}
	saved := map[string]*Pair{}
	for _, p := range st.Pairs {
		saved[p.Volume] = p
	}
	al := opts.ActivityLog
	// The log names the regions to copy after an unclean stop only if the
	// run that stopped kept it.
	logged := al != nil && !st.NoLog
	if !st.Clean && al != nil && st.NoLog {
		mg.log.Warn("the last run had no activity log and did not stop cleanly: its writes are marked nowhere, full resync of every pair")
	}
	recovery := map[string][][2]int64{}
	var waiting []resyncAtStart
	mg.opening = true
	for _, name := range mg.order {
		v := mg.vols[name]
		p := saved[name]
		if al != nil && st.Clean {
			// Everything was shipped before the stop: old marks mean nothing.
			al.Unstick(name)
		}
		switch {
		case p == nil || p.Size != v.Size:
			p = &Pair{Volume: name, Subsystem: v.Subsystem.ID(), Size: v.Size, FirstCopy: true}
			mg.startCopy(p, nil)
			mg.markFirstCopy(p)
			mg.log.Info("new pair: initial copy", "volume", name)
		case p.Deleted:
			v.Subsystem.Suspend(name, bitmap.New(v.Size, bitmap.DefaultRegion))
		case !st.Clean && logged && p.State == Duplex:
			// The activity log names the regions that may hold acknowledged
			// updates the secondary never journaled.
			if rs := opts.Recovered[name]; len(rs) > 0 {
				recovery[name] = rs
			}
		case !st.Clean && logged && p.State == Suspended:
			bm, err := mg.loadBitmap(name, v.Size)
			if err != nil {
				mg.log.Warn("primary did not stop cleanly, and a suspended pair's bitmap is unreadable: full resync on resume", "volume", name, "err", err)
				bm = bitmap.New(v.Size, bitmap.DefaultRegion)
				bm.SetAll()
			}
			for _, r := range opts.Recovered[name] {
				bm.Set(r[0], r[1])
			}
			v.Subsystem.Suspend(name, bm)
		case !st.Clean && p.State == Suspended:
			// Without an activity log in the run that stopped, writes
			// acknowledged before the suspension may have died in the
			// sidefile, marked nowhere: the whole volume is to copy, but
			// on the operator's resume, as the suspension asked, not now.
			mg.log.Warn("primary did not stop cleanly: full resync on resume", "volume", name)
			bm := bitmap.New(v.Size, bitmap.DefaultRegion)
			bm.SetAll()
			v.Subsystem.Suspend(name, bm)
		case !st.Clean && logged && p.State == Pending && !p.FirstCopy:
			// A resync: what it had left when its bitmap was last saved,
			// and every region whose copy or write was captured and not
			// acknowledged (the log); what the secondary acknowledged is
			// journaled there, held with the rest of the resync. It goes
			// on at once, its hold at the secondary open already, unless
			// another pair's resync waits for the journal room: then it
			// waits with it (see awaitRoomAtStart).
			bm, err := mg.loadBitmap(name, v.Size)
			if err != nil {
				mg.log.Warn("primary did not stop cleanly during a resync whose bitmap is unreadable: full resync", "volume", name, "err", err)
				bm = nil
			} else {
				for _, r := range opts.Recovered[name] {
					bm.Set(r[0], r[1])
				}
				mg.log.Warn("primary did not stop cleanly during a resync: copying what it had left and the regions of the activity log",
					"volume", name, "bytes", bm.DirtyBytes())
			}
			mg.startCopy(p, bm)
			mg.markCopy(p)
			mg.endIfEmpty(p)
		case !st.Clean && p.State == Duplex:
			// Without an activity log in the run that stopped, acknowledged
			// writes may never have reached the secondary anywhere: copy
			// everything, under a resync the secondary holds its volumes
			// for, so with its journal room checked first (see
			// awaitRoomAtStart).
			mg.log.Warn("primary did not stop cleanly: full resync once the secondary's journal room is checked", "volume", name)
			bm := bitmap.New(v.Size, bitmap.DefaultRegion)
			bm.SetAll()
			waiting = append(waiting, resyncAtStart{p, bm})
		case !st.Clean:
			// Without an activity log in the run that stopped (or in a first copy),
			// acknowledged writes may never have reached the secondary
			// anywhere: copy everything. A first copy holds nothing at the
			// secondary, and a resync's hold there is open already; both
			// wait with the duplex pairs' resyncs (see awaitRoomAtStart).
			mg.log.Warn("primary did not stop cleanly: full resync", "volume", name)
			mg.startCopy(p, nil)
			mg.markCopy(p)
		case p.State == Suspended:
			bm, err := mg.loadBitmap(name, v.Size)
			if err != nil {
				mg.log.Warn("suspended pair's bitmap unreadable: full resync on resume", "volume", name, "err", err)
				bm = bitmap.New(v.Size, bitmap.DefaultRegion)
				bm.SetAll()
			}
			v.Subsystem.Suspend(name, bm)
		case p.State == Pending:
			bm, err := mg.loadBitmap(name, v.Size)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				// Without a file, the copy is a whole one (see write).
				mg.log.Warn("pair's copy bitmap unreadable: copying the whole volume", "volume", name, "err", err)
			}
			if err != nil {
				bm = nil
			}
			mg.startCopy(p, bm)
			mg.markCopy(p)
		}
		if p.Deleted || p.State == Suspended {
			// The state was saved before the operation was answered, but its
			// marker may have died in the sidefile with the process: the
			// secondary would take the volume as duplex, consistent with the
			// others at every later group. Announced again, a state the
			// secondary knows keeps its time (see secondary.pairStates).
			mg.reannounce(p)
		}
		if p.Since != 0 {
			mg.unbased[name] = p.Since
		}
		if p.EndAt != 0 {
			mg.unended[name] = p.EndAt
		}
		mg.pairs[name] = p
		if mg.startHung != nil {
			return nil, startFailed(mg.startHung)
		}
	}
	large, err := mg.recover(recovery)
	if err == nil {
		err = mg.awaitRoomAtStart(append(waiting, large...))
	}
	if leaseHung(err) {
		return nil, startFailed(err)
	}
	if err != nil {
		return nil, err
	}
	mg.opening = false
	// From here until a clean stop, the state on disk says "not clean".
	if err := mg.save(false); err != nil {
		return nil, err
	}
	if al != nil {
		al.SetFallback(mg.goOnWithoutLog)
	}
	return mg, nil
}

// A start stamps, before it serves, markers whose stamps may wait for a
// hung lease; what it does then is startFailed's. The markers a start
// captures (a new pair's first copy, a copy continued, a suspension or
// deletion announced again, the restart's suspension of every pair for
// the resyncs it starts, a crash recovery's resync) must reach the
// secondary before any write of their pairs, and before any group the
// mover forms: after them, the secondary would take a volume for duplex,
// or consistent with the others, as of groups that lack its writes. With
// the common timer's lease on a disk that stopped answering, their
// stamps wait for its write, and so would the start, for ever, its
// status saying it starts. Each is waited for only as an operator's
// command is (SaveWait, see boundedMarker); the first given up ends the
// start, which fails naming the lease, before it saves the pair state or
// serves anything: nothing is acknowledged, and the state on disk (and
// the activity log's marks) are the last run's, which the next start
// reads again once the disk answers. Only a crash recovery's end may
// come after the start (see endRecovery): the secondary holds what
// follows it, as it holds a resync's.
//
// startFailed is the error of a start whose stamp was given up for the
// timer's lease (err).
func startFailed(err error) error {
	return fmt.Errorf("the start cannot stamp, before it serves, the markers the secondary must have before the pairs' writes: %w; "+
		"nothing served, the pair state not saved: start again once the disk answers", err)
}

// goOnWithoutLog is the activity log's fallback (actlog.WritePath) when
// its marks cannot be written (err): it saves the pair state saying that
// this run has no log, as a run whose log did not open at start, so that
// after an unclean stop the next start copies every pair in full; the
// update whose marks failed then goes on, and every later one, the log
// off. It returns an error if the state cannot be saved: the update fails
// then, as it would be in neither the log nor that record. The log is off
// until the primary restarts, clean or not: turned on again while
// running, it would hold none of the marks of the writes made meanwhile.
// Copies that wait to be tried again after the log failed them go on at
// once. Once Close has saved the stop's state, it refuses (errClosed).
func (mg *Manager) goOnWithoutLog(err error) error {
	mg.mu.Lock()
	if mg.closed {
		mg.unlock()
		return errClosed
	}
	first := !mg.noLogAsked
	mg.noLogAsked = true
	mg.unlock()
	if first {
		mg.log.Error("the activity log cannot be written: going on without it once the pair state records that; "+
			"a full resync of every pair if this run does not stop cleanly; the log is kept again from the next start", "err", err)
	}
	if serr := mg.saveAs(false, false, saveNoLog); errors.Is(serr, errClosed) {
		return serr
	} else if serr != nil {
		mg.mu.Lock()
		report := serr.Error() != mg.noLogSaveErr
		mg.noLogSaveErr = serr.Error()
		mg.unlock()
		if report {
			mg.log.Error("the activity log cannot be written, nor the pair state that would let this run go on without it: "+
				"every write to a region not marked yet fails until one of them can", "err", err, "state_err", serr)
		}
		return serr
	}
	mg.mu.Lock()
	for _, rt := range mg.retries {
		rt.at = time.Time{}
	}
	said := mg.noLogSaved
	mg.noLogSaved, mg.noLogSaveErr = true, ""
	mg.unlock()
	mg.kick()
	if !said {
		mg.log.Error("activity log off: the pair state records that this run has no log, and writes go on; "+
			"a full resync of every pair if this run does not stop cleanly; the log is kept again from the next start", "err", err)
	}
	return nil
}

// errClosed refuses the activity log's fallback once the stop's state is
// saved: a copy left to its mark when the copier stopped finds the log
// failing only then, and a state saved after the stop's, as a run without
// log that did not stop cleanly, would have the next start copy every pair
// in full after a clean stop. The copy fails; its region, never taken for
// copied, is in the bitmap the stop saved.
var errClosed = errors.New("the primary is stopping: its pair state is saved")

// resyncAtStart is a resync a restart starts by itself: the pair, duplex
// when the last run stopped, and the regions to copy.
type resyncAtStart struct {
	p  *Pair
	bm *bitmap.Bitmap
}

// reasonRestartResync is why a pair a restart is to resync stays suspended
// until the secondary's journal room is checked (see awaitRoomAtStart).
const reasonRestartResync = "the primary did not stop cleanly and resyncs the regions its writes may not have reached the secondary in: " +
	"the resync starts once the link is up and the secondary's journal room for it is checked"

// reasonRestartTogether is why a pair with nothing to copy stays suspended
// with those a restart is to resync (see awaitRoomAtStart).
const reasonRestartTogether = "suspended with the pairs the restarted primary resyncs, so that the secondary's volumes stay at one time: " +
	"resumes with them once the link is up and the secondary's journal room is checked"

// noteRoomUnknown says why a resync waits at the start of a run.
const noteRoomUnknown = "resync waits for the secondary to report its journal room: the link has not been up since the primary started"

// awaitRoomAtStart holds the resyncs a restart starts by itself (rs) to
// the journal-room check an operator's resume gets (see checkRoom and
// awaitRoom): the secondary holds every volume for them until they end, and
// nobody knows its room before the link is up. They stay suspended until
// then, their writes and the regions to copy tracked in their bitmaps.
//
// Suspending only them would break the set: every other pair would go on
// shadowing, and the secondary would apply those pairs' writes, stamped
// after the suspension, while the suspended ones stay as of it. A write to
// a suspended volume acknowledged before a write to another volume was
// issued would be missing where the later one is found. A resync the last
// run left unfinished, continued at once, is no better: its copy ends
// before the others begin, and the secondary applies the groups it held,
// with that volume's later writes. Only the operator may split the set
// (a suspension by hand); the restart's own suspension is the session's:
// every pair not suspended already (resyncs continued, first copies, duplex
// pairs with nothing to copy) is suspended with those of rs, at one point
// of the common timer, before any I/O is served. The secondary holds every
// volume as of one consistency time: its last group from before the
// restart, or, while the hold of a resync the last run began is still open
// there, the group before that resync (the hold outlives a suspension: see
// resyncHeld). Every one of them then resumes at one point of the timer too
// (autoResume, resumeAll), once the link is up and the room for all their
// resyncs together is checked, so they share one hold at the secondary,
// which goes from the state before the restart straight to the one after
// every resync. When the room lacks they all stay suspended, saying why,
// and the operator may accept an inconsistent resync instead. The
// suspension's markers given up for the timer's lease, it returns the
// error (see startFailed). Called before Run.
func (mg *Manager) awaitRoomAtStart(rs []resyncAtStart) error {
	if len(rs) == 0 {
		return nil
	}
	regions := map[string]*bitmap.Bitmap{}
	for _, r := range rs {
		regions[r.p.Volume] = r.bm
	}
	// A copy continued with nothing left to copy has its end captured
	// already, ahead of the suspension (see raise); a duplex pair keeps the
	// time it was opened with, a lower bound of what the secondary holds.
	ends := map[string]int64{}
	for _, name := range mg.order {
		if p := mg.pairs[name]; !p.Deleted && p.State == Pending && p.CopyEnd != 0 {
			ends[name] = p.CopyEnd
		}
	}
	pos := mg.mover.Stats().Acked
	ps, at, err := mg.suspendAllLockedWithin(true, regions, mg.operatorWait())
	if err != nil {
		return fmt.Errorf("the suspension of every pair for the resyncs the start makes: %w", err)
	}
	for i, p := range ps {
		if end, ok := ends[p.Volume]; ok {
			raise(p, end, at[i], pos)
		}
		if mg.needsNoRoom(p, pos) {
			// Nothing to copy, or a copy the secondary holds nothing for
			// (a first copy): it waits only to resume with the others, and
			// no room check would clear a note that it waits for one.
			p.Reason = reasonRestartTogether
			continue
		}
		p.Reason, p.Waiting = reasonRestartResync, noteRoomUnknown
	}
	return nil
}

// recover copies the regions the activity log recovered for duplex pairs. It
// runs before the primary serves any I/O and before the data mover cuts its
// first group, so every copy lands in one time-interval group, and so in one
// consistency group: the secondary moves from one consistent state to the
// next, now holding every write the primary had acknowledged. If the regions
// would not fit in the sidefiles at once, they are to copy as a resync
// instead, which the secondary holds its volumes for: returned, for
// awaitRoomAtStart.
func (mg *Manager) recover(regions map[string][][2]int64) ([]resyncAtStart, error) {
	if len(regions) == 0 {
		return nil, nil
	}
	need := map[Subsystem]int64{}
	var total int64
	for name, rs := range regions {
		for _, r := range rs {
			need[mg.vols[name].Subsystem] += sidefile.Cost(int(r[1]))
			total += r[1]
		}
	}
	atomic := true
	for ss, n := range need {
		if n > ss.Sidefile().Stats().Limit/2 {
			atomic = false
		}
	}
	if !atomic {
		var large []resyncAtStart
		for _, name := range mg.order {
			rs, ok := regions[name]
			if !ok {
				continue
			}
			bm := bitmap.New(mg.vols[name].Size, bitmap.DefaultRegion)
			for _, r := range rs {
				bm.Set(r[0], r[1])
			}
			large = append(large, resyncAtStart{mg.pairs[name], bm})
		}
		mg.log.Warn("primary did not stop cleanly: the regions of its activity log do not fit the sidefiles at once; "+
			"resynchronising them once the secondary's journal room is checked, the secondary holding its copy until done",
			"bytes", total)
		return large, nil
	}
	// The copies may span several record sets, and so several consistency
	// groups; announced as a resync, the secondary holds them all back
	// until the last copy-end, so it moves from one consistent state to the
	// next in one step.
	for name, rs := range regions {
		var n int64
		for _, r := range rs {
			n += r[1]
		}
		mg.mark(name, recordset.Marker{State: recordset.StateResync, Bytes: uint64(n)})
	}
	if mg.startHung != nil {
		return nil, mg.startHung
	}
	hung := map[string]bool{}
	failed := false
	defer func() {
		if failed {
			return
		}
		for _, name := range mg.order {
			if _, ok := regions[name]; ok && !hung[name] {
				mg.recovering[name] = mg.endRecovery(mg.pairs[name])
			}
		}
	}()
	wait := mg.opts.CopyReadWait
	if wait == 0 {
		wait = mover.DefaultCopyReadWait
	}
	// Each volume's copies run on their own: the reads of several stuck
	// volumes are waited for together, so the start (and every volume's
	// I/O) waits about one CopyReadWait for them all, not one per volume.
	var names []string
	for _, name := range mg.order {
		if _, ok := regions[name]; ok {
			names = append(names, name)
		}
	}
	errs := make([]error, len(names))
	after := mg.copyReadTimer()
	var reads recoveryReads
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() { errs[i] = copyRecovered(mg.vols[name].Subsystem, name, regions[name], wait, after, &reads) })
	}
	// A copy's capture waits for its stamp, and so for the timer's lease:
	// one known hung ends the start (see startFailed) rather than have
	// the copies given up as reads that hang, a wait later.
	copied := make(chan struct{})
	go func() {
		wg.Wait()
		close(copied)
	}()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case <-copied:
			done = true
		case <-tick.C:
			if err := mg.leaseHung(); err != nil {
				failed = true
				return nil, fmt.Errorf("the copies of the regions the activity log recovered: %w", err)
			}
		}
	}
	for i, name := range names {
		rs := regions[name]
		if err := errs[i]; errors.Is(err, errRecoveryReadHung) {
			hung[name] = true
			if serr := mg.suspendRecoveryHung(mg.pairs[name], rs, reasonCopyReadHung); serr != nil {
				failed = true
				return nil, serr
			}
			mg.log.Error("primary did not stop cleanly, and a read of a primary volume for the copy of its recovered regions did not complete in time: "+
				"pair suspended with those regions to resync; resume it once the volume reads again", "volume", name, "err", err)
			continue
		} else if errors.Is(err, subsystem.ErrCopyRead) {
			// A failing disk under one volume is that pair's, as a stuck
			// one is: the others recover and serve.
			hung[name] = true
			if serr := mg.suspendRecoveryHung(mg.pairs[name], rs, reasonCopyReadFailed(err)); serr != nil {
				failed = true
				return nil, serr
			}
			mg.log.Error("primary did not stop cleanly, and a read of a primary volume for the copy of its recovered regions failed: "+
				"pair suspended with those regions to resync; resume it once the volume reads again", "volume", name, "err", err)
			continue
		} else if err != nil {
			failed = true
			return nil, err
		}
		p := mg.pairs[name]
		p.Resynced = 0
		for _, r := range rs {
			p.Resynced += r[1]
		}
		// The regions stay marked (sticky) until the secondary has the
		// end of the recovery, not only its copies: the secondary
		// acknowledges the copies as it journals them but holds them
		// back until that end, and the log forgets a copy's region once
		// it is acknowledged. A second crash in between must copy the
		// regions again, under a resync of its own that ends the one the
		// secondary holds open. promote unsticks them.
	}
	mg.log.Warn("primary did not stop cleanly: recovered the regions of its activity log in one consistency group", "bytes", total)
	return nil, nil
}

// recoveryEndOwed stands, in recovering, for the end of a crash
// recovery put off for the timer's lease (see endRecovery): no
// acknowledgement reaches it, so the recovered regions stay marked.
const recoveryEndOwed = math.MaxInt64

// endRecovery stamps the end of p's crash recovery, every copy of it
// captured, and returns its stamp; or, its stamp waiting for the write
// of the timer's lease that has taken SaveWait (see leasewait.go), puts
// it off and returns recoveryEndOwed: the start ends, and endCopies
// stamps it once the lease is written, still after every copy of the
// recovery, and after writes captured meanwhile, which the secondary
// holds with the copies until that end (the resync's hold), as it holds
// a resync's. The recovered regions stay marked in the activity log
// until the end is acknowledged, so a crash meanwhile recovers them
// again; a stop meanwhile is not clean (see Close). Called with mg.mu
// held or before Run.
func (mg *Manager) endRecovery(p *Pair) int64 {
	const what = "the end of the crash recovery"
	err := mg.leaseHung()
	if err == nil {
		var ts int64
		if ts, err = mg.markCopyEndWithin(p, mg.vols[p.Volume].Subsystem, mg.operatorWait()); err == nil {
			mg.madeAfterWait(what, p.Volume)
			return ts
		}
	}
	mg.putOff(what, p.Volume, err)
	return recoveryEndOwed
}

// recoveriesOwed returns the duplex pairs whose crash recovery's end is
// put off (see endRecovery). Called with mg.mu held.
func (mg *Manager) recoveriesOwed() []*Pair {
	if len(mg.recovering) == 0 {
		return nil
	}
	var owed []*Pair
	for _, name := range mg.order {
		if end, ok := mg.recovering[name]; ok && end == recoveryEndOwed && mg.pairs[name].State == Duplex {
			owed = append(owed, mg.pairs[name])
		}
	}
	return owed
}

// copyReadTimer returns what times the start's waits for a recovery copy's
// read.
func (mg *Manager) copyReadTimer() func(vol string, d time.Duration) <-chan time.Time {
	if mg.opts.copyReadTimer != nil {
		return mg.opts.copyReadTimer
	}
	return func(_ string, d time.Duration) <-chan time.Time { return time.After(d) }
}

// errRecoveryReadHung says a recovery copy's read outlasted its wait.
var errRecoveryReadHung = errors.New("read of the primary volume did not complete in time")

// recoveryReads is what the start's waits for the recovery copies' reads
// go by: when one last ended. The copies of every volume start together,
// and a disk under many volumes serves their reads in turn: a read timed
// from its capture alone would be given up, queued behind the others,
// though the disk never stopped reading. A read is given up once wait has
// passed since the later of its capture and the end of the last recovery
// read: a stuck disk ends none, and its reads are given up one wait after
// the last read that ended, on any disk.
type recoveryReads struct {
	mu   sync.Mutex
	last time.Time
}

// ended records that a recovery copy's read ended, done or failed.
func (rr *recoveryReads) ended() {
	rr.mu.Lock()
	rr.last = time.Now()
	rr.mu.Unlock()
}

// lastEnded returns when a recovery copy's read last ended.
func (rr *recoveryReads) lastEnded() time.Time {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	return rr.last
}

// copyRecovered copies the regions rs of vol for a crash recovery, waiting
// for each copy's read at most wait (negative: for ever, after: the timer)
// from its capture or the end of the last of reads since. A copy whose
// read of the volume hangs (a stuck disk) would hold the start, and with
// it every volume's I/O: its copy is left to its read, which the data
// mover's first cut gives up (see subsystem.DrainWithin), and the regions
// of vol not copied yet are not tried. Until its capture a copy waits as a
// write does, for sidefile room (which the start has checked there is)
// and for its activity-log mark, after its look for a hole in the volume,
// which a stuck disk may not answer either: that too is waited for at most
// wait, from the copy's start or the end of the last of reads since.
func copyRecovered(ss Subsystem, vol string, rs [][2]int64, wait time.Duration, after func(vol string, d time.Duration) <-chan time.Time, reads *recoveryReads) error {
	for _, r := range rs {
		done, captured := make(chan error, 1), make(chan time.Time, 1)
		started := time.Now()
		go func() {
			read := false
			err := ss.CopyReporting(context.Background(), vol, r[0], r[1], func() {
				read = true
				captured <- time.Now()
			})
			if read {
				reads.ended()
			}
			done <- err
		}()
		if err := awaitRecoveryRead(vol, started, captured, done, wait, after, reads); err != nil {
			return fmt.Errorf("recovery copy of %s [%d, +%d): %w", vol, r[0], r[1], err)
		}
	}
	return nil
}

// awaitRecoveryRead waits for the copy of vol started at from to end, on
// done, as copyRecovered says: until captured says when it was captured,
// the wait for its capture runs from from; then the wait for its read
// (timed by after) from its capture.
func awaitRecoveryRead(vol string, from time.Time, captured <-chan time.Time, done <-chan error, wait time.Duration, after func(vol string, d time.Duration) <-chan time.Time, reads *recoveryReads) error {
	for {
		var bound <-chan time.Time
		stop := func() bool { return false }
		if wait >= 0 {
			if captured != nil {
				t := time.NewTimer(wait - time.Since(from))
				bound, stop = t.C, t.Stop
			} else {
				bound = after(vol, wait-time.Since(from))
			}
		}
		select {
		case err := <-done: // read, or a hole or refused before its capture
			stop()
			return err
		case from = <-captured:
			stop()
			captured = nil
			continue
		case <-bound:
		}
		if captured != nil {
			select {
			case from = <-captured: // as the wait ran out
				captured = nil
				continue
			default:
			}
		}
		last := reads.lastEnded()
		if !last.After(from) {
			if captured != nil {
				return fmt.Errorf("%w: not captured, no recovery read ended for %v", errRecoveryReadHung, wait)
			}
			return fmt.Errorf("%w: no recovery read ended for %v", errRecoveryReadHung, wait)
		}
		// Another read ended meanwhile: the disk may be serving the
		// others first.
		from = last
	}
}

// suspendRecoveryHung suspends p, saying reason, whose crash recovery (the
// regions rs) could not read its primary volume in time, or at all (a read
// error: those copies shipped with their data zeroes, which the hold below
// keeps from being applied), as suspendAbandoned suspends a
// pair whose copy the mover gave up: the other pairs recover and serve, and
// p holds every region it recovered in its bitmap (they stay marked in the
// activity log too, until it is duplex again) for the operator's resume to
// copy once the volume reads again. The secondary, which its recovery was
// announced to as a resync, holds p's volume as of before it, as any resync
// suspended part-way, and p is suspended as one (see resyncHeld), not as
// the duplex pair it was: that suspension would make its copy consistent
// as of the marker (see raisesAfter), and a deletion would claim a time
// for the mix the secondary then applies (the copies made before the hang
// over the image its hold kept). Its marker given up for the timer's
// lease, it returns the error (see startFailed). Called before Run.
func (mg *Manager) suspendRecoveryHung(p *Pair, rs [][2]int64, reason string) error {
	mg.mu.Lock()
	defer mg.unlock()
	bm := bitmap.New(p.Size, bitmap.DefaultRegion)
	for _, r := range rs {
		bm.Set(r[0], r[1])
	}
	makePending(p, bm)
	if err := mg.suspendOneLockedWithin(p, mg.operatorWait()); err != nil {
		return fmt.Errorf("the suspension of %s, whose recovered regions could not be read: %w", p.Volume, err)
	}
	p.Reason = reason
	// The secondary holds p as of the last group it has from the runs
	// before this one, which the mover's first contact says (see rebase):
	// until then, no later than the suspension, capped by what it
	// acknowledged (see claim).
	at := mg.suspendedAt[p.Volume]
	p.Since = at
	mg.unbased[p.Volume] = at
	if bm := mg.vols[p.Volume].Subsystem.Tracking(p.Volume); bm != nil {
		for _, r := range rs {
			bm.Set(r[0], r[1])
		}
	}
	return nil
}

func (mg *Manager) statePath() string { return filepath.Join(mg.opts.Dir, "pairs.json") }

// readPersisted reads the pair state saved in dir; found is false when
// there is none. A file that is not one save wrote (cut short, overwritten,
// null, {}, a pair that is null) is refused with an error wrapping
// disk.ErrDamaged: read as none, every pair would start a full initial
// copy again and a deleted one be added back.
func readPersisted(fsys disk.FS, dir string) (st persisted, found bool, err error) {
	path := filepath.Join(dir, "pairs.json")
	b, err := disk.ReadFile(disk.Or(fsys), path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return st, false, nil
	case err != nil:
		return st, false, fmt.Errorf("pair state: %w", err)
	}
	err = disk.DecodeRecord(b, &st, "clean", "pairs")
	for i := 0; err == nil && i < len(st.Pairs); i++ {
		if p := st.Pairs[i]; p == nil || p.Volume == "" {
			err = fmt.Errorf("pair %d names no volume", i)
		}
	}
	if err != nil {
		return persisted{}, false, fmt.Errorf("%w: it holds each pair's state (a copy under way, duplex, suspended, deleted) and whether "+
			"the last stop was clean, which decide what is copied to the secondary, and read as missing every pair would start "+
			"a full initial copy and a deleted one be added back: put back a copy of it", disk.Damaged("pair state", path, err))
	}
	return st, true, nil
}

// Sizes returns the size of each volume the pair state saved in dir names,
// none before a session's first start. A volume it names has been served
// and paired: a site must never take its missing image for a new one.
func Sizes(fsys disk.FS, dir string) (map[string]int64, error) {
	st, _, err := readPersisted(fsys, dir)
	if err != nil {
		return nil, err
	}
	sizes := make(map[string]int64, len(st.Pairs))
	for _, p := range st.Pairs {
		sizes[p.Volume] = p.Size
	}
	return sizes, nil
}

func (mg *Manager) bitmapPath(vol string) string {
	return filepath.Join(mg.opts.Dir, vol+".bitmap")
}

func (mg *Manager) loadBitmap(vol string, size int64) (*bitmap.Bitmap, error) {
	b, err := disk.ReadFile(disk.Or(mg.opts.FS), mg.bitmapPath(vol))
	if err != nil {
		return nil, err
	}
	bm, err := bitmap.Decode(b, size)
	if err != nil {
		// Read but corrupt: the log must name the file, as a read's
		// error does.
		return nil, fmt.Errorf("pair bitmap %s: %w", mg.bitmapPath(vol), err)
	}
	return bm, nil
}

// startCopy makes p pending with the regions of bm to copy (all if nil).
// Called with mg.mu held or before Run.
func (mg *Manager) startCopy(p *Pair, bm *bitmap.Bitmap) {
	if bm == nil {
		bm = bitmap.New(p.Size, bitmap.DefaultRegion)
		bm.SetAll()
	}
	makePending(p, bm)
	mg.dirty = true
	mg.changes++
	if bm.Count() == 0 && mg.marker(p.Volume) == nil {
		// Nothing to copy: the pair is duplex once the secondary holds
		// everything captured until now. With markers, the end is
		// stamped after the copy's announcement (see endIfEmpty).
		p.CopyEnd = mg.vols[p.Volume].Subsystem.Stamp()
	}
	mg.copies[p.Volume] = bm
	mg.kick()
}

// makePending sets the fields of p for a copy of the regions of bm.
func makePending(p *Pair, bm *bitmap.Bitmap) {
	if p.EndAt != 0 {
		// The end of the copy before this one is not applied yet, and
		// whether the secondary applies it (and the suspension after it)
		// before this copy's hold begins is not known: it holds the volume
		// as of the time kept, or as of AfterEnd. Neither is claimed until
		// it recovers past that end (see promote).
		p.Since, p.Consistent = 0, 0
	}
	// A copy that starts no longer waits: a note of why it did (see
	// checkRoom) would stay in status, and in the state, for good, since
	// only a room check clears it, and none runs for a pair not suspended
	// (a resync started on a room the secondary could not read).
	p.State, p.Auto, p.Deleted, p.Reason, p.Waiting, p.CopyFailing, p.CopyFailingSince = Pending, false, false, "", "", "", time.Time{}
	p.CopyTotal, p.Copied, p.CopyEnd = bm.DirtyBytes(), 0, 0
}

// suspendLocked makes p suspended. Its writes are tracked in a bitmap of its
// own, starting with the regions its copy had still to do: the copier may
// still clear regions of the copy bitmap it has read, and must never clear
// the mark of a write that came after. It returns the time of the
// suspension (see suspendMarked). Called with mg.mu held.
func (mg *Manager) suspendLocked(p *Pair, auto bool) int64 {
	at, _ := mg.suspendLockedWithin(p, auto, -1)
	return at
}

// suspendLockedWithin is suspendLocked for an operator's command (wait
// not negative): its marker given up for the timer's lease (see
// boundedMarker), p is left as it was, its copy (stopped) to go on, and
// the error is returned.
func (mg *Manager) suspendLockedWithin(p *Pair, auto bool, wait time.Duration) (int64, error) {
	cp, copying := mg.copies[p.Volume]
	bm := mg.suspendBitmap(p)
	mg.publishSuspendingLocked(auto, p)
	at, err := mg.suspendMarkedWithin(p.Volume, bm, wait)
	if err != nil {
		if copying {
			mg.copies[p.Volume] = cp
		}
		return 0, err
	}
	mg.suspended(p, auto, at)
	return at, nil
}

// suspendBitmap stops p's copy and returns the bitmap its writes go to once
// suspended (see suspendLocked). Called with mg.mu held.
func (mg *Manager) suspendBitmap(p *Pair) *bitmap.Bitmap {
	var bm *bitmap.Bitmap
	if cp := mg.copies[p.Volume]; cp != nil {
		bm = cp.Clone()
	} else {
		bm = bitmap.New(p.Size, bitmap.DefaultRegion)
	}
	delete(mg.copies, p.Volume)
	if mg.copyVol == p.Volume && mg.stopCopy != nil {
		mg.stopCopy()
	}
	return bm
}

// suspended records p as suspended once its writes go to its bitmap, at
// the time at (see suspendedAt).
func (mg *Manager) suspended(p *Pair, auto bool, at int64) {
	suspendFields(p, auto)
	if mg.suspendedAt == nil {
		mg.suspendedAt = map[string]int64{}
	}
	mg.suspendedAt[p.Volume] = at
	mg.dirty = true
	mg.changes++
}

// suspendFields sets the fields of p for its suspension.
func suspendFields(p *Pair, auto bool) {
	if p.Since == 0 {
		p.Since = p.Consistent
	}
	p.State, p.Auto, p.Reason, p.Waiting, p.CopyFailing, p.CopyFailingSince = Suspended, auto, "", "", "", time.Time{}
}

// byHand makes p's suspension the operator's: it no longer resumes by
// itself, so no resync of it waits for anything either. Waiting, the note
// of a resync that does not start, is cleared with the rest: nothing else
// clears it while p stays suspended (checkRoom runs for a resume only), and
// status would go on showing why a resync that was cancelled waits, the
// link not up, long after the link came up.
// stopResuming keeps vol from a resume whose save is under way (see
// resuming), and says whether there was one. Called with mg.mu held.
func (mg *Manager) stopResuming(vol string) bool {
	if !mg.resuming[vol] {
		return false
	}
	mg.resuming[vol] = false
	return true
}

func byHand(p *Pair) {
	p.Auto, p.Reason, p.Waiting = false, "", ""
}

// suspendAllLocked suspends every pair not suspended yet at one point of
// the common timer (see subsystem.SuspendTogether) and returns them with
// the time of each one's suspension (see suspendTogether). The bitmap of a
// pair in regions is the one its writes go to, with the regions it has to
// copy (see awaitRoomAtStart). Called with mg.mu held.
func (mg *Manager) suspendAllLocked(auto bool, regions map[string]*bitmap.Bitmap) ([]*Pair, []int64) {
	ps, at, _ := mg.suspendAllLockedWithin(auto, regions, -1)
	return ps, at
}

// suspendAllLockedWithin is suspendAllLocked for an operator's command
// (wait not negative): its markers given up for the timer's lease (see
// boundedMarker), every pair is left as it was, their copies (stopped)
// to go on, and the error is returned.
func (mg *Manager) suspendAllLockedWithin(auto bool, regions map[string]*bitmap.Bitmap, wait time.Duration) ([]*Pair, []int64, error) {
	var ps []*Pair
	var bms []*bitmap.Bitmap
	copies := map[string]*bitmap.Bitmap{}
	for _, name := range mg.order {
		p := mg.pairs[name]
		if p.Deleted || p.State == Suspended {
			continue
		}
		bm := regions[name]
		if bm == nil {
			if cp, ok := mg.copies[name]; ok {
				copies[name] = cp
			}
			bm = mg.suspendBitmap(p)
		}
		ps = append(ps, p)
		bms = append(bms, bm)
	}
	if len(ps) == 0 {
		return nil, nil, nil
	}
	mg.publishSuspendingLocked(auto, ps...)
	at, err := mg.suspendTogether(ps, bms, wait)
	if err != nil {
		maps.Copy(mg.copies, copies)
		return nil, nil, err
	}
	for i, p := range ps {
		mg.suspended(p, auto, at[i])
	}
	return ps, at, nil
}

func (mg *Manager) kick() {
	select {
	case mg.wake <- struct{}{}:
	default:
	}
}

// snapshot is the state a save writes, as read under mg.mu.
type snapshot struct {
	st      persisted
	bms     map[string]*bitmap.Bitmap
	pending map[string]bool
	unstick []string
	changes uint64
	// lazy: the state need not be written if only duplex pairs'
	// consistency times moved since the last write (see timesSaveEvery).
	lazy bool
}

// snapshotLocked reads the state a save writes. Called with mg.mu held.
func (mg *Manager) snapshotLocked(clean bool) snapshot {
	s := snapshot{st: persisted{Clean: clean, NoLog: mg.opts.ActivityLog == nil || mg.noLog, RejoinOwedKept: true}, changes: mg.changes,
		bms: map[string]*bitmap.Bitmap{}, pending: map[string]bool{}}
	for _, name := range mg.order {
		p := *mg.pairs[name]
		s.st.Pairs = append(s.st.Pairs, &p)
		if mg.unstick[name] && p.State == Duplex && !mg.failedOwed(name) {
			s.unstick = append(s.unstick, name)
		}
		switch p.State {
		case Pending:
			s.bms[name] = mg.copies[name]
			s.pending[name] = true
		case Suspended:
			s.bms[name] = mg.vols[name].Subsystem.Tracking(name)
		}
	}
	return s
}

// timesSaveEvery is how often the periodic save writes the pair state when
// all that changed in it are the consistency times of duplex pairs. They
// move with every acknowledgement, so an idle session linked to its
// secondary would otherwise write (and fsync) the state every second: at
// 1,024 pairs that was a sixth of an idle primary's CPU. The stored time
// is a lower bound, reported only after a restart until the secondary
// answers (see promote), so a stale one is still true, merely older.
const timesSaveEvery = 10 * time.Second

// save writes the pair state and the bitmaps of pending and suspended pairs.
func (mg *Manager) save(clean bool) error { return mg.saveState(clean, false) }

// What a save is for, besides the state it writes (see saveAs).
const (
	saveRunning = iota
	saveClose   // Close's: the fallback's saves are refused after it
	saveNoLog   // the fallback's (goOnWithoutLog): refused after Close's
)

// saveState is save; lazy (the periodic save) lets a state whose only
// changes are duplex pairs' consistency times wait up to timesSaveEvery.
func (mg *Manager) saveState(clean, lazy bool) error { return mg.saveAs(clean, lazy, saveRunning) }

// saveAs is saveState for a save of the kind given (saveRunning,
// saveClose, saveNoLog). Close's marks the manager closed, and a save of
// the fallback's that comes after it is refused (errClosed), both under
// saveMu, so that none of them writes over the stop's state.
func (mg *Manager) saveAs(clean, lazy bool, kind int) error {
	mg.saveMu.Lock()
	defer mg.saveMu.Unlock()
	mg.mu.Lock()
	switch {
	case kind == saveNoLog && mg.closed:
		mg.unlock()
		return errClosed
	case kind == saveClose:
		mg.closed = true
	}
	s := mg.snapshotLocked(clean)
	mg.unlock()
	s.lazy = lazy
	if kind == saveNoLog {
		s.st.NoLog = true
	}
	if err := mg.write(s); err != nil {
		return err
	}
	if kind == saveNoLog {
		mg.mu.Lock()
		mg.noLog = true
		mg.unlock()
	}
	// The state on disk now says these pairs are duplex: the regions
	// written while they were suspended are all copied and acknowledged.
	if al := mg.opts.ActivityLog; al != nil {
		mg.mu.Lock()
		for _, name := range s.unstick {
			if mg.changes == s.changes && mg.unstick[name] && mg.pairs[name].State == Duplex && !mg.failedOwed(name) {
				al.Unstick(name)
				delete(mg.unstick, name)
			}
		}
		mg.unlock()
	}
	return nil
}

// write writes the bitmaps of s, then its pair state. Called with
// mg.saveMu held.
func (mg *Manager) write(s snapshot) error {
	if err := mg.saves.Err(); err != nil {
		// Saves given up (CloseWithin, EndSaves) write nothing: the
		// directory may be another run's by the time a queued one comes.
		return fmt.Errorf("pair state %s: the stop gave its saves up: %w", mg.opts.Dir, err)
	}
	mg.saving.Store(time.Now().UnixNano())
	defer mg.saving.Store(0)
	for name, bm := range s.bms {
		if bm == nil {
			continue
		}
		data, _ := bm.MarshalBinary()
		if prev, ok := mg.written[name]; ok && bytes.Equal(prev, data) {
			continue
		}
		if _, ok := mg.written[name]; !ok && s.pending[name] && bm.Full() {
			// A pending pair without a bitmap on disk copies everything
			// (Open), which is what a full one says: a new session's
			// thousand pairs start without a thousand fsyncs.
			if _, err := disk.Or(mg.opts.FS).Stat(mg.bitmapPath(name)); errors.Is(err, os.ErrNotExist) {
				if mg.written == nil {
					mg.written = map[string][]byte{}
				}
				mg.written[name] = data
				continue
			}
		}
		if err := disk.WriteFileAtomicUnless(mg.saves, disk.Or(mg.opts.FS), mg.bitmapPath(name), data); err != nil {
			return fmt.Errorf("pair state: %w", err)
		}
		if mg.written == nil {
			mg.written = map[string][]byte{}
		}
		mg.written[name] = data
	}
	// Skipped, the state on disk says of every pair what s says, bar a
	// duplex pair's older consistency time: a save that unsticks a duplex
	// pair's marks after it may, as after a write.
	if s.lazy && mg.savedState != nil && time.Since(mg.stateWritten) < timesSaveEvery && onlyTimesMoved(mg.savedPairs, s.st) {
		return nil
	}
	// Compact: indenting 1,024 pairs cost more than encoding them, every
	// second.
	data, err := json.Marshal(s.st)
	if err != nil {
		return err
	}
	if !bytes.Equal(data, mg.savedState) {
		if err := disk.WriteFileAtomicUnless(mg.saves, disk.Or(mg.opts.FS), mg.statePath(), data); err != nil {
			return fmt.Errorf("pair state: %w", err)
		}
		mg.savedState, mg.savedPairs, mg.stateWritten = data, s.st, time.Now()
	}
	return nil
}

// onlyTimesMoved reports whether b differs from a at most in the
// consistency times of pairs duplex in both, and only by later ones.
func onlyTimesMoved(a, b persisted) bool {
	if a.Clean != b.Clean || a.NoLog != b.NoLog || len(a.Pairs) != len(b.Pairs) {
		return false
	}
	for i, pa := range a.Pairs {
		x, y := *pa, *b.Pairs[i]
		if x.State == Duplex && y.State == Duplex && y.Consistent >= x.Consistent {
			// Only later: the time on disk is still one the secondary
			// holds. A time that went back (a resync of another volume
			// holds the secondary behind what it acknowledged) is written
			// at once, as before.
			x.Consistent = y.Consistent
		}
		if x != y {
			return false
		}
	}
	return true
}

// saveResuming saves the pairs ps as pending, their copies the regions
// their bitmaps mark, before their resumes capture the resync markers
// (accepted says which the operator accepted as inconsistent). A marker
// captured first may reach the secondary, which holds every volume for the
// resync it announces, before a kill -9 that comes ahead of the save: the
// restarted primary, with the pair suspended on disk, would run no copy to
// end that hold. Saved first, a crash before the marker restarts the pair
// pending, and Open announces its copy (in full after an unclean stop),
// which the secondary holds for and which ends. Writes made between the
// save and the marker land in the bitmaps the resumes return, and after an
// unclean stop the whole volume is copied anyway. Called with mg.saveMu and
// mg.mu held; mg.mu is let go over the write, whose fsyncs may take seconds
// that status and the other operations must not wait with it. A pair of ps
// deleted meanwhile is left out of what it returns, the pairs to resume
// (still suspended), and so is one the operator suspended meanwhile (for
// the session's own resume (auto), one suspended by hand), as it is when
// the suspension comes before the resume looks: the save after that
// operation writes it. An operator's resume answered not yet in effect,
// its save hung, thus never overrides a suspension answered after it. The
// acceptance of an inconsistent resync a resume announces is the one it
// saved: one asked meanwhile is refused with its own resume, which finds
// the pair no longer suspended.
func (mg *Manager) saveResuming(ps []*Pair, accepted map[string]bool, auto bool) ([]*Pair, error) {
	if len(ps) == 0 {
		return nil, nil
	}
	s := mg.snapshotLocked(false)
	for _, p := range ps {
		bm := mg.vols[p.Volume].Subsystem.Tracking(p.Volume)
		if bm == nil {
			bm = bitmap.New(p.Size, bitmap.DefaultRegion)
			bm.SetAll()
		}
		i := slices.Index(mg.order, p.Volume)
		q := *p
		makePending(&q, bm)
		startInconsistent(&q, accepted[p.Volume], p.CopyEnd != 0)
		s.st.Pairs[i] = &q
		s.bms[p.Volume], s.pending[p.Volume] = bm, true
	}
	mg.resuming = map[string]bool{}
	for _, p := range ps {
		mg.resuming[p.Volume] = true
	}
	mg.unlock()
	err := mg.write(s)
	mg.mu.Lock()
	resuming := mg.resuming
	mg.resuming = nil
	if err != nil {
		return nil, err
	}
	still := ps[:0:0]
	for _, p := range ps {
		if p.Deleted || p.State != Suspended || (auto && !p.Auto) || !resuming[p.Volume] {
			// Saved pending, it is not: the state on disk is written again.
			mg.dirty = true
			continue
		}
		if accepted[p.Volume] {
			if mg.markers.inconsistent == nil {
				mg.markers.inconsistent = map[string]bool{}
			}
			mg.markers.inconsistent[p.Volume] = true
		} else {
			delete(mg.markers.inconsistent, p.Volume)
		}
		still = append(still, p)
	}
	return still, nil
}

// Run copies, promotes, suspends and resumes pairs until ctx ends, then saves
// the state as clean.
func (mg *Manager) Run(ctx context.Context) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	// The suspend watcher has a goroutine of its own: the copier may wait
	// for sidefile space as long as the link is down, and the session must
	// suspend itself on time all the same (which stops that copy).
	if w := mg.watcher; w != nil {
		// The watcher of the last Run, left to a drop or a marker
		// waiting for the timer's lease (see below), ends first: its
		// fields are its own.
		<-w
	}
	watched := make(chan struct{})
	mg.watcher = watched
	defer mg.awaitWatcher(watched)
	go func() {
		defer close(watched)
		every := min(100*time.Millisecond, max(mg.opts.SuspendAfter/4, 5*time.Millisecond))
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				mg.suspendAbandoned()
				mg.suspendWriteFailed()
				mg.autoSuspend()
			}
		}
	}()
	// Sweep, not Clean: a volume's flush that hangs must not hold up the
	// copies, promotions, saves and stop of every pair. A flush that ends
	// wakes the loop (flushEnded), whose next pass takes its result at
	// once, unmarking its regions as Clean did in the same call; new
	// flushes start only at the sweeps, as often as Clean flushed.
	var flushEnded <-chan struct{}
	sweep, takeEnded := func() {}, func() {}
	if al := mg.opts.ActivityLog; al != nil {
		flushEnded = al.FlushEnded()
		logged := func(err error) {
			if err != nil {
				mg.log.Error("activity log", "err", err)
			}
		}
		sweep = func() { logged(al.Sweep()) }
		takeEnded = func() { logged(al.TakeEnded()) }
	}
	lastSave, ended := time.Now(), false
	for {
		mg.copyOne(ctx)
		mg.endCopies()
		changed := mg.promote()
		mg.mu.Lock()
		changed, mg.dirty = changed || mg.dirty, false
		mg.unlockUnchanged()
		select {
		case <-flushEnded:
			ended = true
		default:
		}
		if changed || time.Since(lastSave) > mg.saveEvery {
			if err := mg.saveState(false, !changed); err != nil {
				mg.log.Error("saving pair state", "err", err)
			}
			sweep()
			lastSave, ended = time.Now(), false
		} else if ended {
			takeEnded()
			ended = false
		}
		if mg.copying() {
			if ctx.Err() != nil {
				break
			}
			continue
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
			continue
		case <-mg.wake:
			continue
		case <-flushEnded:
			ended = true
			continue
		}
		break
	}
	return nil
}

// awaitWatcher waits for Run's watcher (watched) to end once Run's
// context has: unless it waits for the write of the timer's lease (the
// session's drop stamps the subsystems' horizons, as the mover's cut
// does, holding dropMu), which is waited for only until that write is
// known hung (see leaseHung). The loop then stops without it, and the
// watcher ends on its own once the disk answers, its change made then;
// a stop meanwhile is not clean (its drain waits for the lease too).
func (mg *Manager) awaitWatcher(watched <-chan struct{}) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-watched:
			return
		case <-tick.C:
		}
		if err := mg.leaseHung(); err != nil {
			mg.log.Warn("stopping: the session's watcher waits for the write of the timer's lease, which has not ended (its disk stopped answering); "+
				"the manager's loop stops without it", "err", err)
			return
		}
	}
}

// lockDropWithin takes dropMu, which the session's suspension holds until
// its drop ends (see suspendSession), as long as it takes (wait negative)
// or until the write of the timer's lease is known hung (see leaseHung):
// the drop stamps the subsystems' horizons, as the mover's cut does, and
// a drop whose stamp waits for a hung lease holds dropMu as long. It then
// returns that error, dropMu not taken (taken late, it is let go at once).
func (mg *Manager) lockDropWithin(wait time.Duration) error {
	if wait < 0 {
		mg.dropMu.Lock()
		return nil
	}
	return timer.LockUnless(&mg.dropMu, mg.leaseHung)
}

// Close records a clean stop: the caller has shipped everything it holds.
// A write the volume failed since Run's watcher last looked (it looks
// every 100 ms, and stops with Run) is acted on first: after a clean stop
// neither the activity log nor a duplex pair says which regions to copy
// again, and the secondary holds that write's data where the volume may
// not. A caller that ships after Run has stopped acts on them before (see
// SuspendFailedWrites), so that the secondary learns of the suspension
// too; this catches the rest.
func (mg *Manager) Close(clean bool) error {
	mg.suspendWriteFailed()
	mg.mu.Lock()
	if n := len(mg.failedLeft); n > 0 && clean {
		// Their pairs are not suspended, so a clean state would claim
		// them the secondary's copies; not clean, the next start copies
		// what the activity log marks, their regions stuck there.
		clean = false
		mg.log.Error("stopping uncleanly: the suspension of a pair whose write failed waits for the timer's lease", "failed_writes", n)
	}
	if owed := mg.recoveriesOwed(); len(owed) > 0 && clean {
		// The secondary holds the recovery's copies, and every write
		// since, until its end: a clean state would have the next
		// start forget the regions, and the end would never come.
		clean = false
		mg.log.Error("stopping uncleanly: the end of a crash recovery waits for the timer's lease", "volume", owed[0].Volume)
	}
	mg.unlock()
	return mg.saveAs(clean, false, saveClose)
}

// ErrSaveHung is returned, wrapped, when a save of the pair state has not
// ended in time, its disk having stopped answering: by CloseWithin (the
// stop's save, given up), and by an operator's command (in effect, its
// save going on).
var ErrSaveHung = errors.New("the pair state's save has not ended")

// CloseWithin is Close, given up once ctx ends: a disk that stops
// answering must not keep the primary from stopping. The save given up,
// and every save under way, renames nothing from then on, even once the
// disk answers (see disk.WriteFileAtomicUnless): the pair state on disk
// stays the last one saved while running, which says not clean, as
// every save of a run does. The next start then copies what the activity
// log marks, as after a crash at that moment.
func (mg *Manager) CloseWithin(ctx context.Context, clean bool) error {
	done := make(chan error, 1)
	go func() { done <- mg.Close(clean) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	mg.giveUp()
	select {
	case err := <-done:
		// Ended meanwhile: saved unless given up before its rename.
		return err
	default:
	}
	return fmt.Errorf("pair state %s: %w: its disk has not answered (the state on disk says not clean)", mg.opts.Dir, ErrSaveHung)
}

// EndSaves gives every later save of the pair state up, as CloseWithin
// does one that does not end (it writes nothing), and returns a channel
// closed once the save under way, if any, has ended: given up or not, it
// may still rename once its disk answers. A stop lets the pair state's
// directory go only then, so that the next run never finds the state it
// read replaced by this run's older one.
func (mg *Manager) EndSaves() <-chan struct{} {
	mg.giveUp()
	ended := make(chan struct{})
	if mg.saveMu.TryLock() {
		mg.saveMu.Unlock()
		close(ended)
		return ended
	}
	go func() {
		defer close(ended)
		// Every write runs under saveMu, and one that takes it from now
		// on writes nothing.
		mg.saveMu.Lock()
		mg.saveMu.Unlock()
	}()
	return ended
}

// SaveUnderWay returns how long the save of the pair state under way has
// been writing, 0 if none is.
func (mg *Manager) SaveUnderWay() time.Duration {
	if at := mg.saving.Load(); at != 0 {
		return time.Since(time.Unix(0, at))
	}
	return 0
}

// SuspendFailedWrites acts now on the writes the volumes failed since
// Run's watcher last looked, as it does: a stop calls it once Run has
// ended and before its last shipment, so that the suspensions' markers
// ship with the rest. Acted on only by Close, after that shipment, a pair
// was saved suspended while the secondary, told nothing until the
// restart, went on reporting it duplex and consistent, holding the failed
// write's data where the primary's disk may not.
func (mg *Manager) SuspendFailedWrites() { mg.suspendWriteFailed() }

// copying reports whether a copy is to go on now: Run then loops at once,
// and otherwise waits for its tick, or a kick.
func (mg *Manager) copying() bool {
	mg.mu.Lock()
	defer mg.unlockUnchanged()
	p, _ := mg.nextCopyLocked(mg.now())
	return p != nil
}

// nextCopyLocked returns the first pending pair, in configuration order,
// with regions to copy and not waiting after a failed try (see
// copyFailed), and its copy; nil if none. Called with mg.mu held.
func (mg *Manager) nextCopyLocked(now time.Time) (*Pair, *bitmap.Bitmap) {
	if len(mg.copies) == 0 {
		// No pair has a copy: the walk below would pass every one.
		return nil, nil
	}
	for _, name := range mg.order {
		p, bm := mg.pairs[name], mg.copies[name]
		if p.State != Pending || bm == nil || bm.Count() == 0 {
			continue
		}
		if rt := mg.retries[name]; rt != nil && rt.copy == bm && now.Before(rt.at) {
			continue
		}
		return p, bm
	}
	return nil, nil
}

// copyOne copies a batch of regions of the first pending pair whose copy
// is not waiting to be tried again.
func (mg *Manager) copyOne(ctx context.Context) {
	mg.mu.Lock()
	p, bm := mg.nextCopyLocked(mg.now())
	if p == nil {
		mg.unlockUnchanged()
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	givenUp := make(chan struct{})
	mg.copyVol, mg.stopCopy, mg.givenUp = p.Volume, cancel, givenUp
	mg.unlock()
	defer func() {
		mg.mu.Lock()
		mg.copyVol, mg.stopCopy, mg.givenUp = "", nil, nil
		mg.unlock()
		cancel()
	}()
	ss := mg.vols[p.Volume].Subsystem
	for range 16 {
		r, off, length, ok := bm.Next(0)
		if !ok || ctx.Err() != nil {
			break
		}
		// A run of marked regions that is all hole on the primary goes as
		// one zeroes update.
		last, end := r, off+length
		for last-r < 1024 {
			nr, noff, nlen, ok := bm.Next(last + 1)
			if !ok || nr != last+1 {
				break
			}
			last, end = nr, noff+nlen
		}
		if last > r {
			hole, err := ss.CopyHole(ctx, p.Volume, off, end-off)
			if err != nil {
				if ctx.Err() == nil {
					mg.copyFailed(p, bm, off, err)
				}
				return
			}
			if hole {
				for x := r; x <= last; x++ {
					bm.Clear(x)
				}
				mg.copied(p, bm, ss, end-off)
				continue
			}
		}
		// A hole costs no data on the link, so only regions read are paced.
		if err := mg.opts.CopyRate.Wait(ctx, length); err != nil {
			return
		}
		if err := copyRegion(ctx, givenUp, ss, p.Volume, off, length); err != nil {
			if errors.Is(err, subsystem.ErrCopyRead) {
				mg.suspendReadFailed(p, bm, off, length, err)
			} else if ctx.Err() == nil {
				mg.copyFailed(p, bm, off, err)
			}
			return
		}
		bm.Clear(r)
		mg.copied(p, bm, ss, length)
	}
}

// The wait before a pending pair's copy that failed is tried again (see
// copyFailed): the first, doubled with each failure in a row up to the
// last.
const (
	copyRetryFirst = 100 * time.Millisecond
	copyRetryLast  = 10 * time.Second
)

// copyRetry is the wait of a pending pair's copy whose last try failed:
// copy is its bitmap (a copy started again starts afresh), fails the
// failures in a row, at when it is tried again.
type copyRetry struct {
	copy  *bitmap.Bitmap
	fails int
	at    time.Time
}

// copyFailed records that p's copy (bm), at off, failed (err) other than
// by a read of its volume (see suspendReadFailed) or its stop: a fault
// that may pass (the activity log's disk full, a send that failed). The
// pair stays pending, the region still to copy, and is tried again after
// a wait that grows with each failure in a row (copyRetryFirst to
// copyRetryLast), status saying why meanwhile (CopyFailing). The copies
// of the pairs after it go on. Tried again at once, as the first pending
// pair, it took the manager's loop, and a CPU, for as long as the fault
// lasted, and held the copies of every other pair.
func (mg *Manager) copyFailed(p *Pair, bm *bitmap.Bitmap, off int64, err error) {
	mg.mu.Lock()
	defer mg.unlock()
	if p.State != Pending || mg.copies[p.Volume] != bm {
		return
	}
	rt := mg.retries[p.Volume]
	if rt == nil || rt.copy != bm {
		rt = &copyRetry{copy: bm}
		mg.retries[p.Volume] = rt
		p.CopyFailingSince = time.Time{} // a copy started afresh
	}
	rt.fails++
	mg.copyFailures.Add(1)
	if p.CopyFailingSince.IsZero() {
		p.CopyFailingSince = mg.now()
	}
	wait := min(copyRetryFirst<<min(rt.fails-1, 16), copyRetryLast)
	rt.at = mg.now().Add(wait)
	if errors.Is(err, actlog.ErrWrite) {
		p.CopyFailing = fmt.Sprintf("its copy cannot mark its regions in the activity log (%v): the log is every pair's, so every copy, "+
			"and every write to a region not marked yet, fails until the log's disk works again, or the pair state can record that "+
			"this run goes on without the log; tried again every %v at most", err, copyRetryLast)
		mg.log.Error("copy waits: the activity log cannot be written, and every write to a region not marked yet fails too",
			"volume", p.Volume, "offset", off, "err", err, "retry_in", wait)
		return
	}
	p.CopyFailing = fmt.Sprintf("its copy failed (%v): tried again every %v at most; the other pairs' copies go on", err, copyRetryLast)
	mg.log.Error("copy failed", "volume", p.Volume, "offset", off, "err", err, "retry_in", wait)
}

// copyRegion is ss.Copy, which returns early once givenUp is closed: a
// copy whose read of the primary volume hangs must not hold the manager's
// loop, and with it every promotion, save and other pair's copy, once the
// mover has given it up (see releaseCopier) and its pair is suspended.
// The copy goes on alone until its read ends, and fails then
// (subsystem.ErrCopyAbandoned): its data never ships. Its region stays in
// the bitmap the suspension took, for the resume to copy again.
//
// Nor does the end of ctx wait for a copy, which may be one whose read
// hangs that the mover has not given up yet. At the pair's suspension or
// deletion, the region, not taken for copied, is in the bitmap the
// suspension took, and the copy ships if its read ends, or the mover gives
// it up (suspendAbandoned then finds the pair suspended and marks the
// region). At the primary's stop, the stop's last cut gives it up, or
// ships it if it is done by then; the pair's copy, saved with the region
// still to copy, copies it again once restarted.
func copyRegion(ctx context.Context, givenUp <-chan struct{}, ss Subsystem, vol string, off, length int64) error {
	done := make(chan error, 1)
	go func() { done <- ss.Copy(ctx, vol, off, length) }()
	select {
	case err := <-done:
		return err
	case <-givenUp:
		return fmt.Errorf("copy of %s [%d, +%d) given up by the data mover, its read of the volume still under way", vol, off, length)
	case <-ctx.Done():
		return fmt.Errorf("copy of %s [%d, +%d) left to its read of the volume: %w", vol, off, length, ctx.Err())
	}
}

// releaseCopier has copyOne stop waiting for its copy of vol, which the
// mover gave up (see copyRegion). Called with mg.mu held.
func (mg *Manager) releaseCopier(vol string) {
	if mg.copyVol == vol && mg.givenUp != nil {
		close(mg.givenUp)
		mg.givenUp = nil
	}
}

func (mg *Manager) copied(p *Pair, bm *bitmap.Bitmap, ss Subsystem, n int64) {
	mg.mu.Lock()
	defer mg.unlock()
	if p.State != Pending || mg.copies[p.Volume] != bm {
		// Suspended (and perhaps resumed) since: that copy is over.
		return
	}
	p.Copied += n
	if rt := mg.retries[p.Volume]; rt != nil {
		delete(mg.retries, p.Volume)
		if rt.copy == bm {
			p.CopyFailing, p.CopyFailingSince = "", time.Time{}
			mg.log.Info("copy goes on after failing", "volume", p.Volume, "failures", rt.fails)
		}
	}
	if bm.Count() == 0 {
		// Every copy update is now captured: the last one's timestamp is at
		// or before this one. Put off for the timer's lease, the pair
		// stays pending until endCopies stamps it.
		mg.endCopy(p)
	}
}

// promote makes pending pairs whose copy is done and consistent duplex, and
// records every duplex pair's consistency time.
// firstCopyEnded records the captured end of p's first copy (see firstEnds).
// Called with mg.mu held, right after the end is captured.
func (mg *Manager) firstCopyEnded(p *Pair) {
	if p.FirstCopy && p.CopyEnd != 0 {
		mg.firstEnds[p.Volume] = p.CopyEnd
	}
}

// inFirstCopy reports whether the secondary is without a full copy of p,
// all told: its first copy never completed, and no end of it is on the way.
// Called with mg.mu held.
func (mg *Manager) inFirstCopy(p *Pair) bool {
	_, ending := mg.firstEnds[p.Volume]
	return p.FirstCopy && !ending
}

func (mg *Manager) promote() (changed bool) {
	ms := mg.mover.Stats()
	pos := ms.Acked
	acked := pos.Time
	mg.mu.Lock()
	defer mg.unlock()
	if ms.Based {
		mg.rebase(ms.Base.Time)
	}
	for _, name := range mg.order {
		p := mg.pairs[name]
		if end, ok := mg.recovering[name]; ok {
			switch {
			case p.State != Duplex:
				// Its marks are the business of the copy that makes it
				// duplex again.
				delete(mg.recovering, name)
			case acked >= end && mg.failedOwed(name):
				// Unstuck once its suspension is made, not at all.
			case acked >= end:
				if al := mg.opts.ActivityLog; al != nil {
					al.Unstick(name)
				}
				delete(mg.recovering, name)
			}
		}
		if end, ok := mg.firstEnds[name]; ok && (p.Deleted || acked >= end) {
			if !p.Deleted && p.FirstCopy {
				// Suspended since its end was captured: the secondary
				// now holds the full copy.
				p.FirstCopy = false
				mg.dirty = true
				changed = true
			}
			delete(mg.firstEnds, name)
		}
		if p.State == Pending && p.CopyEnd != 0 && acked >= p.CopyEnd {
			changed = true
			p.State, p.Resynced, p.FirstCopy, p.Inconsistent = Duplex, p.Copied, false, false
			delete(mg.copies, name)
			mg.unstick[name] = true
			mg.log.Info("pair is duplex", "volume", name, "copied_bytes", p.Copied)
		}
		if slices.Contains(pos.Inconsistent, name) && !p.Inconsistent && !p.FirstCopy {
			// The secondary says so: it gave up the hold of this pair's
			// resync for lack of journal room, applying the held groups
			// over the image the hold kept (or it never held a whole copy
			// of it). Only a copy of it that ends makes it consistent,
			// and no time kept from before names its image.
			mg.log.Warn("the secondary holds no consistent copy of this volume until a copy of it completes", "volume", name, "state", p.State)
			p.Inconsistent = true
			p.Since, p.EndAt, p.AfterEnd = 0, 0, 0
			if p.State != Pending && p.CopyEnd <= acked {
				// The end of the copy it journaled before did not make
				// its copy consistent for good: no resume takes it for
				// the end of this inconsistency (see startInconsistent).
				p.CopyEnd = 0
			}
			mg.dirty = true
			changed = true
		}
		if p.EndAt != 0 && acked != 0 && pos.RecoversTo() >= p.EndAt {
			// The secondary applied the copy's end, and the suspension
			// after it: it holds the volume as of that suspension (a
			// duplex pair's copy since, if ended, drops it below), a
			// whole copy even if the copy was its first or a resync
			// accepted as inconsistent. An end kept while the pair is
			// inconsistent is that of a copy over the inconsistent image
			// (every other is forgotten when it becomes so), which makes
			// it consistent again, unless the secondary says otherwise.
			p.Since, p.EndAt, p.AfterEnd = p.AfterEnd, 0, 0
			p.FirstCopy = false
			if !slices.Contains(pos.Inconsistent, name) {
				p.Inconsistent = false
			}
			mg.dirty = true
			changed = true
		}
		switch {
		case p.FirstCopy || p.Inconsistent:
			// Before its first copy, or an inconsistent resync, ends the
			// secondary holds no consistent copy, whatever was stored or
			// acknowledged.
			p.Consistent = 0
		case acked == 0:
			// Nothing acknowledged to this process yet (it restarted,
			// the secondary not reached since): where the secondary
			// stands is unknown, not zero. The stored times were no
			// later than it recovered to when saved, and it only moves
			// on from there.
		case p.State == Duplex && p.CopyEnd > pos.RecoversTo():
			// The copy's end is journaled, but a resync of another volume
			// holds it unapplied: the secondary's copy of this volume is
			// still what it was before the copy (after a deletion, behind
			// every write made since), consistent with the others at no
			// time the primary can name. Since stays for a suspension or
			// deletion before the end is applied.
			p.Consistent = 0
		case p.State == Duplex && p.Since != 0:
			p.Since = 0
			mg.dirty = true
			fallthrough
		case p.State == Duplex && pos.Recoverable != 0:
			// A resync holds the secondary: it recovers to the group it
			// applied last, not to what it journaled since, nor to a
			// later time of idle groups claimed before the hold.
			p.Consistent = pos.RecoversTo()
		case p.State == Duplex:
			p.Consistent = max(p.Consistent, acked)
		default:
			p.Consistent = claim(p, pos)
		}
	}
	return changed
}

// rebase caps, once the mover first reached the secondary in this run, the
// times of suspension the pairs were opened with at base, the secondary's
// position then. A suspension saved before the secondary acknowledged it
// may have died in the sidefile with the writes before it: the secondary
// then holds the volume only as of what it journaled of that run, base at
// most, and takes it so when the suspension is announced again. Later
// acknowledgements speak of this run: they would raise a claim capped at
// them (see claim) past what the secondary holds. Called with mg.mu held.
func (mg *Manager) rebase(base int64) {
	for name, since := range mg.unbased {
		delete(mg.unbased, name)
		p := mg.pairs[name]
		if p == nil || p.Since != since || since <= base {
			// Ended or replaced by a time of this run, or acknowledged.
			continue
		}
		p.Since = base
		p.Consistent = min(p.Consistent, base)
		mg.dirty = true
	}
	for name, end := range mg.unended {
		delete(mg.unended, name)
		p := mg.pairs[name]
		if p == nil || p.EndAt != end {
			continue
		}
		if end <= base {
			// Journaled: so is what came before the suspension up to
			// base at least, and the suspension is announced again.
			p.AfterEnd = min(p.AfterEnd, base)
			mg.dirty = true
			continue
		}
		// The end died in the sidefile with the last run: a resync's hold
		// at the secondary stays open (see suspendSession).
		if p.CopyEnd == end {
			p.CopyEnd = 0
		}
		p.EndAt, p.AfterEnd = 0, 0
		if p.Deleted && resyncHeld(p) && !p.Inconsistent {
			p.Inconsistent = true
			p.Since, p.Consistent = 0, 0
		}
		mg.dirty = true
	}
}

// claim is the time the secondary holds p consistent as of, given its
// position pos, for a pair not duplex with its copy's end recoverable: the
// time of its suspension or deletion, but no later than the secondary
// acknowledged (before that, the suspension and the writes before it may
// still be in the sidefile) nor than it recovers to while a resync holds it
// behind what it journaled. A pair without such a time keeps the one it
// has; a pair in its first copy has none.
func claim(p *Pair, pos transport.Position) int64 {
	if p.FirstCopy || p.Inconsistent || slices.Contains(pos.Inconsistent, p.Volume) {
		// The secondary never held a whole copy of this pair, or a copy
		// that does not hold it (its first, or a resync accepted as
		// inconsistent) is landing there in region order over whatever
		// copy it had: no time is consistent, whatever time the pair kept
		// from before that copy began.
		return 0
	}
	if p.Since == 0 {
		return p.Consistent
	}
	if pos.Time == 0 {
		// Nothing acknowledged to this process yet: no further than the
		// time kept, which the secondary held when it was saved.
		return min(p.Since, p.Consistent)
	}
	return min(p.Since, pos.RecoversTo())
}

// ConsistentAt is the time the secondary holds p consistent as of, given
// pos, an acknowledgement at least as recent as the one p was last updated
// with (the mover's latest, read after Pairs): a status that reported
// p.Consistent beside pos would say the secondary recovers to one time and
// holds a duplex volume as of an earlier one, although its copy already
// holds the writes between. Only a duplex pair gains: with no resync
// holding the secondary it is at the time the secondary recovers to, as
// promote makes it on its next round. Every other pair keeps the rules of
// promote and claim, capped by what the secondary recovers to while a
// resync holds it.
func (p Pair) ConsistentAt(pos transport.Position) int64 {
	switch {
	case p.FirstCopy || p.Inconsistent || slices.Contains(pos.Inconsistent, p.Volume):
		// No whole, consistent copy (or the secondary just said so):
		// none, whatever p kept.
		return 0
	case pos.Time == 0:
		// Nothing acknowledged to this process yet.
		return p.Consistent
	case p.State == Duplex && p.CopyEnd > pos.RecoversTo():
		// The copy's end is not applied: its copy is what it was before.
		return 0
	case p.State == Duplex && pos.Recoverable == 0:
		return max(p.Consistent, pos.Time)
	case (p.State == Duplex || p.Since != 0) && pos.Recoverable != 0:
		// A resync holds the secondary at the group it applied last: no
		// duplex volume, nor one suspended in the groups it holds, is
		// recovered past it, whatever was claimed before the hold.
		return min(p.Consistent, pos.RecoversTo())
	}
	return p.Consistent
}

// ConsistentLowerBound reports whether ConsistentAt(pos) is only a lower
// bound of the time the secondary holds p consistent as of: a time this
// process kept from the stored state (or a suspension capped at it), the
// secondary not having acknowledged anything to it yet. The secondary
// only moves on from what it held when that was stored (see
// timesSaveEvery), and claim names the exact time once it answers. A
// pair awaiting the other site's rejoin is none: its time is the
// promotion's, where the histories split, and that site holds no later
// time of this one's until it rejoins.
func (p Pair) ConsistentLowerBound(pos transport.Position) bool {
	return pos.Time == 0 && !p.RejoinOwed && p.ConsistentAt(pos) != 0
}

// raisesAfter reports whether suspending (or deleting) p now makes its
// secondary copy consistent as of the suspension, and once the secondary
// recovers past which end of a copy of p (0: none): for a duplex pair, and
// for a pending one whose copy's end is captured, ahead of the suspension
// in the stream. Another pending pair's copy is part-way, and the
// secondary holds it as of no later time than before the copy began
// (Since): as of none in a first copy or an inconsistent resync, and under
// a hold as of the suspension before a resync.
//
// A duplex pair the secondary said it holds consistent as of no time is
// not made consistent by a suspension: only the end of a copy begun since.
func raisesAfter(p *Pair) (end int64, ok bool) {
	if (p.State == Duplex && !p.Inconsistent) || (p.State == Pending && p.CopyEnd != 0) {
		return p.CopyEnd, true
	}
	return 0, false
}

// raise makes at, the time of p's suspension or deletion, the time its
// secondary copy is consistent as of: at once if the secondary recovers past
// end (see raisesAfter), or else once it does (see EndAt); until then p
// keeps the time it has, which the secondary holds while that end is not
// applied (none after a first copy or an inconsistent resync: see add and
// startCopy).
func raise(p *Pair, end, at int64, pos transport.Position) {
	if end <= pos.RecoversTo() {
		if end != 0 {
			// The copy's end is applied: the secondary holds a whole copy,
			// whatever copy it was, unless it says otherwise.
			p.FirstCopy = false
			if !slices.Contains(pos.Inconsistent, p.Volume) {
				p.Inconsistent = false
			}
		}
		p.Since = max(p.Since, p.Consistent, at)
		p.EndAt, p.AfterEnd = 0, 0
		return
	}
	p.EndAt, p.AfterEnd = end, at
}

// resyncHeld reports whether a resync of p may hold the secondary: a copy
// over a consistent copy of p, begun and its end not captured, whether p is
// pending or was suspended part-way through it (the hold stays until a
// later resync of p ends).
func resyncHeld(p *Pair) bool {
	return (p.State == Pending || p.State == Suspended) && !p.FirstCopy && !p.Inconsistent && p.CopyEnd == 0 && p.CopyTotal > 0
}

// resumeHook, set by tests, runs for each pair the session suspended itself
// before it resumes them.
var resumeHook func(vol string)

// Why the session suspends its pairs by itself.
const (
	reasonLinkDown   = "link down with a full sidefile"
	reasonStale      = "the secondary refused a record set stamped at or before its consistency time (the primary's clock went back)"
	reasonOutOfOrder = "the secondary refused a record set stamped out of order (the primary's timer stamped two updates alike, or a subsystem's behind its last)"
	reasonStamps     = "the secondary refused a record set by its stamps"
)

// staleReason is why the session suspends for a stale record set's
// refusal whose reason is refusal: the secondary names both causes of it
// by one kind (transport.RefusalStale), and only its words tell a clock
// gone back from a timer that stamped out of order; words it does not
// know are given whole.
func staleReason(refusal string) string {
	switch {
	case strings.Contains(refusal, consistency.ErrOutOfOrder.Error()):
		return reasonOutOfOrder
	case strings.Contains(refusal, consistency.ErrStale.Error()):
		return reasonStale
	case refusal == "":
		return reasonStamps
	}
	return reasonStamps + ": " + refusal
}

// autoSuspend suspends every pair when the link has been down longer than
// SuspendAfter while a sidefile is full, or when the secondary refused a
// record set as stale, dropping what is held so memory is released; it
// resumes those pairs when the link is back: connected, and, if it went
// down, acknowledging something new since.
func (mg *Manager) autoSuspend() {
	ms := mg.mover.Stats()
	if ms.StaleRefusals != mg.staleRefusals {
		mg.staleRefusals = ms.StaleRefusals
		mg.staleOwed = true
	}
	if mg.staleOwed {
		// Sent again, the record set would be refused again, for ever.
		// Its updates go into the bitmaps, and the resync on the link's
		// return copies them with fresh stamps. Put off for the timer's
		// lease, it is owed until made.
		refusal := ms.LastStaleRefusal
		if refusal == "" && ms.LastRefusalKind == transport.RefusalStale {
			refusal = ms.LastRefusalReason
		}
		reason := staleReason(refusal)
		if _, err := mg.suspendSessionWithin(reason, true, mg.operatorWait()); err != nil {
			mg.putOff("the session's suspension for a stale record set", "", err)
			return
		}
		mg.staleOwed = false
		mg.madeAfterWait("the session's suspension for a stale record set", "")
		mg.log.Error(reason+": session suspended, resync once it takes record sets again", "refusal", refusal)
		return
	}
	// The link is back only once a connection made since it went down
	// brings an acknowledgement of something new. A secondary that
	// welcomes each connection and then takes nothing (a path that loses
	// full-size frames, a receiver hung once data arrives) keeps the mover
	// connected nearly all the time, dropping each connection after its
	// silence time and dialing again at once: counted as up, it would
	// reset the clock at every Welcome, and with the sidefile full writes
	// would wait for ever. A link that stays connected is never down here,
	// however slow its acknowledgements: the mover judges that (its
	// silence time, and its HeldSend for a secondary that answers but
	// acknowledges nothing new).
	if ms.Connected && (mg.downAt.IsZero() || ms.LastAckedTime.After(mg.downAt)) {
		mg.downAt = time.Time{}
		mg.mu.Lock()
		var auto []*Pair
		for _, name := range mg.order {
			if p := mg.pairs[name]; p.State == Suspended && p.Auto {
				cp := *p
				auto = append(auto, &cp)
			}
		}
		// A look: the copies in auto are the resume's to change.
		mg.unlockUnchanged()
		if len(auto) == 0 {
			return
		}
		if resumeHook != nil {
			for _, p := range auto {
				resumeHook(p.Volume)
			}
		}
		mg.autoResume(auto)
		return
	}
	if mg.downAt.IsZero() {
		mg.downAt = time.Now()
	}
	if mg.opts.SuspendAfter <= 0 || time.Since(mg.downAt) < mg.opts.SuspendAfter || !mg.sidefileFull() {
		return
	}
	suspended, err := mg.suspendSessionWithin(reasonLinkDown, false, mg.operatorWait())
	if err != nil {
		mg.putOff("the session's suspension for the link down", "", err)
		return
	}
	if !suspended {
		mg.noLongerOwed("the session's suspension for the link down", "", "every pair is suspended (or deleted) already")
		return
	}
	mg.madeAfterWait("the session's suspension for the link down", "")
	mg.log.Warn("link down with a full sidefile: session suspended, tracking changes in bitmaps",
		"down_for", time.Since(mg.downAt).Round(time.Second))
}

// suspendSession suspends every pair not suspended yet, as the session's own
// suspension for reason, and drops what the mover holds into the bitmaps. It
// drops even when every pair was already suspended if always is set (what is
// held cannot be sent). It reports whether it suspended or dropped anything.
func (mg *Manager) suspendSession(reason string, always bool) bool {
	suspended, _ := mg.suspendSessionWithin(reason, always, -1)
	return suspended
}

// suspendSessionWithin is suspendSession, put off for the timer's lease
// (wait not negative, see leasewait.go): while the lease's write is known
// hung, or once the markers have waited for it for wait, no pair is
// suspended and nothing is dropped, and the error is returned.
func (mg *Manager) suspendSessionWithin(reason string, always bool, wait time.Duration) (bool, error) {
	if wait >= 0 {
		// Nothing to suspend waits for nothing: said put off, the
		// suspension would be said made once the lease is written, after
		// the drop that suspended every pair (its sidefile still full,
		// the markers it announces again waiting for the lease).
		if !always && !mg.anyToSuspend() {
			return false, nil
		}
		if err := mg.leaseHung(); err != nil {
			return false, err
		}
	}
	// The Drop runs without mg.mu: it waits for a cut under way to form
	// its record sets (not for the copies' volume reads the cut waits for:
	// it stops waiting), and status and the other operations must not
	// wait with it. dropMu keeps
	// a resume (or add) from taking a pair out of its bitmap meanwhile:
	// the updates dropped must land there, and the markers it captures
	// must not be dropped.
	mg.dropMu.Lock()
	defer mg.dropMu.Unlock()
	mg.mu.Lock()
	// The ends of copies captured ahead of the suspension (see raisesAfter),
	// of the pairs it suspends; those of pending pairs were captured in
	// this run.
	ends := map[string]int64{}
	pending := map[string]bool{}
	for _, name := range mg.order {
		if p := mg.pairs[name]; !p.Deleted && p.State != Suspended {
			if end, ok := raisesAfter(p); ok && end != 0 {
				ends[name], pending[name] = end, p.State == Pending
			}
		}
	}
	ps, at, err := mg.suspendAllLockedWithin(true, nil, wait)
	if err != nil {
		mg.unlock()
		return false, err
	}
	for _, p := range ps {
		p.Reason = reason
	}
	if len(ps) == 0 && !always {
		mg.unlock()
		return false, nil
	}
	// Every pair is suspended now, by hand, deleted or just above; what is
	// held goes, so each dropped update lands in its volume's bitmap
	// (markDropped). A marker's state is announced again below.
	pos := mg.mover.Stats().Acked
	acked := pos.Time
	for name, end := range mg.firstEnds {
		if p := mg.pairs[name]; end <= acked && !p.Deleted {
			// Journaled before the drop: the secondary holds the copy.
			p.FirstCopy = false
			mg.dirty = true
		}
		// Otherwise its first copy's end went with the rest: the
		// secondary never completes that copy, and the next one is a
		// first copy again.
		delete(mg.firstEnds, name)
	}
	// A copy's end that went with the rest never reaches the secondary: a
	// resync's hold there stays open, and the pair's resync has not ended
	// for it (see resyncHeld), whatever end this process captured.
	for name, end := range mg.recovering {
		if end > acked || acked == 0 {
			// The end of the crash recovery's resync (a duplex pair's).
			p := mg.pairs[name]
			p.CopyTotal, p.Copied, p.CopyEnd = p.Resynced, 0, 0
			delete(mg.recovering, name)
		}
	}
	for i, p := range ps {
		end, ok := ends[p.Volume]
		switch {
		case !ok:
		case end > acked && (acked != 0 || pending[p.Volume]):
			p.CopyEnd = 0
		case acked != 0 && (pending[p.Volume] || end > pos.RecoversTo()):
			// Journaled ahead of the suspension, perhaps not applied yet
			// (see EndAt); capped below.
			p.EndAt, p.AfterEnd = end, at[i]
		}
	}
	for _, name := range mg.order {
		p := mg.pairs[name]
		if p.EndAt != 0 && p.EndAt > acked && (acked != 0 || mg.unended[name] != p.EndAt) {
			// Suspended by hand since that end was captured (in this
			// run, with nothing acknowledged yet: one from before is
			// rebase's).
			if p.CopyEnd == p.EndAt {
				p.CopyEnd = 0
			}
			p.EndAt, p.AfterEnd = 0, 0
		}
		if p.Deleted && resyncHeld(p) && !p.Inconsistent {
			// Deleted during a resync the secondary still holds open: it
			// stops holding and applies the held part over the image the
			// hold kept (see delete).
			p.Inconsistent = true
			p.Since, p.Consistent, p.EndAt, p.AfterEnd = 0, 0, 0, 0
			mg.dirty = true
		}
	}
	mg.unlock()
	// No group may reach the secondary between the drop and the markers
	// announced again below: it would take the pairs, whose suspensions'
	// markers the drop takes, for duplex as of that group's time, without
	// the writes dropped (see reannounceWithin).
	release := func() {}
	if h, ok := mg.mover.(cutHolder); ok {
		release = h.HoldCuts()
	}
	// Regions only: the data goes back to the sidefiles.
	var gone []recordset.Update
	mg.mover.Drop(func(u recordset.Update) {
		u.Data = nil
		gone = append(gone, u)
	})
	mg.mu.Lock()
	defer mg.unlock()
	dropped := map[string]bool{}
	for _, u := range gone {
		dropped[u.Volume] = true
		if u.Kind == recordset.KindCopy {
			// Perhaps the copier's, still reading: the Drop gave it up,
			// however long its read hangs on, and its pair is suspended.
			mg.releaseCopier(u.Volume)
		}
		mg.markDropped(u)
	}
	var again []volMarker
	for _, name := range mg.order {
		p := mg.pairs[name]
		if dropped[name] && acked != 0 {
			// The secondary holds this volume only as of what it
			// acknowledged: the rest went to the bitmap. With nothing
			// acknowledged to this process yet, what was dropped came
			// after the stored times, which the secondary still holds.
			p.Consistent = min(p.Consistent, acked)
			if p.Since != 0 {
				p.Since = min(p.Since, acked)
			}
			if p.AfterEnd != 0 {
				p.AfterEnd = min(p.AfterEnd, acked)
			}
		}
		for _, m := range announcement(p) {
			again = append(again, volMarker{name, m})
		}
	}
	mg.reannounceWithin(again, wait, release)
	mg.kick()
	return true, nil
}

// anyToSuspend says whether a pair is neither suspended nor deleted.
func (mg *Manager) anyToSuspend() bool {
	mg.mu.Lock()
	defer mg.unlock()
	for _, name := range mg.order {
		if p := mg.pairs[name]; !p.Deleted && p.State != Suspended {
			return true
		}
	}
	return false
}

// cutHolder is what a mover offers to form no group for a while (package
// mover implements it, see mover.HoldCuts).
type cutHolder interface {
	HoldCuts() (release func())
}

func (mg *Manager) sidefileFull() bool {
	for _, name := range mg.order {
		st := mg.vols[name].Subsystem.Sidefile().Stats()
		if st.Waiting > 0 || st.Used+sidefile.Cost(1<<20) > st.Limit {
			return true
		}
	}
	return false
}

func (mg *Manager) pair(vol string) (*Pair, error) {
	p, ok := mg.pairs[vol]
	if !ok {
		return nil, fmt.Errorf("%q: %w", vol, ErrUnknownVolume)
	}
	return p, nil
}

// persist saves the state an operation changed before the operation is
// answered: an acknowledged operation survives a crash. A save that fails
// leaves the operation in effect but not durable; Run saves again.
//
// A save that neither ends nor fails (its disk stopped answering) is
// answered so after SaveWait: the operator learns that the command is in
// effect and not yet durable, rather than waiting with the disk. It is
// saved once the disk answers, or by Run after a failure.
func (mg *Manager) persist(op, vol string) error {
	saved := make(chan error, 1)
	go func() {
		err := mg.save(false)
		if err != nil {
			mg.mu.Lock()
			mg.dirty = true
			mg.unlock()
			mg.kick()
		}
		saved <- err
	}()
	wait := cmp.Or(mg.opts.SaveWait, DefaultSaveWait)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case err := <-saved:
		if err != nil {
			return fmt.Errorf("%s %s: in effect, but not saved (a crash now undoes it): %w", op, vol, err)
		}
		return nil
	case <-t.C:
		return fmt.Errorf("%s %s: in effect, but not yet saved (a crash now undoes it): %w after %s: its disk has not answered; saved once it does",
			op, vol, ErrSaveHung, wait)
	}
}

// DefaultSaveWait is Options.SaveWait's default: far past what a working
// disk takes to save the pair state under load.
const DefaultSaveWait = 5 * time.Second

// Add starts shadowing a volume that is not a pair (never was, or was
// deleted): an initial copy of the whole volume while writes continue. It
// returns once the new state is saved.
func (mg *Manager) Add(vol string) error {
	// It waits for a resume under way (dropMu), whose save may hang.
	if _, err := answerWithin(mg, "add", vol, "not yet a pair", func() (struct{}, error) { return struct{}{}, mg.add(vol) }); err != nil {
		return err
	}
	return mg.persist("add", vol)
}

func (mg *Manager) add(vol string) error {
	if err := mg.lockDropWithin(mg.operatorWait()); err != nil { // see suspendSession
		return refusedForLease("add", vol, vol, "not a pair", err)
	}
	defer mg.dropMu.Unlock()
	mg.mu.Lock()
	defer mg.unlock()
	p, err := mg.pair(vol)
	if err != nil {
		return err
	}
	if !p.Deleted {
		return fmt.Errorf("%s is already a pair (%s)", vol, p.State)
	}
	if err := mg.announcedWithin(mg.operatorWait()); err != nil {
		return refusedForLease("add", vol, vol, "not a pair", err)
	}
	// Capture resumes in the same step that announces the first copy: no
	// write of vol reaches the secondary before it learns of the copy.
	was := *p
	end, ending := mg.firstEnds[vol]
	p.FirstCopy = true
	p.Consistent = claim(p, mg.mover.Stats().Acked)
	// The first copy lands over whatever the secondary held of the volume:
	// no time kept from before it names its image again, and no rejoin's
	// regions are owed.
	p.Since, p.EndAt, p.AfterEnd = 0, 0, 0
	p.RejoinOwed, p.RejoinOwedGuessed = false, false
	delete(mg.firstEnds, vol)
	if _, err := mg.resumeMarkedWithin(p, uint64(p.Size), mg.operatorWait()); err != nil {
		*p = was
		if ending {
			mg.firstEnds[vol] = end
		}
		return refusedForLease("add", vol, vol, "not a pair", err)
	}
	mg.startCopy(p, nil)
	mg.endIfEmpty(p)
	return nil
}

// Suspend stops shadowing vol; its writes are tracked in a bitmap. Updates
// already captured still ship (the group in flight completes). It returns
// once the suspended state and its bitmap are saved.
func (mg *Manager) Suspend(vol string) error {
	if err := mg.suspend(vol); err != nil {
		return err
	}
	return mg.persist("suspend", vol)
}

func (mg *Manager) suspend(vol string) error {
	mg.mu.Lock()
	defer mg.unlock()
	p, err := mg.pair(vol)
	if err != nil {
		return err
	}
	if p.Deleted {
		return fmt.Errorf("%s is not a pair", vol)
	}
	if p.State == Suspended {
		// Suspended by hand from now on: it no longer resumes by itself,
		// nor by a resume whose save is under way.
		byHand(p)
		mg.stopResuming(p.Volume)
		mg.dirty = true
		mg.changes++
		return nil
	}
	if err := mg.suspendOneLockedWithin(p, mg.operatorWait()); err != nil {
		return refusedForLease("suspend", vol, vol, fmt.Sprint(p.State), err)
	}
	return nil
}

// refusedForLease is the answer to an operator's command op of vol (what,
// left state) whose marker was given up for the timer's lease (err): the pair is left
// as it was. No write is acknowledged meanwhile either: each waits for
// its stamp as the marker did.
func refusedForLease(op, vol, what, state string, err error) error {
	return fmt.Errorf("%s %s: refused, %s left %s: %w: the command's marker would wait for it with every write, none acknowledged until its disk answers; "+
		"run it again then", op, vol, what, state, err)
}

// suspendOneLocked suspends p, neither suspended nor deleted, as the
// operator's suspension does. Called with mg.mu held.
func (mg *Manager) suspendOneLocked(p *Pair) {
	mg.suspendOneLockedWithin(p, -1)
}

// suspendOneLockedWithin is suspendOneLocked for an operator's command
// (wait not negative): its marker given up for the timer's lease (see
// boundedMarker), p is left as it was, and the error is returned.
func (mg *Manager) suspendOneLockedWithin(p *Pair, wait time.Duration) error {
	pos := mg.mover.Stats().Acked
	end, raises := raisesAfter(p)
	at, err := mg.suspendLockedWithin(p, false, wait)
	if err != nil {
		return err
	}
	if raises {
		// As of its marker: a write stamped after it is in the bitmap only.
		raise(p, end, at, pos)
	}
	p.Consistent = claim(p, pos)
	mg.dirty = true
	mg.changes++
	mg.kick()
	return nil
}

// reasonCopyReadFailed is why a pair whose copy could not read its primary
// volume (err) is suspended (see suspendReadFailed).
func reasonCopyReadFailed(err error) string {
	return fmt.Sprintf("its copy failed (%v): suspended so that the other pairs go on replicating; resume it once the volume reads again", err)
}

// suspendReadFailed suspends p, whose copy of [off, off+length) (bm, its
// copy) failed to read the primary volume (err), a failing disk. Tried
// again and again, the copy would keep the pair pending for ever, each try
// shipping the region's data zeroes, and hold the copies of the pairs after
// it; suspended, as for a read that hangs (see suspendAbandoned), the
// other pairs go on, and the operator resumes it once the volume reads
// again. The region, never taken for copied, is in the bitmap the
// suspension takes; it sticks in the activity log too, since the zeroed
// copy's acknowledgement ends its count there. A copy suspended or
// restarted meanwhile is not this one's to end.
//
// A suspension that waits for the timer's lease (see leasewait.go) is
// put off as a failed copy is (see copyFailed): the copy is tried again
// later, and fails again while the volume does not read.
func (mg *Manager) suspendReadFailed(p *Pair, bm *bitmap.Bitmap, off, length int64, err error) {
	mg.mu.Lock()
	if p.State != Pending || mg.copies[p.Volume] != bm {
		mg.unlock()
		return
	}
	hung := mg.leaseHung()
	if hung == nil {
		hung = mg.suspendOneLockedWithin(p, mg.operatorWait())
	}
	if hung != nil {
		mg.putOff("the suspension for a copy's read that failed", p.Volume, hung)
		mg.unlock()
		mg.copyFailed(p, bm, off, err)
		return
	}
	defer mg.unlock()
	mg.madeAfterWait("the suspension for a copy's read that failed", p.Volume)
	p.Reason = reasonCopyReadFailed(err)
	if al := mg.opts.ActivityLog; al != nil {
		if err := al.Stick(p.Volume, off, length); err != nil {
			mg.log.Error("activity log", "err", err)
		}
	}
	mg.log.Error("pair suspended: a copy's read of its primary volume failed; resume it once the volume reads again",
		"volume", p.Volume, "offset", off, "length", length, "err", err)
}

// reasonWriteFailed is why a pair whose primary volume failed a captured
// write (err) is suspended (see suspendWriteFailed).
func reasonWriteFailed(err error) string {
	return fmt.Sprintf("a write to its primary volume failed (%v), its client told so, and the secondary may hold that write's data where the volume does not: "+
		"suspended; resume it once the volume works again, which copies the region again", err)
}

// suspendWriteFailed suspends the pairs whose primary volumes failed a
// write that was captured, and marks its region in their bitmaps. The
// update ships (it may be on its way already), so the secondary holds
// data the volume may never have taken, which the block protocol allows
// of a failed write, but a duplex pair would go on claiming the copy the
// primary's. Suspended, as for a read that fails (see suspendReadFailed),
// the pair says why, and its resume copies the region from the volume
// again. It is the operator's to resume, once the disk works.
//
// A suspension that waits for the timer's lease is put off (see
// leasewait.go): the failed write is kept, its region stuck in the
// activity log at once (a duplex pair's marks stay stuck until it is
// duplex again after a copy), and the pair suspended once the lease is
// written; a stop meanwhile saves the state not clean (see Close).
func (mg *Manager) suspendWriteFailed() {
	// A subsystem's volumes are usually next to each other in the
	// configuration's order: the map is asked only when the subsystem
	// changes from one volume to the next.
	seen := map[Subsystem]bool{}
	var last Subsystem
	var fws []subsystem.FailedWrite
	for _, name := range mg.order {
		ss := mg.vols[name].Subsystem
		if ss == last {
			continue
		}
		last = ss
		if !seen[ss] {
			seen[ss] = true
			fws = append(fws, ss.FailedWrites()...)
		}
	}
	mg.mu.Lock()
	if len(fws) == 0 && len(mg.failedLeft) == 0 {
		mg.unlockUnchanged()
		return
	}
	defer mg.unlock()
	left := mg.failedLeft
	mg.failedLeft = nil
	hung := mg.leaseHung()
	for _, fw := range fws {
		// New: stuck at once, whether its suspension is put off or not.
		if al := mg.opts.ActivityLog; al != nil {
			if err := al.Stick(fw.Volume, fw.Offset, fw.Length); err != nil {
				mg.log.Error("activity log", "err", err)
			}
		}
	}
	for _, fw := range append(left, fws...) {
		p := mg.pairs[fw.Volume]
		if p == nil || p.Deleted {
			continue // a deleted pair is copied whole when added again
		}
		if p.State != Suspended {
			if hung == nil {
				hung = mg.suspendOneLockedWithin(p, mg.operatorWait())
			}
			if hung != nil {
				mg.failedLeft = append(mg.failedLeft, fw)
				mg.putOff("the suspension for a failed write", fw.Volume, hung)
				continue
			}
			p.Reason = reasonWriteFailed(fw.Err)
			mg.madeAfterWait("the suspension for a failed write", fw.Volume)
			mg.log.Error("pair suspended: a write to its primary volume failed; resume it once the volume works again",
				"volume", fw.Volume, "offset", fw.Offset, "length", fw.Length, "err", fw.Err)
		}
		if bm := mg.vols[fw.Volume].Subsystem.Tracking(fw.Volume); bm != nil {
			bm.Set(fw.Offset, fw.Length)
		}
		mg.dirty = true
	}
}

// failedOwed says whether the suspension of vol's pair for a failed write
// is put off for the timer's lease (see suspendWriteFailed): its region's
// sticky mark in the activity log is then the only record of it for a
// crash before the suspension is made, and no unstick of the pair's
// marks may take it (the pair becoming duplex, the end of its crash
// recovery). Called with mg.mu held.
func (mg *Manager) failedOwed(vol string) bool {
	for _, fw := range mg.failedLeft {
		if fw.Volume == vol {
			return true
		}
	}
	return false
}

// reasonCopyReadHung is why a pair whose copy the mover gave up is
// suspended (see suspendAbandoned).
const reasonCopyReadHung = "a read of the primary volume for its copy did not complete in time (a stuck or failing disk): " +
	"suspended so that the other pairs go on replicating; resume it once the volume reads again"

// suspendAbandoned suspends the pairs of the copies the mover gave up, their
// reads of the primary volume hung, and marks those copies' regions in
// their bitmaps. The mover cut without them so that a stuck disk under one
// pair's copy does not stop the others; the secondary lacks those regions,
// which is what the pair's copy under way already says of it (a first
// copy: consistent as of no time; a resync: held, by the secondary, at the
// time before it began, until a resync of the pair ends). Suspended, the
// pair stops claiming the copy will end, and its writes go to the bitmap
// with the regions given up, which the resume copies again. The copy
// returns an error (subsystem.ErrCopyAbandoned), so its copier never takes
// the region for copied. It is the operator's to resume, once the volume
// reads again: the session does not resume it by itself.
//
// A suspension that waits for the timer's lease is put off (see
// leasewait.go): the copy given up is kept, and acted on once the lease
// is written. Its copier is let go at once: its region stays in the
// pair's copy, never taken for copied, and the suspension takes it.
func (mg *Manager) suspendAbandoned() {
	fresh := mg.mover.Abandoned()
	mg.mu.Lock()
	if len(fresh) == 0 && len(mg.abandonedLeft) == 0 {
		mg.unlockUnchanged()
		return
	}
	defer mg.unlock()
	left := len(mg.abandonedLeft)
	ups := append(mg.abandonedLeft, fresh...)
	mg.abandonedLeft = nil
	hung := mg.leaseHung()
	for i, u := range ups {
		p := mg.pairs[u.Volume]
		if p == nil {
			continue
		}
		if at, ok := mg.suspendedAt[u.Volume]; ok && u.Timestamp < at {
			// A copy from before the pair's last suspension, which no
			// copier waits for any more: a crash recovery's, its pair
			// suspended for it at the start, or one the suspension (or
			// deletion) left to its read. That suspension took its
			// region into the pair's bitmap (the copier never takes it
			// for copied), and what the pair is now (resumed by the
			// operator, perhaps) is not this copy's doing.
			mg.markDropped(u)
			mg.dirty = true
			continue
		}
		if i >= left {
			// Only the copier of the copy given up now waits for it: a
			// copy kept for its suspension let its copier go when it was
			// given up, and the copier of the pair's copy tried since
			// waits for a read of its own (given up in turn, if it
			// hangs, by the mover's wait), not cut short at each look.
			mg.releaseCopier(u.Volume)
		}
		if !p.Deleted && p.State != Suspended {
			if hung == nil {
				hung = mg.suspendOneLockedWithin(p, mg.operatorWait())
			}
			if hung != nil {
				mg.abandonedLeft = append(mg.abandonedLeft, u)
				mg.putOff("the suspension for a copy given up", u.Volume, hung)
				continue
			}
			mg.madeAfterWait("the suspension for a copy given up", u.Volume)
			p.Reason = reasonCopyReadHung
			mg.log.Error("pair suspended: a copy's read of its primary volume did not complete in time; resume it once the volume reads again",
				"volume", u.Volume, "offset", u.Offset, "length", u.Length)
		}
		mg.markDropped(u)
		mg.dirty = true
	}
}

// markDropped records the region of u, an update captured and never to
// reach the secondary, in its suspended (or deleted) pair's bitmap, and
// turns its activity-log count into a sticky mark, which stays until the
// pair is duplex again: a crash before the bitmap is saved still finds it.
// (A deleted pair is copied whole when added again.) Called with mg.mu held.
func (mg *Manager) markDropped(u recordset.Update) {
	if u.Kind == recordset.KindMarker {
		return // not a range of the volume
	}
	al := mg.opts.ActivityLog
	off, n := int64(u.Offset), int64(u.Length)
	p, v := mg.pairs[u.Volume], mg.vols[u.Volume]
	if p != nil && v.Subsystem != nil {
		if bm := v.Subsystem.Tracking(u.Volume); bm != nil {
			bm.Set(off, n)
		}
		if al != nil && !p.Deleted {
			if err := al.Stick(u.Volume, off, n); err != nil {
				mg.log.Error("activity log", "err", err)
			}
		}
	}
	if al != nil {
		al.Done(u.Volume, off, n)
	}
}

// Resume shadows vol again, copying the regions changed while suspended. It
// returns once the pending state and the regions to copy are saved.
func (mg *Manager) Resume(vol string) error {
	if _, err := answerWithin(mg, "resume", vol, "still suspended", func() (struct{}, error) { return struct{}{}, mg.resume(vol) }); err != nil {
		return err
	}
	return mg.persist("resume", vol)
}

// answerWithin runs f, operation op of vol that waits for a save before
// it takes effect (a resume saves the pending state first; an add waits
// for a resume under way), and returns what it did. A save of the pair
// state that neither ends nor fails (its disk stopped answering) holds
// it: after SaveWait, with a save still under way, the operator is
// answered that the command is not yet in effect (vol is before, as it
// was), rather than waiting with the disk. f takes effect once the save
// ends, and Run saves the state after it.
func answerWithin[T any](mg *Manager, op, vol, before string, f func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := f()
		done <- result{v, err}
	}()
	wait := cmp.Or(mg.opts.SaveWait, DefaultSaveWait)
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case r := <-done:
			return r.v, r.err
		case <-t.C:
		}
		// A save that has waited a while, not one of Run's under way by
		// chance (over in milliseconds on a disk that answers).
		if mg.SaveUnderWay() >= wait/2 {
			break
		}
		// Held by something else than the disk: waited for as before.
		t.Reset(100 * time.Millisecond)
	}
	go func() {
		r := <-done
		if r.err != nil {
			// The operator was told it would take effect: the log says
			// it did not.
			mg.log.Error(op+" "+vol+": answered not yet in effect, its save hung; not in effect after all", "err", r.err)
			return
		}
		mg.log.Info(op + " " + vol + ": answered not yet in effect, its save hung; in effect now that the save ended")
		mg.mu.Lock()
		mg.dirty = true
		mg.unlock()
		mg.kick()
	}()
	var none T
	return none, fmt.Errorf("%s %s: not yet in effect, %s: %w after %s: its disk has not answered; it takes effect once the save ends",
		op, vol, before, ErrSaveHung, wait)
}

func (mg *Manager) resume(vol string) error {
	if err := mg.lockDropWithin(mg.operatorWait()); err != nil { // see suspendSession
		return refusedForLease("resume", vol, vol, "suspended", err)
	}
	defer mg.dropMu.Unlock()
	if err := mg.announcedBeforeSave(vol, mg.operatorWait()); err != nil {
		if !leaseHung(err) {
			return err // not a suspended pair
		}
		return refusedForLease("resume", vol, vol, "suspended", err)
	}
	mg.saveMu.Lock()
	defer mg.saveMu.Unlock()
	mg.mu.Lock()
	defer mg.unlock()
	p, err := mg.pair(vol)
	if err != nil {
		return err
	}
	if p.Deleted || p.State != Suspended {
		return notSuspended(p)
	}
	if p.RejoinOwed {
		return rejoinOwed(vol)
	}
	if err := mg.announcedWithin(mg.operatorWait()); err != nil {
		return refusedForLease("resume", vol, vol, fmt.Sprint(p.State), err)
	}
	if err := mg.checkRoom(p); errors.Is(err, errRoomUnknown) {
		mg.awaitRoom(p)
		return nil
	} else if err != nil {
		return err
	}
	// The sticky activity-log marks of the writes made while suspended
	// stay until the state on disk says duplex (see save): until Resume's
	// save has written the pending state and its copy bitmap, a crash finds
	// them nowhere else but in a bitmap saved up to a second ago.
	inconsistent := mg.markers.inconsistent[vol]
	if still, err := mg.saveResuming([]*Pair{p}, map[string]bool{vol: inconsistent}, false); err != nil {
		return fmt.Errorf("resume %s: not saved, still suspended: %w", vol, err)
	} else if len(still) == 0 {
		return fmt.Errorf("resume %s: deleted or suspended again while its resume was saved", vol)
	}
	ended := p.CopyEnd != 0
	bm, err := mg.resumeMarkedWithin(p, 0, mg.operatorWait())
	if err != nil {
		// Saved pending, it is not: the state on disk is written again.
		mg.dirty = true
		return refusedForLease("resume", vol, vol, fmt.Sprint(p.State), err)
	}
	mg.startCopy(p, bm)
	startInconsistent(p, inconsistent, ended)
	// The acceptance is this resume's (its marker took it), none later.
	delete(mg.markers.inconsistent, vol)
	mg.endIfEmpty(p)
	return nil
}

// startInconsistent marks p's copy, just started, as inconsistent if the
// operator accepted it so or the secondary's copy of p already is: the copy
// lands in region order over whatever image the secondary held, so no time
// kept from before names its image again, even once the copy's end is
// journaled but held unapplied by another volume's resync. ended says the
// end of the copy before this one was captured (p.CopyEnd was set when it
// was resumed): the secondary applies that end before this copy's marker,
// so its copy of p is consistent again when this copy begins, and this copy
// is a resync it holds the others for, announced plain (resyncUnended saw
// the end), not the unended inconsistent one resumed.
func startInconsistent(p *Pair, accepted, ended bool) {
	p.Inconsistent = accepted || (p.Inconsistent && !ended)
	if p.Inconsistent {
		p.Since, p.EndAt, p.AfterEnd = 0, 0, 0
	}
}

// Delete stops shadowing vol and returns the last time its secondary copy was
// consistent. It returns once the deleted state is saved.
func (mg *Manager) Delete(vol string) (time.Time, error) {
	t, err := mg.delete(vol)
	if err != nil {
		return t, err
	}
	return t, mg.persist("delete", vol)
}

func (mg *Manager) delete(vol string) (time.Time, error) {
	mg.mu.Lock()
	defer mg.unlock()
	p, err := mg.pair(vol)
	if err != nil {
		return time.Time{}, err
	}
	if p.Deleted {
		return time.Time{}, fmt.Errorf("%s is not a pair", vol)
	}
	if err := mg.announcedWithin(mg.operatorWait()); err != nil {
		return time.Time{}, refusedForLease("delete", vol, vol, fmt.Sprint(p.State), err)
	}
	pos := mg.mover.Stats().Acked
	end, raises := raisesAfter(p)
	was := *p
	if resyncHeld(p) {
		// The secondary stops holding for it and applies what it held
		// over the image the hold kept: a mix, consistent as of no time,
		// whatever end of an earlier copy it applies first.
		p.Inconsistent = true
		p.EndAt, p.AfterEnd = 0, 0
	}
	at, err := mg.suspendLockedWithin(p, false, mg.operatorWait())
	if err != nil {
		*p = was
		return time.Time{}, refusedForLease("delete", vol, vol, fmt.Sprint(p.State), err)
	}
	if raises {
		// Every write captured before the suspension's marker ships, and
		// the deletion's marker after it: the secondary holds the volume
		// as of the suspension, not as of what it acknowledged so far
		// (claim caps the time at that until it acknowledges further).
		raise(p, end, at, pos)
	}
	p.Consistent = claim(p, pos)
	p.Deleted = true
	// Its writes go to its bitmap from the suspension on, none captured:
	// the deletion's marker may wait for its stamp on its own, as the
	// markers announced again after a drop do, and the deletion is
	// answered in effect, its marker captured once the timer's lease is
	// written (and again at a restart before, see Open).
	mg.announceWithin("the marker of "+vol+"'s deletion", []volMarker{{vol, recordset.Marker{State: recordset.StateDeleted}}}, mg.operatorWait(), nil)
	mg.dirty = true
	mg.changes++
	mg.kick()
	return time.Unix(0, p.Consistent), nil
}

// published is the pairs' states status reads (see Manager.status), in
// configuration order, with each pending pair's copy bitmap: the copier
// clears a region's mark without mu, so what is copied is read from the
// bitmap when status asks, as fresh as it can be.
type published struct {
	pairs  []Pair
	copies []*bitmap.Bitmap
}

// unlock publishes the pairs' states for status, then releases mu: a
// change made under mu is in what status reports before the operation
// that made it returns.
func (mg *Manager) unlock() {
	mg.publishLocked()
	mg.mu.Unlock()
}

// unlockUnchanged releases mu after a look that changed no pair and no
// copy: every release before published what it changed (unlock), so the
// published states are current, and the look spares the walk over every
// pair that publishLocked makes to find nothing changed. The session's
// loops look several times a tick at every pair, idle or not, and at
// 1,024 pairs those walks were a quarter of an idle primary's CPU.
func (mg *Manager) unlockUnchanged() {
	mg.mu.Unlock()
}

// publishLocked publishes the pairs' states if they changed since last
// published: most releases of mu change nothing, and those cost no copy.
// Called with mg.mu held.
func (mg *Manager) publishLocked() {
	if last := mg.status.Load(); last != nil && len(last.pairs) == len(mg.order) {
		same := true
		for i, name := range mg.order {
			if last.pairs[i] != *mg.pairs[name] || last.copies[i] != mg.copies[name] {
				same = false
				break
			}
		}
		if same {
			return
		}
	}
	st := &published{pairs: make([]Pair, len(mg.order)), copies: make([]*bitmap.Bitmap, len(mg.order))}
	for i, name := range mg.order {
		st.pairs[i], st.copies[i] = *mg.pairs[name], mg.copies[name]
	}
	mg.status.Store(st)
}

// publishSuspendingLocked publishes the pairs' states with those of ps
// suspended already, before their suspensions: each one's writes go to its
// bitmap from its own marker on, while the operation goes on under mu
// waiting for others (the next pair's marker, a deletion's), each for a
// subsystem's ordering lock, which a write may hold for as long as its
// disk takes. Published as before, such a pair would read duplex, claimed
// consistent as of every later acknowledgement, without the writes it no
// longer ships; published suspended a moment early, it claims the time it
// had, which the secondary holds. Called with mg.mu held.
func (mg *Manager) publishSuspendingLocked(auto bool, ps ...*Pair) {
	mg.publishLocked()
	last := mg.status.Load()
	st := &published{pairs: slices.Clone(last.pairs), copies: last.copies}
	for i, name := range mg.order {
		if slices.Contains(ps, mg.pairs[name]) {
			suspendFields(&st.pairs[i], auto)
		}
	}
	mg.status.Store(st)
}

// CopyFailures returns how many copy tries failed since the start, other
// than by a read of the volume or a stop (see copyFailed): each is tried
// again after a wait, for ever, so a count that keeps rising is a copy
// that does not get on.
func (mg *Manager) CopyFailures() uint64 { return mg.copyFailures.Load() }

// Pairs returns a snapshot of every pair, in configuration order. It does
// not take mu (see Manager.status): it answers at once, with the states
// as of the last operation done, while another still waits.
func (mg *Manager) Pairs() []Pair {
	st := mg.status.Load()
	if st == nil {
		return nil
	}
	out := slices.Clone(st.pairs)
	for i := range out {
		if p := &out[i]; p.State == Pending && st.copies[i] != nil {
			p.Copied = p.CopyTotal - st.copies[i].DirtyBytes()
		}
	}
	return out
}

// SuspendAll suspends every pair at one point of the common timer across
// all subsystems: the secondary then holds every volume as the primary held
// them all at that point. Suspending one pair after another while writes go
// on would hold each volume at a different time, a state the primary never
// held. Pairs the session had suspended itself are suspended by hand from
// now on. It returns, once their state is saved, the pairs it changed: those
// it suspended and those whose suspension became the operator's (they no
// longer resume by themselves, and an operator who resumed one while the
// link was down may not know the session had suspended it again).
func (mg *Manager) SuspendAll() ([]string, error) {
	mg.mu.Lock()
	pos := mg.mover.Stats().Acked
	ends := map[string]int64{}
	for _, name := range mg.order {
		if end, ok := raisesAfter(mg.pairs[name]); ok {
			ends[name] = end
		}
	}
	// First, so that a refusal changes no pair: those below are
	// suspended already.
	ps, at, err := mg.suspendAllLockedWithin(false, nil, mg.operatorWait())
	if err != nil {
		mg.unlock()
		return nil, refusedForLease("suspend", "--all", "every pair", "as it was", err)
	}
	changed := map[string]bool{}
	for _, name := range mg.order {
		if p := mg.pairs[name]; !p.Deleted && p.State == Suspended && mg.stopResuming(name) {
			changed[name] = true
		}
		if p := mg.pairs[name]; !p.Deleted && p.State == Suspended && p.Auto {
			byHand(p)
			mg.dirty = true
			mg.changes++
			changed[name] = true
		}
	}
	for i, p := range ps {
		// Suspended together, the pairs share one consistency time: their
		// markers' point of the common timer.
		if end, ok := ends[p.Volume]; ok {
			raise(p, end, at[i], pos)
		}
		p.Consistent = claim(p, pos)
		changed[p.Volume] = true
	}
	var names []string
	for _, name := range mg.order {
		if changed[name] {
			names = append(names, name)
		}
	}
	mg.kick()
	mg.unlock()
	return names, mg.persist("suspend", "--all")
}

// ResumeAll resumes every suspended pair at one point of the common timer
// (see SuspendAll) and returns them once their state is saved.
func (mg *Manager) ResumeAll() ([]string, error) {
	type resumed struct {
		names []string
		save  bool
	}
	r, err := answerWithin(mg, "resume", "--all", "still suspended", func() (resumed, error) {
		names, save, err := mg.resumeAllUnsaved(false, mg.operatorWait())
		return resumed{names, save}, err
	})
	if err != nil || !r.save {
		return r.names, err
	}
	return r.names, mg.persist("resume", "--all")
}

// resumeAll resumes every suspended pair, only those the session suspended
// itself if autoOnly is set.
func (mg *Manager) resumeAll(autoOnly bool) ([]string, error) {
	return mg.resumeAllWithin(autoOnly, -1)
}

// resumeAllWithin is resumeAll, its markers given up for the timer's
// lease (wait not negative, see resumeTogether).
func (mg *Manager) resumeAllWithin(autoOnly bool, wait time.Duration) ([]string, error) {
	names, save, err := mg.resumeAllUnsaved(autoOnly, wait)
	if err != nil || !save {
		return names, err
	}
	return names, mg.persist("resume", "--all")
}

// resumeAllUnsaved is resumeAll up to the save of what it changed, which
// it says is due (save). For an operator's command (wait not negative),
// markers given up for the timer's lease resume no pair (see
// resumeTogether), and the error says so.
func (mg *Manager) resumeAllUnsaved(autoOnly bool, wait time.Duration) (names []string, save bool, _ error) {
	if err := mg.lockDropWithin(wait); err != nil { // see suspendSession
		return nil, false, refusedForLease("resume", "--all", "the suspended pairs", "suspended", err)
	}
	defer mg.dropMu.Unlock()
	if err := mg.announcedBeforeSave("", wait); err != nil {
		return nil, false, refusedForLease("resume", "--all", "the suspended pairs", "suspended", err)
	}
	mg.saveMu.Lock()
	mg.mu.Lock()
	if err := mg.announcedWithin(wait); err != nil {
		mg.unlock()
		mg.saveMu.Unlock()
		return nil, false, refusedForLease("resume", "--all", "the suspended pairs", "suspended", err)
	}
	var ps []*Pair
	for _, name := range mg.order {
		p := mg.pairs[name]
		if p.Deleted || p.State != Suspended || (autoOnly && !p.Auto) {
			continue
		}
		if p.RejoinOwed {
			if autoOnly {
				continue
			}
			mg.unlock()
			mg.saveMu.Unlock()
			return nil, false, rejoinOwed(name)
		}
		ps = append(ps, p)
		names = append(names, name)
	}
	if err := mg.checkRoom(ps...); err != nil {
		if errors.Is(err, errRoomUnknown) && !autoOnly {
			// Held together, as they would have resumed.
			mg.awaitRoom(ps...)
			mg.unlock()
			mg.saveMu.Unlock()
			return names, true, nil
		}
		mg.unlock()
		mg.saveMu.Unlock()
		return nil, false, err
	}
	// As in resume, the sticky activity-log marks stay until the state on
	// disk says duplex.
	inconsistent := map[string]bool{}
	for _, p := range ps {
		inconsistent[p.Volume] = mg.markers.inconsistent[p.Volume]
	}
	ps, err := mg.saveResuming(ps, inconsistent, autoOnly)
	if err != nil {
		mg.unlock()
		mg.saveMu.Unlock()
		return nil, false, fmt.Errorf("resume %s: not saved, still suspended: %w", strings.Join(names, ", "), err)
	}
	names = names[:0]
	for _, p := range ps {
		names = append(names, p.Volume)
	}
	ended := map[string]bool{}
	for _, p := range ps {
		ended[p.Volume] = p.CopyEnd != 0
	}
	bms, err := mg.resumeTogether(ps, wait)
	if err != nil {
		// Saved pending, they are not: the state on disk is written again.
		mg.dirty = true
		mg.unlock()
		mg.saveMu.Unlock()
		return nil, false, refusedForLease("resume", "--all", strings.Join(names, ", "), "suspended", err)
	}
	for i, p := range ps {
		mg.startCopy(p, bms[i])
		startInconsistent(p, inconsistent[p.Volume], ended[p.Volume])
		delete(mg.markers.inconsistent, p.Volume)
		mg.endIfEmpty(p)
	}
	mg.unlock()
	mg.saveMu.Unlock()
	if len(ps) == 0 {
		return nil, false, nil
	}
	return names, true, nil
}
