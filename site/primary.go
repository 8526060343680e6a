package site

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"duplex/actlog"
	"duplex/config"
	"duplex/control"
	"duplex/coupling"
	"duplex/disk"
	"duplex/failover"
	"duplex/mover"
	"duplex/nbd"
	"duplex/pair"
	"duplex/ratelimit"
	"duplex/recordset"
	"duplex/secondary"
	"duplex/sidefile"
	"duplex/subsystem"
	"duplex/timer"
	"duplex/tlsconf"
	"duplex/transport"
	"duplex/volume"
)

// Primary is a running primary site.
type Primary struct {
	cfg   *config.Config
	log   *slog.Logger
	timer *timer.Timer
	subs  []*subsystem.Subsystem
	byVol map[string]*subsystem.Subsystem
	vols  map[string]*volume.Volume
	order []string
	mover *mover.Mover
	// pairsEnded is closed once the pair manager's loop has ended, which
	// may be after Run returned: a stop goes on without a loop held by a
	// disk that stopped answering (see awaitPairs). Set by Run.
	pairsEnded <-chan struct{}
	// startFailed says the start failed: it served nothing, so no
	// update of a volume is under way for its close to end (see close).
	startFailed bool
	// logEnded is closed once the stop's last write of the activity log
	// has ended, which may be after Run returned, as pairsEnded. Set by
	// Run's stop.
	logEnded <-chan struct{}
	// failedSuspended is closed once the stop's suspension of the pairs
	// whose writes failed has ended: a stop that went on without it
	// (a hung timer's lease) leaves it to save the pair state later.
	failedSuspended <-chan struct{}
	listeners
	nbdTLS  *tls.Config // nil: plaintext NBD
	start   time.Time
	dialer  transport.Dialer
	metrics *control.Metrics
	pairs   *pair.Manager
	token   string
	history *control.History
	actlog  *actlog.Log
	// actlogErr is why the activity log could not be opened at start.
	actlogErr error
	// copyRate paces initial copies and resyncs, linkRate every frame on
	// the link; `duplex pair rate` changes them until the next start.
	copyRate *ratelimit.Limiter
	linkRate *ratelimit.Limiter
	// generation is the history of this primary's data, created with its
	// pair state; the secondary must follow it.
	generation transport.Generation
	// stateLock keeps a second primary of the session out of the pair-state
	// directory while this one runs.
	stateLock io.Closer
	// letGo is closed (letGone) once the stopped primary has let its
	// pair-state directory go: after the writes its stop gave up have
	// ended.
	letGo     chan struct{}
	letGoOnce sync.Once
	// stateDir is the pair-state directory: PairStateDir, or a promoted
	// site's ReverseDir.
	stateDir string
	// promotion is set at a promoted site running as the primary of the
	// reverse direction (OpenReversePrimary).
	promotion *failover.Promotion
	// promotedBack: the promotion is this site's own, back from the
	// promoted site by a switchover (failBack), in the session's direction.
	promotedBack bool
	fsys         disk.FS
	// leaveOf is the config of the secondary whose promotion by a
	// switchover made this site the primary: the leave of its coupled
	// group it may owe is finished here (finishLeave); nil if none.
	leaveOf       *config.Config
	couplingStore coupling.Store
	// gate holds the writes while a switchover pauses them, and refuses
	// them once it is done.
	gate      *writeGate
	switching sync.Mutex
	// switched is closed once a switchover handed the session to the other
	// site; switchedOver is then its record and the status it left.
	switched     chan struct{}
	switchedOver switchedState
	// beforeFlush, beforeClose, afterStopSave, drainCutShort: see
	// PrimaryOptions.
	beforeFlush   func(vol string) error
	beforeClose   func(vol string)
	afterStopSave func()
	drainCutShort func()
	// stopFlushWait: see StopFlushWait.
	stopFlushWait time.Duration
	// patience: see unreachablePatience.
	patience time.Duration
	// slowDisk is how long a write of the state directory may take
	// before status says that it waits on its disk (see stateDiskWait).
	slowDisk time.Duration
	// early is the control address's server while the primary started;
	// Run's takes it over.
	early *control.Starting
	// flushes: see volumeFlushes.
	flushes map[string]*volumeFlushes
	// life ends when Run stops (or the primary is closed): a switchover
	// in doubt stops asking the other site then.
	life    context.Context
	endLife context.CancelFunc
}

// stateLockName is the lock file of the primary's pair-state directory.
const stateLockName = "LOCK"

// PairStateDir is where a primary keeps its pairs and bitmaps.
func PairStateDir(cfg *config.Config) string {
	return filepath.Join(cfg.Dir, cfg.Session+".primary")
}

// PrimaryOptions adjust a primary beyond its config (for tests and the demo).
type PrimaryOptions struct {
	Dialer transport.Dialer // default: TCP to primary.secondary
	// Retransmit and HandshakeTimeout tune the data mover (zero: its
	// defaults), so that a test over a lossy link recovers from a lost frame
	// in milliseconds rather than seconds.
	Retransmit       time.Duration
	HandshakeTimeout time.Duration
	// CopyReadWait tunes how long the data mover waits for a copy's read
	// of a primary volume before it gives the copy up (zero: its default),
	// and the start a crash recovery's copy (see pair.Options): tests hang
	// a read.
	CopyReadWait time.Duration
	// OverwriteSecondary, if not nil, is the operator's consent that the
	// secondary following that data generation (zero: none) have its
	// copies overwritten by this primary's (duplex primary
	// --overwrite-secondary): it lasts this run of the primary.
	OverwriteSecondary *transport.Generation
	// Clock replaces the wall clock of the common timer (nanoseconds since
	// the Unix epoch): tests step it back.
	Clock func() int64
	// FS holds the activity log and the pair state (default disk.OS):
	// tests inject storage faults through it.
	FS disk.FS
	// StateDir replaces PairStateDir(cfg), and Promotion is the record of
	// the promotion: a promoted site running as the primary of the reverse
	// direction (OpenReversePrimary) sets both.
	StateDir  string
	Promotion *failover.Promotion
	// CouplingStore replaces the etcd of [coupling], through which a
	// switched-over member's leave of its group is finished (tests).
	CouplingStore coupling.Store
	// Listeners, if set, are the NBD and control addresses' listeners
	// handed over by the secondary this site was until a switchover
	// (Secondary.HandOver): served on, not bound again. OpenPrimary owns
	// them, and closes them if it fails.
	Listeners Listeners
	// Context, if set, ends the start: once it is done (SIGTERM), the
	// start is given up wherever it waits (see startGivenUp).
	Context context.Context
	// leaveOf: see Primary.leaveOf (OpenReversePrimary).
	leaveOf *config.Config
	// started, if set, is handed the start's steps as it begins (see
	// openUnlessStopped).
	started func(*startWait)
	// prepare, if set, runs first, before the pair state's LOCK (its
	// steps said to starting), and returns the promotion the site serves
	// as (Promotion's): OpenReversePrimary's reading of the promotion and
	// the making of the pair state from it.
	prepare func(starting *startWait) (*failover.Promotion, error)
	// underStateLock, if set, runs with the pair state's LOCK taken,
	// before anything of the state is read, and returns the promotion the
	// site serves as (prepare's read again, OpenReversePrimary).
	underStateLock func(starting *startWait) (*failover.Promotion, error)
	// beforeStateLock, if set (tests), runs once prepare has, before the
	// pair state's LOCK is taken.
	beforeStateLock func()
	// beforeCopyRead stands in for the volumes' copy reads from the start,
	// a crash recovery's included (see subsystem.SetBeforeCopyRead): tests
	// hang them.
	beforeCopyRead func(vol string, off, length int64)
	// beforeFlush, if it returns an error, fails a flush of a volume
	// with it, unflushed (tests: a writeback error).
	beforeFlush func(vol string) error
	// beforeVolumeWrite stands in for the volumes' writes (see
	// subsystem.SetBeforeVolumeWrite): tests hang them.
	beforeVolumeWrite func(vol string)
	// beforeClose, if set (by tests), runs before a volume is closed:
	// a disk whose close (a flush, on NFS and FUSE) hangs.
	beforeClose func(vol string)
	// stopFlushWait replaces StopFlushWait (tests).
	stopFlushWait time.Duration
	// unreachablePatience replaces unreachablePatience (tests).
	unreachablePatience time.Duration
	// slowDisk replaces secondary.DefaultSlowDisk as how long a write
	// of the state directory waits before status says so (tests).
	slowDisk time.Duration
	// afterStopSave, if set, is called by a stop once it has saved the
	// pair state, before the control address closes (tests hold it).
	afterStopSave func()
	// drainCutShort, if set, is called by a drain whose wait ended
	// before everything shipped, before it says what is still held
	// (tests: acknowledgements that come meanwhile).
	drainCutShort func()
}

// OpenPrimary opens (creating if needed) the primary volumes and binds the NBD
// and control addresses.
func OpenPrimary(cfg *config.Config, log *slog.Logger, opts PrimaryOptions) (*Primary, error) {
	if opts.Context == nil {
		return openPrimary(cfg, log, opts)
	}
	return openUnlessStopped(opts.Context, 0, &opts.started, func() (*Primary, error) { return openPrimary(cfg, log, opts) },
		func(p *Primary) { p.close() })
}

