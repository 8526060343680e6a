package failover

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"duplex/disk"
)

// Switchover records, at the old primary, a planned switchover of the
// session to the other site: written "pending" before the other site is
// asked to promote itself, and "done" once it has. Either way the site
// must not serve writes as the primary again: done, the other site is the
// primary and holds every write this one acknowledged (a rejoin here finds
// nothing to discard); pending, this site stopped before it learnt whether
// the other one took over, which the other site's status tells.
type Switchover struct {
	Session string `json:"session"`
	State   string `json:"state"` // SwitchoverPending | SwitchoverDone
	// At is when the switchover took effect here (Unix ns, wall clock): the
	// writes held from then on were refused.
	At int64 `json:"switched_over_at_ns"`
	// ConsistencyTime and Group are what the other site held when it was
	// promoted: every write this site acknowledged.
	ConsistencyTime int64  `json:"consistency_time_ns"`
	Group           uint64 `json:"group"`
	// PromotedAt is when the other site took over (its promotion record's
	// time, as it answered).
	PromotedAt string `json:"promoted_at,omitempty"`
}

// States of a Switchover.
const (
	SwitchoverPending = "pending"
	SwitchoverDone    = "done"
)

// SwitchoverFile is the record's name in the primary's pair-state
// directory.
const SwitchoverFile = "switchover.json"

// ErrNoSwitchover is returned by ReadSwitchover where none is recorded.
var ErrNoSwitchover = errors.New("no switchover recorded")

// ReadSwitchover returns the switchover recorded in dir.
func ReadSwitchover(fsys disk.FS, dir string) (Switchover, error) {
	path := filepath.Join(dir, SwitchoverFile)
	b, err := disk.ReadFile(disk.Or(fsys), path)
	if errors.Is(err, os.ErrNotExist) {
		return Switchover{}, ErrNoSwitchover
	}
	if err != nil {
		return Switchover{}, fmt.Errorf("switchover record: %w", err)
	}
	var s Switchover
	err = disk.DecodeRecord(b, &s, "session", "state")
	if err == nil && (s.Session == "" || (s.State != SwitchoverPending && s.State != SwitchoverDone)) {
		err = fmt.Errorf("session %q, state %q", s.Session, s.State)
	}
	if err != nil {
		return Switchover{}, fmt.Errorf("%w: it records a switchover this site began, after which it serves no writes as the primary "+
			"unless the other site did not take over: put back a copy of it; without one, duplex status --config FILE says whether "+
			"the other site took over: if it shows promoted_at, it is the primary and duplex rejoin here follows it; if not, "+
			"remove the file and start the primary again", disk.Damaged("switchover record", path, err))
	}
	return s, nil
}

// WriteSwitchover records s in dir, atomically.
func WriteSwitchover(fsys disk.FS, dir string, s Switchover) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("switchover record: %w", err)
	}
	if err := disk.WriteFileAtomic(disk.Or(fsys), filepath.Join(dir, SwitchoverFile), append(b, '\n')); err != nil {
		return fmt.Errorf("switchover record: %w", err)
	}
	return nil
}

// RemoveSwitchover removes a pending record once the other site is known
// not to have taken over: the switchover did not happen.
func RemoveSwitchover(fsys disk.FS, dir string) error {
	fsys = disk.Or(fsys)
	if err := fsys.Remove(filepath.Join(dir, SwitchoverFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("switchover record: %w", err)
	}
	if err := fsys.SyncDir(dir); err != nil {
		return fmt.Errorf("switchover record: %w", err)
	}
	return nil
}
