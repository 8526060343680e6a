package site

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"time"

	"duplex/config"
	"duplex/control"
	"duplex/disk"
	"duplex/journal"
	"duplex/nbd"
	"duplex/secondary"
	"duplex/tlsconf"
	"duplex/transport"
	"duplex/volume"
)

// The backoff of a secondary that stopped on a disk fault, before it opens
// its journal and volumes again. A second is longer than a transient EIO
// (a path failover, a controller reset) usually lasts and short enough that
// the primary, which paces its writes meanwhile, barely notices; doubling
// to a minute bounds how long freed space or a repaired disk waits to be
// noticed, while a disk that stays broken costs one replay of the journal's
// unapplied groups a minute, not a busy loop.
const (
	DefaultDiskRetryFirst = time.Second
	DefaultDiskRetryMax   = time.Minute
)

const (
	stoppedHelp     = "1 when the secondary stopped receiving: it cannot make groups durable (see status)."
	diskRetriesHelp = "Times the secondary stopped on a disk fault, or failed to open again after one, and waited to open again."
)

// ErrNoRetry is wrapped by RunSecondary's error when an attempt to open
// the secondary again after a disk fault found what no later attempt can
// change (see lasting): it stops retrying, for the daemon to exit with the
// error and its supervisor to see it.
var ErrNoRetry = errors.New("no retry can change this, so the secondary stops retrying")

// lasting says what the operator is to do about err, an attempt to open
// the secondary again after a disk fault that failed, when no later attempt
// can change it: what the attempt read is wrong, not the disk's answer. ""
// when a later one may open the site: a disk's error (EIO, ENOSPC,
// EDQUOT, EROFS until the file system is mounted read-write again), a
// device claimed by another program or not attached again, a volume that
// is not there again yet, a journal short of room, and whatever else it
// does not know, as a restart would have met it too. The config is the
// one the first attempt opened, checked then.
func lasting(err error) string {
	switch {
	case errors.Is(err, journal.ErrCorrupt):
		return "the journal is damaged beyond the torn tail a crash leaves, and the secondary repairs nothing in it: " +
			"repair or restore the named file, then start the secondary again; the groups it holds after the last one applied " +
			"are nowhere else (the primary let them go once they were journaled)"
	case errors.Is(err, volume.ErrWrongSize):
		return "a volume is not the size the secondary held: it holds something else now; " +
			"put back the volume the secondary held (or correct its path or size in the config), then start the secondary again"
	case errors.Is(err, disk.ErrDamaged):
		return "a record the secondary keeps beside its journal is damaged (not what it writes: cut short, overwritten), " +
			"and reading it again gives the same: do what the error says of the named file, then start the secondary again"
	case errors.Is(err, secondary.ErrOtherSession):
		return "the state file beside the journal is another session's: put back this session's site directory " +
			"(or correct the journal's path in the config), then start the secondary again"
	}
	return ""
}

// operatorsFile says what the operator is to do about err, an attempt to
// open the secondary again after a disk fault that failed on a TLS
// certificate, key or CA file or the control token file that is not
// usable (empty, cut short, not PEM), "" for any other failure. Unlike
// the records of lasting these are the operator's files, which the
// secondary never writes and another program may be replacing (a
// certificate's renewal): the attempts go on, and the next one reads the
// file again.
func operatorsFile(err error) string {
	if errors.Is(err, tlsconf.ErrUnusable) || errors.Is(err, control.ErrEmptyToken) {
		return "replace the file the error names with a good one (the secondary never writes it): the next attempt reads it again"
	}
	return ""
}