func openPrimary(cfg *config.Config, log *slog.Logger, opts PrimaryOptions) (_ *Primary, err error) {
	defer func() {
		if err != nil {
			opts.Listeners.Close()
		}
	}()
	if log == nil {
		log = slog.Default()
	}
	if !cfg.HasPrimary() {
		return nil, errors.New("primary: the config has no [primary] section")
	}
	if len(cfg.Primary.Subsystems) == 0 {
		return nil, errors.New("primary: the config has no [[primary.subsystem]]")
	}
	if err := cfg.CheckSecurity(); err != nil {
		return nil, fmt.Errorf("primary: %w", err)
	}
	// Everything opened so far is released on an error; the result is nil
	// then, so the cleanup holds its own reference.
	p := &Primary{cfg: cfg, log: log.With("site", "primary"), byVol: map[string]*subsystem.Subsystem{},
		vols: map[string]*volume.Volume{}, start: time.Now(), history: &control.History{}, stateDir: opts.StateDir, promotion: opts.Promotion,
		fsys: opts.FS, gate: newWriteGate(), switched: make(chan struct{}), leaveOf: opts.leaveOf, couplingStore: opts.CouplingStore,
		letGo: make(chan struct{})}
	p.life, p.endLife = context.WithCancel(context.Background())
	if p.stateDir == "" {
		p.stateDir = PairStateDir(cfg)
	}
	defer func() {
		if err != nil {
			if p.actlog != nil {
				p.logEnded = closeLogWithin(p.actlog, p.slowDisk, p.log)
			}
			p.startFailed = true
			p.close()
		}
	}()
	p.slowDisk = cmp.Or(opts.slowDisk, secondary.DefaultSlowDisk)
	starting := watchStart(p.log, p.slowDisk)
	defer starting.end()
	if opts.started != nil {
		opts.started(starting)
	}
	// Before any file is read or written: a second primary of the session
	// would rewrite the timer's lease, the activity log and the pair state
	// under the running one, then fail on its addresses. Status answers
	// from then on, saying what the start waits for; and from the slow
	// disk's wait on if the lock has not come, its directory's making
	// (the lock's file is in it) or what opts.prepare reads first.
	lockPath := filepath.Join(p.stateDir, stateLockName)
	p.stateLock, err = lockThenServe(func() (io.Closer, error) {
		if opts.prepare != nil {
			pr, err := opts.prepare(starting)
			if err != nil {
				return nil, err
			}
			p.promotion = pr
		}
		if opts.beforeStateLock != nil {
			opts.beforeStateLock()
		}
		// Made on the first start only, as os.MkdirAll leaves one there.
		starting.step(p.stateDir)
		if _, err := disk.Or(opts.FS).Stat(p.stateDir); err != nil {
			if err := disk.Or(opts.FS).MkdirAll(p.stateDir, 0o755); err != nil {
				return nil, fmt.Errorf("primary: %w", err)
			}
		}
		starting.step(lockPath)
		lock, err := disk.Or(opts.FS).Lock(lockPath)
		if err != nil {
			if held := heldAfterStop(p.stateDir); held != "" {
				return nil, fmt.Errorf("primary: pair-state directory %s: %s: %w", p.stateDir, held, err)
			}
			return nil, fmt.Errorf("primary: pair-state directory %s is in use (is another primary of session %q running?): %w",
				p.stateDir, cfg.Session, err)
		}
		if opts.underStateLock != nil {
			pr, err := opts.underStateLock(starting)
			if err != nil {
				lock.Close()
				return nil, err
			}
			p.promotion = pr
		}
		// With the lock, before the address: a site that rejoined the
		// promoted site runs as its secondary on this control address
		// (duplex rejoin --yes), and a primary started there by mistake
		// is told so, not that the address is in use.
		if opts.StateDir == "" && opts.Promotion == nil {
			if err := p.failBackOrRefuse(opts.FS, starting); err != nil {
				lock.Close()
				return nil, err
			}
		}
		return lock, nil
	}, func() (err error) {
		p.early, err = p.serveStarting(cfg, "primary", "primary", "primary", cfg.Primary.Control, opts.Listeners.Control, starting, p.log)
		opts.Listeners.Control = nil // p's now
		return err
	}, starting, lockPath, p.slowDisk)
	if err != nil {
		return nil, err
	}
	starting.step(p.stateDir + " (the temporary files a kill left)")
	removeLeftTemps(opts.FS, p.stateDir, p.log)
	starting.step(filepath.Join(p.stateDir, failover.SwitchoverFile))
	if err := refuseSwitchedOver(p.stateDir, opts.FS); err != nil {
		return nil, err
	}
	// The timer starts above every stamp a previous run handed out, even
	// on a clock that went back: the secondary holds groups through them.
	starting.step(filepath.Join(p.stateDir, "generation.json"))
	if p.generation, err = openGeneration(p.stateDir, p.promotion, p.log); err != nil {
		return nil, fmt.Errorf("primary: %w", err)
	}
	starting.step(filepath.Join(p.stateDir, "timer.json"))
	if p.timer, err = timer.OpenPersistent(opts.FS, filepath.Join(p.stateDir, "timer.json"), opts.Clock, 0, p.log); err != nil {
		return nil, fmt.Errorf("primary: %w", err)
	}
	starting.watchLease(p.timer, filepath.Join(p.stateDir, "timer.json"))
	if p.promotion != nil {
		// Every stamp follows what the volumes held when promoted.
		p.timer.AtLeast(p.promotion.ConsistencyTime)
	}
	starting.step("the volumes")
	// A damaged pair state is refused below, once the volumes are open:
	// until then, every volume is taken as one it names.
	paired, pairedErr := pair.Sizes(opts.FS, p.stateDir)
	for _, sc := range cfg.Primary.Subsystems {
		vols := map[string]*volume.Volume{}
		var names []string
		for _, vc := range sc.Volumes {
			if size, ok := paired[vc.Name]; ok || pairedErr != nil {
				// The size the pair state holds: an image of that size
				// whose configured size changed since is a config to put
				// right, which volume.Open says.
				if !ok {
					size = int64(vc.Size)
				}
				if err := volumeImageThere(vc.Path, size, !ok); err != nil {
					return nil, fmt.Errorf("primary: volume %q: %w", vc.Name, primaryVolumeGone(p.stateDir, vc.Path, err))
				}
			}
			// A block device, or an image file (created with its
			// directory); without a configured size, its own size.
			v, err := volume.Open(vc.Path, int64(vc.Size))
			if err != nil {
				return nil, fmt.Errorf("primary: %w", err)
			}
			v.SetLogger(p.log)
			vols[vc.Name] = v
			p.vols[vc.Name] = v
			names = append(names, vc.Name)
			p.order = append(p.order, vc.Name)
		}
		side := sidefile.New(int64(cfg.Primary.SidefileLimit))
		side.SetPacing(sidefile.Pacing{Start: float64(cfg.Primary.PacingStart) / 100, MaxDelay: time.Duration(cfg.Primary.PacingMaxDelay)})
		ss := subsystem.New(sc.ID, p.timer, side, vols, names)
		p.subs = append(p.subs, ss)
		for _, n := range names {
			p.byVol[n] = ss
		}
	}
	if p.nbdTLS, err = tlsconf.PrimaryNBD(cfg); err != nil {
		return nil, fmt.Errorf("primary: %w", err)
	}
	p.dialer = opts.Dialer
	if p.dialer == nil {
		tlsConf, err := tlsconf.PrimaryLink(cfg)
		if err != nil {
			return nil, fmt.Errorf("primary: %w", err)
		}
		p.dialer = &transport.TCPDialer{Addr: cfg.Primary.Secondary, TLS: tlsConf}
	}
	p.copyRate = ratelimit.New(int64(cfg.Primary.CopyRateLimit))
	p.linkRate = ratelimit.New(int64(cfg.Primary.LinkRateLimit))
	p.dialer = &transport.LimitedDialer{Dialer: p.dialer, Limit: p.linkRate}
	// The sidefiles hold most of what the primary allocates; without a soft
	// limit the collector lets the heap grow to about three times that. An
	// explicit GOMEMLIMIT wins.
	if os.Getenv("GOMEMLIMIT") == "" {
		var total int64
		for _, ss := range p.subs {
			total += ss.Sidefile().Stats().Limit
		}
		debug.SetMemoryLimit(total + total/2 + 128<<20)
	}
	p.metrics = control.NewMetrics(cfg.Session, "primary", p.samples)
	var zstd *transport.Compressor
	if cfg.Primary.Compression == "zstd" {
		if zstd, err = transport.NewCompressor(cfg.Primary.CompressionLevel); err != nil {
			return nil, fmt.Errorf("primary: compression: %w", err)
		}
	}
	burstWait := time.Duration(cfg.Primary.BurstWait)
	if burstWait == 0 { // burst_wait = "off"; the mover takes 0 for its default
		burstWait = -1
	}
	p.mover = mover.New(mover.Config{Session: cfg.Session, Subsystems: p.subs, Timer: p.timer, Generation: p.generation,
		Interval: time.Duration(cfg.Interval), Dialer: p.dialer, Logger: p.log, Compressor: zstd, BurstWait: burstWait,
		Retransmit: opts.Retransmit, HandshakeTimeout: opts.HandshakeTimeout, CopyReadWait: opts.CopyReadWait, Coupled: cfg.Coupled(),
		OverwriteSecondary: opts.OverwriteSecondary, OnAcked: func(u recordset.Update) {
			if p.actlog != nil && u.Kind != recordset.KindMarker { // a marker marks no region
				p.actlog.Done(u.Volume, int64(u.Offset), int64(u.Length))
			}
		}})
	if tp := cfg.TokenPath(); tp != "" {
		if p.token, err = control.ReadToken(tp); err != nil {
			return nil, fmt.Errorf("primary: %w", err)
		}
	}
	var pvs []pair.Volume
	for _, name := range p.order {
		pvs = append(pvs, pair.Volume{Name: name, Subsystem: p.byVol[name], Size: p.vols[name].Size()})
	}
	sizes := map[string]int64{}
	for name, v := range p.vols {
		sizes[name] = v.Size()
	}
	if err := os.MkdirAll(p.stateDir, 0o755); err != nil {
		return nil, fmt.Errorf("primary: %w", err)
	}
	starting.step(filepath.Join(p.stateDir, "activity.log"))
	al, recovered, err := actlog.OpenFS(opts.FS, filepath.Join(p.stateDir, "activity.log"), sizes, actlog.DefaultRegion)
	if err != nil {
		// Without the log, the pairs fall back to a full copy after an
		// unclean stop, of the last run or of this one (the pair state
		// records that this run has no log).
		p.log.Error("activity log unusable: running without it; a full resync of every pair if the last stop or this run's stop is not clean",
			"err", err)
		al, recovered = nil, nil
		p.actlogErr = err
	}
	p.actlog = al
	p.beforeFlush, p.beforeClose, p.afterStopSave, p.drainCutShort = opts.beforeFlush, opts.beforeClose, opts.afterStopSave, opts.drainCutShort
	p.stopFlushWait = cmp.Or(opts.stopFlushWait, StopFlushWait)
	p.patience = cmp.Or(opts.unreachablePatience, unreachablePatience)
	p.flushes = map[string]*volumeFlushes{}
	for name := range p.vols {
		p.flushes[name] = &volumeFlushes{}
	}
	if al != nil {
		for _, ss := range p.subs {
			ss.SetActivityLog(actlog.WritePath{Log: al})
		}
		al.SetFlush(p.flushVolume, func(vol string, regions [][2]int64, err error) {
			for _, r := range regions {
				p.byVol[vol].AddFailedWrite(subsystem.FailedWrite{Volume: vol, Offset: r[0], Length: r[1], Err: err})
			}
		})
	}
	for _, ss := range p.subs {
		if opts.beforeCopyRead != nil {
			ss.SetBeforeCopyRead(opts.beforeCopyRead)
		}
		if opts.beforeVolumeWrite != nil {
			ss.SetBeforeVolumeWrite(opts.beforeVolumeWrite)
		}
	}
	starting.step("the pair state in " + p.stateDir)
	var rejoinSince int64
	if p.promotion != nil {
		// The pair state was made suspended as of it for the old
		// primary's rejoin (seedReverse, seedFailBack).
		rejoinSince = p.promotion.ConsistencyTime
	}
	p.pairs, err = pair.Open(pair.Options{Dir: p.stateDir, SuspendAfter: time.Duration(cfg.Primary.SuspendAfter), Logger: p.log,
		ActivityLog: al, Recovered: recovered, FS: opts.FS, CopyRate: p.copyRate, CopyReadWait: opts.CopyReadWait, SaveWait: p.slowDisk,
		RejoinSince: rejoinSince}, p.mover, pvs)
	if errors.Is(err, disk.ErrDamaged) {
		return nil, fmt.Errorf("primary: %w; without one, %s", err, recreatePairState(p.stateDir))
	}
	var lh *timer.LeaseHungError
	if errors.As(err, &lh) {
		return nil, fmt.Errorf("primary: %w (the timer's lease: %s, on the state directory's disk)", err, filepath.Join(p.stateDir, "timer.json"))
	}
	if err != nil {
		return nil, fmt.Errorf("primary: %w", err)
	}
	starting.end()
	if err := p.listen(cfg, "primary", "primary", cfg.Primary.NBD, "", Listeners{NBD: opts.Listeners.NBD}); err != nil {
		return nil, err
	}
	return p, nil
}

// closeLogWithin closes the activity log of a start that failed, and
// returns a channel closed once the close has ended: a start that
// failed on a disk that stopped answering (its timer's lease under the
// pair state's markers) would otherwise wait for the same disk in the
// log's last write, and never say why it failed. Not ended within wait,
// the log is given up (actlog.Log.Abandon): nothing was served, and its
// generation on disk holds every mark it held at the start; the state
// directory's lock is let go only once the close ends (see close).
func closeLogWithin(al *actlog.Log, wait time.Duration, log *slog.Logger) <-chan struct{} {
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		al.Close()
	}()
	select {
	case <-closed:
	case <-time.After(wait):
		log.Error("the start failed, and the activity log's last write has not ended (its disk stopped answering): given up; the log on disk holds the marks it held at the start",
			"waited", wait)
		al.Abandon()
	}
	return closed
}

