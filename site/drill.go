package site

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"

	"duplex/control"
	"duplex/nbd"
	"duplex/secondary"
)

// MaxDrillBytes bounds what a drill's writes hold in memory: past it, a
// write that needs a new block fails with ENOSPC.
const MaxDrillBytes = 1 << 30

// drillBlock is the unit in which a drill keeps its writes: a write to part
// of one first copies the block as the drill's view reads it.
const drillBlock = 4096

// drill is a failover drill at a running secondary: writable NBD exports of
// the volumes as of one group (a secondary.ReadView, the same group for
// every volume), whose writes go to blocks held in memory and never to the
// replicated volumes, while replication and the journal go on. Stopping it
// discards the writes.
type drill struct {
	view *secondary.ReadView
	srv  *nbd.Server
	ln   net.Listener
	done chan struct{}

	mu     sync.Mutex
	blocks map[string]map[int64][]byte // volume, block number: the drill's writes
	bytes  int64
}

// drillState is the site's drill, if one runs.
type drillState struct {
	mu sync.Mutex
	d  *drill
}

// Drill starts (req.Stop false) or stops a drill: control.DrillRequest.
func (s *Secondary) Drill(req control.DrillRequest) (control.DrillResult, error) {
	if req.Stop {
		return s.stopDrill()
	}
	return s.startDrill(req.At)
}

func (s *Secondary) startDrill(at string) (control.DrillResult, error) {
	if s.cfg.Secondary.DrillNBD == "" {
		return control.DrillResult{}, errors.New("drill: the config names no [secondary] drill_nbd address to serve the drill's exports on")
	}
	s.drills.mu.Lock()
	defer s.drills.mu.Unlock()
	if d := s.drills.d; d != nil {
		return d.result(), fmt.Errorf("drill: a drill of group %d runs on %s: duplex drill stop ends it first", d.view.Group, d.ln.Addr())
	}
	var (
		v   *secondary.ReadView
		err error
	)
	if at == "" {
		v, err = s.sec.Pin()
	} else {
		var t time.Time
		if t, err = control.ParseTime(at, time.Now()); err != nil {
			return control.DrillResult{}, fmt.Errorf("drill --at %w", err)
		}
		v, err = s.sec.PinAt(t.UnixNano())
	}
	if err != nil {
		return control.DrillResult{}, fmt.Errorf("drill: %w", err)
	}
	ln, err := net.Listen("tcp", s.cfg.Secondary.DrillNBD)
	if err != nil {
		v.Close()
		return control.DrillResult{}, fmt.Errorf("drill: %w", err)
	}
	d := &drill{view: v, ln: ln, done: make(chan struct{}), blocks: map[string]map[int64][]byte{}}
	d.srv = &nbd.Server{Exports: drillExports{s: s, d: d}, Logger: s.log.With("component", "drill"), TLS: s.nbdTLS,
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
		"nbd", ln.Addr().String(), "group", v.Group, "consistency_time", control.FormatTime(v.Time))
	return d.result(), nil
}

func (s *Secondary) stopDrill() (control.DrillResult, error) {
	s.drills.mu.Lock()
	defer s.drills.mu.Unlock()
	d := s.drills.d
	if d == nil {
		return control.DrillResult{}, errors.New("drill: no drill runs")
	}
	res := d.result()
	d.close()
	s.drills.d = nil
	s.log.Warn("failover drill stopped: its writes are discarded", "group", res.Group, "scratch_bytes", res.ScratchBytes)
	return res, nil
}

// drillStatus is the running drill, for the status: nil if none runs.
func (s *Secondary) drillStatus() *control.DrillResult {
	s.drills.mu.Lock()
	defer s.drills.mu.Unlock()
	if s.drills.d == nil {
		return nil
	}
	r := s.drills.d.result()
	return &r
}

// closeDrill ends a drill left running when the site stops.
func (s *Secondary) closeDrill() {
	s.drills.mu.Lock()
	defer s.drills.mu.Unlock()
	if s.drills.d != nil {
		s.drills.d.close()
		s.drills.d = nil
	}
}

func (d *drill) close() {
	d.srv.Close()
	<-d.done
	d.view.Close()
}

func (d *drill) result() control.DrillResult {
	d.mu.Lock()
	defer d.mu.Unlock()
	return control.DrillResult{NBD: d.ln.Addr().String(), Group: d.view.Group, ConsistencyTime: control.FormatTime(d.view.Time), ScratchBytes: d.bytes}
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
	if err := x.d.view.ReadAt(x.name, p, off); err != nil {
		return err
	}
	x.d.mu.Lock()
	defer x.d.mu.Unlock()
	blocks := x.d.blocks[x.name]
	if len(blocks) == 0 {
		return nil
	}
	end := off + int64(len(p))
	for b := off / drillBlock; b*drillBlock < end; b++ {
		blk, ok := blocks[b]
		if !ok {
			continue
		}
		s, e := max(off, b*drillBlock), min(end, (b+1)*drillBlock)
		copy(p[s-off:e-off], blk[s-b*drillBlock:e-b*drillBlock])
	}
	return nil
}

func (x *drillExport) WriteAt(p []byte, off int64) error {
	return x.write(off, int64(len(p)), func(dst []byte, at int64) { copy(dst, p[at-off:]) })
}

func (x *drillExport) WriteZeroes(off, length int64) error {
	return x.write(off, length, func(dst []byte, _ int64) { clear(dst) })
}

// Trim reads back as zeros, as a trim at the primary's exports may.
func (x *drillExport) Trim(off, length int64) error { return x.WriteZeroes(off, length) }

// write fills [off, off+length) of the drill's blocks with fill(dst, at)
// (dst the bytes at at), each new block first read from the view.
func (x *drillExport) write(off, length int64, fill func(dst []byte, at int64)) error {
	if off < 0 || length < 0 || off+length > x.size {
		return fmt.Errorf("drill %s: write of %d bytes at %d past the volume's %d: %w", x.name, length, off, x.size, syscall.EINVAL)
	}
	end := off + length
	x.d.mu.Lock()
	defer x.d.mu.Unlock()
	blocks := x.d.blocks[x.name]
	if blocks == nil {
		blocks = map[int64][]byte{}
		x.d.blocks[x.name] = blocks
	}
	for b := off / drillBlock; b*drillBlock < end; b++ {
		blk, ok := blocks[b]
		s, e := max(off, b*drillBlock), min(end, (b+1)*drillBlock)
		if !ok {
			if x.d.bytes+drillBlock > MaxDrillBytes {
				return fmt.Errorf("drill %s: its writes hold %d MiB, the most a drill keeps: %w", x.name, MaxDrillBytes>>20, syscall.ENOSPC)
			}
			blk = make([]byte, drillBlock)
			bs, be := b*drillBlock, min((b+1)*drillBlock, x.size)
			if s > bs || e < be {
				if err := x.d.view.ReadAt(x.name, blk[:be-bs], bs); err != nil {
					return err
				}
			}
			blocks[b] = blk
			x.d.bytes += drillBlock
		}
		fill(blk[s-b*drillBlock:e-b*drillBlock], s)
	}
	return nil
}
