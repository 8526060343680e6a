package site

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"duplex/config"
	"duplex/control"
	"duplex/disk"
	"duplex/history"
	"duplex/nbd"
	"duplex/secondary"
)

// drillBlock is the unit in which a drill keeps its writes: a write to part
// of one first copies the block as the drill's view reads it, so that a
// drill's index holds at most an extent per block however small its
// writes.
const drillBlock = 4096

// drillRun is the most of a drill write taken at once: the most of new
// blocks it appends to its scratch file in one piece.
const drillRun = 1 << 20

// DrillScratchPath is the file a failover drill keeps its writes in, with
// the before images of what replication overwrites while it runs (its
// view's): beside the journal directory, bounded by [secondary]
// drill_bytes.
func DrillScratchPath(cfg *config.Config) string {
	return filepath.Join(filepath.Dir(cfg.Secondary.Journal), "drill.scratch")
}

// drill is a failover drill at a running secondary: writable NBD exports of
// the volumes as of one group (a secondary.ReadView, the same group for
// every volume), whose writes go to a scratch file and never to the
// replicated volumes, while replication and the journal go on. The view
// keeps its before images in the same file, so a drill lasts as long as
// the file's bound allows, not as long as memory does. Stopping it
// discards the file.
type drill struct {
	view    *secondary.ReadView
	scratch *history.Scratch
	srv     *nbd.Server
	ln      net.Listener
	done    chan struct{}
	log     *slog.Logger
	started time.Time

	mu sync.Mutex
	// writes are the drill's writes to each volume: extents of whole
	// blocks, their data in the scratch file, their index in memory,
	// counted with the view's index of its before images against the
	// memory one read view may hold (secondary.MaxViewBytes). Blocks
	// written in order, as a file system writes a file, are one extent.
	writes map[string]*history.Overlay
	bytes  int64 // the scratch file's bytes that hold the drill's writes
	// failed is the first reason the drill could not serve a request as
	// asked (its scratch file full, its view given up), logged once.
	failed error
}

// drillState is the site's drill, if one runs, and the record of one that
// a stop of the secondary ended.
type drillState struct {
	mu    sync.Mutex
	d     *drill
	ended string
	// closed is set by closeDrill: a start whose control request was in
	// flight when the site stopped runs on after Run returned (the
	// control server's shutdown does not wait for its handlers), and
	// would leave a drill nobody closes.
	closed bool
}

// drillRecord is drill.json beside the scratch file while a drill runs: a
// start that finds it says that the drill ended with the last run.
type drillRecord struct {
	NBD             string `json:"nbd"`
	Group           uint64 `json:"group"`
	ConsistencyTime string `json:"consistency_time"`
	Started         string `json:"started"`
}

// decodeDrillRecord decodes a drill's record as its writer writes it,
// every key there (disk.DecodeRecord).
func decodeDrillRecord(b []byte) (drillRecord, error) {
	var r drillRecord
	err := disk.DecodeRecord(b, &r, "nbd", "group", "consistency_time", "started")
	return r, err
}

func drillRecordPath(scratch string) string {
	return filepath.Join(filepath.Dir(scratch), "drill.json")
}

// Drill starts (req.Stop false) or stops a drill: control.DrillRequest.
func (s *Secondary) Drill(req control.DrillRequest) (control.DrillResult, error) {
	if req.Stop {
		return s.stopDrill()
	}
	return s.startDrill(req.At)
}

// endedDrill reads the record of a drill that ran when the secondary last
// stopped, removes its scratch file, and keeps the record for the status
// until a drill is started or stopped: a drill does not outlive its
// secondary (its before images are those of the groups applied while the
// process ran, kept without a sync).
func (s *Secondary) endedDrill() error {
	path := DrillScratchPath(s.cfg)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("drill: %w", err)
	}
	b, err := os.ReadFile(drillRecordPath(path))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("drill: %w", err)
	}
	// A damaged record still says that a drill ran, and the status says
	// no more of it than that: never a drill of group 0 at no time.
	const why = " ended when the secondary stopped: a drill does not outlive its secondary, since its view of the past is the before images " +
		"of the groups applied while it ran, kept unsynced in its scratch file (discarded); duplex drill start starts a new one"
	r, err := decodeDrillRecord(b)
	if err != nil {
		err = disk.Damaged("record of a failover drill", drillRecordPath(path), err)
		s.drills.ended = fmt.Sprintf("a failover drill (its %v; which group it showed is not known)%s", err, why)
		s.log.Warn("failover drill ended by the restart: its writes are discarded", "err", err)
		return nil
	}
	s.drills.ended = fmt.Sprintf("the failover drill of group %d (consistent as of %s) started at %s%s", r.Group, r.ConsistencyTime, r.Started, why)
	s.log.Warn("failover drill ended by the restart: its writes are discarded", "group", r.Group, "consistency_time", r.ConsistencyTime, "started", r.Started)
	return nil
}