// startWait follows a start's steps, for the status its control address
// answers while it starts (serveStarting), and, once a write of the
// state directory has waited slow (unless 0), and again each time the
// wait doubles, says it in the log too: a start held by a disk that
// stopped answering otherwise looks like one that goes on.
type startWait struct {
	began time.Time
	mu    sync.Mutex
	what  string
	since time.Time
	ended bool
	stop  chan struct{}
	// lease is the common timer once open, its file leasePath: see
	// current.
	lease     *timer.Timer
	leasePath string
}

// watchStart watches the start's steps (step) until end.
func watchStart(log *slog.Logger, slow time.Duration) *startWait {
	w := &startWait{began: time.Now(), stop: make(chan struct{})}
	if slow <= 0 {
		return w
	}
	go func() {
		t := time.NewTicker(min(max(slow/4, 10*time.Millisecond), time.Second))
		defer t.Stop()
		var warned string
		next := slow
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
			w.mu.Lock()
			what, since := w.current()
			w.mu.Unlock()
			if what != warned {
				warned, next = what, slow
			}
			if d := time.Since(since); what != "" && d >= next {
				log.Warn("starting: the start has waited on its disk (it may have stopped answering); status says the site is starting, and what it waits for, and commands are refused, until the start ends",
					"file", what, "waited", d.Round(time.Millisecond), "since", since.UTC().Format(time.RFC3339))
				next *= 2
			}
		}
	}()
	return w
}

// step says the start now writes what (a file, or what names it).
func (w *startWait) step(what string) {
	w.mu.Lock()
	w.what, w.since = what, time.Now()
	w.mu.Unlock()
}

// watchLease says the common timer is open, its lease in path: the
// start's stamps (its markers') may wait for the lease's write from
// then on.
func (w *startWait) watchLease(t *timer.Timer, path string) {
	w.mu.Lock()
	w.lease, w.leasePath = t, path
	w.mu.Unlock()
}

// current returns what the start waits for, and since when: its step,
// unless the start's stamps wait for the write of the timer's lease (the
// markers it makes before it serves, in the pair state's step), whose
// disk may be the one that stopped answering. Called with w.mu held.
func (w *startWait) current() (string, time.Time) {
	if w.what != "" && w.lease != nil {
		if d, waiting := w.lease.LeaseWait(); d > 0 && waiting > 0 {
			return "the write of the timer's lease " + w.leasePath + " (the start's stamps wait for it)", time.Now().Add(-d)
		}
	}
	return w.what, w.since
}

// end ends the watch (again: nothing).
func (w *startWait) end() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.ended {
		w.ended, w.what = true, ""
		close(w.stop)
	}
}

// failBackOrRefuse serves a site promoted back by a switchover as the
// primary again (failBack), and refuses one that rejoined the promoted
// site: it is that site's secondary, its volumes take that site's data,
// and writes served here would be lost.
func (p *Primary) failBackOrRefuse(fsys disk.FS, starting *startWait) (err error) {
	starting.step(filepath.Join(p.stateDir, "promotion.json"))
	if p.promotion, err = failBack(p.cfg, fsys, p.stateDir, p.log); err != nil {
		return fmt.Errorf("primary: %w", err)
	}
	p.promotedBack = p.promotion != nil
	if p.promotedBack {
		// Promoted by a switchover back as the secondary of the
		// reverse direction: its state is the reversed config's.
		if rev, err := p.cfg.Reversed(); err == nil {
			p.leaveOf = rev
		}
	}
	starting.step(filepath.Join(p.stateDir, rejoinFile))
	if r, err := readRejoin(fsys, p.stateDir); err == nil {
		return fmt.Errorf("primary: this site rejoined the promoted site of session %q at %s as its secondary (%s): "+
			"duplex rejoin --yes runs it; the primary of the session is the promoted site", p.cfg.Session, control.FormatWall(time.Unix(0, r.At)),
			filepath.Join(p.stateDir, rejoinFile))
	} else if !errors.Is(err, errNotRejoined) {
		return fmt.Errorf("primary: %w", err)
	}
	return nil
}

func (p *Primary) close() error {
	p.endLife()
	p.early.Close()
	p.listeners.close()
	ends := endUpdatesOf(p.byVol)
	if p.startFailed {
		// Ending the updates takes each subsystem's ordering lock, which
		// a crash recovery's copy may hold for ever, its stamp waiting
		// for a hung timer's lease (the start fails so): the failed start
		// would wait the stop's wait on the volumes for nothing.
		ends = nil
	}
	closed, err := closeVolumes(p.vols, p.stopFlushWait, p.beforeClose, ends)
	if err != nil {
		err = fmt.Errorf("primary: %w", err)
	}
	// Last: every file of the pair state is closed.
	if p.stateLock == nil {
		p.letGone()
		return err
	}
	// The stop gave the lease's write up (timer.Abandon), and its rename,
	// already in the kernel, may still land once the disk answers: a next
	// run let in before then would find its mark replaced by this lower
	// one, below the stamps it handed out. So may a volume's write or
	// close given up (see closeVolumes): the next run would copy the
	// regions the activity log marks to the secondary, and the late
	// write then change them on the primary's volume alone, perhaps over
	// a newer write acknowledged meanwhile. So may the pair state's save
	// and the activity log's write the stop gave up: the next run would
	// find the state it read replaced by this older one, and its own
	// generation of the log, with the marks of writes it acknowledged,
	// overwritten in its slot.
	state := []stateEnd{{"the pair manager's loop (a save of the pair state or a write of the activity log)", p.pairsEnded},
		{"the activity log's last write", p.logEnded}, {"the suspension of the pairs whose writes failed", p.failedSuspended}}
	if p.pairs != nil {
		state = append(state, stateEnd{"the pair state's save", p.pairs.EndSaves()})
	}
	if under := p.givenUp(state, err); len(under) > 0 {
		// Said here and to a start in this process meanwhile: a refusal
		// that blames another primary of the session would send the
		// operator looking for one.
		what := strings.Join(under, ", ")
		since := time.Now()
		p.log.Warn("stopped; the pair-state directory stays locked until what the stop gave up on its disk, which stopped answering, has ended "+
			"(it may still land): a primary of the session started meanwhile is refused", "under_way", what, "dir", p.stateDir)
		held := holdAfterStop(p.stateDir, "the primary", what, "let go of the pair-state directory", since)
		go func(lock io.Closer) {
			if p.timer != nil {
				p.timer.AwaitWrites()
			}
			for _, e := range state {
				if e.ch != nil {
					<-e.ch
				}
			}
			<-closed
			lock.Close()
			letGoAfterStop(p.stateDir, held)
			p.log.Info("let go of the pair-state directory: what the stop gave up has ended", "under_way", what,
				"held_for", time.Since(since).Round(time.Millisecond), "dir", p.stateDir)
			p.letGone()
		}(p.stateLock)
		return err
	}
	p.stateLock.Close()
	p.letGone()
	return err
}

// stateEnd is the end of something that writes the pair-state directory,
// which a stop may go on without: what it is, and closed once it has ended
// (nil: never begun).
type stateEnd struct {
	what string
	ch   <-chan struct{}
}

// givenUp names what the stop gave up on the state directory's disk and
// may still land: the timer's lease write, the volumes' write or close
// (closeErr, their close's error) and what of state has not ended; none
// if nothing.
func (p *Primary) givenUp(state []stateEnd, closeErr error) []string {
	var under []string
	if p.timer != nil && leaseWriting(p) {
		under = append(under, "the timer's lease write")
	}
	under = append(under, volumesGivenUp(closeErr)...)
	for _, e := range state {
		if !ended(e.ch) {
			under = append(under, e.what)
		}
	}
	return under
}

// LetGo is closed once the stopped primary has let its pair-state
// directory go: at once, unless its stop gave up a write on a disk that
// stopped answering, which may still land; then once it has ended. A
// primary of the session started in this process before then is refused
// (saying so): it would find what it reads replaced by this run's older
// state.
func (p *Primary) LetGo() <-chan struct{} { return p.letGo }

func (p *Primary) letGone() { p.letGoOnce.Do(func() { close(p.letGo) }) }

// heldDirs are the state directories (a primary's pair state, a promoted
// site's promotion directory) that a stopped site of this process still
// holds, for the writes its stop gave up: what they are and since when.
var heldDirs struct {
	sync.Mutex
	m map[string]*heldDir
}

// heldDir is a stop's hold of a directory. Matched by its address, not its
// text: two stops of one directory in the same second that gave up the
// same things read alike, and the first one's let-go must not forget the
// second's.
type heldDir struct{ why string }

// holdAfterStop records that the stopped run (e.g. "the primary") holds
// dir until what it gave up has ended, since since, its log saying
// letGoLine then; it returns the record, for letGoAfterStop.
func holdAfterStop(dir, run, what, letGoLine string, since time.Time) *heldDir {
	heldDirs.Lock()
	defer heldDirs.Unlock()
	if heldDirs.m == nil {
		heldDirs.m = map[string]*heldDir{}
	}
	held := &heldDir{why: fmt.Sprintf("still held by this process's last run of %s, stopped at %s: "+
		"its stop gave up %s on a disk that stopped answering, which may still land; it is let go once that has ended "+
		"(the log says %q), and a start goes on then", run, since.UTC().Format(time.RFC3339), what, letGoLine)}
	heldDirs.m[filepath.Clean(dir)] = held
	return held
}

// letGoAfterStop forgets held, holdAfterStop's record of dir: not a later
// run's, which may have taken dir and stopped since its LOCK was let go.
func letGoAfterStop(dir string, held *heldDir) {
	heldDirs.Lock()
	defer heldDirs.Unlock()
	if heldDirs.m[filepath.Clean(dir)] == held {
		delete(heldDirs.m, filepath.Clean(dir))
	}
}

// heldAfterStop says why a stopped site of this process still holds
// dir, "" if none does.
func heldAfterStop(dir string) string {
	heldDirs.Lock()
	defer heldDirs.Unlock()
	if h := heldDirs.m[filepath.Clean(dir)]; h != nil {
		return h.why
	}
	return ""
}

// endUpdatesOf returns the EndUpdates of the subsystem of byVol that
// serves a volume, a closed channel for a volume no subsystem serves (a
// start that failed early).
func endUpdatesOf(byVol map[string]*subsystem.Subsystem) func(vol string) <-chan struct{} {
	return func(vol string) <-chan struct{} {
		if ss := byVol[vol]; ss != nil {
			return ss.EndUpdates(vol)
		}
		ended := make(chan struct{})
		close(ended)
		return ended
	}
}

