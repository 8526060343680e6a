package secondary

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"duplex/disk"
	"duplex/transport"
)

// identity is what the secondary must remember across restarts about whose
// data it holds, beside the state file: the data generation it follows, the
// fence recover set, and the primary process whose record sets it journaled
// last. It is rewritten atomically, only when one of them changes (the first
// group of a new primary process is journaled, recover fences): never on the
// data path of one process.
type identity struct {
	// Generation is the history the secondary volumes belong to: the
	// primary's that it follows, or, once fenced, the one recover started
	// here. Zero: a fresh secondary, which adopts the first primary's.
	Generation transport.Generation `json:"generation"`
	// Fenced is when recover took the volumes over (RFC 3339): from then on
	// they may hold writes no primary has, and no primary is accepted.
	Fenced string `json:"fenced,omitempty"`
	// RecoverAt says the fence was recover --at's: the volumes went to
	// nobody before it took them back, so it may take them back again (run
	// again after a crash, or further back). A fence of recover, promote or
	// a switchover handed them over: they may hold writes the history
	// never saw, which no undo would take back.
	RecoverAt bool `json:"fenced_by_recover_at,omitempty"`
	// Follows is the primary's generation the volumes followed until the
	// fence: named in refusals so the operator sees where histories split.
	Follows transport.Generation `json:"follows,omitempty"`
	// Instance is the primary process whose record sets formed the last
	// journaled group; zero: unknown. Only that process may resend a record
	// set whose first updates are already journaled: another one (a process
	// welcomed but with nothing journaled yet, its clock perhaps behind) has
	// never sent them, and skipping its updates as repeats would lose them.
	// It is not the primary_instance of before, which named the process of
	// the last Welcome, journaled or not: that key is ignored, so state
	// written before reads as unknown, which only lets fewer updates pass.
	Instance uint64 `json:"journaled_instance,string,omitempty"`
	// PendingInstance is a primary process whose first group, PendingGroup,
	// was about to be journaled when this was written: a crash can come
	// before or after the group reaches the journal, and only the journal
	// tells which, so Open names PendingInstance if the journal holds
	// PendingGroup and Instance otherwise. Zero: nothing pending.
	PendingInstance uint64 `json:"pending_instance,string,omitempty"`
	PendingGroup    uint64 `json:"pending_group,string,omitempty"`
}

// settled is id with a pending process resolved against the last journaled
// group: whichever process formed that group is the one named.
func (id identity) settled(lastJournaled uint64) identity {
	if id.PendingInstance == 0 {
		id.PendingGroup = 0
		return id
	}
	if lastJournaled >= id.PendingGroup {
		id.Instance = id.PendingInstance
	}
	id.PendingInstance, id.PendingGroup = 0, 0
	return id
}

// IdentityPath is where a secondary whose state file is statePath keeps its
// identity.
func IdentityPath(statePath string) string {
	return filepath.Join(filepath.Dir(statePath), "identity.json")
}

func readIdentity(fsys disk.FS, path, wayForward string) (identity, error) {
	var id identity
	b, err := disk.ReadFile(fsys, path)
	if errors.Is(err, os.ErrNotExist) {
		return id, nil
	}
	if err != nil {
		return id, fmt.Errorf("secondary identity %s: %w", path, err)
	}
	// generation is always written: an identity without it is not one.
	if err := disk.DecodeRecord(b, &id, "generation"); err != nil {
		return id, fmt.Errorf("%w: it holds the data generation the volumes follow and recover's fence, and read as missing it would "+
			"let the secondary take any primary, over writes made since a fence: put back a copy of it, then start the secondary again; "+
			"if this secondary was never fenced (by duplex recover, promote or a switchover's promotion), removing it instead has it follow "+
			"the data generation of the first primary that links; otherwise, %s", disk.Damaged("secondary identity", path, err), wayForward)
	}
	return id, nil
}

func writeIdentity(fsys disk.FS, path string, id identity) error {
	b, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return fmt.Errorf("secondary identity %s: %w", path, err)
	}
	if err := disk.WriteFileAtomic(fsys, path, append(b, '\n')); err != nil {
		return fmt.Errorf("secondary identity: %w", err)
	}
	return nil
}

// setIdentity persists id and then makes it current; s.mu held. Rare: a new
// primary process, or a fence.
func (s *Secondary) setIdentity(id identity) error {
	if id == s.ident {
		return nil
	}
	if err := writeIdentity(disk.Or(s.cfg.FS), IdentityPath(s.cfg.StatePath), id); err != nil {
		return err
	}
	s.ident = id
	return nil
}

// WayForwardTo is what an operator does when the two sites' data histories
// diverged and the secondary is to become a copy of the primary again;
// pairState names the primary's pair state directory, which a promoted
// site keeps elsewhere than SESSION.primary (Config.PrimaryPairState).
func WayForwardTo(pairState string) string {
	return "to make the secondary a copy of the primary again, re-create it: stop the secondary and remove its journal " +
		"directory, state.json, identity.json and volume images; stop the primary and remove its pair state directory " +
		"(" + pairState + "), so that its pairs start with a full initial copy; then start both. " +
		"To keep the secondary's data instead, make its site the primary"
}

// primaryPairState is how the way forward names a primary's own pair
// state directory.
const primaryPairState = "SESSION.primary beside its config"

// WayForward is WayForwardTo the pair state directory of a primary that
// is the session's own, not a promoted site.
var WayForward = WayForwardTo(primaryPairState)