func (s *Secondary) startDrill(at string) (control.DrillResult, error) {
	if s.cfg.Secondary.DrillNBD == "" {
		return control.DrillResult{}, errors.New("drill: the config names no [secondary] drill_nbd address to serve the drill's exports on")
	}
	s.drills.mu.Lock()
	defer s.drills.mu.Unlock()
	if s.drills.closed {
		return control.DrillResult{}, errors.New("drill: the secondary is stopping")
	}
	if d := s.drills.d; d != nil {
		return d.result(), fmt.Errorf("drill: a drill of group %d runs on %s: duplex drill stop ends it first", d.view.Group, d.ln.Addr())
	}
	var t time.Time
	if at != "" {
		var err error
		if t, err = control.ParseTime(at, time.Now()); err != nil {
			return control.DrillResult{}, fmt.Errorf("drill --at %w", err)
		}
	}
	limit := int64(s.cfg.Secondary.DrillBytes)
	if limit == 0 {
		// A config built in code, not parsed: the default applies.
		limit = int64(config.DefaultDrillBytes)
	}
	sc, err := history.CreateScratch(DrillScratchPath(s.cfg), limit)
	if err != nil {
		return control.DrillResult{}, fmt.Errorf("drill: %w", err)
	}
	var v *secondary.ReadView
	if at == "" {
		v, err = s.sec.PinSpilled(sc)
	} else {
		v, err = s.sec.PinAtSpilled(t.UnixNano(), sc)
	}
	if err != nil {
		sc.Close()
		return control.DrillResult{}, fmt.Errorf("drill: %w", err)
	}
	ln, err := net.Listen("tcp", s.cfg.Secondary.DrillNBD)
	if err != nil {
		v.Close()
		sc.Close()
		return control.DrillResult{}, fmt.Errorf("drill: %w", err)
	}
	d := &drill{view: v, scratch: sc, ln: ln, done: make(chan struct{}), writes: map[string]*history.Overlay{},
		log: s.log.With("component", "drill"), started: time.Now()}
	rec, _ := json.Marshal(drillRecord{NBD: ln.Addr().String(), Group: v.Group, ConsistencyTime: control.FormatTime(v.Time), Started: control.FormatWall(d.started)})
	if err := disk.WriteFileAtomic(disk.Or(s.fsys), drillRecordPath(sc.Path()), rec); err != nil {
		ln.Close()
		v.Close()
		sc.Close()
		return control.DrillResult{}, fmt.Errorf("drill: %w", err)
	}
	s.drills.ended = ""
	d.srv = &nbd.Server{Exports: drillExports{s: s, d: d}, Logger: d.log, TLS: s.nbdTLS,
		Description: func(name string) string {
			return fmt.Sprintf("failover drill of volume %s as of %s (group %d): writable, its writes kept apart from the replicated volume and discarded by duplex drill stop",
				name, control.FormatTime(v.Time), v.Group)
		}}
	go func() {
		defer close(d.done)
		if err := d.srv.Serve(ln); err != nil {
			s.log.Warn("drill NBD", "err", err)
		}
	}()
	s.drills.d = d
	s.log.Warn("failover drill started: writable exports of a past state, writes kept apart from the replicated volumes",
		"nbd", ln.Addr().String(), "group", v.Group, "consistency_time", control.FormatTime(v.Time),
		"scratch", sc.Path(), "drill_bytes", sc.Limit())
	return d.result(), nil
}

