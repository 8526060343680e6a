package failover

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"duplex/actlog"
	"duplex/bitmap"
	"duplex/disk"
	"duplex/transport"
)

// Region is the granularity of the changed regions: a suspended pair's, so
// that a rejoin's copy is a resync like any other.
const Region = bitmap.DefaultRegion

// Promotion records that a secondary site was promoted: from then on it is
// the session's primary, and its volumes hold what they held at
// ConsistencyTime plus its own writes.
type Promotion struct {
	Session string `json:"session"`
	// At is when the promotion took effect (Unix ns, wall clock).
	At int64 `json:"promoted_at_ns"`
	// ConsistencyTime and Group are what the volumes held when promoted: the
	// last group applied. Every write since is stamped after it.
	ConsistencyTime int64  `json:"consistency_time_ns"`
	Group           uint64 `json:"group"`
	// Generation is the data generation the fence started; Follows the
	// old primary's, which its writes before ConsistencyTime share.
	Generation transport.Generation `json:"generation"`
	Follows    transport.Generation `json:"follows"`
	// HeldGroups are the groups journaled after Group and never applied
	// (a resync was in progress at the old primary, or a coupled group's
	// master time held them): their writes are in neither site's changed
	// regions, and a rejoin reads their regions from the journal.
	HeldGroups uint64 `json:"held_groups,omitempty"`
	// Volumes says, per volume, what its copy was when promoted
	// ("consistent as of ...", or not consistent and why).
	Volumes map[string]string `json:"volumes,omitempty"`
}

// promotionFile is the record's name in the promotion directory.
const promotionFile = "promotion.json"

// ErrNotPromoted is returned by ReadPromotion for a site never promoted.
var ErrNotPromoted = errors.New("not promoted")

// ReadPromotion returns the promotion recorded in dir.
func ReadPromotion(fsys disk.FS, dir string) (Promotion, error) {
	b, err := disk.ReadFile(disk.Or(fsys), filepath.Join(dir, promotionFile))
	if errors.Is(err, os.ErrNotExist) {
		return Promotion{}, ErrNotPromoted
	}
	if err != nil {
		return Promotion{}, fmt.Errorf("promotion: %w", err)
	}
	var p Promotion
	err = disk.DecodeRecord(b, &p, "session", "promoted_at_ns")
	if err == nil && (p.Session == "" || p.At == 0) {
		err = errors.New("it names no session or time")
	}
	if err != nil {
		return Promotion{}, fmt.Errorf("%w: only a promotion writes it, and while it is there the site runs as the session's primary, "+
			"never as a secondary again: put back a copy of it", disk.Damaged("promotion record", filepath.Join(dir, promotionFile), err))
	}
	return p, nil
}

// WritePromotion records p in dir, atomically: a crash leaves the site
// promoted or not, never half.
func WritePromotion(fsys disk.FS, dir string, p Promotion) error {
	fsys = disk.Or(fsys)
	if err := fsys.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("promotion: %w", err)
	}
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return fmt.Errorf("promotion: %w", err)
	}
	if err := disk.WriteFileAtomic(fsys, filepath.Join(dir, promotionFile), append(b, '\n')); err != nil {
		return fmt.Errorf("promotion: %w", err)
	}
	return nil
}

// Changes are the regions a promoted site changed since its promotion, per
// volume, kept so that no acknowledged write's region is ever missing from
// them, across kill -9. It is safe for concurrent use.
type Changes struct {
	fsys  disk.FS
	dir   string
	log   *actlog.Log
	maps  map[string]*bitmap.Bitmap
	names []string
	lock  io.Closer
}

// OpenChanges opens the changed regions kept in dir for volumes of the given
// sizes: each volume's bitmap as last written, with every region the
// activity log marked added (the writes since, up to a crash), written back
// before it returns. One process at a time holds them (a LOCK file).
func OpenChanges(fsys disk.FS, dir string, sizes map[string]int64) (*Changes, error) {
	lock, err := LockChanges(fsys, dir)
	if err != nil {
		return nil, err
	}
	return OpenLockedChanges(fsys, dir, sizes, lock)
}

// LockChanges takes the LOCK of the changed regions in dir (creating dir),
// which OpenLockedChanges then opens: OpenChanges in two steps, for a
// caller that does something between, holding the lock.
func LockChanges(fsys disk.FS, dir string) (io.Closer, error) {
	fsys = disk.Or(fsys)
	if err := fsys.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("changed regions: %w", err)
	}
	lock, err := fsys.Lock(filepath.Join(dir, "LOCK"))
	if err != nil {
		return nil, fmt.Errorf("changed regions %s: another process holds them: %w", dir, err)
	}
	return lock, nil
}

