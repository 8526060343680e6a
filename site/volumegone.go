package site

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"duplex/apply"
	"duplex/config"
	"duplex/failover"
	"duplex/secondary"
)

// errImageGone is a volume's image missing, empty or cut short at a start,
// where the site's records say it holds data.
var errImageGone = errors.New("the volume's image is gone")

// volumeImageThere checks, before volume.Open, the image of a volume the
// site's records say holds data: a copy the secondary applied groups to,
// a primary volume served and paired. volume.Open creates a missing image
// and sizes an empty one, as a new session's volume: the copy would be
// reported duplex and consistent as zeros, the primary's served to its
// clients as zeros. size is the volume's, 0 when the config leaves it to
// the image (then only a missing or empty one is known to be wrong);
// configured says it is the config's, not a record's: an image shorter
// than it may be one the config's size changed over since it was made. A
// device's size volume.Open checks.
func volumeImageThere(path string, size int64, configured bool) error {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %s is missing", errImageGone, path)
	case err != nil || !st.Mode().IsRegular():
		// volume.Open says it.
		return nil
	case st.Size() == 0:
		return fmt.Errorf("%w: %s is empty", errImageGone, path)
	case st.Size() < size && configured:
		return fmt.Errorf("%w: %s is %d bytes, the volume %d (unless the volume's configured size changed since the image was made: "+
			"a volume is never resized, so put its size back in the config)", errImageGone, path, st.Size(), size)
	case st.Size() < size:
		return fmt.Errorf("%w: %s is %d bytes, the volume %d", errImageGone, path, st.Size(), size)
	}
	return nil
}

// copiesHeld returns whether the secondary's state says it holds a copy
// of a volume, and the volume's pair state there. A volume it never held a
// whole copy of, with no copy under way that makes one, is reported not
// consistent whatever its image holds, and one it does not name (a new
// session's, a pair added since) is created. A state file it cannot read
// (secondary.Open refuses it, once the volumes are open) holds them all.
func copiesHeld(cfg *config.Config) func(name string) (string, bool) {
	st, err := apply.ReadState(StatePath(cfg))
	return func(name string) (string, bool) {
		switch v, ok := st.Volumes[name]; {
		case err != nil:
			return "unreadable", true
		case ok:
			return v.State, !v.NoWholeCopy
		case secondary.PredatesPairStates(st):
			// A state from before pair states: every volume duplex.
			return secondary.StateDuplex, true
		}
		return "", false
	}
}

// holdsData returns whether a volume of the [secondary] section holds
// data its image alone has, and what the record says of it: a copy the
// secondary's state names (holds, see copiesHeld), or, at a promoted site
// (promoted not nil), any volume its promotion names, which it has served
// read-write since, a copy never held whole among them: its clients'
// writes since are in that image and nowhere else.
func holdsData(holds func(string) (string, bool), promoted *failover.Promotion, name string) (string, bool) {
	if promoted != nil {
		if c, ok := promoted.Volumes[name]; ok {
			return c, true
		}
	}
	return holds(name)
}

// copyGone says what to do about a copy whose image is gone;
// primaryPairState names the other site's pair state directory (see
// SecondaryOptions.primaryPairState).
func copyGone(cfg *config.Config, path string, err error, state, primaryPairState string, promoted *failover.Promotion) error {
	if promoted != nil {
		return fmt.Errorf("%w, and %s says the site serves the volume (when promoted: %s) as the session's primary since its promotion: "+
			"%s. Put the image back (restore it, mount its file system or attach its device again), "+
			"then start it again; without it, the volume's data since the failover is lost: the old primary holds it as of before "+
			"(see \"Disaster recovery runbook\" in the README to make that site the primary again)", err, filepath.Join(PromotedDir(cfg), "promotion.json"), state,
			openedAs(path, " and served", "part of the volume"))
	}
	way := secondary.WayForward
	if primaryPairState != "" {
		way = secondary.WayForwardTo(primaryPairState)
	}
	return fmt.Errorf("%w, and %s says the secondary holds its copy (%s): %s. Put the image back (restore it, mount its file system or attach its device again), then start "+
		"the secondary again; without it, %s", err, StatePath(cfg), state, openedAs(path, " and reported as the copy", "part of the copy"), way)
}

// deletedCopyGone accepts the gone image at path of vol, a pair deleted
// (`pair delete`): its copy is no longer the session's, and removing it
// is the operator's cleaning up, not a loss. The state is told first that
// the image holds no copy (deleted, consistent as of no time, only a new
// first copy making it one): made anew as zeros, it would be reported
// consistent as of the deletion. An image cut short is refused: it holds
// something, and a start never sizes one over it.
func deletedCopyGone(cfg *config.Config, log *slog.Logger, vol, path string, gone error) error {
	if st, err := os.Stat(path); err == nil && st.Size() > 0 {
		return fmt.Errorf("%w, and %s says its pair was deleted: remove the image to have it made anew, or put it back",
			gone, StatePath(cfg))
	}
	st, err := apply.ReadState(StatePath(cfg))
	if err != nil {
		return err
	}
	secondary.ForgetCopy(&st, vol)
	if err := apply.WriteState(StatePath(cfg), st); err != nil {
		return fmt.Errorf("a deleted pair's image is gone: %w", err)
	}
	log.Info("a deleted pair's image is gone: made anew, it holds no copy", "volume", vol, "image", path, "why", gone)
	return nil
}

// openedAs says what opening the gone image at path would make of it,
// then (as) what the site would take it for: a missing one created again,
// an empty one resized to the volume, both as zeros; one cut short holds
// at most part of what it is for (held), and a start refuses its size.
func openedAs(path, as, held string) string {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "opened, it would be created again as zeros" + as
	case err == nil && st.Size() == 0:
		return "opened, it would be resized to the volume as zeros" + as
	}
	return "it holds at most " + held
}

// primaryVolumeGone says what to do about a primary volume whose image at
// path is gone.
func primaryVolumeGone(dir, path string, err error) error {
	return fmt.Errorf("%w, and %s names its pair: %s. Put the image back (restore it, mount its file system or attach its device again), "+
		"then start the primary again; without it, the secondary holds the volume's copy: make its site the primary "+
		"(duplex promote there, see \"Disaster recovery runbook\" in the README), or to begin anew, %s",
		err, filepath.Join(dir, "pairs.json"), openedAs(path, ", served to the clients and copied over the secondary's copy", "part of the volume"),
		recreatePairState(dir))
}

// copyWholeIfGone makes rv, a rejoin's plan for a volume whose image here
// is at path, a copy of the whole volume if that image is gone: missing
// or empty, nothing here describes what it held, so the changed regions
// alone would leave the rest zeros, reported as the other site's. The
// rejoined site makes the image anew (Rejoined.Gone). An image cut short
// refuses the rejoin: it never writes over what an image holds outside
// its copy.
func copyWholeIfGone(rv *RejoinVolume, path string) error {
	gone := volumeImageThere(path, rv.Size, true)
	if gone == nil {
		return nil
	}
	if st, err := os.Stat(path); err == nil && st.Size() > 0 {
		return fmt.Errorf("volume %q: %w: a rejoin copies only the regions either site changed, over what the image holds. "+
			"Put the image back (restore it, mount its file system or attach its device again), then rejoin again; "+
			"or remove it: the rejoin then copies the whole volume into an image made anew", rv.Name, gone)
	}
	rv.Whole, rv.Gone = gone.Error()+": made anew, it takes the whole volume", true
	rv.Discard.SetAll()
	rv.Union.SetAll()
	return nil
}