func (s *Secondary) stopDrill() (control.DrillResult, error) {
	s.drills.mu.Lock()
	defer s.drills.mu.Unlock()
	d := s.drills.d
	if d == nil {
		if ended := s.drills.ended; ended != "" {
			s.drills.ended = ""
			if err := os.Remove(drillRecordPath(DrillScratchPath(s.cfg))); err != nil && !errors.Is(err, os.ErrNotExist) {
				return control.DrillResult{}, fmt.Errorf("drill: %w", err)
			}
			return control.DrillResult{}, errors.New("drill: no drill runs: " + ended)
		}
		return control.DrillResult{}, errors.New("drill: no drill runs")
	}
	res := d.result()
	err := d.close()
	s.drills.d = nil
	if rerr := os.Remove(drillRecordPath(d.scratch.Path())); rerr != nil && err == nil {
		err = rerr
	}
	s.log.Warn("failover drill stopped: its writes are discarded", "group", res.Group, "scratch_bytes", res.ScratchBytes)
	if err != nil {
		return res, fmt.Errorf("drill stopped: %w", err)
	}
	return res, nil
}

// drillStatus is the running drill, for the status (nil if none runs), and
// what ended the last one, if a stop of the secondary did.
func (s *Secondary) drillStatus() (*control.DrillResult, string) {
	s.drills.mu.Lock()
	defer s.drills.mu.Unlock()
	if s.drills.d == nil {
		return nil, s.drills.ended
	}
	r := s.drills.d.result()
	return &r, ""
}

// closeDrill ends a drill left running when the site stops, and refuses
// the starts that come after. Its record stays: the next start reports
// that the drill ended.
func (s *Secondary) closeDrill() {
	s.drills.mu.Lock()
	defer s.drills.mu.Unlock()
	s.drills.closed = true
	if s.drills.d != nil {
		s.drills.d.log.Warn("failover drill ended: the secondary stops, and a drill does not outlive it; its writes are discarded",
			"group", s.drills.d.view.Group)
		s.drills.d.close()
		s.drills.d = nil
	}
}

func (d *drill) close() error {
	d.srv.Close()
	<-d.done
	d.view.Close()
	return d.scratch.Close()
}

func (d *drill) result() control.DrillResult {
	d.mu.Lock()
	defer d.mu.Unlock()
	r := control.DrillResult{NBD: d.ln.Addr().String(), Group: d.view.Group, ConsistencyTime: control.FormatTime(d.view.Time),
		ScratchBytes: d.bytes, BeforeImageBytes: d.scratch.Bytes() - d.bytes, ScratchLimitBytes: d.scratch.Limit(),
		IndexBytes: d.view.Held()}
	failed := d.failed
	if failed == nil {
		failed = d.view.Gone()
	}
	if failed != nil {
		r.Failed = failed.Error()
	}
	return r
}

// fail notes why a request failed, logging the first reason once. Called
// with mu held.
func (d *drill) fail(err error) error {
	if d.failed == nil {
		d.failed = err
		d.log.Error("failover drill: a request failed (the NBD client is told, EIO or ENOSPC); duplex drill stop ends the drill",
			"group", d.view.Group, "err", err)
	}
	return err
}

// drillExports serves each volume of the drill.
type drillExports struct {
	s *Secondary
	d *drill
}

func (e drillExports) Lookup(name string) (nbd.Export, bool) {
	v, ok := e.s.vols[name]
	if !ok {
		return nil, false
	}
	return &drillExport{d: e.d, name: name, size: v.Size()}, true
}

func (e drillExports) Names() []string { return e.s.order }

type drillExport struct {
	d    *drill
	name string
	size int64
}

func (x *drillExport) Size() int64    { return x.size }
func (x *drillExport) ReadOnly() bool { return false }
func (x *drillExport) Flush() error   { return nil }

// ReadAt reads the view, then lays the drill's writes over it.
func (x *drillExport) ReadAt(p []byte, off int64) error {
	err := x.d.view.ReadAt(x.name, p, off)
	x.d.mu.Lock()
	defer x.d.mu.Unlock()
	if err != nil {
		if errors.Is(err, secondary.ErrViewGone) {
			x.d.fail(err)
		}
		return err
	}
	if o := x.d.writes[x.name]; o != nil {
		if err := o.ReadOver(p, off); err != nil {
			return x.d.fail(fmt.Errorf("drill %s: %w", x.name, err))
		}
	}
	return nil
}

func (x *drillExport) WriteAt(p []byte, off int64) error {
	return x.write(off, int64(len(p)), func(dst []byte, at int64) { copy(dst, p[at-off:]) })
}

func (x *drillExport) WriteZeroes(off, length int64) error {
	return x.write(off, length, func(dst []byte, _ int64) { clear(dst) })
}

