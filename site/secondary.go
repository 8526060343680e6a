package site

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"duplex/config"
	"duplex/consistency"
	"duplex/control"
	"duplex/coupling"
	"duplex/disk"
	"duplex/failover"
	"duplex/nbd"
	"duplex/recordset"
	"duplex/secondary"
	"duplex/tlsconf"
	"duplex/transport"
	"duplex/volume"
)

// Secondary is a running secondary site.
type Secondary struct {
	// beforeFence, if set, is called by a promotion in place once it has
	// checked the request, before anything is written (tests hold it).
	beforeFence func()
	cfg         *config.Config
	log         *slog.Logger
	sec         *secondary.Secondary
	vols        map[string]*volume.Volume
	order       []string
	subOf       map[string]string
	ln          transport.Listener
	listeners
	// nbdTLS, if set, makes the read-only exports require TLS.
	nbdTLS *tls.Config

	metrics *control.Metrics
	history *control.History
	token   string
	// promotedAt and promotedFrom are set at an old primary that rejoined
	// the promoted site (OpenRejoined): since when that site is primary.
	promotedAt, promotedFrom string
	// rejoinedFrom is the promotion's consistency time there (Unix ns): a
	// volume still suspended as of it holds this site's own image from
	// before the rejoin.
	rejoinedFrom int64
	fsys         disk.FS
	// promoted carries the promotion a switchover made in place, which
	// ends Run with ErrPromoted.
	promoted chan failover.Promotion
	requests promoteRequests
	// coupler follows the coupled group's master time ([coupling]), and
	// store is its etcd; both nil when the session stands alone.
	coupler *coupling.Coupler
	// dialed is the etcd client this site dialed: handed over by
	// takeDialed, under dialedMu, to whoever closes it.
	dialedMu sync.Mutex
	dialed   *coupling.EtcdStore
	// drills is the failover drill running, if any (drill.go).
	drills drillState
	// handed are the listeners Run kept, on a promotion in place, for the
	// promoted site (HandOver), under handedMu.
	handedMu sync.Mutex
	handed   Listeners
	// control is the control server Run serves (tests begin its stop).
	controlServer atomic.Pointer[control.Server]
	// retries, under RunSecondary, are its attempts after disk faults:
	// Run ends once the secondary stopped and the backoff passed.
	retries *diskRetries
	// siteLock is the site's lock (lockSite) this site holds until it
	// closes; nil when its opener holds it.
	siteLock io.Closer
	// secClosed says Run closed sec already, before its listeners.
	secClosed bool
	// stopHungWait: see SecondaryStopHungWait.
	stopHungWait time.Duration
	// early is the control address's server while the site started;
	// Run's takes it over.
	early *control.Starting
}

// SecondaryOptions adjust a secondary beyond its config.
type SecondaryOptions struct {
	Listener transport.Listener // default: TCP on secondary.listen
	// Offline opens volumes and journal (replaying it) without binding any
	// address: for recover. It asks no journal room for groups to come
	// (secondary.Config.LargestGroup): none will.
	Offline bool
	// FS holds the journal and the state file (default disk.OS): tests
	// inject storage faults through it.
	FS disk.FS
	// JournalFree, if set, replaces statfs of the journal's file system in
	// what the secondary reports to the primary (tests).
	JournalFree func() (uint64, error)
	// Limits and MaxFrame, if set, replace what the secondary accepts in one
	// record set and one frame (recordset.DefaultLimits,
	// transport.DefaultMaxFrame); it announces them in its Welcome.
	Limits   recordset.Limits
	MaxFrame int
	// MaxViewBytes, if set, replaces secondary.MaxViewBytes, the memory
	// one read view, and a drill's with its index of its writes, may hold.
	MaxViewBytes int64
	// OnApplied, if set, is called after each consistency group is applied,
	// while readers of the volumes are held off; read reads a volume as of
	// that group (the site's ReadAt would wait for the group to finish).
	// Tests check the dependent-write invariant at every group boundary here.
	OnApplied func(g *consistency.Group, read func(vol string, p []byte, off int64) error)
	// Context, if set, ends the journal's replay early (see
	// secondary.Config.Context): OpenSecondary then fails with
	// secondary.ErrInterrupted, everything on disk as it was. A start
	// that waits on its disk elsewhere (an Offline one, recover's and
	// promote's, too) is given up once it ends, as a primary's (see
	// startGivenUp), unless it ends within SecondaryStartStopGrace.
	Context context.Context
	// started, if set, is handed the start's steps as it begins (see
	// openUnlessStopped).
	started func(*startWait)
	// CouplingStore, if set, replaces the etcd of [coupling] (tests);
	// CouplingLimit, if set, holds applying at it rather than at the
	// group's master time: recover --coupled's time.
	CouplingStore coupling.Store
	CouplingLimit int64
	// retries are set by RunSecondary (diskretry.go).
	retries *diskRetries
	// siteLocked: the caller holds the site's lock (lockSite) already,
	// as RunSecondary does across the sites it opens after the first.
	siteLocked bool
	// stopHungWait replaces SecondaryStopHungWait (tests).
	stopHungWait time.Duration
	// held, set by RunSecondary once a site opened, are the sizes of the
	// volumes it held, which every site opened after it must find as they
	// were (see openHeldVolume).
	held map[string]int64
	// heldFiles, set with held, are the journal and the files beside it
	// that site found, which every site opened after it must find too
	// (see heldFilesThere).
	heldFiles []string
	// anew are the volumes whose image a rejoin makes anew where the
	// state names a copy (Rejoined.Gone): gone when the rejoin began, the
	// whole volume is copied into it.
	anew []string
	// anewUnlessCopied are the volumes whose image a rejoin made anew
	// (Rejoined.GoneMade) before the promoted site took its request: lost
	// again, it is made anew once more if the journal says no copy of it
	// began here (secondary.Untouched).
	anewUnlessCopied []string
	// primaryPairState names the other site's pair state directory in the
	// way forward the site prints (secondary.Config.PrimaryPairState): a
	// rejoined old primary's is the promoted site's ReverseDir.
	primaryPairState string
}

// StatePath is where a secondary keeps "applied through group G": beside its
// journal directory.
func StatePath(cfg *config.Config) string {
	return filepath.Join(filepath.Dir(cfg.Secondary.Journal), "state.json")
}

