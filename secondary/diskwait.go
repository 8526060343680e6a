package secondary

import (
	"fmt"
	"strings"
	"sync"
	"time"
)

// DefaultSlowDisk is Config.SlowDisk's default: far past what a working
// disk takes over a group's fsync under load (tens of milliseconds), and
// about the primary's silence time, after which it gives the link up.
const DefaultSlowDisk = 5 * time.Second

// A disk that hangs, rather than fails, returns no error to stop at: the
// journal's fsync of a group, or a write of it to a volume, waits as long
// as the disk does. The primary hears nothing and gives the link up, and
// the secondary would report the link connected and nothing wrong. So the
// secondary keeps, for each kind of work that waits on its disk, what is
// under way and since when; status reports what has waited SlowDisk or
// longer (Stats.DiskWait), and the log warns once per wait.
type diskWaitKind int

const (
	waitJournal    diskWaitKind = iota // the journal's write and fsync of groups
	waitApply                          // a group's writes to the volumes
	waitCheckpoint                     // a checkpoint's fsync of the volumes and the state file, and its release of the journal
	waitKinds
)

type diskWait struct {
	what  string // "" while nothing of its kind is under way
	since time.Time
	warn  *time.Timer // logs the warning once the wait reaches SlowDisk
}

type diskWaits struct {
	mu sync.Mutex
	w  [waitKinds]diskWait
}

// diskBegin records that what, of kind k, begins to wait on the disk;
// diskEnd(k) ends it.
func (s *Secondary) diskBegin(k diskWaitKind, what string) {
	now := time.Now()
	s.disk.mu.Lock()
	defer s.disk.mu.Unlock()
	w := &s.disk.w[k]
	w.what, w.since = what, now
	w.warn = time.AfterFunc(s.cfg.SlowDisk, func() {
		s.log.Warn("waiting on the disk: it has neither answered nor failed; replication waits with it",
			"for", what, "since", now.UTC(), "waited", s.cfg.SlowDisk)
	})
}

// diskEnd ends the wait of kind k, and logs how long it took if it was
// long enough to be warned of.
func (s *Secondary) diskEnd(k diskWaitKind) {
	s.disk.mu.Lock()
	defer s.disk.mu.Unlock()
	w := &s.disk.w[k]
	if w.warn != nil && !w.warn.Stop() {
		s.log.Info("the disk answered", "for", w.what, "waited", time.Since(w.since).Round(time.Millisecond))
	}
	*w = diskWait{}
}

// diskWaitText says what has waited on the disk SlowDisk or longer at
// now, "" if nothing has.
func (s *Secondary) diskWaitText(now time.Time) string {
	s.disk.mu.Lock()
	defer s.disk.mu.Unlock()
	var out []string
	for _, w := range s.disk.w {
		if w.what == "" || now.Sub(w.since) < s.cfg.SlowDisk {
			continue
		}
		out = append(out, fmt.Sprintf("%s: waiting on the disk for %s (since %s)",
			w.what, now.Sub(w.since).Round(time.Millisecond), w.since.UTC().Format(time.RFC3339)))
	}
	return strings.Join(out, "; ")
}

// DiskWait says what has waited on the disk the longest, and since when;
// zero while nothing waits on it. A stop bounds its wait for the disk by
// it: nothing cancels an fsync of a disk that hangs.
func (s *Secondary) DiskWait() (what string, since time.Time) {
	s.disk.mu.Lock()
	defer s.disk.mu.Unlock()
	for _, w := range s.disk.w {
		if w.what != "" && (since.IsZero() || w.since.Before(since)) {
			what, since = w.what, w.since
		}
	}
	return what, since
}