// WriteZeroesAllocated is WriteZeroes: the drill's zeroes are blocks it
// holds, allocated in its scratch file.
func (x *drillExport) WriteZeroesAllocated(off, length int64) error {
	return x.WriteZeroes(off, length)
}

// Trim reads back as zeros, as a trim at the primary's exports may.
func (x *drillExport) Trim(off, length int64) error { return x.WriteZeroes(off, length) }

// write fills [off, off+length) of the drill's blocks with fill(dst, at)
// (dst the bytes at at), a run of blocks at a time: the blocks it holds are
// rewritten in place in the scratch file; new ones, each first read from
// the view unless written whole, are appended to it, once the index has
// room for them within the view's memory bound.
func (x *drillExport) write(off, length int64, fill func(dst []byte, at int64)) error {
	if off < 0 || length < 0 || off+length > x.size {
		return fmt.Errorf("drill %s: write of %d bytes at %d past the volume's %d: %w", x.name, length, off, x.size, syscall.EINVAL)
	}
	if length == 0 {
		return nil
	}
	end := off + length
	x.d.mu.Lock()
	defer x.d.mu.Unlock()
	o := x.d.writes[x.name]
	if o == nil {
		o = history.NewSpilledOverlay(x.d.scratch)
		x.d.writes[x.name] = o
	}
	var run []byte
	for bs := off / drillBlock * drillBlock; bs < end; {
		be := min(bs+drillRun, (end+drillBlock-1)/drillBlock*drillBlock, x.size)
		if int64(cap(run)) < be-bs {
			run = make([]byte, be-bs)
		}
		run = run[:be-bs]
		s, e := max(off, bs), min(end, be)
		// The parts of its first and last blocks the write leaves, if
		// the drill holds no write of them yet.
		edges := []int64{bs}
		if last := (e - 1) / drillBlock * drillBlock; last != bs {
			edges = append(edges, last)
		}
		for _, b := range edges {
			blk := run[b-bs : min(b+drillBlock, be)-bs]
			if (s > b || e < b+int64(len(blk))) && o.Missing(uint64(b), uint64(len(blk))) > 0 {
				if err := x.d.view.ReadAt(x.name, blk, b); err != nil {
					if errors.Is(err, secondary.ErrViewGone) {
						x.d.fail(err)
					}
					return err
				}
			}
		}
		fill(run[s-bs:e-bs], s)
		if err := o.WriteOver(run[s-bs:e-bs], s); err != nil {
			return x.d.fail(fmt.Errorf("drill %s: %w", x.name, err))
		}
		if err := x.add(o, history.Extent{Volume: x.name, Offset: uint64(bs), Length: uint64(be - bs), Data: run}); err != nil {
			return err
		}
		bs = be
	}
	return nil
}

// add takes the blocks of e the drill holds no write of yet into its
// scratch file, and their extents into its index. Called with mu held.
func (x *drillExport) add(o *history.Overlay, e history.Extent) error {
	parts := o.Missing(e.Offset, e.Length)
	if parts == 0 {
		return nil
	}
	if err := x.d.view.Reserve(history.IndexGrowth(parts)); errors.Is(err, secondary.ErrViewFull) {
		return x.d.fail(fmt.Errorf("drill %s: its index in memory has no room for the extents of %d bytes more at %d: %w (%w)",
			x.name, e.Length, e.Offset, syscall.ENOSPC, err))
	} else if err != nil {
		return x.d.fail(err)
	}
	index, spilled := o.Bytes(), o.Spilled()
	err := o.Add(e)
	// What a failed Add took is the drill's too: each extent it holds
	// has its data, so the write is only partly done.
	x.d.view.Charge(o.Bytes() - index)
	x.d.bytes += o.Spilled() - spilled
	if errors.Is(err, history.ErrScratchFull) {
		return x.d.fail(fmt.Errorf("drill %s: its scratch file holds its writes and the before images its point in time needs, "+
			"%d MiB ([secondary] drill_bytes), and has no room for more: %w (%w)", x.name, x.d.scratch.Limit()>>20, syscall.ENOSPC, err))
	}
	if err != nil {
		return x.d.fail(fmt.Errorf("drill %s: %w", x.name, err))
	}
	return nil
}

// indexBytes is the memory the drill's index of its writes holds.
func (d *drill) indexBytes() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	var n int64
	for _, o := range d.writes {
		n += o.Bytes()
	}
	return n
}