// heldVolumeThere checks a volume a site of this process held, of size
// bytes, before a site opened after a disk fault opens it. volume.Open
// creates a missing image and sizes an empty one, as a new session's
// volume: here the journal's groups since the last checkpoint would be
// applied over zeros, and the copy reported consistent. A missing volume
// may come back (a file system not mounted again yet, a device not
// attached again): the attempt fails, and the next tries again. An image
// of another size (a device's is checked by volume.Open against size) is
// not the volume held: no attempt changes that.
func heldVolumeThere(path string, size int64) error {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s is gone (%w): a volume the secondary held is never created again; "+
			"it opens once the volume is back (its file system mounted again, its device attached again)", path, err)
	case err != nil:
		// volume.Open says it.
		return nil
	case st.Mode().IsRegular() && st.Size() != size:
		return fmt.Errorf("%s: the image is %d bytes, it was %d when the secondary last opened it: %w", path, st.Size(), size, volume.ErrWrongSize)
	}
	return nil
}

// siteFiles are the journal and the files beside it that a site opened
// again after a disk fault must find as the first site did: the secondary
// creates each when it is missing, as a new session's, and here the
// journal's groups not yet applied (which the primary let go) would be
// lost, and the fence and the applied group forgotten.
func siteFiles(fsys disk.FS, cfg *config.Config) []string {
	var held []string
	for _, p := range []string{cfg.Secondary.Journal, StatePath(cfg), secondary.IdentityPath(StatePath(cfg))} {
		if _, err := disk.Or(fsys).Stat(p); err == nil {
			held = append(held, p)
		}
	}
	return held
}

// heldFilesThere checks the files siteFiles found before a site opened
// again after a disk fault opens. One missing may come back (its file
// system not mounted again yet): the attempt fails, and the next tries
// again.
func heldFilesThere(fsys disk.FS, held []string) error {
	for _, p := range held {
		if _, err := disk.Or(fsys).Stat(p); errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s is gone (%w): the journal and the files beside it are never created again once the secondary held them; "+
				"it opens once they are back (their file system mounted again)", p, err)
		}
	}
	return nil
}

// ErrDiskFault ends the Run of a secondary that RunSecondary runs, once it
// stopped on a disk fault and its backoff has passed: RunSecondary closes
// it and opens it again.
var ErrDiskFault = errors.New("secondary stopped on a disk fault")

// DiskRetry is how RunSecondary waits before it opens the secondary again
// after a disk fault stopped it: First after the fault, doubling at each
// attempt that fails, never more than Max. Zero fields take the defaults.
type DiskRetry struct {
	First, Max time.Duration
}

// diskRetries are a RunSecondary's attempts, shared by the sites it opens
// one after the other, for their status and metrics.
type diskRetries struct {
	DiskRetry
	mu      sync.Mutex
	attempt int       // since the site last ran clean for Max
	total   uint64    // every attempt of this process
	err     string    // the fault, or why the last attempt failed
	next    time.Time // the next attempt; zero while none is due
	opened  time.Time // when the site running now opened
	// last is the status of the site that stopped, as it closed, and
	// lastTime its consistency time: what status says between attempts.
	last     control.Status
	lastTime int64
}

// failed counts an attempt after err (a stop, or an open that failed), and
// returns how long to wait before the next.
func (r *diskRetries) failed(err string) (attempt int, wait time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.opened.IsZero() && time.Since(r.opened) > r.Max {
		// It ran clean longer than the longest wait: a new fault.
		r.attempt = 0
	}
	r.opened = time.Time{}
	r.attempt++
	r.total++
	wait = r.First
	for i := 1; i < r.attempt && wait < r.Max; i++ {
		wait *= 2
	}
	wait = min(wait, r.Max)
	r.err, r.next = err, time.Now().Add(wait)
	return r.attempt, wait
}

// ran records that a site opened, and runs from now.
func (r *diskRetries) ran() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.opened, r.next, r.err = time.Now(), time.Time{}, ""
}

// status is what status reports while an attempt is due; nil otherwise.
func (r *diskRetries) status() *control.DiskRetry {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.next.IsZero() {
		return nil
	}
	return &control.DiskRetry{Attempt: r.attempt, Error: r.err, Next: control.FormatWall(r.next)}
}

// closed records the status of the stopped site as it closes.
func (r *diskRetries) closed(st control.Status, t int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last, r.lastTime = st, t
}

