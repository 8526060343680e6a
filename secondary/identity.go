package secondary

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

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
	// FencedPart is, for recover --at's fence of a coupled secondary, the
	// time through which the volumes held the group after the state
	// file's when it fenced (applied through the Gate's limit, Unix ns; 0:
	// none of it). A fenced secondary applies nothing again, so a restart
	// knows from it alone that they hold that part, until recover --at
	// undoes it: the point it reaches inside the part, and what status
	// says of the volumes. Cleared before an undo that names no point of
	// its own takes them off it.
	FencedPart int64 `json:"fenced_part_ns,omitempty"`
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
	// AdoptsFirst says the secondary, following no generation, adopts the
	// first primary's over copies it calls consistent: its state is from
	// a version before pair states and data generations, which did so.
	// Any other secondary that follows none lost its identity, and cannot
	// tell the primary its copies came from from one with no record of
	// them.
	AdoptsFirst bool `json:"adopts_first_primary,omitempty"`
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
			"if this secondary was never fenced (by duplex recover, promote or a switchover's promotion), write {\"generation\":\"GEN\"} "+
			"in it instead, GEN the primary's (generation.json in its pair state directory holds it), or remove it: a secondary that "+
			"follows no generation follows the first primary that links only if it holds no consistent copy; otherwise, %s", disk.Damaged("secondary identity", path, err), wayForward)
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