// closeVolumes closes vols, each once the updates under way to it have
// ended, later ones refused (endUpdates, if set, ends them), waiting
// for their closes for wait (the stop's wait on a volume's disk;
// StopFlushWait if 0, an open that failed): a write held up by the disk
// lands whenever it answers, and on NFS or FUSE a close writes back what
// the file system holds, and waits for a disk that stopped answering as
// a flush does. A close
// that has not ended by then is left to end (or not) in the background,
// and named in the error; closed is closed once every close has ended,
// for the stop to hold its LOCK until then. What a clean stop counts on
// is on the disk already: the stop's flushes passed before it saved its
// state. before, if set (tests), runs before each close.
func closeVolumes(vols map[string]*volume.Volume, wait time.Duration, before func(vol string), endUpdates func(vol string) <-chan struct{}) (closed <-chan struct{}, _ error) {
	ended := make(chan string, len(vols))
	// writing are the volumes whose updates under way have not ended: a
	// close given up under one was given up under a client's write.
	var writingMu sync.Mutex
	writing := map[string]bool{}
	for name := range vols {
		writing[name] = true
	}
	for name, v := range vols {
		go func() {
			if endUpdates != nil {
				<-endUpdates(name)
			}
			writingMu.Lock()
			delete(writing, name)
			writingMu.Unlock()
			if before != nil {
				before(name)
			}
			v.Close()
			ended <- name
		}()
	}
	all := make(chan struct{})
	left := maps.Clone(vols)
	waitAll := func() {
		for len(left) > 0 {
			delete(left, <-ended)
		}
		close(all)
	}
	wait = cmp.Or(wait, StopFlushWait)
	t := time.NewTimer(wait)
	defer t.Stop()
	for len(left) > 0 {
		select {
		case name := <-ended:
			delete(left, name)
		case <-t.C:
			names := slices.Sorted(maps.Keys(left))
			err := &closesGivenUp{msg: fmt.Sprintf("the close of volume %s has not ended within %s (its disk stopped answering, under a write or the close's "+
				"own flush on NFS and FUSE): the stop goes on without it", strings.Join(names, ", "), wait)}
			writingMu.Lock()
			for _, name := range names {
				if writing[name] {
					err.under = append(err.under, "a write to volume "+name)
				} else {
					err.under = append(err.under, "the close of volume "+name)
				}
			}
			writingMu.Unlock()
			go waitAll()
			return all, err
		}
	}
	close(all)
	return all, nil
}

// closesGivenUp is closeVolumes' error: the closes it gave up, and under
// says, per volume, whether a client's write to it or its close had not
// ended.
type closesGivenUp struct {
	msg   string
	under []string
}

func (e *closesGivenUp) Error() string { return e.msg }

// volumesGivenUp names what of the volumes closeVolumes' error, err, says
// the stop gave up: none for nil.
func volumesGivenUp(err error) []string {
	if err == nil {
		return nil
	}
	var g *closesGivenUp
	if errors.As(err, &g) && len(g.under) > 0 {
		return g.under
	}
	return []string{"a volume's write or close"}
}

// Mover returns the data mover.
func (p *Primary) Mover() *mover.Mover { return p.mover }

// Run serves NBD and the control address and ships updates until ctx ends.
// Then it stops taking writes, ships everything it holds (for at most
// drainTimeout), and closes the volumes.
func (p *Primary) Run(ctx context.Context, drainTimeout time.Duration) error {
	if n := int64(p.cfg.Primary.BurstReserve); n > 0 {
		go func() {
			start := time.Now()
			subsystem.Reserve(n)
			p.log.Info("burst reserve populated", "bytes", n, "took", time.Since(start).Round(time.Millisecond))
		}()
	}
	mctx, stopMover := context.WithCancel(context.Background())
	moverDone := make(chan struct{})
	go func() {
		defer close(moverDone)
		p.mover.Run(mctx)
	}()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	var srv *nbd.Server
	if p.nbdLn != nil {
		srv = &nbd.Server{Exports: primaryExports{byVol: p.byVol, vols: p.vols, order: p.order, gate: p.gate, wait: p.commitWait(), flush: p.clientFlush}, Logger: p.log.With("component", "nbd"), TLS: p.nbdTLS}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(p.nbdLn); err != nil {
				errs <- fmt.Errorf("primary NBD: %w", err)
			}
		}()
		p.log.Info("serving NBD", "addr", p.nbdLn.Addr().String(), "exports", p.order)
	}
	cctx, stopControl := context.WithCancel(context.Background())
	var leaveEnded <-chan struct{}
	if p.leaveOf != nil && p.leaveOf.Coupled() {
		_, leaveEnded = finishLeave(cctx, p.leaveOf, p.fsys, p.couplingStore, p.log)
	}
	var cs *control.Server
	if p.ctlLn != nil {
		cs = &control.Server{Status: p.Status, Metrics: p.metrics.Handler(), Pairs: pairOps{p}, Token: p.token, TLS: p.ctlTLS, Logger: p.log, Early: p.early,
			SetRates: p.SetRates, Switchover: p.Switchover, History: p.history, Changes: p.changedRegions(), Rejoin: p.rejoin(),
			Sites: sessionSites(p.cfg, control.Site{Role: "primary", Control: p.ControlAddr(), NBD: p.NBDAddr()})}
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
		p.observeLag(cctx)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.history.Run(cctx, p.historySample)
	}()
	pctx, stopPairs := context.WithCancel(context.Background())
	pairsDone := make(chan struct{})
	p.pairsEnded = pairsDone
	go func() {
		defer close(pairsDone)
		p.pairs.Run(pctx)
	}()
	var runErr error
	switchedOver := false
	select {
	case <-ctx.Done():
	case runErr = <-errs:
	case <-p.switched:
		// The other site holds everything and serves the volumes: the
		// replication stops as at a clean stop, while NBD (refusing
		// writes) and status go on until ctx ends.
		switchedOver = true
	}
	// Before anything is saved: an operator's command answered from here
	// on would change the pairs after the stop saved them (the saved state
	// no longer clean, or the command lost at the next start). Those
	// under way answer first, and their changes are in what is saved.
	if switchedOver {
		cs.StopChanges("this site was switched over: the other site is the session's primary, and pair operations run there; " +
			"this site takes no command that changes its state (status still answers)")
	} else {
		cs.StopChanges(control.Stopping("the primary"))
		select {
		case <-p.switched:
			// A switchover under way handed the session over meanwhile.
			switchedOver = true
		default:
		}
	}
	// A switchover in doubt refuses the writes it holds: none may be
	// acknowledged now, and the NBD server's close waits for them.
	p.endLife()
	// The stop's wait for the volumes' flushes, and for the NBD clients'
	// requests before them: a client's FLUSH (or a write under writeback
	// pressure) held up by a disk that stopped answering must not keep the
	// primary from stopping either.
	fctx, fcancel := context.WithTimeout(context.Background(), p.stopFlushWait)
	defer fcancel()
	// No new writes, then ship what is held: a clean stop loses nothing.
	var requestsLeft error
	if srv != nil && !switchedOver {
		requestsLeft = srv.CloseWithin(fctx)
	}
	stopPairs()
	// The disk of the pair state and the activity log (the state
	// directory) may have stopped answering too: the pair manager's loop
	// held up in a save of the state or a write of the log, the stop's
	// save and the log's last write are each given up after
	// StopFlushWait (see stateWait), the pair state on disk then the last
	// one saved while running, which says not clean.
	sw := &stateWait{d: p.stopFlushWait}
	stateHung := p.awaitPairs(sw, pairsDone)
	// No write is under way now (one left by the NBD server's close makes
	// the stop not clean, below). One the volume failed since the pair
	// manager last looked suspends its pair before the drain, which
	// ships the suspension too: the secondary then reports the pair
	// suspended, not duplex, while this site is down. Bounded as the
	// drain is; with the link down, the restart tells the secondary.
	// After a switchover the other site is the primary, and Close alone
	// acts on them, as before.
	unclean, hung := p.flushVolumes(fctx, sw)
	if requestsLeft != nil && unclean == "" {
		// A write still under way may yet reach its volume, after the
		// state says the secondary's copy is the primary's.
		unclean = fmt.Sprintf("an NBD client's request was still under way after %s (%v): a write of it may yet reach its volume; the next start copies what may differ",
			p.stopFlushWait, requestsLeft)
	}
	if !switchedOver {
		// The suspension stamps its marker under the subsystem's lock,
		// and waits for the timer's lease as a write does.
		suspended := make(chan struct{})
		p.failedSuspended = suspended
		go func() {
			defer close(suspended)
			p.pairs.SuspendFailedWrites()
		}()
		p.awaitLease(sw, suspended, "the suspension of a pair whose write failed")
	}
	tctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	dctx, cancelCause := context.WithCancelCause(tctx)
	go p.abandonWhenUnreachable(dctx, cancelCause, time.Now())
	go p.giveUpOnLease(dctx, cancelCause, p.stopFlushWait, sw.hung)
	clean := false
	var err error
	// notClean is the stop's error if nothing more particular (a
	// volume's close that hangs, a failed save) comes after it.
	var notClean error
	markersLeft, markersOnly := 0, false
	if !switchedOver && !sw.hung {
		markersLeft, markersOnly = p.onlyMarkersAnnouncedAgain(dctx)
	}
	if !markersOnly {
		err = p.mover.Quiesce(dctx)
	}
	if err == nil {
		err = p.leaseWritten(dctx)
	}
	if err != nil {
		var lease *timer.LeaseHungError
		var down *linkDownError
		if errors.As(context.Cause(dctx), &down) {
			// Its words, not the quiesce's "context canceled".
			err = fmt.Errorf("primary: the stop's drain: %w; %d record sets not yet acknowledged are left for the next start, "+
				"which copies the regions the activity log marks", down, p.mover.Stats().HeldWithUpdates)
		}
		if errors.As(context.Cause(dctx), &lease) {
			sw.hung = true
			err = fmt.Errorf("primary: the stop's drain: %w", lease)
			p.log.Error("stopping uncleanly, with updates not yet at the secondary: the drain waits for the write of the timer's lease, which has not ended "+
				"(its disk stopped answering); given up, not clean: the next start copies the regions the activity log marks",
				"lease_write", lease.D.Round(time.Millisecond), "stamps_waiting", lease.Waiting, "held_record_sets", p.mover.Stats().HeldWithUpdates)
		} else {
			p.log.Error("stopping with updates not yet at the secondary", "err", err, "held_record_sets", p.mover.Stats().HeldWithUpdates)
		}
		if runErr == nil {
			runErr = err
		}
	} else if unclean != "" {
		// Not clean is an error of the stop, as the lease's or the
		// save's hang is: the process must not exit 0 after saying
		// "stopped cleanly" while the next start has regions to copy and
		// a write may yet reach a volume.
		p.log.Error("stopping uncleanly: the pair state is saved not clean: " + unclean)
		notClean = fmt.Errorf("primary: the stop is not clean: %s", unclean)
	} else if stateHung {
		why := "the pair state's save has not ended within " + p.stopFlushWait.String() +
			" (its disk stopped answering): the pair state on disk is the last one saved while running, not clean, and the next start copies the regions the activity log marks"
		p.log.Error("stopping uncleanly: " + why)
		notClean = fmt.Errorf("primary: the stop is not clean: %s", why)
	} else if markersOnly {
		clean = true
		p.log.Info("stopping without waiting for the secondary, which is not linked: every pair is suspended (or deleted), its writes "+
			"in the changed regions that its resume (or the old primary's rejoin) copies, and what is held for the secondary is only "+
			"the pairs' state markers, which the next start announces again from the pair state", "held_record_sets", markersLeft)
	} else {
		clean = true
		p.log.Info("everything shipped to the secondary", "consistency_time", control.FormatTime(p.mover.Stats().Acked.Time))
	}
	sctx, scancel := sw.ctx()
	defer scancel()
	savedClean := clean
	if err := p.pairs.CloseWithin(sctx, clean); err != nil {
		savedClean = false
		if errors.Is(err, pair.ErrSaveHung) {
			sw.hung = true
			p.log.Error("stopping uncleanly: "+err.Error()+"; the next start copies the regions the activity log marks", "waited", p.stopFlushWait)
		}
		if runErr == nil {
			runErr = err
		}
	}
	if p.afterStopSave != nil {
		p.afterStopSave()
	}
	if p.actlog != nil {
		closed := make(chan struct{})
		p.logEnded = closed
		go func(fctx context.Context, clean bool) {
			defer close(closed)
			if clean {
				p.actlog.CleanWithin(fctx)
			}
			p.actlog.Close()
		}(fctx, len(hung) == 0)
		lctx, lcancel := sw.ctx()
		defer lcancel()
		select {
		case <-closed:
		case <-lctx.Done():
			if savedClean {
				// The next start finds the pair state clean and
				// discards the log's marks: nothing it needs is lost,
				// and the stop stays clean (Run returns nil).
				p.log.Warn("stopping: the activity log's last write has not ended (its disk stopped answering); given up. "+
					"The stop is clean all the same: the pair state is saved clean, and the next start needs none of the log's marks",
					"waited", p.stopFlushWait)
			} else {
				p.log.Error("stopping: the activity log's last write has not ended (its disk stopped answering); given up, its last write that ended marks every region of a write acknowledged",
					"waited", p.stopFlushWait)
			}
			p.actlog.Abandon()
		}
	}
	cancel()
	cancelCause(nil)
	stopMover()
	// The mover's cut stamps under the subsystem's lock: with the timer's
	// lease on a disk that stopped answering, it waits for the lease's
	// write, and the stop goes on without it, as without the timer's last
	// write (the process exits, and neither stamp nor ship anything).
	if p.awaitLease(sw, moverDone, "the mover's cut") {
		if sw.hung {
			// The state directory's disk stopped answering: the last
			// write would wait with it, begun too late for awaitLease
			// (which does not wait then) to see it under way. Given up
			// unbegun, the mark on disk, above every stamp, stays, and
			// the next start stamps from there, as after a crash.
			p.timer.Abandon()
		}
		closed := make(chan struct{})
		var err error
		go func() {
			defer close(closed)
			err = p.timer.Close()
		}()
		if p.awaitLease(sw, closed, "the timer's last write") && err != nil && runErr == nil && !sw.hung {
			runErr = fmt.Errorf("primary: %w", err)
		}
	}
	if switchedOver {
		p.log.Info("switched over: replication stopped; NBD refuses writes, status goes on until the primary is stopped")
		select {
		case <-ctx.Done():
		case err := <-errs:
			if runErr == nil {
				runErr = err
			}
		}
		if srv != nil {
			cctx, ccancel := context.WithTimeout(context.Background(), p.stopFlushWait)
			if err := srv.CloseWithin(cctx); err != nil {
				p.log.Error("stopping with an NBD client's request under way (its volume's disk may have stopped answering)", "err", err)
				if runErr == nil {
					runErr = fmt.Errorf("primary: an NBD client's request was still under way after %s: %w", p.stopFlushWait, err)
				}
			}
			ccancel()
		}
	}
	stopControl()
	wg.Wait()
	waitLeaveEnded(leaveEnded, p.stopFlushWait, p.log)
	// A volume whose flush did not end above is not flushed again; the
	// others are, each within StopFlushWait too.
	fctx, fcancel = context.WithTimeout(context.Background(), p.stopFlushWait)
	defer fcancel()
	for _, name := range p.order {
		if hung[name] {
			continue
		}
		if err := flushWithin(fctx, name, p.syncVolume); err != nil && runErr == nil {
			runErr = err
		}
	}
	if err := p.close(); err != nil {
		p.log.Error("stopping: " + err.Error())
		if runErr == nil {
			runErr = err
		}
	}
	if runErr == nil {
		runErr = notClean
	}
	return runErr
}