// OpenLockedChanges is OpenChanges once LockChanges took lock, which the
// Changes hold from then on (it is closed if the open fails). With lock
// nil, the caller keeps the LOCK it took and lets it go itself, after
// Close: a promoted site does once its volumes' writes and closes have
// ended too, which whoever takes the LOCK next reads the volumes after.
func OpenLockedChanges(fsys disk.FS, dir string, sizes map[string]int64, lock io.Closer) (_ *Changes, err error) {
	fsys = disk.Or(fsys)
	c := &Changes{fsys: fsys, dir: dir, maps: map[string]*bitmap.Bitmap{}, lock: lock}
	defer func() {
		if err != nil && lock != nil {
			lock.Close()
		}
	}()
	for name, size := range sizes {
		b, err := disk.ReadFile(fsys, c.bitmapPath(name))
		switch {
		case errors.Is(err, os.ErrNotExist):
			c.maps[name] = bitmap.New(size, Region)
		case err != nil:
			return nil, fmt.Errorf("changed regions of %s: %w", name, err)
		default:
			bm, err := bitmap.Decode(b, size)
			if err != nil {
				// The log alone cannot stand in for it: it holds only the
				// regions since the bitmap was last written.
				return nil, fmt.Errorf("changed regions of %s (%s): %w; the regions this site changed are unknown: a rejoin must copy the whole volume",
					name, c.bitmapPath(name), err)
			}
			c.maps[name] = bm
		}
		c.names = append(c.names, name)
	}
	sort.Strings(c.names)
	al, marked, err := actlog.OpenFS(fsys, filepath.Join(dir, "changes.log"), sizes, Region)
	if err != nil {
		return nil, fmt.Errorf("changed regions: %w", err)
	}
	c.log = al
	for name, ranges := range marked {
		bm, ok := c.maps[name]
		if !ok {
			continue
		}
		for _, r := range ranges {
			bm.Set(r[0], r[1])
		}
	}
	// Before the log is next written, which keeps only the volumes of sizes.
	if err := c.keepLeftOut(marked, sizes); err != nil {
		al.Close()
		return nil, err
	}
	if err := c.Save(); err != nil {
		al.Close()
		return nil, err
	}
	return c, nil
}

// keepLeftOut adds the regions the log marked for volumes not in sizes (left
// out of this run's config) to their bitmap files, which wait there for the
// volume to come back: the log, once written again, no longer holds them.
// Each such volume's bitmap was written when a run that had it opened the
// log; without one there is nowhere to keep its marks, and OpenChanges
// refuses rather than drop them.
func (c *Changes) keepLeftOut(marked map[string][][2]int64, sizes map[string]int64) error {
	for name, ranges := range marked {
		if _, ok := sizes[name]; ok || len(ranges) == 0 {
			continue
		}
		path := c.bitmapPath(name)
		b, err := disk.ReadFile(c.fsys, path)
		if err != nil {
			return fmt.Errorf("changed regions of %s, which is not among this site's volumes: the activity log holds regions it changed, "+
				"and its bitmap %s, to keep them in until it is back, cannot be read (%w): put the volume back in the config", name, path, err)
		}
		bm, err := bitmap.DecodeAnySize(b)
		if err != nil {
			return fmt.Errorf("changed regions of %s (%s), which is not among this site's volumes: %w; the regions this site changed are unknown: "+
				"a rejoin must copy the whole volume", name, path, err)
		}
		before := bm.Count()
		for _, r := range ranges {
			bm.Set(r[0], r[1])
		}
		if bm.Count() == before {
			continue
		}
		if b, err = bm.MarshalBinary(); err == nil {
			err = disk.WriteFileAtomic(c.fsys, path, b)
		}
		if err != nil {
			return fmt.Errorf("changed regions of %s, which is not among this site's volumes: %w", name, err)
		}
	}
	return nil
}

func (c *Changes) bitmapPath(vol string) string { return filepath.Join(c.dir, vol+".bitmap") }

// Bitmap returns vol's changed regions: the write path sets them (after
// Stick), rejoin reads them.
func (c *Changes) Bitmap(vol string) *bitmap.Bitmap { return c.maps[vol] }

// Stick makes [off, off+length) of vol durably changed: it returns once the
// region is on disk, before the write may reach the volume. The write
// path's activity log (subsystem.ActivityLog) is c itself, with every
// volume suspended, so only Stick is called.
func (c *Changes) Stick(vol string, off, length int64) error { return c.log.Stick(vol, off, length) }

// Mark, MarkCopy, Done and Wrote complete the write path's activity log: a write
// of a volume that is not suspended, which a promoted site never has, is
// marked the same way.
func (c *Changes) Mark(vol string, off, length int64) error     { return c.Stick(vol, off, length) }
func (c *Changes) MarkCopy(vol string, off, length int64) error { return c.Stick(vol, off, length) }
func (c *Changes) Done(string, int64, int64)                    {}
func (c *Changes) Wrote(string, int64, int64)                   {}

// Waits returns how long the log's write under way has taken, 0 if none
// is, and how many writes wait for their regions to be written (see
// actlog's Waits): on a disk that stopped answering, they wait with it.
func (c *Changes) Waits() (time.Duration, int) { return c.log.Waits() }

// Save writes every volume's bitmap, atomically.
func (c *Changes) Save() error {
	for _, name := range c.names {
		b, err := c.maps[name].MarshalBinary()
		if err != nil {
			return fmt.Errorf("changed regions of %s: %w", name, err)
		}
		if err := disk.WriteFileAtomic(c.fsys, c.bitmapPath(name), b); err != nil {
			return fmt.Errorf("changed regions of %s: %w", name, err)
		}
	}
	return nil
}

// Close saves the bitmaps, closes the log, and lets the LOCK go, unless
// the caller kept it (OpenLockedChanges). The log keeps its marks: a
// crash of the next run finds them too.
func (c *Changes) Close() error {
	err := c.Save()
	if cerr := c.log.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("changed regions: %w", cerr)
	}
	if c.lock != nil {
		c.lock.Close()
	}
	return err
}