// between is the status served while no site is open, an attempt having
// failed: the journal holds at least the consistency time of the site that
// stopped, which a start or recover reaches, but an open that failed may
// have applied groups after it, or part of one, so nothing is said of the
// volumes' copies but their names and pair states.
func (r *diskRetries) between() control.Status {
	st := r.status()
	r.mu.Lock()
	defer r.mu.Unlock()
	out := control.Status{Session: r.last.Session, Role: "secondary", ConsistencyTime: r.last.ConsistencyTime,
		LagSeconds: control.LagSample(r.lastTime, time.Now()), Link: "disconnected", Stopped: r.last.Stopped, DiskRetry: st,
		Group: r.last.Group, JournaledGroup: r.last.JournaledGroup, Generation: r.last.Generation}
	for _, v := range r.last.Volumes {
		out.Volumes = append(out.Volumes, control.VolumeStatus{Name: v.Name, Subsystem: v.Subsystem, State: v.State, SizeBytes: v.SizeBytes,
			CopiedBytes: v.CopiedBytes, Consistency: "not known while the secondary opens again after a disk fault: its journal recovers it"})
	}
	return out
}

// serveBetween serves status (and nothing else) on the control address
// for wait, while no site is open, an attempt having failed, and on the
// NBD address the exports' names, each refused at its handshake saying
// why (retryingExports).
func (r *diskRetries) serveBetween(ctx context.Context, cfg *config.Config, log *slog.Logger, wait time.Duration) {
	t := time.NewTimer(wait)
	defer t.Stop()
	// Each on its own: an NBD address another process took meanwhile
	// leaves status served.
	var l, n listeners
	if err := l.listen(cfg, "secondary", "secondary", "", cfg.Secondary.Control, Listeners{}); err != nil {
		log.Warn("secondary: no status until it opens again", "err", err)
	}
	defer l.close()
	if err := n.listen(cfg, "secondary", "secondary", cfg.Secondary.NBD, "", Listeners{}); err != nil {
		log.Warn("secondary: its NBD address refuses connections until it opens again", "err", err)
	}
	defer n.close()
	if n.nbdLn != nil {
		if tlsConf, err := tlsconf.SecondaryNBD(cfg); err != nil {
			log.Warn("secondary: its NBD address refuses connections until it opens again", "err", err)
		} else {
			srv := &nbd.Server{Exports: retryingExports{r}, Description: retryingExports{r}.description, Logger: log.With("component", "nbd"), TLS: tlsConf}
			done := make(chan struct{})
			go func() {
				defer close(done)
				srv.Serve(n.nbdLn)
			}()
			defer func() {
				srv.Close()
				<-done
			}()
		}
	}
	if l.ctlLn != nil {
		sctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		// The metrics too: a scrape must find the secondary stopped, not
		// nothing, while it fails to open.
		m := control.NewMetrics(cfg.Session, "secondary", func() []control.Sample {
			return []control.Sample{
				control.Gauge("link_up", linkUpHelp, 0),
				control.Gauge("stopped", stoppedHelp, 1),
				control.Counter("disk_retries_total", diskRetriesHelp, float64(r.attempts())),
			}
		})
		cs := &control.Server{Status: r.between, Metrics: m.Handler(), TLS: l.ctlTLS, Logger: log}
		if tp := cfg.TokenPath(); tp != "" {
			// With the token, a command that changes the site's state is
			// told why it is refused, not that the session has none.
			if tok, err := control.ReadToken(tp); err == nil {
				cs.Token = tok
			}
		}
		// Nothing to change while no site is open: a switchover's
		// promotion so refused is abandoned, recover told to stop the
		// daemon first.
		cs.StopChanges("the secondary opens again after a disk fault, with a backoff (see status): no site is open to take this command; " +
			"stop the secondary daemon (SIGTERM) to recover or promote it, or run the command again once it is open")
		go func() {
			defer close(done)
			cs.Serve(sctx, l.ctlLn)
		}()
		defer func() {
			cancel()
			<-done
		}()
	}
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// retryingExports are the secondary's read-only exports while no site is
// open, between its attempts to open again after a disk fault: listed,
// each refused at its handshake saying why and when the next attempt is
// (its Pin fails), rather than a refused connection, which says nothing
// to a client but that no secondary is there.
type retryingExports struct{ r *diskRetries }

type retryingExport struct {
	r    *diskRetries
	size int64
}

func (e retryingExports) Names() []string {
	e.r.mu.Lock()
	defer e.r.mu.Unlock()
	var names []string
	for _, v := range e.r.last.Volumes {
		names = append(names, v.Name)
	}
	return names
}

func (e retryingExports) Lookup(name string) (nbd.Export, bool) {
	e.r.mu.Lock()
	defer e.r.mu.Unlock()
	for _, v := range e.r.last.Volumes {
		if v.Name == name {
			return &retryingExport{r: e.r, size: v.SizeBytes}, true
		}
	}
	return nil, false
}

func (e retryingExports) description(name string) string {
	return "read-only replica of volume " + name + ": " + e.r.refusal().Error()
}

// refusal is what a client of an export is told between the attempts.
func (r *diskRetries) refusal() error {
	st := r.status()
	if st == nil {
		return errors.New("not served while the secondary opens again after a disk fault; connect again once it has")
	}
	return fmt.Errorf("not served while the secondary opens again after a disk fault (attempt %d at %s; the last failed: %s); "+
		"connect again once it has (duplex status)", st.Attempt, st.Next, st.Error)
}

var errRetrying = errors.New("not served while the secondary opens again after a disk fault")

func (x *retryingExport) Pin() (nbd.Export, error)            { return nil, x.r.refusal() }
func (x *retryingExport) Size() int64                         { return x.size }
func (x *retryingExport) ReadOnly() bool                      { return true }
func (x *retryingExport) ReadAt(p []byte, off int64) error    { return errRetrying }
func (x *retryingExport) WriteAt(p []byte, off int64) error   { return errRetrying }
func (x *retryingExport) WriteZeroes(off, length int64) error { return errRetrying }
func (x *retryingExport) Trim(off, length int64) error        { return errRetrying }
func (x *retryingExport) Flush() error                        { return errRetrying }

// attempts is every attempt of this process, for the metrics.
func (r *diskRetries) attempts() uint64 {
	if r == nil {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.total
}

// RunSecondary opens the secondary site of cfg and runs it until ctx ends,
// and does what a restart does whenever the secondary stops on a disk fault
// (a volume's write or fsync, or the journal's write or fsync, failed; the
// journal's file system is full). The stopped site serves status and its
// read-only exports at the last applied group (reads fail once writing
// the volumes back failed) for the backoff's wait (see
// DiskRetry), then is closed, volumes, journal and listeners: after a
// failed fsync nothing it holds can be trusted. It is then opened again:
// the journal recovers from what is on the disk, every journaled group
// after the state file's is applied again, a group whose writes failed
// included, whole, and the primary links again and resends what was never
// journaled. An open that fails waits its backoff and tries again, unless
// it found what no attempt can change (a journal damaged beyond a torn
// tail, a volume of another size, another session's state file, a state
// file, identity or other record beside the journal damaged: see
// lasting): RunSecondary then returns its error, wrapping ErrNoRetry, and
// says what to do. A volume the first site held is never created or
// sized again (see heldVolumeThere). So a crash at any moment of the
// retries, as of a restart, leaves the volumes at a group boundary the
// next start replays from.
//
// started is called with each site opened, before it runs. The addresses
// of the first site are bound again by the next (port 0 in cfg is resolved
// once). A Listener in opts is served by every site, and closed when
// RunSecondary returns: it must go on accepting after the context of an
// Accept ended (a transport.MemNetwork does, a TCPListener does not: leave
// it nil). RunSecondary returns the last site opened, closed, and what
// ended its Run: nil when ctx ended, a PromotedError after a switchover;
// or why the first open failed.
func RunSecondary(ctx context.Context, cfg *config.Config, log *slog.Logger, opts SecondaryOptions, retry DiskRetry, started func(*Secondary)) (*Secondary, error) {
	if opts.Offline {
		return nil, errors.New("secondary: RunSecondary runs the site: an Offline one is for recover")
	}
	if opts.Listener != nil {
		defer opts.Listener.Close()
		opts.Listener = keptListener{opts.Listener}
	}
	if log == nil {
		log = slog.Default()
	}
	// The site's lock, held across the attempts, while no site is open
	// too (see lockSite): the first site takes it as OpenSecondary does,
	// its status answering while it waits, and hands it over.
	var lock io.Closer
	defer func() {
		if lock != nil {
			lock.Close()
		}
	}()
	r := &diskRetries{DiskRetry: retry}
	if r.First <= 0 {
		r.First = DefaultDiskRetryFirst
	}
	if r.Max < r.First {
		r.Max = max(DefaultDiskRetryMax, r.First)
	}
	opts.retries = r
	var last *Secondary
	for {
		open := OpenSecondary
		if last != nil {
			open = func(cfg *config.Config, log *slog.Logger, opts SecondaryOptions) (*Secondary, error) {
				return openAgain(ctx, cfg, log, opts)
			}
		}
		s, err := open(cfg, log, opts)
		if err != nil {
			if last == nil || errors.Is(err, secondary.ErrInterrupted) || errors.Is(err, ErrDiskHung) {
				return last, err
			}
			if ctx.Err() != nil {
				// The operator's stop, during an attempt: the disk's fault
				// was known, and a stop during the wait is as clean.
				log.Warn("secondary: stopped while opening again after a disk fault; the attempt failed", "err", err)
				return last, nil
			}
			if fix := lasting(err); fix != "" {
				log.Error("secondary: opening again after a disk fault found what no retry can change: it stops", "err", err, "fix", fix)
				return last, fmt.Errorf("opening again after a disk fault: %w; %w: %s", err, ErrNoRetry, fix)
			}
			attempt, wait := r.failed(err.Error())
			if fix := operatorsFile(err); fix != "" {
				log.Error("secondary: opening again after a disk fault failed; trying again after the wait", "attempt", attempt, "wait", wait, "err", err,
					"fix", fix)
			} else {
				log.Error("secondary: opening again after a disk fault failed; trying again after the wait", "attempt", attempt, "wait", wait, "err", err)
			}
			if r.serveBetween(ctx, cfg, log, wait); ctx.Err() != nil {
				return last, nil
			}
			continue
		}
		if last == nil {
			lock, s.siteLock = s.siteLock, nil
			opts.siteLocked = true
			// The next sites bind what this one did.
			c := *cfg
			if opts.Listener == nil {
				c.Secondary.Listen = s.ListenAddr()
			}
			c.Secondary.NBD, c.Secondary.Control = s.NBDAddr(), s.ControlAddr()
			cfg = &c
			opts.held = map[string]int64{}
			for name, v := range s.vols {
				opts.held[name] = v.Size()
			}
			opts.heldFiles = siteFiles(opts.FS, cfg)
		} else {
			log.Info("secondary opened again after a disk fault: the journal recovered and applied; linking")
		}
		last = s
		r.ran()
		if started != nil {
			started(s)
		}
		if err := s.Run(ctx); !errors.Is(err, ErrDiskFault) {
			return s, err
		}
	}
}

// openAgain is OpenSecondary for an attempt to open again after a disk
// fault, which waits on the disk as the running secondary does, but once
// ctx has ended (the operator's stop) for SecondaryStopHungWait at most:
// the attempt, hung on the disk, is then left to the process's exit (a
// site it opens later is closed), and the error wraps ErrDiskHung.
func openAgain(ctx context.Context, cfg *config.Config, log *slog.Logger, opts SecondaryOptions) (*Secondary, error) {
	type opened struct {
		s   *Secondary
		err error
	}
	ch := make(chan opened, 1)
	go func() {
		s, err := OpenSecondary(cfg, log, opts)
		ch <- opened{s, err}
	}()
	select {
	case o := <-ch:
		return o.s, o.err
	case <-ctx.Done():
	}
	hung := cmp.Or(opts.stopHungWait, SecondaryStopHungWait)
	t := time.NewTimer(hung)
	defer t.Stop()
	select {
	case o := <-ch:
		return o.s, o.err
	case <-t.C:
	}
	go func() {
		if o := <-ch; o.s != nil {
			o.s.Close()
		}
	}()
	err := fmt.Errorf("secondary: %w: the attempt to open it again after a disk fault had not ended %s after the stop, and nothing cancels "+
		"what it waits for on the disk; the journal and the volumes are left as a crash leaves them: the next start replays the journal to a group boundary",
		ErrDiskHung, hung)
	log.Error("stopping without waiting more for the disk", "err", err)
	return nil, err
}

// awaitRetry is Run's wait, once the secondary stopped, before it ends
// with ErrDiskFault for RunSecondary to open it again.
func (s *Secondary) awaitRetry() (<-chan time.Time, string) {
	reason := s.sec.Stats().Stopped
	attempt, wait := s.retries.failed(reason)
	s.log.Error("secondary stopped on a disk fault: it closes its journal and volumes and opens them again, as a restart does, after the wait",
		"attempt", attempt, "wait", wait, "err", reason)
	return time.After(wait), reason
}

// diskFault is how Run ends for RunSecondary to open the site again.
func diskFault(reason string) error { return fmt.Errorf("%w: %s", ErrDiskFault, reason) }

// keptListener is a Listener each site RunSecondary opens closes, for the
// next to accept on.
type keptListener struct{ transport.Listener }

func (keptListener) Close() error { return nil }

// SecondaryStopHungWait bounds the operator's stop of a secondary whose
// disk hangs: once something has waited on the disk this long (the
// journal's fsync of a group, a group's writes to the volumes, a
// checkpoint's fsync), the stop waits no more for it. Nothing cancels an
// fsync, nor would an attempt to open again do better than wait on the
// same disk: a disk that hangs is reported (DISK-WAIT, after
// secondary.DefaultSlowDisk) and waited for while the secondary runs,
// and replication goes on once it answers; but a stop that waited for it
// too would keep the operator, and a supervisor's restart, waiting for
// ever. The stop then leaves the journal and the volumes as a crash
// would, which the next start replays to a group boundary. As long as
// the primary's StopFlushWait, for the same reason.
const SecondaryStopHungWait = 30 * time.Second

// ErrDiskHung ends a secondary's Run whose stop did not wait for a disk
// that hangs (see SecondaryStopHungWait).
var ErrDiskHung = errors.New("stopped with its disk hung")

// awaitClose waits for closed, the close of a stopping secondary's
// receiver. Once ctx has ended (the operator's stop, not a close to open
// again after a disk fault, which waits for the disk as the running
// secondary does) and something has waited on the disk for stopHungWait,
// it gives up with ErrDiskHung: the close goes on, if the disk ever
// answers, while the process exits.
func (s *Secondary) awaitClose(ctx context.Context, closed <-chan struct{}) error {
	t := time.NewTicker(min(s.stopHungWait/10, time.Second))
	defer t.Stop()
	for {
		select {
		case <-closed:
			return nil
		case <-t.C:
		}
		what, since := s.sec.DiskWait()
		if ctx.Err() == nil || since.IsZero() || time.Since(since) < s.stopHungWait {
			continue
		}
		err := fmt.Errorf("secondary: %w: %s has waited on the disk for %s (since %s) and nothing cancels it; "+
			"the journal and the volumes are left as a crash leaves them: the next start replays the journal to a group boundary",
			ErrDiskHung, what, time.Since(since).Round(time.Second), since.UTC().Format(time.RFC3339))
		s.log.Error("stopping without waiting more for the disk", "err", err)
		return err
	}
}