// stateWait bounds the stop's waits on the disk of the state directory:
// each waits up to d, from when it begins (not while the volumes' flushes
// are waited for), and once one has given up, the disk not answering,
// the later ones do not wait again.
type stateWait struct {
	d    time.Duration
	hung bool
}

func (w *stateWait) ctx() (context.Context, context.CancelFunc) {
	if w.hung {
		return context.WithTimeout(context.Background(), 0)
	}
	return context.WithTimeout(context.Background(), w.d)
}

// awaitPairs waits for the pair manager's loop to end (done), once told
// to. A loop held up by a save of the pair state, or a write of the
// activity log, whose disk stopped answering is waited for until ctx
// ends, and awaitPairs then reports it so: the stop goes on without it,
// its save renaming nothing once the stop gives saves up
// (pair.Manager.CloseWithin), and the log abandoned. A loop held up by
// anything else is waited for as before.
func (p *Primary) awaitPairs(sw *stateWait, done <-chan struct{}) (stateHung bool) {
	ctx, cancel := sw.ctx()
	defer cancel()
	select {
	case <-done:
		return false
	case <-ctx.Done():
	}
	if logWrite, save, _ := p.stateWaits(); save > 0 || logWrite > 0 || leaseWriting(p) {
		sw.hung = true
		p.log.Error("stopping: the pair manager's save of the pair state, or its write of the activity log, has not ended (their disk stopped answering); the stop goes on without it",
			"save", save.Round(time.Millisecond), "log_write", logWrite.Round(time.Millisecond))
		return true
	}
	<-done
	return false
}

// awaitLease waits for done, as awaitPairs does: if it has not come
// within the stop's wait on the state directory's disk, and the timer's
// lease has been writing that long, the stop goes on without it, the
// lease's writes given up (timer.Abandon), and awaitLease returns false
// (logged, naming what).
func (p *Primary) awaitLease(sw *stateWait, done <-chan struct{}, what string) bool {
	ctx, cancel := sw.ctx()
	defer cancel()
	select {
	case <-done:
		return true
	case <-ctx.Done():
	}
	if d, waiting := p.timer.LeaseWait(); d > 0 {
		sw.hung = true
		// Its writes rename nothing once the disk answers: the mark on
		// disk, above every stamp, stays.
		p.timer.Abandon()
		p.log.Error("stopping: "+what+" waits for the write of the timer's lease, which has not ended (its disk stopped answering); the stop goes on without it",
			"lease_write", d.Round(time.Millisecond), "stamps_waiting", waiting)
		return false
	}
	// Held by anything else: waited for as before.
	<-done
	return true
}