// SiteLockPath is the file whose lock every open of the secondary site
// holds (lockSite): beside its journal directory, with its state file.
func SiteLockPath(cfg *config.Config) string {
	return filepath.Join(filepath.Dir(cfg.Secondary.Journal), "secondary.lock")
}

// lockSite takes the secondary site's lock, held by whoever has the site
// open (a running secondary, recover, promote) and by RunSecondary across
// its attempts to open the site again after a disk fault, while no site is
// open and the journal's own lock is free: another process that opened
// the site then would apply, fence or serve the volumes that the next
// attempt opens and links the primary into. Taken before anything of the
// site is read, and dropped by the kernel when the process dies.
func lockSite(fsys disk.FS, cfg *config.Config) (io.Closer, error) {
	// Not the working directory's lock, for an empty path.
	switch {
	case !cfg.HasSecondary():
		return nil, errors.New("secondary: the config has no [secondary] section")
	case cfg.Secondary.Journal == "":
		return nil, errors.New("secondary: the config names no [secondary] journal")
	}
	dir := filepath.Dir(cfg.Secondary.Journal)
	if err := disk.Or(fsys).MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("secondary: %w", err)
	}
	lock, err := disk.Or(fsys).Lock(SiteLockPath(cfg))
	if err != nil {
		return nil, fmt.Errorf("secondary: the site is open in another process (a running duplex secondary, recover or promote): %w", err)
	}
	return lock, nil
}

// ErrNoSecondary is the error of an offline open (recover, promote) of
// paths where no secondary ever ran.
var ErrNoSecondary = errors.New("holds no secondary")

// HeldSecondary refuses paths at which no secondary ever ran: neither the
// state file nor the journal, which a secondary's first start makes
// before anything can arrive, is there. A wrong config in a runbook would
// otherwise have recover make empty images and report them usable, and
// promote serve them read-write as the recovered data. Only what is
// surely absent decides: anything else is left to the open, whose errors
// say what the disk lacks.
func HeldSecondary(fsys disk.FS, cfg *config.Config) error {
	switch {
	case !cfg.HasSecondary():
		return errors.New("secondary: the config has no [secondary] section")
	case cfg.Secondary.Journal == "":
		return errors.New("secondary: the config names no [secondary] journal")
	}
	for _, p := range []string{StatePath(cfg), cfg.Secondary.Journal} {
		if _, err := disk.Or(fsys).Stat(p); !errors.Is(err, fs.ErrNotExist) {
			return nil
		}
	}
	// Not "start duplex secondary there": in a failover, that would make
	// the very empty volumes the refusal keeps from being served.
	// Nor "no secondary ever ran": a secondary's file system not mounted
	// again after a reboot, the likely case in a disaster, looks the same.
	return fmt.Errorf("secondary: %s %w: neither its state file (%s) nor its journal (%s) is there, which a secondary's first start makes: "+
		"no duplex secondary ran with this config's [secondary] paths, or the file system that holds them is not mounted; "+
		"nothing was made there: check that its file system is mounted, --config and its [secondary] journal, which names "+
		"the directory the secondary ran in, and that this is the secondary's host", filepath.Dir(cfg.Secondary.Journal), ErrNoSecondary,
		filepath.Base(StatePath(cfg)), filepath.Base(cfg.Secondary.Journal))
}

// refusePromoted refuses a secondary at a promoted site: its volumes hold
// writes of its own, and the old primary's data must never be applied
// over them.
func refusePromoted(fsys disk.FS, cfg *config.Config, starting *startWait) error {
	starting.step(PromotedDir(cfg))
	switch pr, err := failover.ReadPromotion(fsys, PromotedDir(cfg)); {
	case err == nil:
		return fmt.Errorf("secondary: this site was promoted at %s and has been the session's primary since: "+
			"duplex promote serves its volumes (a secondary here would apply the old primary's data over writes made since)",
			control.FormatTime(pr.At))
	case !errors.Is(err, failover.ErrNotPromoted):
		return fmt.Errorf("secondary: %w", err)
	}
	return nil
}

// HistoryDir is where a secondary keeps its history ([secondary] history):
// beside its journal directory.
func HistoryDir(cfg *config.Config) string {
	return filepath.Join(filepath.Dir(cfg.Secondary.Journal), "history")
}

// HistoryOf is the secondary's history as the config sets it: none when
// [secondary] history is left out or 0, but the directory of one kept
// before, for a recover --at it stopped part-way.
func HistoryOf(cfg *config.Config) secondary.HistoryConfig {
	if cfg.Secondary.History <= 0 {
		return secondary.HistoryConfig{Left: HistoryDir(cfg)}
	}
	return secondary.HistoryConfig{Dir: HistoryDir(cfg), Window: time.Duration(cfg.Secondary.History), MaxBytes: int64(cfg.Secondary.HistoryBytes),
		Interval: time.Duration(cfg.Interval)}
}

// LargestGroup bounds a consistency group of the session: every update in a
// group is held in a primary sidefile until the group is journaled, so a
// group cannot exceed all the sidefiles together; 1 MiB more covers the
// group's encoding.
func LargestGroup(cfg *config.Config) int64 {
	return int64(len(cfg.Primary.Subsystems))*int64(cfg.Primary.SidefileLimit) + 1<<20
}

// SecondaryStartStopGrace is how long a secondary's start asked to stop
// (SecondaryOptions.Context) may take to end before it is given up: a
// journal's replay ends at the next group boundary, on a disk that
// answers well within it.
const SecondaryStartStopGrace = 2 * time.Second

// OpenSecondary opens the secondary volumes and the journal, replays every
// journaled group not yet applied, and binds the site's addresses.
func OpenSecondary(cfg *config.Config, log *slog.Logger, opts SecondaryOptions) (*Secondary, error) {
	// An open again after a disk fault is given up by openAgain, after
	// its own wait. An Offline one (recover's) is given up as a daemon's
	// start is: what it applied of the journal is as a kill leaves it,
	// and the next start replays the rest.
	if opts.Context == nil || opts.siteLocked {
		return openSecondary(cfg, log, opts)
	}
	return openUnlessStopped(opts.Context, SecondaryStartStopGrace, &opts.started, func() (*Secondary, error) { return openSecondary(cfg, log, opts) },
		func(s *Secondary) { s.close() })
}