// setIdentityUnlocked persists change(s.ident) and then makes it current,
// as setIdentity does, for the receiver of the primary on conn, but writes
// it without s.mu, in a hand-over (handing) as journalUnlocked does: each
// copy is fsynced, and so is its directory, which a slow disk may take
// seconds over, while status and the receipts take s.mu; and the primary
// is sent a receipt meanwhile (answerWhileBusy), or it would give the
// link up for silence. What decides from s.ident (a Welcome, a fence)
// waits for the hand-over. what is what status says waits on the disk.
// Called with s.mu held, which it holds again when it returns: the caller
// finds conn cut off or replaced, as after journalUnlocked.
func (s *Secondary) setIdentityUnlocked(conn transport.Conn, what string, change func(identity) identity) error {
	// Another hand-over goes first: it may be writing the identity.
	s.awaitHandedLocked()
	id := change(s.ident)
	if id == s.ident {
		return nil
	}
	s.handing = true
	s.mu.Unlock()
	quiet := s.answerWhileBusy(conn)
	s.diskBegin(waitJournal, what)
	err := writeIdentity(disk.Or(s.cfg.FS), IdentityPath(s.cfg.StatePath), id)
	s.diskEnd(waitJournal)
	quiet()
	s.mu.Lock()
	if err == nil {
		s.ident = id
	}
	s.handing = false
	s.handed.Broadcast()
	return err
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

// fencedRefusalLocked is fencedReasonLocked for the primary of hello,
// which says first, if the primary brings the operator's consent to
// overwrite this secondary's copies, that it counts for nothing here: it
// is for copies a primary has no record of, and a fence is a site that
// took its volumes over, which may be serving them. s.mu held.
func (s *Secondary) fencedRefusalLocked(hello transport.Hello) string {
	why := s.fencedReasonLocked(hello.Generation)
	if hello.Overwrite == nil {
		return why
	}
	return fmt.Sprintf("the primary's consent to overwrite this secondary's copies (--overwrite-secondary %s) does not lift a fence, "+
		"and nothing here does: %s", generationName(*hello.Overwrite), why)
}

// generationLocked checks the primary's data generation against the one the
// secondary follows, adopting it if the secondary follows none yet and
// holds no copy it calls consistent, and says why the primary is refused
// ("" if it is not); s.mu held. A fenced secondary follows and adopts
// nothing: it refuses every primary.
//
// The generation is how the secondary tells the primary it has always
// followed from one with no record of its copies: a primary's pair state
// starts one when it is made (a first start, an empty state directory), and
// keeps it through restarts, pair add, delete and add again, and first
// copies started over, so those go on as ever. A primary of another
// generation, whose pairs' first copies would overwrite the copies here
// (which may be the only good ones), is refused, unless the operator
// consented to it for this secondary's generation (hello.Overwrite).
func (s *Secondary) generationLocked(hello transport.Hello) transport.Refusal {
	g := hello.Generation
	if s.fenced || s.fencing > 0 || s.ident.Fenced != "" {
		return lasting(s.fencedRefusalLocked(hello))
	}
	if g == s.ident.Generation {
		return transport.Refusal{}
	}
	if g == 0 {
		return lasting(fmt.Sprintf("the primary names no data generation, and the secondary follows generation %s: %s", s.ident.Generation, s.cfg.wayForward()))
	}
	var copies []heldCopy
	if s.ident.Generation == 0 || hello.Overwrite != nil {
		copies = s.consistentCopiesLocked(func(string) bool { return true })
	}
	switch {
	case s.ident.Generation == 0 && (len(copies) == 0 || s.ident.AdoptsFirst):
		// A new secondary, or one whose copies were never consistent:
		// nothing here for a first copy to overwrite.
		id := s.ident
		id.Generation, id.AdoptsFirst = g, false
		if err := s.setIdentity(id); err != nil {
			// The next dial writes it again.
			return passing(fmt.Sprintf("the secondary cannot record the data generation it follows: %v", err))
		}
		s.log.Info("following the primary's data generation", "generation", g.String())
		return transport.Refusal{}
	case hello.Overwrite != nil && *hello.Overwrite == s.ident.Generation:
		return s.overwriteLocked(g, copies)
	}
	return lasting(s.unrelatedPrimaryLocked(hello, copies))
}

// overwriteLocked makes the secondary follow the primary's generation g at
// the operator's word (duplex primary --overwrite-secondary), its copies
// (copies, as consistentCopiesLocked names them) forgotten first: none of
// them is the new primary's, and only a first copy of each makes one. The
// state file records that before the identity names g, so a kill between
// the two leaves copies called consistent by nothing, never a primary of
// another history followed over copies still called its own; and both are
// written before the Welcome, so nothing of the new primary reaches the
// volumes before. Refused while a resync holds the secondary: the groups
// it holds journaled belong to the old primary's stream, which alone ends
// the hold. Called with s.mu held.
func (s *Secondary) overwriteLocked(g transport.Generation, copies []heldCopy) transport.Refusal {
	if s.pairs.holding() {
		held := s.pairs.resyncing()
		for i, name := range held {
			held[i] = fmt.Sprintf("%q", name)
		}
		return lasting(fmt.Sprintf("the primary (data generation %s) has the operator's consent to overwrite this secondary's copies, "+
			"but a resync of %s holds the secondary: the groups it holds journaled are the old primary's, and only its stream ends "+
			"the hold, so nothing is replicated. Make this site the primary (duplex promote at this site: it recovers to the time "+
			"before the resync), or %s",
			g, strings.Join(held, ", "), s.cfg.wayForward()))
	}
	var gone []string
	for name := range s.cfg.Volumes {
		gone = append(gone, name)
	}
	for name := range s.pairs.vols {
		if _, ok := s.cfg.Volumes[name]; !ok {
			gone = append(gone, name)
		}
	}
	switch recorded, err := s.forgetLocked(gone); {
	case err != nil && !recorded:
		// The next dial with the consent writes it again.
		return passing(fmt.Sprintf("the primary (data generation %s) has the operator's consent to overwrite this secondary's copies, "+
			"but the state file could not record them forgotten: %v", g, err))
	case err != nil:
		// Forgotten, and recorded: what failed is the journal's
		// housekeeping, which the next checkpoint does again.
		s.log.Warn(releaseFailed("the copies forgotten"), "volumes", gone, "err", err)
	}
	old := s.ident.Generation
	if err := s.setIdentity(identity{Generation: g}); err != nil {
		return passing(fmt.Sprintf("the primary (data generation %s) has the operator's consent to overwrite this secondary's copies, "+
			"which it forgot, but it cannot record the data generation it follows: %v", g, err))
	}
	s.log.Warn("overwriting this secondary's copies, at the operator's word (duplex primary --overwrite-secondary): "+
		"they are no longer called consistent, and the primary's first copies copy each volume whole",
		"generation", g.String(), "followed", generationName(old), "copies", describeCopies(copies, len(copies)))
	return transport.Refusal{}
}

// generationName is how refusals and --overwrite-secondary name a
// generation the secondary follows: none for a secondary that follows
// none.
func generationName(g transport.Generation) string {
	if g == 0 {
		return "none"
	}
	return g.String()
}

// unrelatedPrimaryLocked is the refusal of a primary whose data
// generation the secondary does not follow (or, following none, cannot
// tell from its own), copies as consistentCopiesLocked names them (nil if
// not asked for); s.mu held. It names the two ways on first, this site
// the primary or the operator's consent to overwrite the copies, then the
// copies at stake: a refusal is cut at transport's 1 KiB, and the
// primary's status shows what reached it.
func (s *Secondary) unrelatedPrimaryLocked(hello transport.Hello, copies []heldCopy) string {
	g, follows := hello.Generation, s.ident.Generation
	if s.cfg.PrimaryPairState != "" {
		// The primary is a promoted site, which takes no consent: the
		// way forward is the old one.
		return fmt.Sprintf("the primary's data generation %s is not the generation %s this secondary follows: the sites hold histories "+
			"that diverged, and nothing is replicated: %s", g, follows, s.cfg.wayForward())
	}
	if copies == nil {
		copies = s.consistentCopiesLocked(func(string) bool { return true })
	}
	consent := ""
	if hello.Overwrite != nil {
		consent = fmt.Sprintf(" (its consent to overwrite names generation %s, not this secondary's)", generationName(*hello.Overwrite))
	}
	why := fmt.Sprintf("the primary's data generation %s is not the generation %s this secondary follows: the primary has no record "+
		"of this secondary's copies (a new pair state: a replacement primary, an empty state directory; or the secondary was "+
		"another primary's), and its first copies would overwrite them: nothing is replicated%s. ", g, follows, consent)
	if follows == 0 {
		why = fmt.Sprintf("this secondary follows no data generation (its identity.json was removed), so it cannot tell whether the "+
			"primary (data generation %s) is the one its copies come from: nothing is replicated%s. If it is (its pair state is the "+
			"one they were copied from), write {\"generation\":\"%s\"} in identity.json beside state.json and start this "+
			"secondary again. ", g, consent, g)
	}
	held := "It holds no copy it calls consistent."
	if len(copies) > 0 {
		held = "Its copies: " + describeCopies(copies, 3) + "."
	}
	return fmt.Sprintf("%sIf the primary's data is lost and these copies are the good ones, make this site the primary: stop this "+
		"secondary, run duplex promote here. To overwrite them with the primary's volumes: duplex primary --config FILE "+
		"--overwrite-secondary %s (its first copies copy every volume whole). %s", why, generationName(follows), held)
}

// describeCopies names at most n of copies, and how many more there are.
func describeCopies(copies []heldCopy, n int) string {
	var out []string
	for i, c := range copies {
		if i == n {
			out = append(out, fmt.Sprintf("and %d more", len(copies)-n))
			break
		}
		out = append(out, fmt.Sprintf("%q, %s (%s)", c.name, c.as, c.state))
	}
	return strings.Join(out, "; ")
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