// giveUpOnLease ends a drain (cancel), the stop's or an operator's, once
// the timer's lease has been writing for wait, or at once if the stop
// already gave up on the state directory's disk (hung): every stamp
// waits for it, the mover's cut among them, so the drain ships nothing
// more, and its own timeout (minutes) would hold the stop, or the
// operator's command, that long.
func (p *Primary) giveUpOnLease(ctx context.Context, cancel context.CancelCauseFunc, wait time.Duration, hung bool) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		if d, waiting := p.timer.LeaseWait(); d > 0 && (hung || d >= wait) {
			cancel(&timer.LeaseHungError{D: d, Waiting: waiting})
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// volumeFlushes stands between the NBD clients' flushes of a volume and
// the activity log's. A writeback error is reported to one fdatasync
// only: once a client's flush has seen it, the log's next flush passes
// and would unmark regions whose data may not be on the disk. failed
// keeps a client's error for the log's next flush to return instead.
type volumeFlushes struct {
	// mu is held shared by the clients' flushes and exclusively by the
	// log's, so that a client's flush that failed has said so before a
	// log's flush that passed could unmark anything.
	mu       sync.RWMutex
	failedMu sync.Mutex
	failed   error
}

func (f *volumeFlushes) take() error {
	f.failedMu.Lock()
	defer f.failedMu.Unlock()
	err := f.failed
	f.failed = nil
	return err
}

// clientFlush is an NBD client's FLUSH of volume vol, or a FUA write's.
// If it fails, the pair is suspended with the regions the activity log
// marks for vol: a failed fdatasync does not say which pages it could not
// write, and every write since the volume's last flush that passed is in
// a marked region (see actlog.SetFlush). Without the log, the whole
// volume is to copy again.
func (p *Primary) clientFlush(vol string) error {
	f := p.flushes[vol]
	f.mu.RLock()
	err := p.syncVolume(vol)
	if err != nil {
		err = fmt.Errorf("an NBD client's flush: %w", err)
		f.failedMu.Lock()
		if f.failed == nil {
			f.failed = err
		}
		f.failedMu.Unlock()
	}
	f.mu.RUnlock()
	if err == nil {
		return nil
	}
	if p.actlog != nil && p.actlog.Off() == nil {
		// The log's flush of vol returns the error, and hands its
		// regions over as for a flush of its own that failed.
		if ferr := p.actlog.Flush(context.Background(), vol); ferr != nil {
			p.log.Error("a client's flush of a volume failed; its pair is suspended with the regions to copy again", "volume", vol, "err", ferr)
		}
		if p.actlog.Off() == nil {
			return err
		}
	}
	f.take()
	p.log.Error("a client's flush of a volume failed, and no activity log says which regions to copy again: its pair is suspended to copy all of it",
		"volume", vol, "err", err)
	p.byVol[vol].AddFailedWrite(subsystem.FailedWrite{Volume: vol, Offset: 0, Length: p.vols[vol].Size(), Err: err})
	return err
}

// flushVolume is the activity log's flush of volume vol (see
// volumeFlushes).
func (p *Primary) flushVolume(vol string) error {
	f := p.flushes[vol]
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.take(); err != nil {
		return err
	}
	return p.syncVolume(vol)
}

// syncVolume makes the writes volume vol took durable (fdatasync).
func (p *Primary) syncVolume(vol string) error {
	if p.beforeFlush != nil {
		if err := p.beforeFlush(vol); err != nil {
			return fmt.Errorf("volume %s: flush: %w", vol, err)
		}
	}
	return p.vols[vol].Flush()
}

// StopFlushWait is how long a stop waits for a volume's flush, before it
// saves the pair state. A flush that has not ended by then (its disk, or
// the NFS or iSCSI target behind it, stopped answering) must not keep the
// primary from stopping, nor be taken as passed: the state is saved not
// clean, so the next start copies what the activity log marks, as after a
// crash. 30 s is well past an fdatasync of a loaded but working disk
// (seconds, at worst, under writeback pressure) and well within what a
// service manager gives a stop (systemd's default is 90 s).
const StopFlushWait = 30 * time.Second

// flushVolumes makes every write the volumes took durable before the stop
// saves the pair state, which a clean stop saves with no region to copy
// again, waiting for the flushes until ctx ends. A volume whose flush
// fails has its pair suspended with the regions the activity log marks
// (see actlog.SetFlush), whose data may not be on its disk: every region
// not marked was flushed before it was unmarked. It returns why the stop
// must not be clean, "" if it may: a flush that failed without the log to
// say which regions, or one that did not end in time, and the volumes
// whose flush did not end.
func (p *Primary) flushVolumes(ctx context.Context, sw *stateWait) (unclean string, hung map[string]bool) {
	hung = map[string]bool{}
	if p.actlog != nil {
		// Through the log even once it is off: a flush of its own, under
		// way or ended since the pair manager last took its result, may
		// have failed, and the kernel reports a writeback error to that
		// fdatasync alone, so a flush made here instead would pass.
		// Its waits for the volumes' flushes end with ctx; its write of
		// the regions it unmarks, on the state directory's disk, is
		// waited for as the state's other writes are (sw).
		flushed := make(chan error, 1)
		go func() { flushed <- p.actlog.Flush(ctx) }()
		var err error
		select {
		case err = <-flushed:
		case <-ctx.Done():
			wctx, cancel := sw.ctx()
			select {
			case err = <-flushed:
			case <-wctx.Done():
				cancel()
				sw.hung = true
				p.log.Error("stopping: the activity log's write has not ended (its disk stopped answering)", "waited", p.stopFlushWait)
				return fmt.Sprintf("the activity log's write has not ended within %s (its disk stopped answering): the next start copies the regions the log on disk marks",
					p.stopFlushWait), hung
			}
			cancel()
		}
		off := p.actlog.Off() != nil
		if err != nil {
			p.log.Error("stopping: a volume's flush failed or did not end; a failed one's pair is suspended with the regions to copy again (all of it with the activity log off)", "err", err)
		}
		for name := range p.actlog.FlushesUnderWay() {
			hung[name] = true
		}
		switch next := "the next start copies the regions the activity log marks"; {
		case errors.Is(err, actlog.ErrFlushPending):
			if off {
				next = "no activity log says which regions to copy again"
			}
			unclean = fmt.Sprintf("the flush of volume %s did not end within %s: its data is not known to be on its disk; %s",
				strings.Join(slices.Sorted(maps.Keys(hung)), ", "), p.stopFlushWait, next)
		case err != nil && off:
			unclean = fmt.Sprintf("a volume's flush failed (%v), and no activity log says which regions to copy again", err)
		}
		return unclean, hung
	}
	var failed []string
	for _, name := range p.order {
		if err := flushWithin(ctx, name, p.flushVolume); err != nil {
			p.log.Error("stopping: a volume's flush failed or did not end", "volume", name, "err", err)
			failed = append(failed, name)
			if errors.Is(err, actlog.ErrFlushPending) {
				hung[name] = true
			}
		}
	}
	if len(failed) > 0 {
		unclean = fmt.Sprintf("the flush of volume %s failed or did not end within %s, and no activity log says which regions to copy again",
			strings.Join(failed, ", "), p.stopFlushWait)
	}
	return unclean, hung
}

// flushWithin calls flush(vol) in a goroutine of its own, and returns its
// error, or, wrapping actlog.ErrFlushPending, that it has not ended when
// ctx does: an fdatasync cannot be called off, and is left to end (or not)
// in the background.
func flushWithin(ctx context.Context, vol string, flush func(vol string) error) error {
	done := make(chan error, 1)
	go func() { done <- flush(vol) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("volume %s: %w", vol, actlog.ErrFlushPending)
	}
}

// activityLogOff says why this run goes without its activity log, and
// what that means; "" while the log is kept.
func (p *Primary) activityLogOff() string {
	const means = "a full resync of every pair if this run does not stop cleanly; the log is kept again from the next start that opens it, clean or not"
	if p.actlog == nil {
		if p.actlogErr == nil {
			return ""
		}
		return fmt.Sprintf("could not be opened at start (%v): %s", p.actlogErr, means)
	}
	if err := p.actlog.Off(); err != nil {
		return fmt.Sprintf("could not be written (%v): %s", err, means)
	}
	return ""
}

// Status reports the primary's state per the contract.
func (p *Primary) Status() control.Status {
	if st, ok := p.switchedStatus(); ok {
		return st
	}
	// The pairs first: the acknowledgement read after them is at least the
	// one they were updated with, which ConsistentAt relies on.
	pairs := p.pairs.Pairs()
	ms := p.mover.Stats()
	var used, limit int64
	for _, ss := range p.subs {
		st := ss.Sidefile().Stats()
		used += st.Used
		limit += st.Limit
	}
	link := "disconnected"
	if ms.Connected {
		link = "connected"
	}
	st := control.Status{
		Session: p.cfg.Session, Role: "primary",
		ConsistencyTime: control.FormatTime(ms.Acked.RecoversTo()), LagSeconds: control.LagSample(ms.Acked.RecoversTo(), time.Now()),
		Link: link, SidefileBytes: &used, SidefileLimitBytes: &limit, PromotedAt: p.promotedAt(), PromotedFrom: p.promotedFrom(),
		BytesReplicate: ms.BytesAcked, LinkBytesSent: &ms.BytesSent, Resends: ms.Resends, LastError: ms.LastError, LastErrorAt: control.FormatWall(ms.LastErrorAt), Generation: p.generation.String(),
	}
	if ms.Acked.RecoversTo() < ms.Acked.Time {
		st.JournaledTime = control.FormatTime(ms.Acked.Time)
	}
	if !ms.LinkAckedAt.IsZero() {
		age := max(time.Since(ms.LinkAckedAt).Seconds(), 0)
		st.LinkAckAgeSeconds = &age
	}
	if p.promotedBack {
		st.PrimarySite, st.PrimarySince = "primary", p.promotedAt()
	}
	copyRate, linkRate := p.copyRate.Rate(), p.linkRate.Rate()
	st.CopyRateLimit, st.LinkRateLimit = &copyRate, &linkRate
	st.Compression = "none"
	if ms.Compressing {
		st.Compression = "zstd"
	}
	burstWait := ms.BurstWait.Seconds()
	st.BurstWaitSeconds = &burstWait
	st.ActivityLogOff = p.activityLogOff()
	st.DiskWait = p.stateDiskWait(time.Now())
	if p.actlog != nil {
		// A flush of an answering disk takes milliseconds, at most
		// seconds under writeback pressure: only one that long is shown.
		for vol, d := range p.actlog.FlushesUnderWay() {
			if d >= time.Second {
				if st.ActivityLogFlushSeconds == nil {
					st.ActivityLogFlushSeconds = map[string]float64{}
				}
				st.ActivityLogFlushSeconds[vol] = d.Seconds()
			}
		}
	}
	if ms.RecordSetWireBytes > 0 {
		r := float64(ms.RecordSetBytes) / float64(ms.RecordSetWireBytes)
		st.CompressionRatio = &r
	}
	refused := refusedNote(ms)
	st.Refused, st.RefusalPasses = refused != "", refused != "" && ms.LastRefusalPasses
	for _, pr := range pairs {
		if pr.Deleted {
			continue
		}
		// The pairs were last updated with an earlier acknowledgement
		// than the one the session's consistency time comes from.
		consistent := pr.ConsistentAt(ms.Acked)
		vs := control.VolumeStatus{Name: pr.Volume, Subsystem: pr.Subsystem, State: string(pr.State),
			SizeBytes: pr.Size, CopiedBytes: pr.Size, ConsistencyTime: control.FormatTime(consistent),
			ConsistencyTimeLowerBound: pr.ConsistentLowerBound(ms.Acked), ResyncedBytes: pr.Resynced,
			Auto: pr.State == pair.Suspended && pr.Auto, Reason: pr.Reason, Note: pr.Waiting}
		if vs.Note == "" {
			vs.Note = pr.CopyFailing
		}
		if pr.RejoinOwed && !pr.Deleted && pr.State == pair.Suspended {
			vs.RejoinOwed = true
			if vs.Note == "" {
				vs.Note = rejoinOwedNote(pr.Volume)
				if pr.RejoinOwedGuessed {
					vs.Note += rejoinGuessedNote(p.cfg.Session)
				}
			}
		}
		if pr.Inconsistent && !pr.FirstCopy && vs.Note == "" {
			vs.Note = "the secondary holds no consistent copy of this volume until a copy of it completes"
		}
		if pr.State == pair.Pending {
			// Progress of the copy, scaled to the volume: what remains to copy
			// is the part not yet in step.
			vs.CopiedBytes = pr.Size - (pr.CopyTotal - pr.Copied)
			planned, left := pr.CopyTotal, pr.CopyTotal-pr.Copied
			vs.CopyBytes, vs.CopyLeftBytes, vs.CopyEndAwaitsSecondary = &planned, &left, pr.CopyEnd != 0
		}
		isRefused := refused != "" && pr.State != pair.Suspended
		if isRefused {
			// The copy reads the volume into the sidefile all the same,
			// up to copied whole: without this, the pair reads as a copy
			// that goes on, or one done but for the link.
			vs.Note = refused
		}
		vs.Refused = &isRefused
		st.Volumes = append(st.Volumes, vs)
	}
	if len(st.Volumes) > 0 && st.Link == "disconnected" {
		suspended := true
		for _, v := range st.Volumes {
			suspended = suspended && v.State == string(pair.Suspended)
		}
		if suspended {
			st.Link = "suspended"
		}
	}
	p.switchedOver.mu.Lock()
	st.SwitchoverInDoubt = p.switchedOver.inDoubt
	p.switchedOver.mu.Unlock()
	return st
}

// linkAckAge is the age of the secondary's last acknowledgement on the
// link in seconds, NaN if none came: a 0 would say it is heard now.
func linkAckAge(at time.Time) float64 {
	if at.IsZero() {
		return math.NaN()
	}
	return max(time.Since(at).Seconds(), 0)
}

// refusedNote is what a pair that is not suspended says while the
// secondary refuses this primary ("" while it does not): the refusal's
// first clause, which says why (the whole, with the ways on, is the
// status's last_error), and that nothing of the pair reaches it.
func refusedNote(ms mover.Stats) string {
	if ms.Connected || !ms.LastErrorRefused {
		return ""
	}
	why := ms.LastRefusalReason
	if i := strings.Index(why, ": "); i > 0 {
		why = why[:i]
	}
	if len(why) > 240 {
		// Between characters: half of one is bytes that are no text.
		cut := 240
		for i := 1; i < utf8.UTFMax && !utf8.RuneStart(why[cut]); i++ {
			cut--
		}
		why = why[:cut] + "..."
	}
	return control.RefusedNote + ", so nothing of this pair reaches it, its copy neither (what it shows copied " +
		"is read here, and held): " + why + " (last_error says the ways on)"
}

// rejoinGuessedNote is what the status note of a pair taken as awaiting
// the old primary's rejoin from a state an earlier version saved
// (pair.Pair.RejoinOwedGuessed) says beside rejoinOwedNote: the request
// may have come already, and how to have it asked again.
func rejoinGuessedNote(session string) string {
	return ". Taken as awaiting it from a pair state an earlier version saved, which kept no record of the request: " +
		"if the old primary's `duplex rejoin --yes` ran already (this pair resumed by it, then suspended by hand), the request " +
		"does not come again by itself: at the old primary, stop its `duplex rejoin`, remove `\"delivered\": true` from its " +
		session + ".primary/rejoin.json and run `duplex rejoin --yes` again, which asks again with the same regions and resumes " +
		"every suspended pair here; or delete and add the pair as above"
}

// rejoinOwedNote is the status note of vol, a pair that awaits the old
// primary's rejoin request (pair.Pair.RejoinOwed): what resumes it, and
// what to do if the old primary never comes back.
func rejoinOwedNote(vol string) string {
	return "awaits the old primary's rejoin: its `duplex rejoin --yes` names the regions it may hold that this site never had, " +
		"and resumes this pair with them (a resume here is refused until then); if that site is lost for good, " +
		"`duplex pair delete " + vol + "` then `duplex pair add " + vol + "` copy the volume whole to a new secondary"
}

// SetRates changes the copy and link rate limits (bytes per second, 0:
// unlimited) that are set, and returns both as they now are. The change
// holds until the primary stops: a start takes the config's.
func (p *Primary) SetRates(copyRate, linkRate *int64) (control.Rates, error) {
	for _, r := range []*int64{copyRate, linkRate} {
		if r != nil && *r < 0 {
			return control.Rates{}, fmt.Errorf("rate %d: must not be negative (0: no limit)", *r)
		}
	}
	if copyRate != nil {
		p.copyRate.SetRate(*copyRate)
		p.log.Info("copy rate limit changed", "bytes_per_second", *copyRate)
	}
	if linkRate != nil {
		p.linkRate.SetRate(*linkRate)
		p.log.Info("link rate limit changed", "bytes_per_second", *linkRate)
	}
	return control.Rates{Copy: p.copyRate.Rate(), Link: p.linkRate.Rate()}, nil
}

// Write writes through the primary's write path, as an NBD client's write
// does: used by the demo's built-in workload.
func (p *Primary) Write(ctx context.Context, vol string, data []byte, off int64) error {
	ss, ok := p.byVol[vol]
	if !ok {
		return fmt.Errorf("primary: no volume %q", vol)
	}
	if err := p.gate.enter(); err != nil {
		return err
	}
	defer p.gate.leave()
	return ss.Write(ctx, vol, data, off)
}

// ReadAt reads a primary volume.
func (p *Primary) ReadAt(vol string, b []byte, off int64) error {
	v, ok := p.vols[vol]
	if !ok {
		return fmt.Errorf("primary: no volume %q", vol)
	}
	return v.ReadAt(b, off)
}

// primaryExports makes each volume an NBD export whose writes go through its
// subsystem's write path: the primary's, and a promoted site's.
type primaryExports struct {
	byVol map[string]*subsystem.Subsystem
	vols  map[string]*volume.Volume
	order []string
	gate  *writeGate // nil: writes are never held
	wait  *coupling.CommitWait
	// flush, if set, is a client's FLUSH (and a FUA write's) of a
	// volume; nil: the volume's Flush.
	flush func(vol string) error
}

func (e primaryExports) Lookup(name string) (nbd.Export, bool) {
	ss, ok := e.byVol[name]
	if !ok {
		return nil, false
	}
	return &primaryExport{name: name, ss: ss, vol: e.vols[name], gate: e.gate, wait: e.wait, flush: e.flush}, true
}

func (e primaryExports) Names() []string { return e.order }

type primaryExport struct {
	name  string
	ss    *subsystem.Subsystem
	vol   *volume.Volume
	gate  *writeGate
	wait  *coupling.CommitWait
	flush func(vol string) error
}

// commitWait is the wait of a coupled session's acknowledgements across
// hosts ([coupling] clock_uncertainty), nil for one that stands alone.
func (p *Primary) commitWait() *coupling.CommitWait {
	if !p.cfg.Coupled() || p.cfg.Coupling.ClockUncertainty <= 0 {
		return nil
	}
	return &coupling.CommitWait{Uncertainty: time.Duration(p.cfg.Coupling.ClockUncertainty), Last: p.timer.Last}
}

// acked holds a mutation's acknowledgement for the commit wait.
func (x *primaryExport) acked(err error) error {
	if err == nil {
		x.wait.Wait()
	}
	return err
}

func (x *primaryExport) Size() int64                      { return x.vol.Size() }
func (x *primaryExport) ReadOnly() bool                   { return false }
func (x *primaryExport) ReadAt(p []byte, off int64) error { return x.vol.ReadAt(p, off) }
func (x *primaryExport) WriteAt(p []byte, off int64) error {
	if err := x.gate.enter(); err != nil {
		return err
	}
	defer x.gate.leave()
	return x.acked(x.ss.Write(context.Background(), x.name, p, off))
}

// NewPayload and KeepWriteAt have the NBD server read a write's payload into
// the buffer its captured update keeps, instead of a buffer of its own that
// the subsystem would copy; the subsystem recycles the buffer once the
// secondary has journaled the update.
func (x *primaryExport) NewPayload(n int) []byte { return x.ss.NewPayload(n) }
func (x *primaryExport) KeepWriteAt(p []byte, off int64) error {
	if err := x.gate.enter(); err != nil {
		return err
	}
	defer x.gate.leave()
	return x.acked(x.ss.WriteOwned(context.Background(), x.name, p, off))
}

// Prompt has the NBD server serve a write on its read loop, and batch the
// replies, when the write will not wait: no commit wait, writes not held,
// nor in the subsystem (Subsystem.Prompt).
func (x *primaryExport) Prompt(off int64, n int) bool {
	return x.wait == nil && x.gate.open() && x.ss.Prompt(x.name, off, n)
}

// WriteNow is KeepWriteAt of a write Prompt promised, unless a switchover
// paused the writes since, or the subsystem would wait for it after all
// (Subsystem.WriteNow): the NBD server's read loop, which serves it, must
// not wait, holding up the connection's other requests and the replies of
// the writes it served before.
func (x *primaryExport) WriteNow(p []byte, off int64) (bool, error) {
	if held, err := x.gate.enterNow(); held || err != nil {
		return held, err
	}
	defer x.gate.leave()
	held, err := x.ss.WriteNow(x.name, p, off)
	if held {
		return true, nil
	}
	return false, x.acked(err)
}
func (x *primaryExport) WriteZeroes(off, length int64) error {
	if err := x.gate.enter(); err != nil {
		return err
	}
	defer x.gate.leave()
	return x.acked(x.ss.WriteZeroes(context.Background(), x.name, off, length))
}

// WriteZeroesAllocated keeps the range allocated on the primary volume (a
// client's NO_HOLE); the secondary zeroes it as any zeroes.
func (x *primaryExport) WriteZeroesAllocated(off, length int64) error {
	if err := x.gate.enter(); err != nil {
		return err
	}
	defer x.gate.leave()
	return x.acked(x.ss.WriteZeroesAllocated(context.Background(), x.name, off, length))
}
func (x *primaryExport) Trim(off, length int64) error {
	if err := x.gate.enter(); err != nil {
		return err
	}
	defer x.gate.leave()
	return x.acked(x.ss.Trim(context.Background(), x.name, off, length))
}
func (x *primaryExport) Flush() error {
	if x.flush != nil {
		return x.flush(x.name)
	}
	return x.vol.Flush()
}

// observeLag samples the secondary's lag, as the primary last heard it, into
// the lag histogram once a second.
func (p *Primary) observeLag(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if at := p.mover.Stats().Acked.RecoversTo(); at != 0 {
				p.metrics.ObserveLag(control.Lag(at, time.Now()))
			}
		}
	}
}