func openSecondary(cfg *config.Config, log *slog.Logger, opts SecondaryOptions) (_ *Secondary, err error) {
	if log == nil {
		log = slog.Default()
	}
	if !cfg.HasSecondary() {
		return nil, errors.New("secondary: the config has no [secondary] section")
	}
	if !opts.Offline {
		// Before anything is served.
		if err := cfg.CheckSecurity(); err != nil {
			return nil, fmt.Errorf("secondary: %w", err)
		}
	}
	if opts.Offline {
		// Before the lock, which makes the directory: recover and promote
		// take over a secondary's copy and must not make a fresh, empty
		// site, whose volumes would then be served as the recovered data.
		if err := HeldSecondary(opts.FS, cfg); err != nil {
			return nil, err
		}
	}
	// Before anything is read: see lockSite. Status answers from then
	// on (not for recover and promote: Offline), saying what the start
	// waits for.
	starting := watchStart(log, 0)
	defer starting.end()
	if opts.started != nil {
		opts.started(starting)
	}
	var early listeners
	var earlyCtl *control.Starting
	serve := func() (err error) {
		if opts.Offline {
			return nil
		}
		earlyCtl, err = early.serveStarting(cfg, "secondary", "secondary", "secondary", cfg.Secondary.Control, nil, starting, log.With("site", "secondary"))
		return err
	}
	var lock io.Closer
	if opts.siteLocked {
		err = serve()
	} else {
		// The promotion's refusal too before the address: a promoted
		// site of this directory may run on it, and a secondary started
		// there by mistake is told that the site was promoted, not that
		// the address is in use. Both wait on the disk only the slow
		// disk's wait before the address is served all the same.
		lock, err = lockThenServe(func() (io.Closer, error) {
			lock, err := lockSite(opts.FS, cfg)
			if err != nil {
				return nil, err
			}
			if err := refusePromoted(opts.FS, cfg, starting); err != nil {
				lock.Close()
				return nil, err
			}
			return lock, nil
		}, serve, starting, SiteLockPath(cfg), secondary.DefaultSlowDisk)
	}
	owned := false
	defer func() {
		if err != nil && !owned {
			if lock != nil {
				lock.Close()
			}
			earlyCtl.Close()
			early.close()
		}
	}()
	if err != nil {
		return nil, err
	}
	starting.step(filepath.Dir(StatePath(cfg)) + " (the temporary files a kill left)")
	removeLeftTemps(opts.FS, filepath.Dir(StatePath(cfg)), log.With("site", "secondary"))
	if opts.siteLocked {
		// Before anything of the site is read (see heldFilesThere).
		if err := heldFilesThere(opts.FS, opts.heldFiles); err != nil {
			return nil, fmt.Errorf("secondary: %w", err)
		}
		if err := refusePromoted(opts.FS, cfg, starting); err != nil {
			return nil, err
		}
	}
	if err := undoInterruptedPromotion(opts.FS, cfg, log); err != nil {
		return nil, fmt.Errorf("secondary: %w", err)
	}
	// Not promoted: a leave owed is of a switchover that never took over.
	if err := voidStaleLeave(opts.FS, cfg); err != nil {
		return nil, fmt.Errorf("secondary: %w", err)
	}
	// Everything opened so far is released on an error; the result is nil
	// then, so the cleanup holds its own reference.
	s := &Secondary{cfg: cfg, log: log.With("site", "secondary"), vols: map[string]*volume.Volume{}, subOf: map[string]string{},
		history: &control.History{}, fsys: opts.FS, promoted: make(chan failover.Promotion, 1), retries: opts.retries, siteLock: lock,
		stopHungWait: cmp.Or(opts.stopHungWait, SecondaryStopHungWait), listeners: early, early: earlyCtl}
	owned = true
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	starting.step(filepath.Join(filepath.Dir(StatePath(cfg)), promoteEndedFile))
	if err := s.loadEndedRequests(); err != nil {
		return nil, fmt.Errorf("secondary: %w", err)
	}
	// The state file too: it says which of them hold a copy.
	starting.step("the volumes and " + StatePath(cfg))
	anew := opts.anew
	if len(opts.anewUnlessCopied) > 0 {
		anew = append(slices.Clip(anew), s.goneUncopied(opts.anewUnlessCopied)...)
	}
	if err := s.openVolumes(opts.held, anew, opts.primaryPairState); err != nil {
		return nil, err
	}
	var gate secondary.Gate
	switch {
	case opts.CouplingLimit != 0:
		if err := coupling.WriteMark(coupling.MarkPath(StatePath(cfg)), coupling.Mark{Group: cfg.Coupling.Group, Through: opts.CouplingLimit}); err != nil {
			return nil, fmt.Errorf("secondary: %w", err)
		}
		gate = coupling.Fixed(opts.CouplingLimit)
	case cfg.Coupled():
		store := opts.CouplingStore
		if store == nil {
			if s.dialed, err = coupling.DialConfig(cfg); err != nil {
				return nil, fmt.Errorf("secondary: %w", err)
			}
			store = s.dialed
		}
		_, join, err := readOwed(opts.FS, joinPath(cfg))
		if errors.Is(err, disk.ErrDamaged) {
			// Only whether it is there is read, and what it holds is the
			// config's group and session: written anew, nothing is lost.
			s.log.Warn("coupling: the record of a join owed to the coupled group is damaged: the join is owed all the same, and the record written anew",
				"err", err)
			err = writeOwed(opts.FS, joinPath(cfg), cfg, "")
			join = err == nil
		}
		if err != nil {
			return nil, fmt.Errorf("secondary: %w", err)
		}
		s.coupler, err = coupling.New(coupling.Config{Store: store, Group: cfg.Coupling.Group, Member: cfg.Session,
			Publish: time.Duration(cfg.Coupling.Publish), MarkPath: coupling.MarkPath(StatePath(cfg)), Logger: s.log,
			Own:  func() int64 { return s.sec.Stats().CoupledTime },
			Join: join, Joined: func() error { return removeOwed(opts.FS, joinPath(cfg)) }})
		if err != nil {
			return nil, fmt.Errorf("secondary: %w", err)
		}
		gate = s.coupler
	}
	s.metrics = control.NewMetrics(cfg.Session, "secondary", s.samples)
	largest := LargestGroup(cfg)
	if opts.Offline {
		// Recover journals nothing: it applies what is journaled, then
		// writes the state file and the identity, a few hundred bytes. Room
		// for groups no primary will send would keep the replicated data
		// out of reach on the full disk that may have stopped the secondary.
		largest = 0
	}
	starting.step("the journal " + cfg.Secondary.Journal + " and " + StatePath(cfg) + " (replaying the groups not yet applied)")
	s.sec, err = secondary.Open(secondary.Config{
		Session: cfg.Session, Subsystems: cfg.SubsystemIDs(), Volumes: s.vols,
		JournalDir: cfg.Secondary.Journal, StatePath: StatePath(cfg), Logger: s.log,
		FS: opts.FS, JournalFree: opts.JournalFree, LargestGroup: largest, Limits: opts.Limits, MaxFrame: opts.MaxFrame,
		MaxViewBytes: opts.MaxViewBytes, PrimaryPairState: opts.primaryPairState, Context: opts.Context, Gate: gate, History: HistoryOf(cfg), Retries: opts.retries != nil,
		OnApplied: func(g *consistency.Group) {
			s.metrics.ObserveLag(control.Lag(g.Time, time.Now()))
			if opts.OnApplied != nil {
				opts.OnApplied(g, s.readApplied)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	if opts.Offline {
		return s, nil
	}
	starting.step(drillRecordPath(DrillScratchPath(cfg)))
	if err := s.endedDrill(); err != nil {
		return nil, fmt.Errorf("secondary: %w", err)
	}
	if tp := cfg.TokenPath(); tp != "" {
		if s.token, err = control.ReadToken(tp); err != nil {
			return nil, fmt.Errorf("secondary: %w", err)
		}
	}
	if s.nbdTLS, err = tlsconf.SecondaryNBD(cfg); err != nil {
		return nil, fmt.Errorf("secondary: %w", err)
	}
	s.ln = opts.Listener
	if s.ln == nil {
		tlsConf, err := tlsconf.SecondaryLink(cfg)
		if err != nil {
			return nil, fmt.Errorf("secondary: %w", err)
		}
		// Through a local: a nil *TCPListener in the interface field would not
		// compare equal to nil in close.
		ln, err := transport.ListenTCP(cfg.Secondary.Listen, tlsConf, opts.MaxFrame)
		if err != nil {
			return nil, fmt.Errorf("secondary: %w", err)
		}
		s.ln = ln
	}
	starting.end()
	if err := s.listen(cfg, "secondary", "secondary", cfg.Secondary.NBD, "", Listeners{}); err != nil {
		return nil, err
	}
	return s, nil
}

// goneUncopied returns those of vols, images a rejoin made anew, that are
// gone again (missing or empty) and that no group received since names:
// nothing was copied to them, and made anew once more they lose nothing.
// One cut short is left to the open's refusal, as one whose copy began.
func (s *Secondary) goneUncopied(vols []string) []string {
	var gone []string
	for _, sv := range s.cfg.Secondary.Volumes {
		if !slices.Contains(vols, sv.Name) {
			continue
		}
		if st, err := os.Stat(sv.Path); errors.Is(err, fs.ErrNotExist) || err == nil && st.Mode().IsRegular() && st.Size() == 0 {
			gone = append(gone, sv.Name)
		}
	}
	if len(gone) == 0 {
		return nil
	}
	untouched, err := secondary.Untouched(s.fsys, StatePath(s.cfg), s.cfg.Secondary.Journal, gone)
	if err != nil {
		s.log.Warn("the images the rejoin made anew are gone again, and whether the copy began cannot be told", "volumes", gone, "err", err)
		return nil
	}
	if len(untouched) > 0 {
		s.log.Info("the images the rejoin made anew are gone again before any copy to them began: made anew once more, the whole volume is copied",
			"volumes", untouched)
	}
	return untouched
}

func (s *Secondary) openVolumes(held map[string]int64, anew []string, primaryPairState string) error {
	vols, order, subOf, err := openSecondaryVolumes(s.cfg, s.log, held, anew, primaryPairState, nil)
	s.vols, s.order, s.subOf = vols, order, subOf
	return err
}

// openSecondaryVolumes opens the volumes of the [secondary] section: the
// replicas, or a promoted site's volumes. held, if not nil, are the sizes
// of the volumes a site of this process held (see openHeldVolume); anew
// are those whose image is made as at a first start (SecondaryOptions.anew);
// primaryPairState names the other site's pair state directory, empty for
// the session's own primary (SecondaryOptions.primaryPairState); promoted, if not nil, is the promotion of a promoted site whose volumes
// they are. On an error, those opened are returned for the caller to close.
func openSecondaryVolumes(cfg *config.Config, log *slog.Logger, held map[string]int64, anew []string, primaryPairState string, promoted *failover.Promotion) (vols map[string]*volume.Volume, order []string, subOf map[string]string, err error) {
	vols, subOf = map[string]*volume.Volume{}, map[string]string{}
	holds := copiesHeld(cfg)
	for _, sv := range cfg.Secondary.Volumes {
		pv, ssID, ok := cfg.PrimaryVolume(sv.Name)
		if !ok {
			return vols, order, subOf, fmt.Errorf("secondary: volume %q is not a primary volume of session %q", sv.Name, cfg.Session)
		}
		// The copy has the primary's configured size. Where the config
		// leaves that to the primary's device, the secondary's device or
		// existing image gives its size, and the handshake refuses a
		// primary of another size.
		size := int64(pv.Size)
		if n, ok := held[sv.Name]; ok {
			if err := heldVolumeThere(sv.Path, n); err != nil {
				return vols, order, subOf, fmt.Errorf("secondary: volume %q: %w", sv.Name, err)
			}
			size = n
		} else if state, ok := holdsData(holds, promoted, sv.Name); ok && !slices.Contains(anew, sv.Name) {
			if err := volumeImageThere(sv.Path, size, true); err != nil {
				if promoted == nil && state == secondary.StateDeleted {
					err = deletedCopyGone(cfg, log, sv.Name, sv.Path, err)
				} else {
					err = copyGone(cfg, sv.Path, err, state, primaryPairState, promoted)
				}
				if err != nil {
					return vols, order, subOf, fmt.Errorf("secondary: volume %q: %w", sv.Name, err)
				}
			}
		}
		v, err := volume.Open(sv.Path, size)
		if errors.Is(err, volume.ErrNoSize) {
			return vols, order, subOf, fmt.Errorf("secondary: volume %q: %w (the primary's volume has no size in the config: it takes its device's or image's); "+
				"give the size in its [[primary.subsystem.volume]], or create the image", sv.Name, err)
		}
		if err != nil {
			return vols, order, subOf, fmt.Errorf("secondary: %w", err)
		}
		v.SetLogger(log)
		vols[sv.Name] = v
		order = append(order, sv.Name)
		subOf[sv.Name] = ssID
	}
	return vols, order, subOf, nil
}

// takeDialed hands over the etcd client this site dialed, nil if none or
// handed over already.
func (s *Secondary) takeDialed() *coupling.EtcdStore {
	s.dialedMu.Lock()
	defer s.dialedMu.Unlock()
	d := s.dialed
	s.dialed = nil
	return d
}

func (s *Secondary) close() {
	if s.ln != nil {
		s.ln.Close()
	}
	s.early.Close()
	s.listeners.close()
	if s.sec != nil && !s.secClosed {
		s.sec.Close()
	}
	if d := s.takeDialed(); d != nil {
		d.Close()
	}
	for _, v := range s.vols {
		v.Close()
	}
	if s.siteLock != nil {
		s.siteLock.Close()
		s.siteLock = nil
	}
}

// readApplied reads a secondary volume without the view lock, for OnApplied,
// which runs while the lock is held.
func (s *Secondary) readApplied(vol string, b []byte, off int64) error {
	v, ok := s.vols[vol]
	if !ok {
		return fmt.Errorf("secondary: no volume %q", vol)
	}
	return v.ReadAt(b, off)
}

// ListenAddr, NBDAddr and ControlAddr return the addresses bound ("" if
// none): with port 0 in the config, the ones the system picked.
func (s *Secondary) ListenAddr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr()
}

// Replica returns the secondary's receiver.
func (s *Secondary) Replica() *secondary.Secondary { return s.sec }

// Close releases a secondary that was opened but not run (as recover does),
// or the listeners a promotion in place kept that were not handed over.
func (s *Secondary) Close() {
	s.close()
	s.HandOver().Close()
}

// HandOver hands the caller the NBD and control listeners of a secondary
// whose Run ended with a PromotedError, still bound: the promoted site
// serves on them (PromotedOptions.Listeners, PrimaryOptions.Listeners),
// which then owns them. A listener that could not be kept is nil, and the
// promoted site binds its address again. Zero after any other end of Run,
// and once handed over.
func (s *Secondary) HandOver() Listeners {
	s.handedMu.Lock()
	defer s.handedMu.Unlock()
	h := s.handed
	s.handed = Listeners{}
	return h
}

// Run receives, journals and applies until ctx ends, serving the read-only
// exports and the control address meanwhile.
func (s *Secondary) Run(ctx context.Context) error {
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	var srv *nbd.Server
	if s.nbdLn != nil {
		srv = &nbd.Server{Exports: secondaryExports{s}, Description: secondaryExports{s}.description, Logger: s.log.With("component", "nbd"), TLS: s.nbdTLS}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(s.nbdLn); err != nil {
				errs <- fmt.Errorf("secondary NBD: %w", err)
			}
		}()
		s.log.Info("serving consistent read-only NBD exports", "addr", s.nbdLn.Addr().String())
	}
	var cs *control.Server
	// The control server outlives Run's context: status answers until the
	// close has applied what is queued (see the end of Run).
	csCtx, stopControl := context.WithCancel(context.Background())
	defer stopControl()
	csDone := make(chan struct{})
	if s.ctlLn == nil {
		close(csDone)
	} else {
		cs = &control.Server{Status: s.Status, Metrics: s.metrics.Handler(), Token: s.token, TLS: s.ctlTLS, Logger: s.log, Early: s.early,
			History: s.history, Sites: sessionSites(s.cfg, control.Site{Role: "secondary", Control: s.ControlAddr(), NBD: s.NBDAddr(),
				Listen: s.ListenAddr()}),
			Fence:   s.fenceForRecover,
			Promote: s.promoteInPlace, CancelPromote: s.cancelPromotion, Drill: s.Drill}
		s.controlServer.Store(cs)
		go func() {
			defer close(csDone)
			if err := cs.Serve(csCtx, s.ctlLn); err != nil {
				errs <- err
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.history.Run(rctx, s.historySample)
	}()
	if s.coupler != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.coupler.Run(rctx)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.log.Info("receiving", "addr", s.ln.Addr())
		if err := s.sec.Run(rctx, s.ln); err != nil {
			errs <- err
		}
	}()
	var runErr error
	var pr failover.Promotion
	promoted := false
	// Under RunSecondary, a stop on a disk fault ends Run once its
	// backoff has passed, for RunSecondary to open the site again.
	var stopped <-chan struct{}
	if s.retries != nil {
		stopped = s.sec.Stopped()
	}
	var retry <-chan time.Time
	var reason string
wait:
	for {
		select {
		case <-ctx.Done():
		case runErr = <-errs:
		case <-stopped:
			stopped = nil
			retry, reason = s.awaitRetry()
			continue
		case <-retry:
			runErr = diskFault(reason)
			s.retries.closed(s.Status(), s.sec.Stats().Time)
		case pr = <-s.promoted:
			promoted = true
		}
		break wait
	}
	// Before anything closes: a call under way (a promotion, a drill's
	// start, a fence) ends on the journal and the volumes open, and its
	// answer is what the site did; one that comes later is refused.
	if promoted {
		cs.StopChanges("a switchover promoted this secondary: the promoted site serves on this address in a moment; ask it then")
	} else {
		cs.StopChanges(control.Stopping("the secondary"))
	}
	if !promoted {
		select {
		case pr = <-s.promoted:
			// A promotion under way when the stop began took effect:
			// the caller learns it, as the primary did.
			promoted = true
		default:
		}
	}
	if promoted {
		runErr = &PromotedError{Promotion: pr}
		// Before the servers close theirs: see Listeners.
		h, err := s.listeners.keep()
		if err != nil {
			s.log.Warn("promoted in place: the promoted site binds these addresses again, and another process may take them meanwhile", "err", err)
		}
		s.handedMu.Lock()
		s.handed = h
		s.handedMu.Unlock()
	}
	cancel()
	if promoted {
		// The promoted site serves on the listeners kept: nothing more
		// answers here.
		stopControl()
		<-csDone
	}
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		if srv != nil {
			srv.Close()
		}
		s.closeDrill()
		s.ln.Close()
		wg.Wait()
		// The close applies every group journaled and not yet applied, which
		// takes a while with a backlog: status, metrics and the status page
		// answer meanwhile, as the primary's do until it exits. They read the
		// receiver under its lock, as while it ran; nothing that changes state
		// is taken any more (StopChanges), and the volumes close after them.
		s.sec.Close()
	}()
	// Past that, a disk that hangs leaves them as a crash would.
	if err := s.awaitClose(ctx, closed); err != nil {
		if promoted {
			// The promotion took effect all the same: the caller must
			// learn it (and close the listeners kept), not only that the
			// disk hung; duplex promote, not a secondary, replays then.
			err = fmt.Errorf("%w; %w (duplex promote replays it)", runErr, err)
		}
		runErr = err
	}
	s.secClosed = true
	stopControl()
	<-csDone
	s.close()
	if errors.Is(runErr, context.Canceled) {
		runErr = nil
	}
	return runErr
}

// fenceForRecover is recover's fence of the running secondary. It takes
// its turn with the switchover's promotion requests (see promoteRequests):
// met, a promotion under way would make the site the primary while recover
// told the operator to use its volumes, and one that failed after its own
// fence would undo recover's. A site promoted refuses it; a promotion
// asked once it is fenced is refused (fenced).
func (s *Secondary) fenceForRecover() (int64, error) {
	if s.coupler != nil {
		return 0, fmt.Errorf("secondary: session %q is coupled (group %q): stop the secondary daemon, then run duplex recover --coupled, "+
			"which brings every member of the group to one time", s.cfg.Session, s.cfg.Coupling.Group)
	}
	r := &s.requests
	r.mu.Lock()
	r.awaitIdleLocked()
	if r.done != nil {
		at := r.done.PromotedAt
		r.mu.Unlock()
		return 0, fmt.Errorf("secondary: a switchover promoted this site at %s: it is the session's primary now, not a secondary to recover", at)
	}
	r.busy = true
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.endLocked()
		r.mu.Unlock()
	}()
	pos, err := s.sec.Fence()
	if err != nil {
		return 0, err
	}
	// A promotion that failed after its fence, which stayed, left its
	// marker, which has the next start undo that fence: recover's is for
	// good, so the marker goes before recover is answered.
	if err := removeInPlacePromotion(s.fsys, s.cfg); err != nil {
		return 0, fmt.Errorf("secondary: fenced, but a restart would undo the fence: %w", err)
	}
	s.log.Warn("fenced by recover: no primary is accepted any more, also after a restart")
	return pos.Time, nil
}

// Status reports the secondary's state per the contract.
func (s *Secondary) Status() control.Status {
	// One snapshot: a group applied between reading the group and reading
	// a volume would report one group's time under the other's number.
	st, views := s.sec.Snapshot(s.order)
	link := "disconnected"
	if st.Connected {
		link = "connected"
	}
	groups, jb, group, journaled := st.GroupsApplied, st.JournalBytes, st.Group, st.JournaledGroup
	out := control.Status{
		Session: s.cfg.Session, Role: "secondary",
		ConsistencyTime: control.FormatTime(st.Time), LagSeconds: control.LagSample(st.Time, time.Now()),
		Link: link, GroupsApplied: &groups, JournalBytes: &jb, Group: &group, JournaledGroup: &journaled, Peer: st.Peer,
		Laggard: st.Laggard, BytesReplicate: st.BytesJournaled, CorruptFrames: st.CorruptFrames, LastError: st.LastError,
		LastErrorAt: control.FormatWall(st.LastErrorAt),
		Stopped:     st.Stopped, DiskWait: st.DiskWait, PromotedAt: s.promotedAt, PromotedFrom: s.promotedFrom,
		GroupsWait: st.GroupsWait, CheckpointOwed: st.CheckpointOwed,
	}
	if st.Stopped != "" {
		out.DiskRetry = s.retries.status()
	}
	if g, fenced := s.sec.Generation(); g != 0 {
		out.Generation, out.Fenced = g.String(), fenced
	}
	out.HoldReleased = st.LastHoldRelease
	if s.coupler != nil {
		out.Coupling = couplingStatus(s.coupler.Status(), st)
	}
	if st.History {
		hb := st.HistoryBytes
		out.HistoryBytes, out.HistoryOverLimit = &hb, st.HistoryOverLimit
		if st.HistoryOldest != 0 {
			og := st.HistoryOldestGroup
			out.HistoryOldest, out.HistoryOldestGroup, out.HistoryNewest = control.FormatTime(st.HistoryOldest), &og, control.FormatTime(st.HistoryNewest)
		}
	}
	out.Drill, out.DrillEnded = s.drillStatus()
	if st.HeldGroups > 0 || len(st.Resyncing) > 0 {
		hg, hb := st.HeldGroups, st.HeldBytes
		out.HeldGroups, out.HeldBytes, out.Resyncing = &hg, &hb, st.Resyncing
	}
	for i, name := range s.order {
		v := s.vols[name]
		vv := views[i]
		vs := control.VolumeStatus{Name: name, Subsystem: s.subOf[name], State: contractState(vv.State),
			SizeBytes: v.Size(), CopiedBytes: v.Size(), Consistency: consistencyNote(name, vv, st.Group)}
		if vv.Consistent {
			vs.ConsistencyTime = control.FormatTime(vv.Time)
		}
		if s.rejoinedFrom != 0 && vv.Consistent && vv.AsOfSuspension && vv.Time == s.rejoinedFrom {
			// Seeded so by the rejoin: the volume holds what this site
			// held as the old primary, its writes after that time among it.
			vs.ConsistencyTime = ""
			vs.Consistency = "this site's own image from before the rejoin, with the writes it made after " + control.FormatTime(vv.Time) +
				" that the promoted site never had: the promoted site's image once the rejoin's copy ends"
			if vv.Held {
				vs.Consistency += "; the copy is in progress, the groups after it are held"
			}
		}
		out.Volumes = append(out.Volumes, vs)
	}
	return out
}

// contractState maps the secondary's view of a pair to the states of the
// status contract.
func contractState(s string) string {
	switch s {
	case secondary.StateFirstCopy, secondary.StateResync:
		return "pending"
	case secondary.StateDeleted:
		return "deleted"
	}
	return s
}

// consistencyNote says in words what a volume's secondary copy is.
func consistencyNote(name string, v secondary.VolumeView, group uint64) string {
	var s string
	switch {
	case v.AppliesWaited:
		s = "not consistent until the journaled groups that waited for a primary without the volume they name, which linked, " +
			"are applied (groups_wait says which); not read meanwhile"
	case v.WaitsForPrimary:
		s = "not consistent until a primary links without the volume the journaled groups name, which this secondary's config " +
			"no longer has (groups_wait says which, and what to do); not read meanwhile"
	case !v.Consistent && v.State == secondary.StateDeleted && v.NoWholeCopy:
		s = "not consistent: its pair was deleted, and its image here holds no copy of the volume; duplex pair add " + name + " makes a full copy"
	case !v.Consistent && v.NoWholeCopy:
		s = "not consistent: never copied whole (this secondary joined while the pair was duplex, and a resync copies only changed regions); " +
			"a full copy is needed: duplex pair delete " + name + ", then duplex pair add " + name
	case !v.Consistent && v.Released:
		s = "not consistent: the secondary gave up holding its resync when its journal was nearly full; consistent again once a resync of it completes"
	case !v.Consistent && (v.State == secondary.StateFirstCopy || v.FirstCopy):
		s = "not consistent: initial copy not complete"
	case !v.Consistent && v.State == secondary.StateResync:
		s = "not consistent: resync not complete"
	case !v.Consistent:
		s = "not consistent: its copy is not complete"
	case v.AsOfSuspension && !v.Held:
		// Keyed on the applied state, not the journaled one: a suspension
		// held unapplied by another volume's resync leaves the volume as
		// of the applied group.
		s = "consistent as of its suspension time " + control.FormatTime(v.Time)
	default:
		s = fmt.Sprintf("consistent as of %s (group %d)", control.FormatTime(v.Time), group)
	}
	if v.Held {
		s += "; its resync is in progress, the groups after it are held"
	}
	return s
}

// ReadAt reads a secondary volume at a consistency-group boundary.
func (s *Secondary) ReadAt(vol string, b []byte, off int64) error { return s.sec.ReadAt(vol, b, off) }

// secondaryExports serves each secondary volume read-only; a read never sees a
// half-applied consistency group.
type secondaryExports struct{ s *Secondary }

func (e secondaryExports) Lookup(name string) (nbd.Export, bool) {
	if v, ok := e.s.vols[name]; ok {
		return &secondaryExport{name: name, s: e.s, size: v.Size()}, true
	}
	// NAME@TIME: the volume as of a past time of the history.
	vol, at, ok := strings.Cut(name, "@")
	v, known := e.s.vols[vol]
	if !ok || !known {
		return nil, false
	}
	return &pastExport{secondaryExport: &secondaryExport{name: vol, s: e.s, size: v.Size()}, at: at}, true
}

// description is what NBD_OPT_LIST and NBD_INFO_DESCRIPTION say of an
// export.
func (e secondaryExports) description(name string) string {
	if _, ok := e.s.vols[name]; !ok {
		vol, at, _ := strings.Cut(name, "@")
		d := fmt.Sprintf("read-only replica of volume %s as of %s, from the secondary's history", vol, at)
		t, err := control.ParseTime(at, time.Now())
		if err != nil {
			return d + ": " + err.Error()
		}
		p, err := e.s.sec.PointAt(t.UnixNano())
		if err != nil {
			return d + ": " + err.Error()
		}
		return d + fmt.Sprintf(": consistent as of %s (group %d), the newest point of the history at or before it", control.FormatTime(p.Time), p.Group)
	}
	st, views := e.s.sec.Snapshot([]string{name})
	d := "read-only replica of volume " + name + ", " + consistencyNote(name, views[0], st.Group) +
		"; each connection reads the one consistency group current when it opens"
	if st.History && st.HistoryOldest != 0 {
		d += fmt.Sprintf("; %s@TIME (RFC 3339 or -15m) reads it as of a past time from %s to %s", name, control.FormatTime(st.HistoryOldest), control.FormatTime(st.HistoryNewest))
	}
	return d
}

func (e secondaryExports) Names() []string { return e.s.order }

type secondaryExport struct {
	name string
	s    *Secondary
	size int64
}

var errReadOnly = errors.New("secondary volumes are read-only while replicating")

func (x *secondaryExport) Size() int64                         { return x.size }
func (x *secondaryExport) ReadOnly() bool                      { return true }
func (x *secondaryExport) ReadAt(p []byte, off int64) error    { return x.s.ReadAt(x.name, p, off) }
func (x *secondaryExport) WriteAt(p []byte, off int64) error   { return errReadOnly }
func (x *secondaryExport) WriteZeroes(off, length int64) error { return errReadOnly }
func (x *secondaryExport) Trim(off, length int64) error        { return errReadOnly }
func (x *secondaryExport) Flush() error                        { return nil }

// Pin gives each NBD connection a view of the volume pinned at the group
// the secondary holds when the connection opens: every read on it sees that
// one state while replication goes on (secondary.ReadView).
func (x *secondaryExport) Pin() (nbd.Export, error) {
	v, err := x.s.sec.Pin()
	if err != nil {
		return nil, err
	}
	return &pinnedExport{secondaryExport: x, view: v}, nil
}

// pinnedExport is one connection's view of a secondary volume.
type pinnedExport struct {
	*secondaryExport
	view *secondary.ReadView
}

func (x *pinnedExport) ReadAt(p []byte, off int64) error { return x.view.ReadAt(x.name, p, off) }
func (x *pinnedExport) Close() error                     { return x.view.Close() }

// pastExport is a volume as of a past time (NAME@TIME): each connection
// gets a view of the newest point at or before it that the history holds
// (secondary.PinAt), or an NBD error saying why not; a relative time
// (-15m) is taken from the moment the connection opens.
type pastExport struct {
	*secondaryExport
	at string
}

func (x *pastExport) ReadAt(p []byte, off int64) error {
	return fmt.Errorf("secondary export %s@%s: read before a connection pinned it", x.name, x.at)
}

func (x *pastExport) Pin() (nbd.Export, error) {
	t, err := control.ParseTime(x.at, time.Now())
	if err != nil {
		return nil, fmt.Errorf("export %s@%s: %w", x.name, x.at, err)
	}
	v, err := x.s.sec.PinAt(t.UnixNano())
	if err != nil {
		return nil, fmt.Errorf("export %s@%s: %w", x.name, x.at, err)
	}
	return &pinnedExport{secondaryExport: x.secondaryExport, view: v}, nil
}

// historySample is the status page's sample of the lag and the bytes
// replicated: counters only, cheap at any number of volumes.
func (s *Secondary) historySample() control.HistorySample {
	st := s.sec.Stats()
	return control.HistorySample{LagSeconds: control.LagSample(st.Time, time.Now()), BytesReplicated: st.BytesJournaled}
}

func (s *Secondary) samples() []control.Sample {
	return secondarySamples(s.sec.Stats(), s.retries.attempts(), time.Now())
}

// checkpointOwedHelp says what duplex_checkpoint_owed counts: status's
// checkpoint_owed, as an alert reads it.
const checkpointOwedHelp = "1 while a checkpoint's write of the state file or release of the journal failed and is retried " +
	"(status's checkpoint_owed says which and since when): a restart replays the journal from the group the state file names, " +
	"and the journal's applied segments hold their space, until it succeeds."

// secondarySamples are the secondary's metrics from its Stats, attempts
// the times it waited to open again after a disk fault.
func secondarySamples(st secondary.Stats, attempts uint64, now time.Time) []control.Sample {
	up, stopped, owed := 0.0, 0.0, 0.0
	if st.Connected {
		up = 1
	}
	if st.Stopped != "" {
		stopped = 1
	}
	if st.CheckpointOwed != "" {
		owed = 1
	}
	samples := []control.Sample{
		control.Gauge("lag_seconds", lagHelp, control.Lag(st.Time, now)),
		control.Gauge("link_up", linkUpHelp, up),
		control.Gauge("stopped", stoppedHelp, stopped),
		control.Counter("disk_retries_total", diskRetriesHelp, float64(attempts)),
		control.Gauge("checkpoint_owed", checkpointOwedHelp, owed),
		control.Counter("groups_applied_total", "Consistency groups journaled and applied.", float64(st.GroupsApplied)),
		control.Counter("updates_applied_total", "Updates applied to the secondary volumes.", float64(st.UpdatesApplied)),
		control.Counter("bytes_replicated_total", bytesReplicateHelp, float64(st.BytesJournaled)),
		control.Counter("bytes_applied_total", "Data bytes (writes and copies) applied to the secondary volumes.", float64(st.BytesApplied)),
		control.Counter("record_sets_received_total", "Record sets received.", float64(st.RecordSets)),
		control.Counter("link_record_set_bytes_total", linkRecordSetHelp, float64(st.RecordSetBytes)),
		control.Counter("link_record_set_wire_bytes_total", linkWireHelp, float64(st.RecordSetWireBytes)),
		control.Counter("duplicates_total", "Record sets received again and discarded.", float64(st.Duplicates)),
		control.Counter("gaps_total", "Record sets that arrived ahead of a gap and waited for it.", float64(st.Early)),
		control.Counter("crc_errors_total", "Frames discarded for a CRC or format error.", float64(st.CorruptFrames)),
		control.Counter("refused_total", "Connections refused (handshake, session or subsystem mismatch).", float64(st.Refused)),
		control.Gauge("journal_bytes", "Bytes in journal segment files.", float64(st.JournalBytes)),
		// What a resync holds back: the consistency time stays put meanwhile,
		// so these are the figures that show the resync moving.
		control.Gauge("resync_volumes", "Volumes whose resync holds the secondary at its consistency time.", float64(len(st.Resyncing))),
		control.Gauge("held_groups", "Consistency groups journaled and held back until the resyncs end.", float64(st.HeldGroups)),
		control.Gauge("held_bytes", "Bytes of the groups held back until the resyncs end.", float64(st.HeldBytes)),
	}
	if st.History {
		over := 0.0
		if st.HistoryOverLimit != "" {
			over = 1
		}
		samples = append(samples, control.Gauge("history_bytes", "Bytes in the history's files (recover --at's undo).", float64(st.HistoryBytes)),
			control.Gauge("history_over_limit", historyOverLimitHelp, over))
	}
	return samples
}

// historyOverLimitHelp says what duplex_history_over_limit counts: status's
// history_over_limit, as an alert reads it.
const historyOverLimitHelp = "1 while the history is kept over its window or history_bytes because readers of the past " +
	"(recover --at, a view of a past time as it opens) hold its old end from a trim (status's history_over_limit says since when)."

// couplingStatus reports a coupled secondary's view of its group.
func couplingStatus(c coupling.Status, st secondary.Stats) *control.CouplingStatus {
	out := &control.CouplingStatus{Group: c.Group, Members: c.Members, Laggard: c.Laggard, LaggardSilentSeconds: c.Silent.Seconds(),
		LaggardGone: c.Gone, Held: c.Held, AddUnfinished: c.AddUnfinished, GatedGroups: st.GatedGroups}
	if out.Members == nil {
		out.Members = []string{}
	}
	if c.Master != 0 {
		out.MasterTime = control.FormatTime(c.Master)
	}
	if c.Limit != 0 {
		out.AppliedThrough = control.FormatTime(c.Limit)
	}
	if !st.JournalFullSince.IsZero() {
		out.JournalFullSince = control.FormatWall(st.JournalFullSince)
	}
	if !c.HeldSince.IsZero() {
		out.HeldSince = control.FormatWall(c.HeldSince)
	}
	if c.Recovery != 0 {
		out.RecoveryTime = control.FormatTime(c.Recovery)
	}
	return out
}
