package site

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"duplex/disk"
	"duplex/failover"
	"duplex/transport"
)

// generationFile holds the primary's data generation in its pair state
// directory. A pair state created afresh (its pairs start with full initial
// copies) starts a new generation; a restart keeps it.
type generationFile struct {
	Generation transport.Generation `json:"generation"`
}

// openGeneration returns the data generation of the pair state in dir,
// starting a new one if it has none, or no pairs.json beside it (see
// pairsRecorded). promoted is the promotion the pair state was made from,
// nil if none (see readGeneration): that pair state
// was made with the generation the promotion started, written before the
// rest of it (seedReverse, seedFailBack), and one it lost is refused as a
// damaged one is. A new generation there is one no secondary follows: the
// rejoin of the other site, which follows the promotion's, would be
// refused for good.
func openGeneration(dir string, promoted *failover.Promotion, log *slog.Logger) (transport.Generation, error) {
	if log == nil {
		log = slog.Default()
	}
	switch g, err := readGeneration(dir, promoted); {
	case err == nil && (promoted != nil || pairsRecorded(dir)):
		return g, nil
	case err == nil:
		// The generation says the secondary's copies are this pair
		// state's; without pairs.json (lost, or a state directory put
		// back without it) every pair starts an initial copy that would
		// overwrite them. A new generation has the secondary refuse it
		// unless the operator consents, as for an empty directory.
		log.Warn("the pair state records no pair (pairs.json missing) beside its data generation: it starts a new one, "+
			"which a secondary holding copies refuses unless duplex primary --overwrite-secondary names its generation",
			"dir", dir, "was", g.String())
	case errors.Is(err, disk.ErrDamaged):
		return 0, err
	case !errors.Is(err, os.ErrNotExist):
		return 0, fmt.Errorf("data generation: %w", err)
	case promoted != nil && promoted.Generation != 0:
		return 0, fmt.Errorf("data generation %s is missing: it names the history the volumes hold, which the secondary follows and checks; "+
			"it held %s, the generation the promotion of this site started (its promotion record names it): put back a copy of it, "+
			"or write {\"generation\":\"%s\"} in it", filepath.Join(dir, "generation.json"), promoted.Generation, promoted.Generation)
	}
	gf := generationFile{Generation: transport.NewGeneration()}
	b, _ := json.Marshal(gf)
	if err := disk.WriteFileAtomic(disk.Or(nil), filepath.Join(dir, "generation.json"), append(b, '\n')); err != nil {
		return 0, fmt.Errorf("data generation: %w", err)
	}
	return gf.Generation, nil
}

// pairsRecorded says whether the pair state in dir has saved its pairs:
// a start that made generation.json and was killed before pairs.json
// sent nothing that made a copy consistent.
func pairsRecorded(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "pairs.json"))
	return !errors.Is(err, os.ErrNotExist)
}

// readGeneration reads the data generation of the pair state in dir. One
// that is not what openGeneration writes (null, {}, cut short, generation
// 0) is refused with an error wrapping disk.ErrDamaged: read as 0, a rejoin
// would find no history shared with the promoted site and call for a full
// copy. An error reading the file is returned as it is. promoted, if not
// nil, is the promotion the pair state was made from (a promoted site's
// reverse pair state, an old primary's that took the session back): the
// pair state holds the generation that promotion started, and the refusal
// says which, and how to write it back. The way for any other pair state
// (remove it and the secondary's copies, for full initial copies) would
// there remove the copies of the site that took the session back, or make
// the pair state again from the promotion without the regions written
// since.
func readGeneration(dir string, promoted *failover.Promotion) (transport.Generation, error) {
	path := filepath.Join(dir, "generation.json")
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	var gf generationFile
	err = disk.DecodeRecord(b, &gf, "generation")
	if err == nil && gf.Generation == 0 {
		err = errors.New("generation 0")
	}
	if err != nil {
		fix := "put back a copy of it; without one, " + recreatePairState(dir)
		if promoted != nil && promoted.Generation != 0 {
			fix = fmt.Sprintf("it holds %s, the generation the promotion of this site started (its promotion record names it): "+
				"put back a copy of it, or write {\"generation\":\"%s\"} in it", promoted.Generation, promoted.Generation)
		}
		return 0, fmt.Errorf("%w: it names the history the volumes hold, which the secondary follows and checks: %s",
			disk.Damaged("data generation", path, err), fix)
	}
	return gf.Generation, nil
}

// promotionIn returns the promotion recorded in dir, nil if none is or it
// cannot be read: that of an old primary that took the session back (in
// its pair state), or of a promoted site (beside its reverse pair state).
// Its pair state holds the generation it started (seedFailBack,
// seedReverse).
func promotionIn(dir string) *failover.Promotion {
	pr, err := failover.ReadPromotion(nil, dir)
	if err != nil {
		return nil
	}
	return &pr
}

// recreatePairState is what an operator does whose primary's pair state
// in dir is lost: a new one starts a new data generation, which the
// secondary refuses, and full initial copies.
func recreatePairState(dir string) string {
	return "stop both sites; remove the pair state directory " + dir + ", and the secondary's journal directory, state.json, identity.json " +
		"and volume images; then start both: every pair starts with a full initial copy"
}

// The help of the metrics both sites keep of the record sets on the link:
// the same names mean the same at each, sent at the primary and received
// at the secondary, so their ratio is the link's compression ratio at
// either.
const (
	linkRecordSetHelp = "Bytes of record sets carried by the link, counted plain (uncompressed): sent at the primary, received at the secondary."
	linkWireHelp      = "Bytes those record sets took on the link: compressed where compression shrank them, else plain."
)