// historySample is the status page's sample of the lag, the sidefile and the
// bytes replicated: counters only, cheap at any number of volumes.
func (p *Primary) historySample() control.HistorySample {
	ms := p.mover.Stats()
	var used int64
	for _, ss := range p.subs {
		used += ss.Sidefile().Stats().Used
	}
	return control.HistorySample{LagSeconds: control.LagSample(ms.Acked.RecoversTo(), time.Now()), SidefileBytes: used,
		BytesReplicated: ms.BytesAcked}
}

// Samples returns the primary's metric samples.
func (p *Primary) Samples() []control.Sample { return p.samples() }

func (p *Primary) samples() []control.Sample {
	ms := p.mover.Stats()
	var used, limit int64
	var waits uint64
	var waited, paced time.Duration
	for _, ss := range p.subs {
		st := ss.Sidefile().Stats()
		used += st.Used
		limit += st.Limit
		waits += st.Waits
		waited += st.WaitTotal
		paced += st.PacingTotal
	}
	up := 0.0
	if ms.Connected {
		up = 1
	}
	// The progress of the copies under way, as status gives it per volume:
	// a resync holds the secondary at its consistency time until it ends,
	// so what is left of it is what a dashboard must see shrink.
	// A copy that fails is tried again for ever (its fault may pass), so
	// the pair stays pending: how long each has failed in a row is what a
	// monitor alerts on, a series per such pair, gone once it goes on.
	logOff := 0.0
	if p.activityLogOff() != "" {
		logOff = 1
	}
	var flushing time.Duration
	if p.actlog != nil {
		for _, d := range p.actlog.FlushesUnderWay() {
			flushing = max(flushing, d)
		}
	}
	var pending, copyBytes, copied, owed int64
	var failing []control.Sample
	now := time.Now()
	for _, pr := range p.pairs.Pairs() {
		if !pr.Deleted && pr.State == pair.Suspended && pr.RejoinOwed {
			owed++
		}
		if pr.Deleted || pr.State != pair.Pending {
			continue
		}
		pending++
		copyBytes += pr.CopyTotal
		copied += pr.Copied
		if !pr.CopyFailingSince.IsZero() {
			failing = append(failing, control.Gauge("copy_failing_seconds", "Seconds a pending pair's copy has failed in a row "+
				"(tried again, every 10 s at most, until it goes on), by volume; no series while it does not fail.",
				max(now.Sub(pr.CopyFailingSince).Seconds(), 0)).Labelled("volume", pr.Volume))
		}
	}
	logWrite, save, waiting := p.stateWaits()
	// The state directory's disk, as at a promoted site (promoted.go).
	failing = append(logAndLeaseSamples(logWrite, waiting, p.timer), failing...)
	return append([]control.Sample{
		control.Gauge("pair_state_save_seconds", "Seconds the pair state's save under way has taken; 0 while none is "+
			"(the pair manager's copies, promotions and the operator's commands wait for it).", save.Seconds()),
		control.Gauge("lag_seconds", lagHelp, control.Lag(ms.Acked.RecoversTo(), time.Now())),
		control.Gauge("pairs_copying", "Pairs pending: their initial copy or resync runs.", float64(pending)),
		control.Gauge("pairs_awaiting_rejoin", "Pairs suspended for the old primary's rejoin whose request has not come: "+
			"their resume is refused until its duplex rejoin --yes names the regions it may hold that this site never had.", float64(owed)),
		control.Gauge("copy_bytes", "Bytes the running initial copies and resyncs copy in all.", float64(copyBytes)),
		control.Gauge("copied_bytes", "Of copy_bytes, the bytes copied so far.", float64(copied)),
		control.Gauge("link_up", linkUpHelp, up),
		control.Gauge("link_ack_age_seconds", "Seconds since the secondary last acknowledged anything on the link (a Welcome, a receipt of record sets "+
			"or of an idle primary's heartbeats); NaN before the first. A partition that drops every packet leaves the link up for the silence time (5 s) "+
			"while this grows.", linkAckAge(ms.LinkAckedAt)),
		control.Gauge("sidefile_bytes", "Bytes held for replication: captured, in record sets, or sent and not yet acknowledged.", float64(used)),
		control.Gauge("sidefile_limit_bytes", "Sum of the subsystems' sidefile limits.", float64(limit)),
		control.Counter("sidefile_waits_total", "Writes that waited for sidefile space.", float64(waits)),
		control.Counter("sidefile_wait_seconds_total", "Time writes waited for sidefile space.", waited.Seconds()),
		control.Counter("pacing_delay_seconds_total", "Time writes were delayed by write pacing.", paced.Seconds()),
		control.Gauge("record_sets_held", "Record sets carrying updates not yet acknowledged by the secondary "+
			"(not those that only report an idle subsystem's horizon).", float64(ms.HeldWithUpdates)),
		control.Counter("bytes_replicated_total", bytesReplicateHelp, float64(ms.BytesAcked)),
		control.Counter("link_bytes_sent_total", "Bytes of the frames sent to the secondary (record sets, heartbeats), resends included.", float64(ms.BytesSent)),
		control.Counter("link_record_set_bytes_total", linkRecordSetHelp, float64(ms.RecordSetBytes)),
		control.Counter("link_record_set_wire_bytes_total", linkWireHelp, float64(ms.RecordSetWireBytes)),
		control.Counter("resends_total", "Retransmissions of unacknowledged record sets.", float64(ms.Resends)),
		control.Counter("connects_total", "Connections made to the secondary.", float64(ms.Connects)),
		control.Counter("groups_formed_total", "Time-interval groups formed by the data mover.", float64(ms.Group)),
		control.Counter("copy_failures_total", "Tries of an initial copy, resync or recovery copy that failed and wait to be tried again "+
			"(not a read of the volume that failed, which suspends the pair).", float64(p.pairs.CopyFailures())),
		control.Gauge("activity_log_off", "1 while this run goes without its activity log (it could not be opened at start, or written since): "+
			"a full resync of every pair if the run does not stop cleanly; kept again from the next start.", logOff),
		control.Gauge("activity_log_flush_seconds", "Seconds the oldest of the activity log's flushes of a volume under way has been running; 0 while none is "+
			"(a volume whose flush does not end keeps its regions marked).", flushing.Seconds()),
	}, failing...)
}

// Pairs returns the pair manager.
func (p *Primary) Pairs() *pair.Manager { return p.pairs }