// wayForward is WayForwardTo the primary's pair state directory c names.
func (c *Config) wayForward() string {
	if c.PrimaryPairState == "" {
		return WayForward
	}
	return WayForwardTo(c.PrimaryPairState)
}

// fencedReasonLocked is why a fenced secondary, or one a fence is under way
// in, refuses a primary of data generation g; s.mu held. A fence holds from
// the moment Fence has applied what is journaled (s.fenced), but the
// identity names it only once written: a write that failed leaves a fence
// that lasts until a restart, and the primary's operator is told so, or he
// is told nothing at all. Before that the fence is under way (s.fencing),
// and has neither held nor failed.
func (s *Secondary) fencedReasonLocked(g transport.Generation) string {
	if s.ident.Fenced == "" && !s.fenced {
		return fmt.Sprintf("duplex recover is fencing the secondary (it first applies what is journaled), and no primary is taken meanwhile; "+
			"once the fence completes, the volumes start a data generation of their own and may hold writes the primary "+
			"(data generation %s) does not have, and nothing is replicated: %s", g, s.cfg.wayForward())
	}
	if s.ident.Fenced == "" && s.ckFailed {
		// Recover failed before anything was recorded: the volumes hold
		// the primary's data unless someone wrote them all the same.
		return fmt.Sprintf("duplex recover could not fence the secondary: %v; the fence is not recorded and holds only until "+
			"the secondary restarts, and the volumes must not be written meanwhile: restart the secondary, which applies its journal "+
			"and records the applied group, then run duplex recover again to fence it (or leave it unfenced, and it takes this "+
			"primary, data generation %s, again)", s.unrecorded, g)
	}
	if s.ident.Fenced == "" {
		why := "its identity could not be written"
		if s.unrecorded != nil {
			why = fmt.Sprintf("its identity could not be written: %v", s.unrecorded)
		}
		return fmt.Sprintf("the secondary was fenced by duplex recover, but the fence is not recorded (%s), "+
			"so it lasts only until the secondary restarts: its volumes may hold writes the primary (data generation %s) does not have, "+
			"and nothing is replicated; restarted, the secondary would take this primary again and apply its writes over those: %s", why, g, s.cfg.wayForward())
	}
	return fmt.Sprintf("the secondary was fenced by duplex recover at %s: its volumes started data generation %s there "+
		"(they followed %s until then) and may hold writes the primary does not have; the primary's generation is %s. "+
		"The histories diverged and nothing is replicated: %s",
		s.ident.Fenced, s.ident.Generation, s.ident.Follows, g, s.cfg.wayForward())
}

// generationLocked checks the primary's data generation against the one the
// secondary follows, adopting it if the secondary follows none yet, and says
// why the primary is refused ("" if it is not); s.mu held. A fenced
// secondary follows and adopts nothing: it refuses every primary.
func (s *Secondary) generationLocked(g transport.Generation) string {
	if s.fenced || s.fencing > 0 || s.ident.Fenced != "" {
		return s.fencedReasonLocked(g)
	}
	switch {
	case g == s.ident.Generation:
		return ""
	case g == 0:
		return fmt.Sprintf("the primary names no data generation, and the secondary follows generation %s: %s", s.ident.Generation, s.cfg.wayForward())
	case s.ident.Generation == 0:
		id := s.ident
		id.Generation = g
		if err := s.setIdentity(id); err != nil {
			return fmt.Sprintf("the secondary cannot record the data generation it follows: %v", err)
		}
		s.log.Info("following the primary's data generation", "generation", g.String())
		return ""
	}
	return fmt.Sprintf("the primary's data generation %s is not the generation %s this secondary follows: the sites hold histories "+
		"that diverged (the primary's pair state was re-created, or the secondary belonged to another primary), and nothing is replicated: %s",
		g, s.ident.Generation, s.cfg.wayForward())
}

// Generation returns the data generation the secondary holds, and whether
// recover fenced it (recorded or not: either way no primary is taken). A
// fence still under way is not one: it may yet be refused, and a restart
// meanwhile leaves the secondary unfenced.
func (s *Secondary) Generation() (transport.Generation, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ident.Generation, s.fenced
}

// Follows returns the primary's generation the volumes followed until a
// fence started their own (zero before a fence, or for an identity from
// before fences recorded it): the history a promoted site shares with the
// old primary.
func (s *Secondary) Follows() transport.Generation {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ident.Follows
}

// Unfence undoes, offline, a fence that no promotion followed: the
// secondary follows the generation it followed before the fence again, and
// takes that primary. Only for a fence after which nothing was written to
// the volumes (a switchover's promotion that died before it was recorded):
// they still hold the image of the group the fence named. It reports
// whether the secondary was fenced.
func Unfence(fsys disk.FS, statePath string) (bool, error) {
	fsys = disk.Or(fsys)
	path := IdentityPath(statePath)
	id, err := readIdentity(fsys, path, WayForward)
	if err != nil {
		return false, err
	}
	if id.Fenced == "" {
		return false, nil
	}
	if id.Follows == 0 {
		return true, fmt.Errorf("secondary identity %s: fenced without the generation it followed: the fence cannot be undone", path)
	}
	id.Generation, id.Follows, id.Fenced, id.RecoverAt = id.Follows, 0, "", false
	return true, writeIdentity(fsys, path, id)
}
