package coupling

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"duplex/disk"
)

// Mark is the limit a secondary may have applied through, persisted before
// it applies through it.
type Mark struct {
	Group string `json:"group"`
	// Through is a master time of the group (Unix ns).
	Through int64 `json:"through"`
}

// MarkPath is where a secondary whose state file is statePath keeps its
// mark: beside it.
func MarkPath(statePath string) string {
	return filepath.Join(filepath.Dir(statePath), "coupling.json")
}

// ReadMark reads the mark at path; ok is false when there is none.
func ReadMark(path string) (m Mark, ok bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Mark{}, false, nil
	}
	if err != nil {
		return Mark{}, false, fmt.Errorf("coupling: %w", err)
	}
	if err := disk.DecodeRecord(b, &m, "group", "through"); err != nil {
		return Mark{}, false, fmt.Errorf("coupling: %w: it holds the master time of the coupled group through which this secondary "+
			"may have applied, which a recovery of the group must not go behind: put back a copy of it; remove it only once this secondary "+
			"is recovered or copied anew", disk.Damaged("mark", path, err))
	}
	return m, true, nil
}

// WriteMark writes m to path atomically and durably: a temporary file in
// the same directory, fsynced, renamed over path, and the directory
// fsynced.
func WriteMark(path string, m Mark) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".coupling-*.tmp")
	if err != nil {
		return fmt.Errorf("coupling: mark: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("coupling: mark %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("coupling: mark %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("coupling: mark %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("coupling: mark: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("coupling: mark: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("coupling: mark: fsync %s: %w", dir, err)
	}
	return nil
}