// stateWaits returns how long the activity log's write under way, and the
// pair state's save under way, have waited on the state directory's disk
// (0: none under way), and how many writes wait for their marks.
func (p *Primary) stateWaits() (logWrite, save time.Duration, waiting int) {
	if p.actlog != nil {
		logWrite, waiting = p.actlog.Waits()
	}
	return logWrite, p.pairs.SaveUnderWay(), waiting
}

// leaseWriting says the timer's lease is being written: once the stamps
// reach the lease on disk, every stamp waits for it, the pair manager's
// and the mover's among them, under the subsystem's lock.
func leaseWriting(p *Primary) bool {
	d, _ := p.timer.LeaseWait()
	return d > 0
}

// stateDiskWait says what has waited on the disk of the state directory
// for slowDisk or longer, as the secondary's status does for its own
// disk, "" if nothing has: a disk that stops answering fails nothing, and
// the writes to regions the activity log has not marked wait with it
// (they cannot be acknowledged unmarked), as does the pair manager (its
// copies, promotions and the operator's commands, which save the state).
func (p *Primary) stateDiskWait(now time.Time) string {
	logWrite, save, waiting := p.stateWaits()
	out := logAndLeaseWaits("activity log", logWrite, waiting, p.timer, p.slowDisk, now)
	if save >= p.slowDisk {
		out = append(out, fmt.Sprintf("pair state save: waiting on the disk for %s (since %s); the pairs' copies, promotions and commands wait with it",
			save.Round(time.Millisecond), now.Add(-save).UTC().Format(time.RFC3339)))
	}
	return strings.Join(out, "; ")
}

type pairOps struct{ p *Primary }

func (o pairOps) Add(vol string) error    { return o.p.pairs.Add(vol) }
func (o pairOps) Resume(vol string) error { return o.p.pairs.Resume(vol) }
func (o pairOps) ResumeInconsistent(vol string) error {
	return o.p.pairs.ResumeInconsistent(vol)
}
func (o pairOps) Delete(vol string) (time.Time, error) {
	return o.p.pairs.Delete(vol)
}

// Suspend with drain first ships everything captured so far, so the
// secondary copy is as fresh as possible when the pair stops. A drain that
// cannot finish (see drain) leaves the pair as it was, and says why.
func (o pairOps) Suspend(ctx context.Context, vol string, drain bool) error {
	if drain {
		if err := o.p.drain(ctx); err != nil {
			state := "as it was"
			for _, pr := range o.p.pairs.Pairs() {
				if pr.Volume == vol {
					state = fmt.Sprintf("%s", pr.State)
				}
			}
			return fmt.Errorf("could not drain before suspending, so %s is left %s, not suspended: %w; "+
				"suspend without --drain to suspend it now (what is held ships when the link returns)", vol, state, err)
		}
	}
	return o.p.pairs.Suspend(vol)
}

// SuspendAll suspends every pair at one point of the common timer, after
// shipping everything captured so far if drain is set. A drain that cannot
// finish leaves every pair as it was, and says why.
func (o pairOps) SuspendAll(ctx context.Context, drain bool) ([]string, error) {
	if drain {
		if err := o.p.drain(ctx); err != nil {
			return nil, fmt.Errorf("could not drain before suspending, so no pair is suspended: %w; "+
				"suspend without --drain to suspend them now (what is held ships when the link returns)", err)
		}
	}
	return o.p.pairs.SuspendAll()
}

// unreachablePatience is how long a drain waits for a link that is down:
// a link that drops for a moment comes back (the mover redials) within
// it, and waiting longer ships nothing.
const unreachablePatience = 10 * time.Second

// drain ships everything captured so far, within ctx. It gives up once the
// secondary is unreachable (see unreachable: the link down for
// unreachablePatience, or, down that long already when the drain
// begins, the mover's next dial failed too), so that an operator who
// drains an unreachable link hears so long before the timeout runs out,
// while a link that comes back (the mover redials within the patience)
// is waited for; and once the timer's lease has not been
// written for StopFlushWait (see giveUpOnLease). Its error says why it could not drain and what is
// still held for the secondary.
func (p *Primary) drain(ctx context.Context) error {
	dctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	watched := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(watched)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			if down, since := p.unreachable(start); down {
				cancel(&linkDownError{since: since, lastErr: p.mover.Stats().LastError})
				return
			}
			select {
			case <-dctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	// A stamp, the mover's cut among them, waits for the lease's write:
	// hung on its disk, the drain ships nothing more.
	go p.giveUpOnLease(dctx, cancel, p.stopFlushWait, false)
	err := p.mover.Quiesce(dctx)
	if err == nil {
		err = p.leaseWritten(dctx)
	}
	why := context.Cause(dctx)
	cancel(nil)
	<-watched
	if err == nil {
		return nil
	}
	if p.drainCutShort != nil {
		p.drainCutShort()
	}
	var used int64
	for _, ss := range p.subs {
		used += ss.Sidefile().Stats().Used
	}
	ms := p.mover.Stats()
	var lease *timer.LeaseHungError
	if used == 0 && ms.HeldWithUpdates == 0 && !errors.As(why, &lease) {
		// The last acknowledgement came as the wait ended (the stop's,
		// the timeout's): nothing is held, everything shipped, and what
		// the drain was for is done. Not so with a stamp waiting for a
		// hung lease: see leaseWritten.
		return nil
	}
	var down *linkDownError
	if !errors.As(why, &down) {
		up, since := p.mover.Link()
		link := "down"
		if up {
			link = "up"
		}
		why = fmt.Errorf("%w; the link to the secondary is %s since %s (%s)", why, link, since.UTC().Format(time.RFC3339Nano), time.Since(since).Round(time.Millisecond))
		if !up && ms.LastError != "" {
			why = fmt.Errorf("%w, last error: %s", why, ms.LastError)
		}
	}
	return fmt.Errorf("%w; %d bytes of updates are still held for the secondary (%d record sets not yet acknowledged)", why, used, ms.HeldWithUpdates)
}

// leaseWritten waits, within ctx, until no stamp waits for the write of
// the timer's lease. With nothing held, a drain is not done while one
// does: the stamp (a client's write, or the mover's cut) holds the
// subsystem's lock meanwhile, and the suspension that follows an
// operator's drain stamps its marker under that lock, so it would wait
// for the lease's disk, without bound, and hold the pair manager
// meanwhile; the stop's drain is given up for the lease then, as when
// something is held. giveUpOnLease ends ctx once the lease has been
// writing for the stop's wait.
func (p *Primary) leaseWritten(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if d, waiting := p.timer.LeaseWait(); d == 0 || waiting == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("drain: a stamp waits for the write of the timer's lease: %w", ctx.Err())
		case <-t.C:
		}
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// linkDownError is why a drain gave up on a link that is down.
type linkDownError struct {
	since   time.Time
	lastErr string
}

func (e *linkDownError) Error() string {
	msg := fmt.Sprintf("the link to the secondary has been down since %s (%s)", e.since.UTC().Format(time.RFC3339Nano), time.Since(e.since).Round(time.Millisecond))
	if e.lastErr != "" {
		msg += ", last error: " + e.lastErr
	}
	return msg
}

func (o pairOps) ResumeAll() ([]string, error) { return o.p.pairs.ResumeAll() }

// onlyMarkersAnnouncedAgain says whether the stop may end without
// shipping what it holds, and how many record sets that leaves: the link
// to the secondary is down (the old primary that never rejoined a
// promoted site, a secondary lost), every pair is suspended or deleted,
// and every update held or captured is a pair-state marker of one of
// them. A suspended pair's writes go to its bitmap, saved by the stop, not
// to the sidefile; and the pair state the stop saves makes the next start
// capture each such pair's marker again (pair.Open: markers live only in
// the sidefile), so the secondary learns nothing later than it would
// have. Waiting instead would last unreachablePatience, then fail the
// stop for nothing lost, and save it not clean, which has the next start
// add the activity log's regions, or without a log whole volumes, to
// what the resume copies.
func (p *Primary) onlyMarkersAnnouncedAgain(ctx context.Context) (int, bool) {
	if up, _ := p.mover.Link(); up {
		return 0, false
	}
	announced := map[string]bool{}
	for _, pr := range p.pairs.Pairs() {
		if !pr.Deleted && pr.State != pair.Suspended {
			return 0, false
		}
		announced[pr.Volume] = true
	}
	if len(announced) != len(p.order) {
		return 0, false
	}
	// A cut under way is waited for a few intervals at most: longer, it
	// waits for a disk, and the drain copes with that.
	ctx, cancel := context.WithTimeout(ctx, 5*time.Duration(p.cfg.Interval)+100*time.Millisecond)
	defer cancel()
	return p.mover.HeldOnly(ctx, func(u *recordset.Update) bool {
		return u.Kind == recordset.KindMarker && announced[u.Volume]
	})
}

// abandonWhenUnreachable ends the stop's drain, begun at start, once the
// secondary is unreachable (see unreachable): waiting longer ships
// nothing, and the stop is then recorded as unclean, so the next start
// copies the activity log's regions.
func (p *Primary) abandonWhenUnreachable(ctx context.Context, cancel context.CancelCauseFunc, start time.Time) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		if down, since := p.unreachable(start); down {
			ms := p.mover.Stats()
			switch {
			case ms.FailedDialRefused && !ms.LastRefusalPasses:
				p.log.Warn("the secondary refuses this primary: stopping without shipping everything",
					"down_since", since.UTC().Format(time.RFC3339Nano), "refusal", ms.LastRefusal)
			case ms.FailedDialRefused:
				// A refusal the secondary said passes was waited for as a
				// link that may come back: the patience is what ran out.
				p.log.Warn("the secondary refused this primary for the patience, for a while of its own that outlasted it: stopping without shipping everything",
					"down_since", since.UTC().Format(time.RFC3339Nano), "down_for", time.Since(since).Round(time.Millisecond), "patience", p.patience,
					"refusal", ms.LastRefusal)
			default:
				p.log.Warn("secondary unreachable: stopping without shipping everything",
					"down_since", since.UTC().Format(time.RFC3339Nano), "down_for", time.Since(since).Round(time.Millisecond), "patience", p.patience)
			}
			cancel(&linkDownError{since: since, lastErr: ms.LastError})
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// unreachable says whether a drain begun at start gives up on the link to
// the secondary, and since when it is down. A link that goes down while
// the drain waits, or went down just before, is waited for until it has
// been down for the patience: it may come back (the mover redials) and
// take what is held. One that had been down for the patience when the
// drain began is waited for until the mover's next dial, at most a second
// away (maxRedial), has failed too: waiting the patience again would ship
// nothing unless the secondary is back, which that dial finds.
func (p *Primary) unreachable(start time.Time) (bool, time.Time) {
	up, since := p.mover.Link()
	switch {
	case up:
		return false, since
	case time.Since(later(since, start)) >= p.patience:
		return true, since
	}
	// A dial begun before start may fail after it although the network
	// came back meanwhile (one whose packets were dropped fails at its
	// timeout): only one begun since counts.
	ms := p.mover.Stats()
	if ms.FailedDialRefused && ms.FailedDialBegan.After(start) && !ms.LastRefusalPasses {
		// The secondary answered, and refused the session for as long as
		// no operator acts (copies this primary has no record of, a
		// fence, another session, a stop on its disk it does not retry):
		// the patience is for a link that may come back, and waiting
		// ships nothing. One it said passes (a disk fault it retries, a
		// record it writes again at the next dial, an apply under way)
		// is waited for as such a link: given up at once, a stop the
		// secondary would have taken a second later is unclean, and the
		// next start copies the activity log's regions for nothing.
		return true, since
	}
	return time.Since(since) >= p.patience && ms.FailedDialBegan.After(start), since
}
