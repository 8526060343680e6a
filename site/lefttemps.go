package site

import (
	"log/slog"
	"strings"

	"duplex/disk"
)

// stateRecord says whether target names a file the sites write with
// disk.WriteFileAtomic into their state directories: the JSON records and
// the bitmaps.
func stateRecord(target string) bool {
	return strings.HasSuffix(target, ".json") || strings.HasSuffix(target, ".bitmap")
}

// removeLeftTemps removes the temporary files that atomic writes of the
// state records cut short by a kill -9 (or a crash) left in dir: nothing
// else ever would, and each holds up to a whole record. Called at a start
// with dir's lock held, before anything in dir is written. A file that
// cannot be removed is harmless, and said.
func removeLeftTemps(fsys disk.FS, dir string, log *slog.Logger) {
	removed, err := disk.RemoveLeftTemps(disk.Or(fsys), dir, stateRecord)
	if len(removed) > 0 {
		log.Info("starting: removed the temporary files of state writes a kill or crash cut short", "dir", dir, "removed", removed)
	}
	if err != nil {
		log.Warn("starting: temporary files of state writes a kill or crash cut short could not be removed; they are never read", "err", err)
	}
}
