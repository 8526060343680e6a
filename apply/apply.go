// Package apply is step (g) of the method: it shadows each journaled
// consistency group onto the secondary volumes in timestamp order, and records
// how far it got.
//
// The order of durable steps is what makes a crash harmless: the group is
// already in the journal (fsynced) before Apply runs; Apply writes the updates in
// timestamp order and fsyncs every volume it touched; only then does the state
// file say "applied through group G", written atomically (temp file, fsync,
// rename, fsync of the directory). After a crash, every journaled group after G
// is applied again. Writes, zeroes and trims are idempotent, so applying a group
// twice leaves the same bytes as applying it once.
package apply

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"

	"duplex/consistency"
	"duplex/disk"
	"duplex/recordset"
)

// Target is a secondary volume.
type Target interface {
	WriteAt(p []byte, off int64) error
	WriteZeroes(off, length int64) error
	Trim(off, length int64) error
	Flush() error
}

// VectorWriter is a Target that writes several buffers back to back in one
// call (pwritev): adjacent updates of a group, a sequential writer's, are
// applied with one system call instead of one each.
type VectorWriter interface {
	WriteVAt(bufs [][]byte, off int64) error
}

// ThroughWriter is a VectorWriter that can write a long run past the page
// cache (package volume: O_DIRECT, for runs long and aligned enough, else
// as WriteVAt). A sequential writer's runs are written so: nothing reads
// them back soon, and the copy into the page cache and its writeback were
// the largest part of applying them. Nothing is durable before Flush.
type ThroughWriter interface {
	WriteThrough(bufs [][]byte, off int64) error
}

// Group applies g's updates to the volumes in timestamp order and fsyncs the
// volumes it touched. An update for a volume not in vols is an error: the
// secondary must not silently skip part of a group.
func Group(g *consistency.Group, vols map[string]Target) error {
	touched, err := Updates(g, vols)
	if err != nil {
		return err
	}
	return Flush(touched)
}

// WritebackStarter is a Target that can start writing its written data
// back to the disk without waiting for it (package volume).
type WritebackStarter interface {
	StartWriteback() error
}

// StartWriteback starts the writeback of every target in touched that can,
// and makes nothing durable: Flush still must. The secondary starts it
// after each group it applies, so that a Flush at its checkpoint finds
// little left to write, rather than everything written since the last one
// in a burst that queues on the disk beside the journal's fsync.
func StartWriteback(touched map[string]Target) error {
	for name, t := range touched {
		if w, ok := t.(WritebackStarter); ok {
			if err := w.StartWriteback(); err != nil {
				return fmt.Errorf("apply: start writeback of %s: %w", name, err)
			}
		}
	}
	return nil
}

// Flush fsyncs every target in touched.
func Flush(touched map[string]Target) error {
	for name, t := range touched {
		if err := t.Flush(); err != nil {
			return fmt.Errorf("apply: flush %s: %w", name, err)
		}
	}
	return nil
}

// Updates applies g's updates in timestamp order without fsyncing, and
// returns the volumes it touched: a secondary that checkpoints less often than
// it applies flushes them at its next checkpoint, since until then the journal
// still holds the group.
func Updates(g *consistency.Group, vols map[string]Target) (map[string]Target, error) {
	sc := scratchPool.Get().(*scratch)
	defer func() {
		clear(sc.targets) // no volume kept alive by the pool
		scratchPool.Put(sc)
	}()
	// Every volume must exist before anything is written: a group is applied
	// whole or not at all. Each update's volume is looked up once, among
	// the few names a group holds, not hashed per update.
	touched, err := sc.resolve(g, vols)
	if err != nil {
		return nil, err
	}
	superseded := sc.fold(g.Updates)
	var run vectorRun
	for i := range g.Updates {
		u := &g.Updates[i]
		v := sc.vol[i]
		if v < 0 || superseded[i] {
			continue // a marker changes no byte: the secondary reads it before applying
		}
		t := sc.targets[v]
		if u.Kind == recordset.KindWrite || u.Kind == recordset.KindCopy {
			if vw, ok := t.(VectorWriter); ok && len(u.Data) > 0 {
				// Writes that continue the run are written with it: they
				// are adjacent, so their order does not matter.
				if !run.extends(u) {
					if err := run.flush(g); err != nil {
						return nil, err
					}
					run.start(vw, u)
				}
				continue
			}
		}
		if err := run.flush(g); err != nil {
			return nil, err
		}
		var err error
		switch u.Kind {
		case recordset.KindWrite, recordset.KindCopy:
			err = t.WriteAt(u.Data, int64(u.Offset))
		case recordset.KindZeroes:
			err = t.WriteZeroes(int64(u.Offset), int64(u.Length))
		case recordset.KindTrim:
			err = t.Trim(int64(u.Offset), int64(u.Length))
		default:
			err = fmt.Errorf("unknown kind %d", u.Kind)
		}
		if err != nil {
			return nil, fmt.Errorf("apply group %d: %s update %d (ts %d): %w", g.Number, u.Kind, u.Seq, u.Timestamp, err)
		}
	}
	if err := run.flush(g); err != nil {
		return nil, err
	}
	return touched, nil
}

