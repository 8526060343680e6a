package site

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"duplex/config"
	"duplex/control"
	"duplex/coupling"
	"duplex/disk"
	"duplex/failover"
	"duplex/nbd"
	"duplex/secondary"
	"duplex/sidefile"
	"duplex/subsystem"
	"duplex/timer"
	"duplex/tlsconf"
	"duplex/transport"
	"duplex/volume"
)

// PromotedDir is where a secondary site that was promoted keeps its
// promotion record, the regions it changed since, and its timer's mark:
// beside its journal, with state.json and identity.json.
func PromotedDir(cfg *config.Config) string {
	return filepath.Join(filepath.Dir(cfg.Secondary.Journal), "promoted")
}

// Promote makes a stopped secondary the session's primary: it applies every
// journaled group it may (those of an unfinished resync stay unapplied, as
// recover leaves them), fences the secondary, and records the promotion.
// recovered is what the volumes held then, per volume, as recover reports
// it. A site promoted already is left as it is: its record is returned,
// with fresh false.
//
// The fence and the record are for good, so everything that would keep
// the promoted site from serving (CheckServe) is checked first, and a ctx
// that ends while the journal replays stops the replay at a group
// boundary (secondary.ErrInterrupted): then nothing is fenced or recorded,
// and the state file names the last group applied, as after a stop of
// duplex secondary.
//
// A member of a coupled group is promoted at the group's one recovery time
// (CoupledRecoveryTime), as recover --coupled brings it there, so that
// every member promoted or recovered ends at that time: at the last master
// time each applied through, a member stopped earlier would stay behind
// the others, without writes theirs depended on. recovered.Coupling then
// names the time, unless the member never applied a group.
func Promote(ctx context.Context, cfg *config.Config, log *slog.Logger, fsys disk.FS) (pr failover.Promotion, fresh bool, recovered control.Status, err error) {
	return PromoteWith(ctx, cfg, log, PromoteOptions{FS: fsys})
}

// PromoteWith is Promote with options beyond the config.
func PromoteWith(ctx context.Context, cfg *config.Config, log *slog.Logger, opts PromoteOptions) (pr failover.Promotion, fresh bool, recovered control.Status, err error) {
	fsys := opts.FS
	dir := PromotedDir(cfg)
	switch pr, err := failover.ReadPromotion(fsys, dir); {
	case err == nil:
		return pr, false, control.Status{}, nil
	case !errors.Is(err, failover.ErrNotPromoted):
		return pr, false, control.Status{}, err
	}
	if err := CheckServe(cfg); err != nil {
		return pr, false, control.Status{}, err
	}
	// Before the group's recovery time is asked for: the first member to
	// ask fixes it for every member, and a wrong config must not.
	if err := HeldSecondary(fsys, cfg); err != nil {
		return pr, false, control.Status{}, err
	}
	var groupTime, journaled int64
	if cfg.Coupled() {
		if groupTime, journaled, err = CoupledRecoveryTime(ctx, cfg, opts.CouplingStore); err != nil {
			return pr, false, control.Status{}, fmt.Errorf("coupled session %q: every member is promoted at the group's one recovery time, "+
				"fixed in etcd: %w", cfg.Session, err)
		}
	}
	s, err := OpenSecondary(cfg, log, SecondaryOptions{Offline: true, FS: fsys, Context: ctx, CouplingLimit: groupTime})
	if err != nil {
		return pr, false, control.Status{}, err
	}
	// Closed before the promoted site opens the volumes (a block device
	// is opened exclusively) and the journal's lock is free again.
	defer s.Close()
	if err := ctx.Err(); err != nil {
		// The replay ended as asked: the stop comes before the fence.
		return pr, false, control.Status{}, fmt.Errorf("%w after the journal's replay, before the fence (the state file names group %d)",
			secondary.ErrInterrupted, s.Replica().Position().Group)
	}
	pr, recovered, err = promoteOpen(cfg, s, fsys, nil)
	if err != nil {
		return pr, false, recovered, err
	}
	// A member that never applied a group holds none of the writes
	// stamped up to the group's time: a member added to a running group
	// publishes the others' master time as its own before its secondary
	// journaled anything (coupling.Add). It is not said to be at that time.
	if groupTime != 0 && pr.ConsistencyTime != 0 {
		recovered.Coupling = &control.CouplingStatus{Group: cfg.Coupling.Group, Members: []string{},
			AppliedThrough: control.FormatTime(CoupledHeld(groupTime, journaled, pr.ConsistencyTime)), RecoveryTime: control.FormatTime(groupTime)}
	}
	return pr, true, recovered, nil
}