// scratch is what Updates reuses from group to group: per update, the
// index of its volume among the group's names, and fold's table. A map
// keyed by volume name, offset and length made for each group, and a
// lookup of the name per update, were most of apply's own CPU per 4 KiB
// write.
type scratch struct {
	names   []string
	targets []Target
	byName  map[string]int32 // names' indexes, once there are more than maxSearched
	vol     []int32          // per update: index into names, -1 for a marker
	slots   []int32          // fold's open-addressing table: update index + 1, 0 empty
	out     []bool
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// resolve finds each update's volume in vols, and returns the volumes the
// group touches (a marker touches none).
func (sc *scratch) resolve(g *consistency.Group, vols map[string]Target) (map[string]Target, error) {
	sc.names, sc.targets, sc.vol, sc.byName = sc.names[:0], sc.targets[:0], sc.vol[:0], nil
	last := -1
	for i := range g.Updates {
		u := &g.Updates[i]
		if u.Kind == recordset.KindMarker {
			sc.vol = append(sc.vol, -1)
			continue
		}
		v := sc.find(u.Volume, last)
		if v < 0 {
			t, ok := vols[u.Volume]
			if !ok {
				return nil, fmt.Errorf("apply group %d: no secondary volume %q", g.Number, u.Volume)
			}
			v = len(sc.names)
			sc.names, sc.targets = append(sc.names, u.Volume), append(sc.targets, t)
			if sc.byName != nil {
				sc.byName[u.Volume] = int32(v)
			} else if len(sc.names) > maxSearched {
				sc.byName = make(map[string]int32, 2*len(sc.names))
				for j, n := range sc.names {
					sc.byName[n] = int32(j)
				}
			}
		}
		sc.vol = append(sc.vol, int32(v))
		last = v
	}
	touched := make(map[string]Target, len(sc.names))
	for j, n := range sc.names {
		touched[n] = sc.targets[j]
	}
	return touched, nil
}

// maxSearched is the most names resolve searches one by one: a group of a
// session of many volumes (1,024, say) may touch hundreds, whose names are
// then found by a map made for that group.
const maxSearched = 8

// find returns the index of volume name among the group's names so far, or
// -1; last is the previous update's, the likeliest.
func (sc *scratch) find(name string, last int) int {
	if last >= 0 && sc.names[last] == name {
		return last
	}
	if sc.byName != nil {
		if v, ok := sc.byName[name]; ok {
			return int(v)
		}
		return -1
	}
	for j, n := range sc.names {
		if n == name {
			return j
		}
	}
	return -1
}

// vectorRun gathers consecutive writes to one volume, each starting where
// the last ended, into one vectored write.
type vectorRun struct {
	vw    VectorWriter
	tw    ThroughWriter // vw's, if it is one
	off   uint64        // where the run starts
	end   uint64        // where the next write must start to join it
	bufs  [][]byte
	first recordset.Update // for the error message
}

func (r *vectorRun) start(vw VectorWriter, u *recordset.Update) {
	r.vw, r.off, r.end, r.first = vw, u.Offset, u.Offset+uint64(len(u.Data)), *u
	r.tw, _ = vw.(ThroughWriter)
	r.bufs = append(r.bufs[:0], u.Data)
}

func (r *vectorRun) extends(u *recordset.Update) bool {
	if len(r.bufs) == 0 || u.Volume != r.first.Volume || u.Offset != r.end {
		return false
	}
	r.bufs = append(r.bufs, u.Data)
	r.end += uint64(len(u.Data))
	return true
}

func (r *vectorRun) flush(g *consistency.Group) error {
	if len(r.bufs) == 0 {
		return nil
	}
	var err error
	if r.tw != nil {
		err = r.tw.WriteThrough(r.bufs, int64(r.off))
	} else {
		err = r.vw.WriteVAt(r.bufs, int64(r.off))
	}
	n := len(r.bufs)
	clear(r.bufs)
	r.bufs = r.bufs[:0]
	if err != nil {
		u := r.first
		return fmt.Errorf("apply group %d: %d writes of %d bytes from %s update %d (ts %d): %w", g.Number, n, r.end-r.off, u.Kind, u.Seq, u.Timestamp, err)
	}
	return nil
}

// fold marks updates that a later update in the same group covers exactly
// (same volume, offset and length): the group is applied as a whole or
// replayed, so the earlier write is never observable on its own. A marker
// covers nothing: a write of its range stays. Called after resolve; the
// result is valid until the next call.
func (sc *scratch) fold(us []recordset.Update) []bool {
	bits := uint(4)
	for 1<<bits < 2*len(us) {
		bits++
	}
	size := 1 << bits
	if cap(sc.slots) < size {
		sc.slots = make([]int32, size)
	}
	sc.slots = sc.slots[:size]
	clear(sc.slots)
	if cap(sc.out) < len(us) {
		sc.out = make([]bool, len(us))
	}
	sc.out = sc.out[:len(us)]
	clear(sc.out)
	mask := uint64(size - 1)
	for i := range us {
		u := &us[i]
		v := sc.vol[i]
		if v < 0 {
			continue
		}
		h := home(u.Offset, u.Length, v, bits)
		for {
			j := sc.slots[h]
			if j == 0 {
				sc.slots[h] = int32(i + 1)
				break
			}
			if p := &us[j-1]; p.Offset == u.Offset && p.Length == u.Length && sc.vol[j-1] == v {
				// The last one of a key stays; every earlier one is
				// marked as the next one takes its place here.
				sc.out[j-1] = true
				sc.slots[h] = int32(i + 1)
				break
			}
			h = (h + 1) & mask
		}
	}
	return sc.out
}

// home is a key's first slot in fold's table of 1<<bits: splitmix64's
// finalizer of the key, so that offsets that differ only in their high bits
// (4 KiB writes) and the same range on another volume spread over the table.
func home(off, length uint64, vol int32, bits uint) uint64 {
	x := off ^ length<<40 ^ uint64(vol)<<52
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x >> (64 - bits)
}

// State is the secondary's durable position: every group through Group is
// applied to the volumes.
type State struct {
	Session string            `json:"session"`
	Group   uint64            `json:"applied_group"`
	Time    int64             `json:"consistency_time_ns"`
	Through map[string]uint64 `json:"through"`
	// Volumes is each volume's pair state as of Group, from the markers
	// the primary sends; a volume without an entry has never been announced
	// and is taken as duplex (as before markers existed).
	Volumes map[string]VolumeState `json:"volumes,omitempty"`
	// RecoveredFrom is set once recover --at took the volumes back from
	// this group to Group: the journaled groups through it were undone
	// and are never applied again.
	RecoveredFrom uint64 `json:"recovered_from,omitempty"`
	// HistoryUnkept is the newest group applied while the secondary kept
	// no history: a history put back holds no undo of it, so its points
	// before it no longer lead to a state the volumes had.
	HistoryUnkept uint64 `json:"history_unkept,omitempty"`
	// Forgotten names the volumes the secondary forgot (a primary linked
	// without them), each with the last group journaled then: the groups
	// through it carry the old pair's states, and neither a restart that
	// replays them nor a recover --at a point among them names the
	// volume's copy by them.
	Forgotten map[string]uint64 `json:"forgotten,omitempty"`
}

// VolumeState is what the secondary knows of one volume's pair.
type VolumeState struct {
	// State is duplex, first-copy, resync, suspended or deleted.
	State string `json:"state"`
	// Inconsistent means the secondary copy holds no state the primary
	// volume ever had: its first copy, or a resync the operator accepted
	// as inconsistent, is not complete.
	Inconsistent bool `json:"inconsistent,omitempty"`
	// FirstCopy means the copy that is not complete is the volume's very
	// first.
	FirstCopy bool `json:"first_copy,omitempty"`
	// Since is, for a suspended or deleted volume, the time as of which its
	// secondary copy is the primary volume's content.
	Since int64 `json:"since_ns,omitempty"`
	// Released means the secondary gave up the hold of the volume's resync
	// (its journal was nearly full): the copy is a mix of before and after
	// until a later copy of the volume ends.
	Released bool `json:"hold_released,omitempty"`
	// NoWholeCopy means the secondary never held a whole copy of the volume
	// and no copy under way makes one (it joined while the pair was already
	// duplex): the end of a resync, which copies only the regions changed
	// while suspended, does not make it the primary's; only a first copy
	// does.
	NoWholeCopy bool `json:"no_whole_copy,omitempty"`
}

// ReadState reads the state file; a missing file is the zero State. One
// that is not a state file WriteState wrote (cut short, overwritten, null,
// {}) is refused with an error wrapping disk.ErrDamaged: taken as the zero
// State, it would forget the group applied and the volumes' pair states.
func ReadState(path string) (State, error) { return ReadStateFS(nil, path) }

// ReadStateFS is ReadState on fsys (disk.OS when nil).
func ReadStateFS(fsys disk.FS, path string) (State, error) {
	b, err := disk.ReadFile(disk.Or(fsys), path)
	if errors.Is(err, os.ErrNotExist) {
		return State{}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("state %s: %w", path, err)
	}
	var st State
	if err := disk.DecodeRecord(b, &st, "session", "applied_group"); err != nil {
		return State{}, disk.Damaged("state file", path, err)
	}
	return st, nil
}

// WriteState replaces the state file atomically: a reader (or a restart after a
// crash) sees the old state or the new one, never a mix.
func WriteState(path string, st State) error { return WriteStateFS(nil, path, st) }

// WriteStateFS is WriteState on fsys (disk.OS when nil).
func WriteStateFS(fsys disk.FS, path string, st State) error {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("state %s: %w", path, err)
	}
	return disk.WriteFileAtomic(disk.Or(fsys), path, append(b, '\n'))
}

// WriteFileAtomic writes data to path through a temporary file in the same
// directory, fsyncs it, renames it over path and fsyncs the directory.
func WriteFileAtomic(path string, data []byte) error {
	return disk.WriteFileAtomic(disk.OS, path, data)
}