// PromoteOptions adjust PromoteWith beyond its config (tests).
type PromoteOptions struct {
	// FS holds the promotion record (default disk.OS).
	FS disk.FS
	// CouplingStore replaces the etcd of [coupling].
	CouplingStore coupling.Store
}

// CoupledHeld is the time through which a member recovered or promoted at
// the group's time groupTime holds its own writes, applied the time of
// the last group it applied: groupTime, unless the
// member was given a floor past what its secondary journaled
// (coupling.Report.Journaled), whose writes stamped
// between were made before it was coupled and are not there. A member
// that was only quiet journaled empty groups through its time. A member
// with no journaled time (0: one whose add was cut short, or whose
// secondary has not published since its add) is known to hold only what
// it applied: a recovery counts it at its add's floor.
func CoupledHeld(groupTime, journaled, applied int64) int64 {
	if journaled >= groupTime {
		return groupTime
	}
	return min(groupTime, max(journaled, applied))
}

// CoupledRecoveryTime is the time every member of the session's coupled
// group recovers to, fixed in etcd by the first member that asks
// (coupling.RecoveryTime), and the time the member last published it had
// journaled through (coupling.Report.Journaled; 0 if only a floor is
// known, see CoupledHeld); store nil dials the etcd of [coupling].
func CoupledRecoveryTime(ctx context.Context, cfg *config.Config, store coupling.Store) (t, journaled int64, err error) {
	if store == nil {
		dialed, err := coupling.DialConfig(cfg)
		if err != nil {
			return 0, 0, err
		}
		defer dialed.Close()
		store = dialed
	}
	// What this member applied through: a recovery time before it is of
	// an earlier incident.
	mark, _, err := coupling.ReadMark(coupling.MarkPath(StatePath(cfg)))
	if err != nil {
		return 0, 0, err
	}
	if mark.Group != cfg.Coupling.Group {
		mark.Through = 0
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	t, view, err := coupling.RecoveryTime(cctx, store, cfg.Session, mark.Through)
	if err != nil {
		return 0, 0, fmt.Errorf("group %s: %w", cfg.Coupling.Group, err)
	}
	r, had := view.Reports[cfg.Session]
	if had && r.Journaled == 0 && r.Membership == "" {
		// Published before the journaled time was kept (and memberships
		// named): its time is what its secondary journaled through, as
		// such times were taken then. A floor published since names its
		// membership, and a cut-short add's has no time at all.
		return t, r.Time, nil
	}
	return t, r.Journaled, nil
}

// CheckServe reports what in cfg would keep its secondary, once promoted,
// from serving the volumes: no NBD address, a security setting that
// refuses its addresses, TLS keys or the control token that cannot be
// read; as the primary of the reverse direction ([primary] listen set),
// those of the reversed config. OpenPromoted and OpenReversePrimary fail
// on the same; Promote asks first, since its fence and record are for good.
// An address taken by another process is found only when it is bound.
func CheckServe(cfg *config.Config) error { return checkServe(cfg, Reversing(cfg)) }

func checkServe(cfg *config.Config, reverse bool) error {
	if !cfg.HasSecondary() {
		return errors.New("promoted: the config has no [secondary] section")
	}
	if cfg.Secondary.NBD == "" {
		return errors.New("promoted: [secondary] has no nbd address to serve the volumes on")
	}
	role, c := "secondary", cfg
	if reverse {
		rev, err := cfg.Reversed()
		if err != nil {
			return fmt.Errorf("promoted: %w", err)
		}
		role, c = "primary", rev
	}
	if err := c.CheckSecurity(); err != nil {
		return fmt.Errorf("promoted: %w", err)
	}
	if role == "primary" {
		if _, err := tlsconf.PrimaryNBD(c); err != nil {
			return fmt.Errorf("promoted: %w", err)
		}
		if _, err := tlsconf.PrimaryLink(c); err != nil {
			return fmt.Errorf("promoted: %w", err)
		}
	} else if _, err := tlsconf.SecondaryNBD(c); err != nil {
		return fmt.Errorf("promoted: %w", err)
	}
	if cfg.Secondary.Control != "" {
		if _, err := tlsconf.ControlServer(c, role); err != nil {
			return fmt.Errorf("promoted: control address: %w", err)
		}
	}
	if tp := cfg.TokenPath(); tp != "" {
		if _, err := control.ReadToken(tp); err != nil {
			return fmt.Errorf("promoted: %w", err)
		}
	}
	return nil
}

// promoteOpen fences the open secondary s and records its promotion, unless
// check refuses the position it fenced at: a stopped secondary's, or a
// running one's that a switchover promotes in place.
func promoteOpen(cfg *config.Config, s *Secondary, fsys disk.FS, check func(transport.Position) error) (pr failover.Promotion, recovered control.Status, err error) {
	dir := PromotedDir(cfg)
	// The fence first: from it on, the old primary is refused, and the
	// volumes' state file names the group they hold, so nothing replays
	// over the writes to come.
	pos, err := s.Replica().Fence()
	if err != nil {
		return pr, control.Status{}, err
	}
	if check != nil {
		if err := check(pos); err != nil {
			return pr, control.Status{}, err
		}
	}
	recovered = s.Status()
	gen, _ := s.Replica().Generation()
	pr = failover.Promotion{Session: cfg.Session, At: time.Now().UnixNano(), ConsistencyTime: pos.Time, Group: pos.Group,
		Generation: gen, Follows: s.Replica().Follows(), Volumes: map[string]string{}}
	// Every group journaled after the one fenced at is never applied: a
	// resync's held groups, and a coupled secondary's past the master
	// time it fenced at.
	if recovered.JournaledGroup != nil && *recovered.JournaledGroup > pos.Group {
		pr.HeldGroups = *recovered.JournaledGroup - pos.Group
	}
	for _, v := range recovered.Volumes {
		c := v.Consistency
		if c == "" {
			c = "consistent as of " + recovered.ConsistencyTime
		}
		pr.Volumes[v.Name] = c
	}
	// A rejoin back recorded here (an earlier round trip) is spent: left,
	// duplex rejoin would take it for one under way and retire this
	// promotion. Gone before the record, a crash between leaves a fenced
	// secondary that a promote records again.
	if err := disk.Or(fsys).Remove(filepath.Join(RejoinBackDir(cfg), rejoinFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return pr, recovered, fmt.Errorf("the rejoin record of an earlier round trip: %w", err)
	} else if err == nil {
		if err := disk.Or(fsys).SyncDir(RejoinBackDir(cfg)); err != nil {
			return pr, recovered, fmt.Errorf("the rejoin record of an earlier round trip: %w", err)
		}
	}
	if err := failover.WritePromotion(fsys, dir, pr); err != nil {
		return pr, recovered, err
	}
	return pr, recovered, nil
}

// Promoted is a secondary site promoted to serve its volumes read-write: the
// write path of a primary whose every pair is suspended, with the changed
// regions kept for a rejoin (package failover).
type Promoted struct {
	cfg       *config.Config
	log       *slog.Logger
	promotion failover.Promotion
	timer     *timer.Timer
	byVol     map[string]*subsystem.Subsystem
	vols      map[string]*volume.Volume
	order     []string
	subOf     map[string]string
	changes   *failover.Changes
	// lock is the changed regions' LOCK (failover.LockChanges), which
	// the site keeps itself rather than the changes: it is let go only
	// once the volumes' writes and closes have ended too (see close).
	lock io.Closer
	// stateClosed is closed once closeState's writes (the timer's last
	// mark, the changed regions' bitmaps) have ended, given up or not;
	// stateGivenUp names them if closeState gave them up.
	stateClosed  <-chan struct{}
	stateGivenUp string
	// letGo is closed (letGone) once the stopped site has let its
	// promotion directory go: after the writes its stop gave up have
	// ended.
	letGo     chan struct{}
	letGoOnce sync.Once
	listeners
	nbdTLS  *tls.Config
	token   string
	metrics *control.Metrics
	history *control.History
	// fsys and couplingStore are PromotedOptions', for the leave of its
	// coupled group a switchover owes (finishLeave).
	fsys          disk.FS
	couplingStore coupling.Store
	// beforeFlush, beforeClose: see PromotedOptions; stopFlushWait: see
	// StopFlushWait.
	beforeFlush   func(vol string) error
	beforeClose   func(vol string)
	stopFlushWait time.Duration
	// slowDisk is how long a write of the promotion directory may take
	// before status says that it waits on its disk, as at the primary.
	slowDisk time.Duration
	// early is the control address's server while the site started;
	// Run's takes it over.
	early *control.Starting
}

// PromotedOptions adjust a promoted site beyond its config (tests).
type PromotedOptions struct {
	// FS holds the changed regions and the promotion record (default
	// disk.OS).
	FS disk.FS
	// CouplingStore replaces the etcd of [coupling], through which a
	// switched-over member's leave of its group is finished (tests).
	CouplingStore coupling.Store
	// Listeners, if set, are the NBD and control addresses' listeners
	// handed over by the secondary promoted in place (Secondary.HandOver):
	// served on, not bound again. OpenPromoted owns them, and closes them
	// if it fails.
	Listeners Listeners
	// Context, if set, ends the start: see PrimaryOptions.
	Context context.Context
	// started: see PrimaryOptions.
	started func(*startWait)
	// beforeFlush, beforeClose, beforeVolumeWrite, stopFlushWait,
	// slowDisk: see PrimaryOptions (tests).
	beforeFlush       func(vol string) error
	beforeClose       func(vol string)
	beforeVolumeWrite func(vol string)
	stopFlushWait     time.Duration
	slowDisk          time.Duration
}

// OpenPromoted opens a promoted site's volumes and changed regions (after a
// kill -9, with every region its activity log marked) and binds the
// secondary's NBD and control addresses.
func OpenPromoted(cfg *config.Config, log *slog.Logger, opts PromotedOptions) (*Promoted, error) {
	if opts.Context == nil {
		return openPromoted(cfg, log, opts)
	}
	return openUnlessStopped(opts.Context, 0, &opts.started, func() (*Promoted, error) { return openPromoted(cfg, log, opts) },
		func(p *Promoted) { p.close() })
}

func openPromoted(cfg *config.Config, log *slog.Logger, opts PromotedOptions) (_ *Promoted, err error) {
	defer func() {
		if err != nil {
			opts.Listeners.Close()
		}
	}()
	if log == nil {
		log = slog.Default()
	}
	if !cfg.HasSecondary() {
		return nil, errors.New("promoted: the config has no [secondary] section")
	}
	dir := PromotedDir(cfg)
	if err := checkServe(cfg, false); err != nil {
		return nil, err
	}
	p := &Promoted{cfg: cfg, log: log.With("site", "promoted"), byVol: map[string]*subsystem.Subsystem{},
		history: &control.History{}, fsys: opts.FS, couplingStore: opts.CouplingStore,
		beforeFlush: opts.beforeFlush, beforeClose: opts.beforeClose, stopFlushWait: cmp.Or(opts.stopFlushWait, StopFlushWait),
		slowDisk: cmp.Or(opts.slowDisk, secondary.DefaultSlowDisk), letGo: make(chan struct{})}
	p.metrics = control.NewMetrics(cfg.Session, "primary", p.samples)
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	// The changed regions' LOCK first: it keeps a second promoted site on
	// the same config off every file of the promotion directory, the timer
	// mark (the running site's lease on its stamps) among them.
	// Status answers from then on, saying what the start waits for; and
	// from the slow disk's wait on if the LOCK has not come, or the
	// promotion read before it: the LOCK's file is in the directory a
	// promotion makes, and a site never promoted is refused so.
	starting := watchStart(p.log, p.slowDisk)
	defer starting.end()
	if opts.started != nil {
		opts.started(starting)
	}
	lock, err := lockThenServe(func() (io.Closer, error) {
		if _, err := promotionToServe(opts.FS, cfg, starting); err != nil {
			return nil, err
		}
		starting.step(filepath.Join(dir, "LOCK"))
		lock, err := lockPromotedDir(opts.FS, cfg)
		if err != nil {
			return nil, fmt.Errorf("promoted: %w", err)
		}
		// With the LOCK, which the reverse pair state's making holds: a
		// look before it may miss one made meanwhile.
		starting.step(ReverseDir(cfg))
		if reversed(cfg) {
			lock.Close()
			// Its pair state holds the changed regions from then on.
			return nil, fmt.Errorf("promoted: this site runs as the primary of the reverse direction (pair state %s): OpenReversePrimary opens it", ReverseDir(cfg))
		}
		// Read again with the LOCK, which a rejoin back's retirement of
		// the promotion holds, and the rejoin back last (see
		// promotionToServe): a promotion retired since the look before
		// the LOCK is refused, and none is retired while it is held.
		pr, err := promotionToServe(opts.FS, cfg, starting)
		if err != nil {
			lock.Close()
			return nil, err
		}
		p.promotion = pr
		return lock, nil
	}, func() (err error) {
		p.early, err = p.serveStarting(cfg, "secondary", "primary", "promoted site", cfg.Secondary.Control, opts.Listeners.Control, starting, p.log)
		opts.Listeners.Control = nil // p's now
		return err
	}, starting, filepath.Join(dir, "LOCK"), p.slowDisk)
	if err != nil {
		return nil, err
	}
	p.lock = lock // let go by p.close, if the start fails
	// Nothing of dir is written until the changed regions open.
	starting.step(dir + " (the temporary files a kill left)")
	removeLeftTemps(opts.FS, dir, p.log)
	starting.step("the volumes")
	p.vols, p.order, p.subOf, err = openSecondaryVolumes(cfg, p.log, nil, nil, "", &p.promotion)
	if err != nil {
		return nil, fmt.Errorf("promoted: %w", err)
	}
	sizes := map[string]int64{}
	for name, v := range p.vols {
		sizes[name] = v.Size()
	}
	starting.step("the changed regions in " + dir)
	p.changes, err = failover.OpenLockedChanges(opts.FS, dir, sizes, nil)
	if err != nil {
		return nil, fmt.Errorf("promoted: %w", err)
	}
	// Stamps follow everything the volumes hold from the old primary, and
	// every stamp of an earlier run here, whatever the clock did.
	starting.step(filepath.Join(dir, "timer.json"))
	if p.timer, err = timer.OpenPersistent(opts.FS, filepath.Join(dir, "timer.json"), nil, 0, p.log); err != nil {
		return nil, fmt.Errorf("promoted: %w", err)
	}
	p.timer.AtLeast(p.promotion.ConsistencyTime)
	// The subsystems of the session, each with the volumes this site has;
	// every volume suspended, so a write marks its region and captures
	// nothing.
	for _, sc := range cfg.Primary.Subsystems {
		vols := map[string]*volume.Volume{}
		var names []string
		for _, name := range p.order {
			if p.subOf[name] == sc.ID {
				vols[name] = p.vols[name]
				names = append(names, name)
			}
		}
		if len(names) == 0 {
			continue
		}
		ss := subsystem.New(sc.ID, p.timer, sidefile.New(int64(cfg.Primary.SidefileLimit)), vols, names)
		ss.SetActivityLog(p.changes)
		if opts.beforeVolumeWrite != nil {
			ss.SetBeforeVolumeWrite(opts.beforeVolumeWrite)
		}
		for _, name := range names {
			ss.Suspend(name, p.changes.Bitmap(name))
			p.byVol[name] = ss
		}
	}
	if p.nbdTLS, err = tlsconf.SecondaryNBD(cfg); err != nil {
		return nil, fmt.Errorf("promoted: %w", err)
	}
	if tp := cfg.TokenPath(); tp != "" {
		if p.token, err = control.ReadToken(tp); err != nil {
			return nil, fmt.Errorf("promoted: %w", err)
		}
	}
	starting.end()
	// The secondary's addresses and control certificate: a promoted site
	// keeps them.
	if err := p.listen(cfg, "secondary", "promoted", cfg.Secondary.NBD, "", Listeners{NBD: opts.Listeners.NBD}); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *Promoted) close() error {
	p.early.Close()
	p.listeners.close()
	// Open only after a start that failed (Run's stop closed them in
	// closeState): the timer before the changed regions.
	if p.timer != nil {
		p.timer.Close()
		p.timer = nil
	}
	if p.changes != nil {
		p.changes.Close()
		p.changes = nil
	}
	closed, err := closeVolumes(p.vols, p.stopFlushWait, p.beforeClose, endUpdatesOf(p.byVol))
	if err != nil {
		err = fmt.Errorf("promoted: %w", err)
	}
	// Last: a volume's write or close given up (see closeVolumes) may
	// still land once the disk answers, as may the timer's mark and the
	// bitmaps closeState gave up. A site let in before then (a next
	// promoted site, or the reverse direction's primary made from the
	// changed regions, whose rejoin copies them to the old primary)
	// would read the volume without the late write, or find its own
	// mark replaced by a lower one.
	lock, stateClosed := p.lock, p.stateClosed
	p.lock = nil
	if lock == nil {
		p.letGone()
		return err
	}
	var under []string
	if !ended(stateClosed) {
		under = append(under, cmp.Or(p.stateGivenUp, "the save of the changed regions' bitmaps"))
	}
	under = append(under, volumesGivenUp(err)...)
	if len(under) == 0 {
		lock.Close()
		p.letGone()
		return err
	}
	// Said here and to a start in this process meanwhile, as at the
	// primary: a refusal that blames another process would send the
	// operator looking for one.
	what := strings.Join(under, ", ")
	since := time.Now()
	dir := PromotedDir(p.cfg)
	p.log.Warn("stopped; the promotion directory stays locked until what the stop gave up on its disk, which stopped answering, has ended "+
		"(it may still land): a promoted site, or the reverse direction's primary, started meanwhile is refused", "under_way", what, "dir", dir)
	held := holdAfterStop(dir, "the promoted site", what, "let go of the promotion directory", since)
	go func() {
		if stateClosed != nil {
			<-stateClosed
		}
		<-closed
		lock.Close()
		letGoAfterStop(dir, held)
		p.log.Info("let go of the promotion directory: what the stop gave up has ended", "under_way", what,
			"held_for", time.Since(since).Round(time.Millisecond), "dir", dir)
		p.letGone()
	}()
	return err
}

// LetGo is closed once the stopped promoted site has let its promotion
// directory go: at once, unless its stop gave up a write on a disk that
// stopped answering (a client's write to a volume, a volume's close, the
// changed regions' save), which may still land; then once it has ended.
// A promoted site, or the reverse direction's primary, started in this
// process before then is refused, saying so: it would read the volume
// before the late write lands, or find its own state replaced.
func (p *Promoted) LetGo() <-chan struct{} { return p.letGo }

func (p *Promoted) letGone() { p.letGoOnce.Do(func() { close(p.letGo) }) }

// lockPromotedDir takes the LOCK of cfg's promotion directory
// (failover.LockChanges). Refused while a stopped promoted site of this
// process still holds it, it says so, and for what: not that another
// process holds the changed regions.
func lockPromotedDir(fsys disk.FS, cfg *config.Config) (io.Closer, error) {
	dir := PromotedDir(cfg)
	lock, err := failover.LockChanges(fsys, dir)
	if err == nil {
		return lock, nil
	}
	held := heldAfterStop(dir)
	if held == "" {
		return nil, err
	}
	if inner := errors.Unwrap(err); inner != nil {
		err = inner
	}
	return nil, fmt.Errorf("promotion directory %s: %s: %w", dir, held, err)
}

// ended reports whether ch, nil for nothing to wait for, is closed.
func ended(ch <-chan struct{}) bool {
	if ch == nil {
		return true
	}
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// Promotion returns the record of the promotion.
func (p *Promoted) Promotion() failover.Promotion { return p.promotion }

// Changes returns the regions changed since the promotion.
func (p *Promoted) Changes() *failover.Changes { return p.changes }

// Run serves the volumes read-write over NBD, and status on the control
// address, until ctx ends; then it stops taking writes, makes the volumes
// durable, writes the changed regions, and closes.
func (p *Promoted) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	srv := &nbd.Server{Exports: primaryExports{byVol: p.byVol, vols: p.vols, order: p.order, flush: p.syncVolume}, Logger: p.log.With("component", "nbd"), TLS: p.nbdTLS}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(p.nbdLn); err != nil {
			errs <- fmt.Errorf("promoted NBD: %w", err)
		}
	}()
	p.log.Info("serving NBD read-write", "addr", p.NBDAddr(), "exports", p.order)
	cctx, stopControl := context.WithCancel(context.Background())
	var leaveEnded <-chan struct{}
	if p.cfg.Coupled() {
		_, leaveEnded = finishLeave(cctx, p.cfg, p.fsys, p.couplingStore, p.log)
	}
	if p.ctlLn != nil {
		cs := &control.Server{Status: p.Status, Metrics: p.metrics.Handler(), History: p.history, Token: p.token, TLS: p.ctlTLS, Logger: p.log, Early: p.early,
			Changes: p.ChangedRegions, NoPairs: noReverse,
			Sites: sessionSites(p.cfg, control.Site{Role: "secondary", Control: p.ControlAddr(), NBD: p.NBDAddr()})}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := cs.Serve(cctx, p.ctlLn); err != nil {
				errs <- err
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		// No secondary: no lag, no sidefile, nothing replicated; the
		// page's charts stay empty rather than fail.
		p.history.Run(cctx, func() control.HistorySample { return control.HistorySample{} })
	}()
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errs:
	}
	// As at the primary's stop: a client's request, and a volume's
	// flush, held up by a disk that stopped answering are waited for
	// StopFlushWait at most. The changed regions were marked before the
	// writes were acknowledged, so what a rejoin copies back is known
	// whatever the volume's disk did with them.
	fctx, fcancel := context.WithTimeout(context.Background(), p.stopFlushWait)
	defer fcancel()
	if err := srv.CloseWithin(fctx); err != nil {
		// An error of the stop, as a flush that did not end is: a write
		// of it may yet reach its volume after the process exits.
		p.log.Error("stopping with an NBD client's request under way (its volume's disk may have stopped answering)", "err", err)
		if runErr == nil {
			runErr = fmt.Errorf("promoted: an NBD client's request was still under way after %s, and a write of it may yet reach its volume: %w", p.stopFlushWait, err)
		}
	}
	stopControl()
	wg.Wait()
	waitLeaveEnded(leaveEnded, p.stopFlushWait, p.log)
	fctx, fcancel = context.WithTimeout(context.Background(), p.stopFlushWait)
	defer fcancel()
	// Together: one volume's flush that hangs must not use up the
	// others' wait.
	flushErrs := make([]error, len(p.order))
	var fwg sync.WaitGroup
	for i, name := range p.order {
		fwg.Go(func() { flushErrs[i] = flushWithin(fctx, name, p.syncVolume) })
	}
	fwg.Wait()
	for i, name := range p.order {
		if err := flushErrs[i]; err != nil {
			p.log.Error("stopping: a volume's flush failed or did not end within "+p.stopFlushWait.String()+": its writes are not known to be on its disk",
				"volume", name, "err", err)
			if runErr == nil {
				runErr = fmt.Errorf("promoted: %w", err)
			}
		}
	}
	if err := p.closeState(); err != nil && runErr == nil {
		runErr = err
	}
	if err := p.close(); err != nil {
		p.log.Error("stopping: " + err.Error())
		if runErr == nil {
			runErr = err
		}
	}
	return runErr
}

// closeState writes the timer's last mark, then the changed regions'
// bitmaps, waiting for them StopFlushWait at most: on a disk that
// stopped answering, the stop goes on without them, the lease's writes
// given up (timer.Abandon), and the error wraps ErrDiskHung. Every
// changed region is in the changed regions' log on disk before its write
// was acknowledged, and the next run reads it there; close lets the LOCK
// go only once the writes end (stateClosed; or the process exits), so a
// site that takes it next reads the mark and the bitmaps last written,
// never one written after.
func (p *Promoted) closeState() error {
	tm, changes := p.timer, p.changes
	p.timer, p.changes = nil, nil
	closed := make(chan error, 1)
	stateClosed := make(chan struct{})
	p.stateClosed = stateClosed
	go func() {
		err := tm.Close()
		if cerr := changes.Close(); err == nil {
			err = cerr
		}
		// Closed before the stop hears of the end: a stop that saw the
		// writes end lets the LOCK go before it returns (close), and a
		// site opened right after it finds it free.
		close(stateClosed)
		closed <- err
	}()
	t := time.NewTimer(p.stopFlushWait)
	defer t.Stop()
	select {
	case err := <-closed:
		if err != nil {
			return fmt.Errorf("promoted: %w", err)
		}
		return nil
	case <-t.C:
	}
	what := "the save of the changed regions' bitmaps"
	if lease, _ := tm.LeaseWait(); lease > 0 {
		what = "the timer's last write of its lease"
	}
	p.stateGivenUp = what
	tm.Abandon()
	err := fmt.Errorf("promoted: %w: %s in %s has not ended after %s, and nothing cancels it; "+
		"every changed region is in the changed regions' log on disk, which the next start reads",
		ErrDiskHung, what, PromotedDir(p.cfg), p.stopFlushWait)
	p.log.Error("stopping without waiting more for the disk", "err", err)
	return err
}

// syncVolume makes the writes volume vol took durable (fdatasync).
func (p *Promoted) syncVolume(vol string) error {
	if p.beforeFlush != nil {
		if err := p.beforeFlush(vol); err != nil {
			return fmt.Errorf("volume %s: flush: %w", vol, err)
		}
	}
	return p.vols[vol].Flush()
}

// Status reports the promoted site as the session's primary whose every
// pair is suspended (it has no secondary until a rejoin), with since when it
// is primary and the bytes each volume's changed regions cover.
func (p *Promoted) Status() control.Status {
	st := control.Status{Session: p.cfg.Session, Role: "primary", Link: "suspended", NoPairs: noReverse, Generation: p.promotion.Generation.String(),
		PromotedAt: control.FormatTime(p.promotion.At), PromotedFrom: control.FormatTime(p.promotion.ConsistencyTime),
		PrimarySite: "secondary", PrimarySince: control.FormatTime(p.promotion.At)}
	logWrite, waiting := p.changes.Waits()
	st.DiskWait = strings.Join(logAndLeaseWaits("changed regions' log", logWrite, waiting, p.timer, p.slowDisk, time.Now()), "; ")
	for _, name := range p.order {
		changed := p.changes.Bitmap(name).DirtyBytes()
		st.Volumes = append(st.Volumes, control.VolumeStatus{Name: name, Subsystem: p.subOf[name], State: "suspended",
			SizeBytes: p.vols[name].Size(), CopiedBytes: p.vols[name].Size(), ChangedBytes: &changed,
			Note: "promoted: " + p.promotion.Volumes[name]})
	}
	return st
}

// noReverse is why a promoted site holds no pairs: it runs without the
// reverse direction (Reversing), as the primary of a session that
// replicates nowhere. Pair operations are routed to it as the primary; the
// default refusal there would send the operator back to it.
const noReverse = "this promoted site replicates nowhere and holds no pairs: the config's [primary] has no listen and journal, " +
	"so it runs without the reverse direction. Set primary.listen and primary.journal in the config, restart this site " +
	"(duplex promote --config FILE), then run duplex rejoin --config FILE --yes at the old primary: it becomes this site's " +
	"secondary and pair operations run here"

// ChangedRegions returns the promotion and each volume's changed regions,
// for a rejoin.
func (p *Promoted) ChangedRegions() (control.Changes, error) {
	ch := control.Changes{PromotedAt: control.FormatTime(p.promotion.At), ConsistencyTime: p.promotion.ConsistencyTime,
		Generation: p.promotion.Generation.String(), Follows: p.promotion.Follows.String(), HeldGroups: p.promotion.HeldGroups,
		Volumes: map[string][]byte{}}
	ch.CouplingLeaveOwed, ch.CouplingLeaveUnread = leaveOwed(p.fsys, p.cfg, p.log)
	for _, name := range p.order {
		b, err := p.changes.Bitmap(name).MarshalBinary()
		if err != nil {
			return control.Changes{}, err
		}
		ch.Volumes[name] = b
	}
	return ch, nil
}

// samples are the promoted site's metrics: the link is down (it has no
// secondary), and the bytes its changed regions cover.
func (p *Promoted) samples() []control.Sample {
	var changed int64
	for _, name := range p.order {
		changed += p.changes.Bitmap(name).DirtyBytes()
	}
	logWrite, waiting := p.changes.Waits()
	return append(logAndLeaseSamples(logWrite, waiting, p.timer),
		control.Gauge("link_up", linkUpHelp, 0),
		control.Gauge("changed_bytes", "At a promoted site: bytes of the regions written since the promotion, which a rejoin copies.", float64(changed)),
	)
}

// ReadAt reads a volume of the promoted site.
func (p *Promoted) ReadAt(vol string, b []byte, off int64) error {
	v, ok := p.vols[vol]
	if !ok {
		return fmt.Errorf("promoted: no volume %q", vol)
	}
	return v.ReadAt(b, off)
}
