package site

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"duplex/config"
	"duplex/control"
	"duplex/disk"
	"duplex/failover"
	"duplex/nbd"
	"duplex/pair"
	"duplex/secondary"
	"duplex/tlsconf"
	"duplex/transport"
)

// ErrPromoted ends a secondary's Run when a switchover promoted it in place:
// the caller serves the promoted site (OpenPromoted) on the addresses the
// secondary had (PromotedConfig), through the listeners it hands over
// (HandOver), which stay bound in between.
var ErrPromoted = errors.New("promoted in place by a switchover")

// PromotedError is the error Run returns after a promotion in place.
type PromotedError struct{ Promotion failover.Promotion }

func (e *PromotedError) Error() string {
	return fmt.Sprintf("promoted in place by a switchover at %s", control.FormatTime(e.Promotion.At))
}

func (e *PromotedError) Unwrap() error { return ErrPromoted }

// PromotedConfig is the config a secondary promoted in place serves the
// promoted site with: its own, with the NBD and control addresses it had
// bound (where the config asks for port 0, the ports the system picked), so
// that clients find the new primary where the secondary was.
func (s *Secondary) PromotedConfig() *config.Config {
	c := *s.cfg
	if a := s.NBDAddr(); a != "" {
		c.Secondary.NBD = a
	}
	if a := s.ControlAddr(); a != "" {
		c.Secondary.Control = a
	}
	return &c
}

// promoteRequests are the promotion requests a running secondary was
// sent: handled one at a time, each once, and remembered, so that every
// later delivery of a request, or a cancel of it, is answered as it was.
// A primary whose answer was lost learns from a cancel whether the site
// took over, or never will by that request: a site that has the request
// and has not fenced yet reports neither promoted_at nor fenced in its
// status, and goes on to promote itself all the same.
type promoteRequests struct {
	mu      sync.Mutex
	changed chan struct{} // closed, and replaced, when a request ends
	busy    bool          // a request is being handled
	// ended are the requests refused or cancelled, never to be carried
	// out, and why; endedOrder their ids, oldest first. They are kept in
	// promoteEndedFile, synced before a cancel or refusal is answered: a
	// request held on its way (a proxy in front of the control address)
	// may reach the process a restart makes, and must be refused there
	// too.
	ended      map[string]string
	endedOrder []string
	// done is the promotion made, by request doneBy: Run ends with it.
	done   *control.PromoteResult
	doneBy string
}

// awaitIdleLocked waits, with r.mu held, until no request is handled.
func (r *promoteRequests) awaitIdleLocked() {
	for r.busy {
		if r.changed == nil {
			r.changed = make(chan struct{})
		}
		ch := r.changed
		r.mu.Unlock()
		<-ch
		r.mu.Lock()
	}
}

func (r *promoteRequests) endLocked() {
	r.busy = false
	if r.changed != nil {
		close(r.changed)
		r.changed = nil
	}
}

// promoteInPlace promotes the running secondary for a switchover (see
// promoteOnce), once per request: a request handled before is answered as
// it was, one cancelled is refused, and another that comes while one is
// handled waits for its end.
func (s *Secondary) promoteInPlace(req control.PromoteRequest) (control.PromoteResult, error) {
	r := &s.requests
	r.mu.Lock()
	r.awaitIdleLocked()
	if r.done != nil {
		res, by := *r.done, r.doneBy
		r.mu.Unlock()
		if req.ID != "" && req.ID == by {
			return res, nil
		}
		return res, errors.New("this site was promoted already, by another request")
	}
	if why, ok := r.ended[req.ID]; ok && req.ID != "" {
		r.mu.Unlock()
		res := control.PromoteResult{State: control.PromoteRefused}
		if _, fenced := s.sec.Generation(); fenced {
			// Its promotion failed after a fence that stays.
			res.State = control.PromoteFenced
		}
		return res, fmt.Errorf("this request was answered already: %s", why)
	}
	r.busy = true
	r.mu.Unlock()
	pr, res, err := s.promoteOnce(req)
	r.mu.Lock()
	switch {
	case err == nil:
		r.done, r.doneBy = &res, req.ID
	case res.State == control.PromoteRefused && req.ID != "":
		if perr := s.endRequestLocked(req.ID, err.Error()); perr != nil {
			// The refusal is not durable: it is not given, so the
			// primary stays in doubt and asks again.
			res = control.PromoteResult{}
			err = fmt.Errorf("%w; and the refusal could not be recorded: %v", err, perr)
		}
	}
	r.endLocked()
	r.mu.Unlock()
	if err == nil {
		s.promoted <- pr
	}
	return res, err
}

// cancelPromotion makes sure the request req.ID is never carried out, and
// says, once no request is handled here, what this site is: promoted (by
// whichever request), fenced and not promoted, or a secondary that takes
// its primary and will not be promoted by that request.
func (s *Secondary) cancelPromotion(req control.CancelRequest) (control.PromoteResult, error) {
	if req.Session != s.cfg.Session {
		return control.PromoteResult{}, fmt.Errorf("this secondary is of session %q, not %q", s.cfg.Session, req.Session)
	}
	if req.ID == "" {
		return control.PromoteResult{}, errors.New("cancel names no request")
	}
	r := &s.requests
	r.mu.Lock()
	defer r.mu.Unlock()
	// Recorded before the wait: a delivery that comes meanwhile is refused.
	if _, ok := r.ended[req.ID]; !ok && r.doneBy != req.ID {
		if err := s.endRequestLocked(req.ID, "cancelled by the primary"); err != nil {
			return control.PromoteResult{}, fmt.Errorf("the cancel could not be recorded: %w", err)
		}
	}
	r.awaitIdleLocked()
	if r.done != nil {
		return *r.done, nil
	}
	if _, fenced := s.sec.Generation(); fenced {
		return control.PromoteResult{State: control.PromoteFenced,
			Error: "this secondary is fenced and not promoted: it takes no primary; duplex promote here makes it the primary"}, nil
	}
	return control.PromoteResult{State: control.PromoteRefused, Error: r.ended[req.ID]}, nil
}

// promoteEndedFile keeps, beside a secondary's state file, the promotion
// requests it refused or cancelled (see promoteRequests).
const promoteEndedFile = "promote-ended.json"

// maxEndedRequests bounds promoteEndedFile: one entry per switchover whose
// promotion was refused or whose answer was lost.
const maxEndedRequests = 256

type endedRequest struct {
	ID  string `json:"id"`
	Why string `json:"why"`
}

// endRequestLocked records, with s.requests.mu held, that request id is
// never to be carried out, and makes it durable before it returns.
func (s *Secondary) endRequestLocked(id, why string) error {
	r := &s.requests
	if r.ended == nil {
		r.ended = map[string]string{}
	}
	if _, ok := r.ended[id]; !ok {
		r.endedOrder = append(r.endedOrder, id)
	}
	r.ended[id] = why
	for len(r.endedOrder) > maxEndedRequests {
		delete(r.ended, r.endedOrder[0])
		r.endedOrder = r.endedOrder[1:]
	}
	list := make([]endedRequest, 0, len(r.endedOrder))
	for _, id := range r.endedOrder {
		list = append(list, endedRequest{ID: id, Why: r.ended[id]})
	}
	b, _ := json.Marshal(list)
	if err := disk.WriteFileAtomic(disk.Or(s.fsys), filepath.Join(filepath.Dir(StatePath(s.cfg)), promoteEndedFile), append(b, '\n')); err != nil {
		return fmt.Errorf("the promotion requests refused or cancelled: %w", err)
	}
	return nil
}

// loadEndedRequests reads the requests an earlier run of the secondary
// refused or cancelled.
func (s *Secondary) loadEndedRequests() error {
	path := filepath.Join(filepath.Dir(StatePath(s.cfg)), promoteEndedFile)
	b, err := disk.ReadFile(disk.Or(s.fsys), path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("the promotion requests refused or cancelled: %w", err)
	}
	var list []endedRequest
	if err := disk.DecodeRecords(b, &list, "id", "why"); err != nil {
		return fmt.Errorf("%w: it holds the switchovers' promotion requests this secondary refused or whose cancel it took, "+
			"which it must never carry out, however late one comes: put back a copy of it, then start the secondary again; "+
			"or, once no switchover of this session is under way at the primary, remove it",
			disk.Damaged("record of the promotion requests refused or cancelled", path, err))
	}
	r := &s.requests
	r.ended = map[string]string{}
	for _, e := range list {
		if _, ok := r.ended[e.ID]; !ok && e.ID != "" {
			r.endedOrder = append(r.endedOrder, e.ID)
		}
		r.ended[e.ID] = e.Why
	}
	return nil
}

// promoteOnce promotes the running secondary for a switchover: it refuses,
// changing nothing, unless it holds every group the primary says it
// acknowledged and nothing keeps a group from being applied (a resync's
// hold, a stopped applier, a volume without a consistent copy); then it
// fences (the primary is cut off), applies what is journaled, records the
// promotion, and hands it to Run, which ends, and whose caller serves the
// volumes read-write. A failure after the fence undoes the fence before it
// refuses, so that the primary goes on replicating here; a fence that
// cannot be undone is reported as one (PromoteFenced): the primary must not
// take writes that nobody would ever replicate.
func (s *Secondary) promoteOnce(req control.PromoteRequest) (failover.Promotion, control.PromoteResult, error) {
	refused := control.PromoteResult{State: control.PromoteRefused}
	if req.Session != s.cfg.Session {
		return failover.Promotion{}, refused, fmt.Errorf("this secondary is of session %q, not %q", s.cfg.Session, req.Session)
	}
	// As duplex promote: the fence and the record are for good, so a site
	// that could not serve once promoted (no NBD address, keys or the
	// token unreadable now) refuses before either.
	if err := CheckServe(s.cfg); err != nil {
		return failover.Promotion{}, refused, fmt.Errorf("this site could not serve once promoted: %w", err)
	}
	if _, fenced := s.sec.Generation(); fenced {
		return failover.Promotion{}, control.PromoteResult{State: control.PromoteFenced},
			errors.New("this secondary is fenced (recover fenced it): duplex promote at the site promotes it")
	}
	st, views := s.sec.Snapshot(s.order)
	switch {
	case st.Stopped != "":
		return failover.Promotion{}, refused, fmt.Errorf("this secondary stopped replicating (%s): it cannot take over", st.Stopped)
	case st.JournaledGroup < req.Group:
		return failover.Promotion{}, refused, fmt.Errorf("this secondary has journaled through group %d, short of group %d, the last group the primary acknowledged",
			st.JournaledGroup, req.Group)
	case st.HeldGroups > 0 || len(st.Resyncing) > 0:
		return failover.Promotion{}, refused, fmt.Errorf("a resync of %v holds %d groups unapplied here: the volumes cannot hold everything until it completes",
			st.Resyncing, st.HeldGroups)
	}
	for i, v := range views {
		if !v.Consistent {
			return failover.Promotion{}, refused, fmt.Errorf("volume %s has no consistent copy here (%s)", s.order[i], consistencyNote(s.order[i], v, st.Group))
		}
	}
	if s.coupler != nil {
		// Before the fence, which stops applying at the Gate's limit.
		if err := s.awaitCoupledApplied(req.Group); err != nil {
			return failover.Promotion{}, refused, err
		}
	}
	if s.beforeFence != nil {
		s.beforeFence()
	}
	s.log.Warn("switchover: promoting this secondary; the primary is cut off", "group", req.Group,
		"consistency_time", control.FormatTime(req.ConsistencyTime))
	// Before the fence: a secondary that dies between the fence and the
	// promotion's record never took over, and its restart undoes the
	// fence (undoInterruptedPromotion), so that the primary, whose writes
	// resume, is taken again.
	if s.coupler != nil {
		// Before the marker: a promotion recorded finds the leave owed.
		if err := writePendingLeave(s.fsys, s.cfg, s.coupler.Membership()); err != nil {
			return failover.Promotion{}, refused, fmt.Errorf("promote: %w", err)
		}
	}
	if err := writeInPlacePromotion(s.fsys, s.cfg, req); err != nil {
		s.voidLeave()
		return failover.Promotion{}, refused, fmt.Errorf("promote: %w", err)
	}
	pr, _, err := promoteOpen(s.cfg, s, s.fsys, func(pos transport.Position) error {
		// By group: the time the primary heard for a group may be that
		// of the empty groups formed after it, which are not journaled.
		if pos.Group < req.Group {
			return fmt.Errorf("fenced at group %d, short of group %d, which the primary acknowledged", pos.Group, req.Group)
		}
		return nil
	})
	if err != nil {
		res, note := s.undoFence()
		if res.State == control.PromoteRefused {
			if rerr := removeInPlacePromotion(s.fsys, s.cfg); rerr != nil {
				// A restart finds the fence undone already: harmless.
				s.log.Error("the promotion in place failed, and its marker could not be removed", "err", rerr)
			}
			s.voidLeave()
		}
		return failover.Promotion{}, res, fmt.Errorf("promote: %w; %s", err, note)
	}
	if err := removeInPlacePromotion(s.fsys, s.cfg); err != nil {
		// The promotion's record, which exists, settles it at a restart.
		s.log.Warn("promoted in place; the marker of the promotion under way stays", "err", err)
	}
	if s.coupler != nil {
		s.leaveGroup()
	}
	s.log.Warn("switchover: promoted; serving the volumes read-write next", "promoted_at", control.FormatTime(pr.At),
		"group", pr.Group, "consistency_time", control.FormatTime(pr.ConsistencyTime), "generation", pr.Generation.String())
	return pr, control.PromoteResult{PromotedAt: control.FormatTime(pr.At), Group: pr.Group, ConsistencyTime: pr.ConsistencyTime,
		Generation: pr.Generation.String(), State: control.PromoteDone}, nil
}

// voidLeave removes the leave owed of a promotion in place that was
// refused: a restart, which finds no promotion record, removes it too.
func (s *Secondary) voidLeave() {
	if s.coupler == nil {
		return
	}
	if err := removePendingLeave(s.fsys, s.cfg); err != nil {
		s.log.Warn("the promotion in place was refused; the record of the coupled group's leave it owed stays until a restart removes it", "err", err)
	}
}

// undoFence undoes the fence of a promotion in place that failed after it,
// if it holds, and returns the state the site is left in, and what to tell
// of it: a secondary that takes its primary again (refused), or fenced.
// The fence stays when the promotion's record is there, whatever the error
// said (written, its directory's sync failed): a restart would find the
// site promoted.
func (s *Secondary) undoFence() (control.PromoteResult, string) {
	if _, fenced := s.sec.Generation(); !fenced {
		return control.PromoteResult{State: control.PromoteRefused}, "nothing changed: this secondary takes its primary"
	}
	_, err := failover.ReadPromotion(s.fsys, PromotedDir(s.cfg))
	switch {
	case err == nil:
		err = errors.New("its promotion record is there")
		s.log.Error("switchover: the promotion failed after the fence, but its record is there: the primary is cut off", "err", err)
		return control.PromoteResult{State: control.PromoteFenced}, "this secondary is fenced all the same, and its promotion's record is there: " +
			"duplex promote here serves it as the primary"
	case errors.Is(err, failover.ErrNotPromoted):
		err = s.sec.UndoFence()
	}
	if err != nil {
		s.log.Error("switchover: the promotion failed after the fence, which holds: the primary is cut off", "err", err)
		return control.PromoteResult{State: control.PromoteFenced}, fmt.Sprintf("this secondary is fenced all the same (the fence cannot be undone now: %v): "+
			"it takes no primary until a restart, which undoes the fence (it never took over); or, once the cause is fixed, duplex promote here makes it the primary", err)
	}
	return control.PromoteResult{State: control.PromoteRefused}, "the fence is undone and nothing changed: this secondary takes its primary again"
}

// inPlacePromotionFile marks, beside a secondary's state file, a promotion
// in place under way: written before the fence, removed once the promotion
// is recorded.
const inPlacePromotionFile = "promoting.json"

func writeInPlacePromotion(fsys disk.FS, cfg *config.Config, req control.PromoteRequest) error {
	b, _ := json.Marshal(struct {
		Group uint64 `json:"group"`
		At    int64  `json:"at_ns"`
	}{req.Group, time.Now().UnixNano()})
	if err := disk.WriteFileAtomic(disk.Or(fsys), filepath.Join(filepath.Dir(StatePath(cfg)), inPlacePromotionFile), append(b, '\n')); err != nil {
		return fmt.Errorf("the marker of a promotion in place: %w", err)
	}
	return nil
}

func removeInPlacePromotion(fsys disk.FS, cfg *config.Config) error {
	fsys = disk.Or(fsys)
	dir := filepath.Dir(StatePath(cfg))
	if err := fsys.Remove(filepath.Join(dir, inPlacePromotionFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("the marker of a promotion in place: %w", err)
	}
	return fsys.SyncDir(dir)
}

// undoInterruptedPromotion, at the start of a secondary, settles a
// promotion in place that did not end: recorded, it took effect (the
// marker goes; the record refuses the start); not recorded, the site never
// served writes, and the fence, if it was made, is undone, so that the
// primary is taken again: the primary's switchover learns it was not
// promoted, or gave up on the answer, and its writes go on either way.
func undoInterruptedPromotion(fsys disk.FS, cfg *config.Config, log *slog.Logger) error {
	_, err := disk.ReadFile(disk.Or(fsys), filepath.Join(filepath.Dir(StatePath(cfg)), inPlacePromotionFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("the marker of a promotion in place: %w", err)
	}
	switch _, err := failover.ReadPromotion(fsys, PromotedDir(cfg)); {
	case err == nil:
		return removeInPlacePromotion(fsys, cfg)
	case !errors.Is(err, failover.ErrNotPromoted):
		return err
	}
	// Under the journal's lock, which the secondary's Open takes next: a
	// secondary running on this journal (its promotion under way) is left
	// alone, and the Open refuses.
	lock, err := disk.Or(fsys).Lock(filepath.Join(cfg.Secondary.Journal, "LOCK"))
	if err != nil {
		return nil
	}
	defer lock.Close()
	fenced, err := secondary.Unfence(fsys, StatePath(cfg))
	if err != nil {
		return err
	}
	if fenced {
		log.Warn("a switchover's promotion of this secondary stopped after the fence, before it was recorded: " +
			"this site never took over; the fence is undone, and the primary is taken again")
	}
	return removeInPlacePromotion(fsys, cfg)
}

// writeGate lets writes through the primary's write path, holds them while
// a switchover pauses them, and refuses them once it is done. A nil gate
// lets every write through.
type writeGate struct {
	mu       sync.Mutex
	inflight int
	held     bool
	refused  error
	changed  chan struct{} // closed, and replaced, at each change
}

func newWriteGate() *writeGate { return &writeGate{changed: make(chan struct{})} }

func (g *writeGate) broadcastLocked() {
	close(g.changed)
	g.changed = make(chan struct{})
}

// enter waits while writes are held, and returns the refusal once they are
// refused; otherwise the write goes through, and leave ends it.
func (g *writeGate) enter() error {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for g.held && g.refused == nil {
		ch := g.changed
		g.mu.Unlock()
		<-ch
		g.mu.Lock()
	}
	if g.refused != nil {
		return g.refused
	}
	g.inflight++
	return nil
}

// open says a write now would not wait at the gate.
func (g *writeGate) open() bool {
	if g == nil {
		return true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return !g.held
}

// enterNow is enter for a write that must not wait: held says the writes
// are held, and the write did not enter.
func (g *writeGate) enterNow() (held bool, err error) {
	if g == nil {
		return false, nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.refused != nil:
		return false, g.refused
	case g.held:
		return true, nil
	}
	g.inflight++
	return false, nil
}

func (g *writeGate) leave() {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.inflight--
	if g.inflight == 0 && g.held {
		g.broadcastLocked()
	}
}

// hold stops new writes and waits for those under way to end: each one then
// has its stamp and is captured, or was never acknowledged. On an error
// (ctx ended) writes stay held: the caller releases them.
func (g *writeGate) hold(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.held = true
	for g.inflight > 0 {
		ch := g.changed
		g.mu.Unlock()
		select {
		case <-ctx.Done():
			g.mu.Lock()
			return fmt.Errorf("%d writes still under way: %w", g.inflight, ctx.Err())
		case <-ch:
		}
		g.mu.Lock()
	}
	return nil
}

// release lets the held writes go on.
func (g *writeGate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.held = false
	g.broadcastLocked()
}

// refuse fails every held write, and every write from now on, with err.
func (g *writeGate) refuse(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.refused = err
	g.broadcastLocked()
}

// switchedState is what a primary keeps once switched over.
type switchedState struct {
	mu     sync.Mutex
	record *failover.Switchover
	status control.Status
	// inDoubt is why a switchover does not know whether the other site
	// takes over (the writes held meanwhile); "" otherwise.
	inDoubt string
}

// refuseSwitchedOver refuses to start a primary that a switchover handed
// the session away from, or that stopped in the middle of one: writes
// served here would be missing at the site that is the primary now.
func refuseSwitchedOver(dir string, fsys disk.FS) error {
	rec, err := failover.ReadSwitchover(fsys, dir)
	switch {
	case errors.Is(err, failover.ErrNoSwitchover):
		return nil
	case err != nil:
		return fmt.Errorf("primary: %w", err)
	case rec.State == failover.SwitchoverDone:
		return fmt.Errorf("primary: this site was switched over at %s: the other site (the [secondary] section's) is the session's primary since %s "+
			"and holds every write this one acknowledged (as of %s, group %d); this site serves no writes as the primary any more: "+
			"duplex rejoin --config FILE here makes it the new primary's secondary",
			control.FormatTime(rec.At), rec.PromotedAt, control.FormatTime(rec.ConsistencyTime), rec.Group)
	default:
		return fmt.Errorf("primary: this site stopped in the middle of a switchover (begun %s), after it asked the other site to take over: "+
			"duplex status --config FILE says whether it did; if the other site shows promoted_at, it is the primary and duplex rejoin here "+
			"follows it; if it does not, remove %s and start the primary again",
			control.FormatTime(rec.At), filepath.Join(dir, failover.SwitchoverFile))
	}
}

// switchedStatus is the status of a primary that was switched over.
func (p *Primary) switchedStatus() (control.Status, bool) {
	p.switchedOver.mu.Lock()
	defer p.switchedOver.mu.Unlock()
	if p.switchedOver.record == nil {
		return control.Status{}, false
	}
	return p.switchedOver.status, true
}

// errSwitchedOver is what a write gets once the session was switched over:
// ESHUTDOWN, which tells an NBD client the server takes no more requests,
// and the kernel's client turns into EIO for the application.
func errSwitchedOver(promotedAt string) error {
	return fmt.Errorf("this site was switched over: the session's primary is the other site since %s: %w", promotedAt, nbd.ESHUTDOWN)
}

// promotedWait bounds how long a switchover waits for the promoted site to
// serve once it has recorded its promotion (it reopens its volumes and
// binds its addresses), and how long it asks the other site's status when
// the promotion's answer was lost.
const promotedWait = 30 * time.Second

// Switchover hands the session to the other site, within timeout: it drains
// what is held while writes go on, then holds the writes (pause), ships the
// rest, and asks the running secondary to promote itself once it holds the
// last group the secondary acknowledged (the last acknowledged write's, or
// an empty one journaled after it at idle). Done, this site refuses writes from
// then on, records the switchover (a restart as the primary is refused),
// and stops replicating as at a clean stop; the result says how long writes
// were held. Refused or failed before the other site took over, nothing
// changes: the held writes go on, and replication with them. The writes
// resume only once this site knows the other site will not take over: it
// refused the request (undoing its fence if the promotion failed after
// it), the request never reached it, or, the answer lost, it cancelled the
// request. Otherwise (no word from it, or fenced and not promoted) the
// switchover is in doubt: the writes stay held, status says why, and the
// other site is asked until it says (see awaitPromotion).
func (p *Primary) Switchover(ctx context.Context, timeout time.Duration) (control.SwitchoverResult, error) {
	if !p.switching.TryLock() {
		return control.SwitchoverResult{}, errors.New("a switchover is under way already, or in doubt (see duplex status)")
	}
	// handed: the lock goes to awaitPromotion, which settles a switchover
	// in doubt.
	handed := false
	defer func() {
		if !handed {
			p.switching.Unlock()
		}
	}()
	if _, done := p.switchedStatus(); done {
		return control.SwitchoverResult{}, errors.New("this site was switched over already")
	}
	deadline := time.Now().Add(timeout)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	at, err := p.secondaryControl()
	if err != nil {
		return control.SwitchoverResult{}, err
	}
	if err := p.switchoverReady(ctx, at); err != nil {
		return control.SwitchoverResult{}, fmt.Errorf("switchover refused, nothing changed: %w", err)
	}
	start := time.Now()
	p.log.Info("switchover: draining while writes go on", "timeout", timeout)
	if err := p.predrain(ctx, start.Add(timeout/2)); err != nil {
		return control.SwitchoverResult{}, fmt.Errorf("switchover abandoned before writes were paused, nothing changed: %w", err)
	}
	res := control.SwitchoverResult{DrainSeconds: time.Since(start).Seconds()}
	pausedAt := time.Now()
	res.PausedAt = control.FormatWall(pausedAt)
	committed := false
	defer func() {
		if !committed {
			p.gate.release()
			p.log.Info("switchover abandoned: writes resume", "held_for", time.Since(pausedAt))
		}
	}()
	if err := p.gate.hold(ctx); err != nil {
		return res, fmt.Errorf("switchover abandoned, writes resume: pausing the writes: %w", err)
	}
	p.log.Info("switchover: writes held; shipping the rest")
	if err := p.drain(ctx); err != nil {
		return res, fmt.Errorf("switchover abandoned, writes resume: %w", err)
	}
	if err := p.allDuplex(); err != nil {
		return res, fmt.Errorf("switchover abandoned, writes resume: %w", err)
	}
	acked := p.mover.Stats().Acked
	req := control.PromoteRequest{Session: p.cfg.Session, Group: acked.Group, ConsistencyTime: acked.Time}
	res.Group, res.ConsistencyTime = acked.Group, control.FormatTime(acked.Time)
	dir := p.stateDir
	rec := failover.Switchover{Session: p.cfg.Session, State: failover.SwitchoverPending, At: time.Now().UnixNano(),
		ConsistencyTime: acked.Time, Group: acked.Group}
	// Before the other site is asked: a primary killed while it promotes
	// must not come back serving writes the other site would never see.
	if err := failover.WriteSwitchover(p.fsys, dir, rec); err != nil {
		return res, fmt.Errorf("switchover abandoned, writes resume: %w", err)
	}
	// The answer is waited for past a cancelled request: once asked, the
	// other site may take over, and this site must know whether it did.
	req.ID = transport.NewGeneration().String()
	pctx, pcancel := context.WithDeadline(context.WithoutCancel(ctx), later(deadline, time.Now().Add(promotedWait)))
	pr, err := control.PromoteSecondary(pctx, at, p.token, req)
	pcancel()
	if err == nil && pr.State == "" {
		pr.State = control.PromoteDone // a site that predates the states
	}
	settled := false
	if err != nil {
		var refused *control.RefusedError
		var dial *net.OpError
		switch {
		case pr.PromotedAt != "" && pr.PromotedAt != p.promotedAt():
			// Promoted already, by another request: it is the primary.
			pr.State = control.PromoteDone
		case errors.As(err, &refused) && (pr.State == control.PromoteRefused || pr.State == control.PromoteFenced):
			// The site's word: the request will never be carried out.
		case errors.As(err, &refused) && (refused.Code == 400 || refused.Code == 401 || refused.Code == 403 ||
			control.RefusedStopping(err) || control.RefusedStarting(err)):
			// Turned away before any promotion began: a stopping site
			// begins none, nor does one that has not read its state yet.
			pr.State = control.PromoteRefused
		case errors.As(err, &dial) && dial.Op == "dial":
			// Never delivered (no connection): it cannot be carried out.
			pr.State = control.PromoteRefused
		default:
			// The answer was lost, or says nothing for sure: whether the
			// other site takes over is known only once it says so, or
			// says the request, cancelled, never will be.
			p.log.Warn("switchover: the answer to the promotion was lost; cancelling the request", "err", err)
			settled = true
			pr = p.settlePromotion(context.WithoutCancel(ctx), at, req, later(deadline, time.Now().Add(promotedWait)))
		}
	}
	switch pr.State {
	case control.PromoteDone:
	case control.PromoteRefused:
		if rerr := failover.RemoveSwitchover(p.fsys, dir); rerr != nil {
			// The record stays: a restart is refused until the operator
			// checks, which errs on the safe side.
			p.log.Error("switchover abandoned, and its record could not be removed", "err", rerr)
		}
		if settled {
			return res, fmt.Errorf("switchover abandoned, writes resume: the answer to the promotion was lost (%w), "+
				"and the other site cancelled the request: it does not take over", err)
		}
		return res, fmt.Errorf("switchover abandoned, writes resume: %w", err)
	default:
		// Fenced there and not promoted, or no word: the writes stay held
		// (an acknowledged write would be at this site only, with the
		// other one the primary or taking no primary), and the record
		// pending, until the other site says.
		committed, handed = true, true
		why := p.inDoubt(pr, err)
		go p.awaitPromotion(at, req, rec, res, pausedAt, why)
		return res, fmt.Errorf("switchover in doubt, writes held here: %s", why)
	}
	return p.switchedTo(ctx, at, rec, pr, res, pausedAt), nil
}

// inDoubt says why a switchover does not know whether the other site takes
// over, and what the operator can do, given the other site's last word (pr,
// or the error of the promotion), and sets it in the status.
func (p *Primary) inDoubt(pr control.PromoteResult, err error) string {
	var why string
	if pr.State == control.PromoteFenced {
		why = fmt.Sprintf("the other site is fenced and not promoted (%s): it takes no writes from here", pr.Error)
	} else {
		why = fmt.Sprintf("the other site did not say whether it takes over (%v)", err)
	}
	why += "; writes stay held here, and the other site is asked again until it says: promoted, this site is switched over; " +
		"the promotion cancelled there, the writes resume. duplex promote there makes it the primary. To serve writes here instead, " +
		"first make sure the other site is not promoted and never will be (its daemon stopped, duplex status there without promoted_at), " +
		"then stop this primary, remove " + filepath.Join(p.stateDir, failover.SwitchoverFile) + " and start it"
	p.switchedOver.mu.Lock()
	p.switchedOver.inDoubt = why
	p.switchedOver.mu.Unlock()
	return why
}

// settlePromotion asks the other site, until it says or until the deadline,
// to cancel the promotion request req, whose answer was lost: the answer
// says whether it is promoted, fenced (and not promoted), or will never be
// promoted by req. A site that does not answer, but whose status says it
// is promoted, is. State is empty if it never said.
func (p *Primary) settlePromotion(ctx context.Context, at control.Endpoint, req control.PromoteRequest, deadline time.Time) control.PromoteResult {
	var last control.PromoteResult
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		pr, err := control.CancelPromotion(cctx, at, p.token, control.CancelRequest{Session: req.Session, ID: req.ID})
		cancel()
		if err == nil {
			return pr
		}
		sctx, scancel := context.WithTimeout(ctx, 2*time.Second)
		st, serr := control.Fetch(sctx, at)
		scancel()
		if serr == nil && p.otherPromoted(st) {
			return control.PromoteResult{State: control.PromoteDone, PromotedAt: st.PromotedAt}
		}
		last.Error = err.Error()
		if ctx.Err() != nil || time.Now().After(deadline) {
			return last
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// awaitPromotion settles a switchover in doubt in the background: it goes
// on asking the other site until it says it is promoted (this site is then
// switched over) or that the request will never be carried out (the held
// writes resume), holding the switchover's lock meanwhile. Stopped first,
// this site refuses the held writes and keeps the record pending: a
// restart waits for the operator.
func (p *Primary) awaitPromotion(at control.Endpoint, req control.PromoteRequest, rec failover.Switchover, res control.SwitchoverResult, pausedAt time.Time, why string) {
	defer p.switching.Unlock()
	for {
		pr := p.settlePromotion(p.life, at, req, time.Now().Add(promotedWait))
		switch {
		case p.life.Err() != nil:
			p.gate.refuse(fmt.Errorf("this site stopped in the middle of a switchover: %w", nbd.ESHUTDOWN))
			return
		case pr.State == control.PromoteDone:
			p.clearInDoubt()
			p.switchedTo(p.life, at, rec, pr, res, pausedAt)
			return
		case pr.State == control.PromoteRefused:
			if err := failover.RemoveSwitchover(p.fsys, p.stateDir); err != nil {
				p.log.Error("switchover abandoned, and its record could not be removed", "err", err)
			}
			p.clearInDoubt()
			p.gate.release()
			p.log.Warn("switchover abandoned: the other site cancelled the promotion; writes resume", "held_for", time.Since(pausedAt))
			return
		}
		if pr.Error != "" {
			if w := p.inDoubt(pr, errors.New(pr.Error)); w != why {
				why = w
				p.log.Warn("switchover in doubt: writes held", "why", why)
			}
		}
		if pr.State == control.PromoteFenced {
			// Fenced and not promoted: the operator may yet promote it,
			// or undo the fence by a restart and recover.
			select {
			case <-p.life.Done():
			case <-time.After(2 * time.Second):
			}
		}
	}
}

func (p *Primary) clearInDoubt() {
	p.switchedOver.mu.Lock()
	p.switchedOver.inDoubt = ""
	p.switchedOver.mu.Unlock()
}

// switchedTo makes this site the old primary once the other site is
// promoted: writes are refused from then on, the switchover recorded as
// done, and the result says so once the new primary serves (or a warning
// once it does not in time).
func (p *Primary) switchedTo(ctx context.Context, at control.Endpoint, rec failover.Switchover, pr control.PromoteResult, res control.SwitchoverResult, pausedAt time.Time) control.SwitchoverResult {
	if pr.ConsistencyTime != 0 {
		// What the promotion recorded: the applied group's own time.
		res.Group, res.ConsistencyTime = pr.Group, control.FormatTime(pr.ConsistencyTime)
	}
	// From here the other site is the primary.
	p.gate.refuse(errSwitchedOver(pr.PromotedAt))
	rec.State, rec.PromotedAt = failover.SwitchoverDone, pr.PromotedAt
	if pr.ConsistencyTime != 0 {
		rec.ConsistencyTime, rec.Group = pr.ConsistencyTime, pr.Group
	}
	if err := failover.WriteSwitchover(p.fsys, p.stateDir, rec); err != nil {
		// The pending record refuses a restart all the same.
		p.log.Error("switchover done, but its record still says pending", "err", err)
	}
	st := p.Status()
	st.Role, st.Link, st.SwitchedOverAt = "switched-over", "disconnected", control.FormatTime(rec.At)
	st.PrimarySite, st.PrimarySince = p.otherSite(), pr.PromotedAt
	// Nothing held for replication any more; no consistency time moves.
	held := int64(0)
	st.LagSeconds, st.SidefileBytes, st.LinkAckAgeSeconds = nil, &held, nil
	for i := range st.Volumes {
		st.Volumes[i].Note = "switched over: the other site holds every write acknowledged here and is the primary"
	}
	p.switchedOver.mu.Lock()
	p.switchedOver.record, p.switchedOver.status = &rec, st
	p.switchedOver.mu.Unlock()
	close(p.switched)
	res.PromotedAt = pr.PromotedAt
	p.log.Warn("switchover: the other site is the session's primary; this site refuses writes", "promoted_at", pr.PromotedAt,
		"group", rec.Group, "consistency_time", res.ConsistencyTime)
	// The pause lasts until the new primary serves.
	wctx, wcancel := context.WithTimeout(context.WithoutCancel(ctx), promotedWait)
	defer wcancel()
	for {
		sctx, scancel := context.WithTimeout(wctx, 2*time.Second)
		st, err := control.Fetch(sctx, at)
		scancel()
		if err == nil && p.otherPromoted(st) {
			break
		}
		if wctx.Err() != nil {
			res.Warning = fmt.Sprintf("the other site recorded its promotion but does not answer as the primary after %s (%v): "+
				"see its log; duplex promote there serves it", promotedWait, err)
			p.log.Warn("switchover: the new primary does not answer its status yet", "err", err)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	res.PauseSeconds = time.Since(pausedAt).Seconds()
	return res
}

// otherSite is the config section that describes the other site: the
// secondary's, but the old primary's at a promoted site.
func (p *Primary) otherSite() string {
	if p.promotion != nil && !p.promotedBack {
		return "primary"
	}
	return "secondary"
}

// secondaryControl is the other site's control address, as this site's
// commands reach it.
func (p *Primary) secondaryControl() (control.Endpoint, error) {
	if p.cfg.Secondary.Control == "" {
		return control.Endpoint{}, errors.New("switchover refused: the config names no [secondary] control address to promote the other site through")
	}
	if p.token == "" {
		return control.Endpoint{}, errors.New("switchover refused: the session has no control_token_file, which the promotion of the other site needs")
	}
	tlsConf, err := tlsconf.ControlClient(p.cfg, "secondary")
	if err != nil {
		return control.Endpoint{}, fmt.Errorf("switchover refused: %w", err)
	}
	return control.Endpoint{Addr: p.cfg.Secondary.Control, TLS: tlsConf}, nil
}

// switchoverReady refuses a switchover that could not hand everything
// over: the link down, a pair not duplex, or a secondary that is not
// running as one, linked to this primary.
func (p *Primary) switchoverReady(ctx context.Context, at control.Endpoint) error {
	if up, since := p.mover.Link(); !up {
		msg := fmt.Sprintf("the link to the secondary is down since %s", since.UTC().Format(time.RFC3339Nano))
		if e := p.mover.Stats().LastError; e != "" {
			msg += " (" + e + ")"
		}
		return errors.New(msg + ": the other site cannot take everything; after losing this site, duplex recover and duplex promote there fail over")
	}
	if err := p.allDuplex(); err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := control.Fetch(sctx, at)
	switch {
	case err != nil:
		return fmt.Errorf("the other site's control address does not answer: %w", err)
	case st.Session != p.cfg.Session:
		return fmt.Errorf("the site at %s is of session %q, not %q", at, st.Session, p.cfg.Session)
	case st.Role != "secondary" || st.PromotedAt != p.promotedAt():
		// A secondary that rejoined this site says since when this
		// site is primary; any other promotion is not this session's.
		return fmt.Errorf("the site at %s is not a running secondary of this site (role %s, primary elsewhere since %q)", at, st.Role, st.PromotedAt)
	case st.Fenced:
		return fmt.Errorf("the secondary at %s is fenced", at)
	case st.Link != "connected":
		return fmt.Errorf("the secondary at %s has no primary linked", at)
	case st.HeldGroups != nil && *st.HeldGroups > 0:
		return fmt.Errorf("the secondary holds %d groups unapplied for a resync of %v", *st.HeldGroups, st.Resyncing)
	}
	return coupledReady(st.Coupling)
}

// coupledReady refuses, before the writes are paused, the switchover of a
// coupled member whose secondary could not apply the last writes: its
// group's master time is held (etcd unreachable, a member without a
// time, this session not a member), or held by a member whose lease
// expired. A member silent for less is waited for, writes paused, by the
// promotion (awaitCoupledApplied).
func coupledReady(c *control.CouplingStatus) error {
	switch {
	case c == nil:
		return nil
	case c.Held != "":
		return fmt.Errorf("the secondary's coupled group %s holds its master time (%s): it could not apply the writes acknowledged here", c.Group, c.Held)
	case c.LaggardGone:
		return fmt.Errorf("member %s of the secondary's coupled group %s holds its master time and is gone (silent for %.0fs, its lease expired): "+
			"the secondary could not apply the writes acknowledged here; once %s publishes again, or duplex couple remove %s takes it out of the group, switch over again",
			c.Laggard, c.Group, c.LaggardSilentSeconds, c.Laggard, c.Laggard)
	}
	return nil
}

// allDuplex refuses unless every pair is duplex and consistent: only then
// does the secondary hold every write acknowledged here. A deleted pair is
// no exception: its volume is still served here, its writes no longer
// shipped, and the other site, promoted, would serve its copy as of the
// deletion read-write, without them.
func (p *Primary) allDuplex() error {
	for _, pr := range p.pairs.Pairs() {
		if pr.Deleted {
			return fmt.Errorf("pair %s was deleted: the writes to %s since are at this site only, and the other site would serve its copy "+
				"as of the deletion; duplex pair add %s copies it there again (a switchover waits until the pair is duplex)",
				pr.Volume, pr.Volume, pr.Volume)
		}
		if pr.State != pair.Duplex || pr.Inconsistent {
			return fmt.Errorf("pair %s is %s, not duplex: the secondary does not hold every write to it", pr.Volume, pr.State)
		}
	}
	return nil
}

// otherPromoted reports whether the other site's status says it was
// promoted: a promoted_at other than this site's own, which the old
// primary running as this promoted site's secondary reports.
func (p *Primary) otherPromoted(st control.Status) bool {
	return st.PromotedAt != "" && st.PromotedAt != p.promotedAt()
}

// predrainTarget is the backlog at which a switchover pauses the writes:
// what is left ships within the pause, in a few intervals on a link that
// keeps up.
func (p *Primary) predrainTarget() int64 {
	var limit int64
	for _, ss := range p.subs {
		limit += ss.Sidefile().Stats().Limit
	}
	return min(limit/8, 1<<20)
}

// predrain ships the backlog while writes go on, until what is held is
// down to predrainTarget, or until the time comes to pause anyway: writes
// that outrun the link keep some backlog however long it waits, and the
// pause ships it. It fails once the link has been down for
// unreachablePatience, or when ctx ends.
func (p *Primary) predrain(ctx context.Context, until time.Time) error {
	target := p.predrainTarget()
	t := time.NewTicker(max(time.Duration(p.cfg.Interval), time.Millisecond))
	defer t.Stop()
	for {
		var used int64
		for _, ss := range p.subs {
			used += ss.Sidefile().Stats().Used
		}
		if used <= target || time.Now().After(until) {
			return nil
		}
		if up, since := p.mover.Link(); !up && time.Since(since) >= p.patience {
			return &linkDownError{since: since, lastErr: p.mover.Stats().LastError}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w; %d bytes of updates still held for the secondary", ctx.Err(), used)
		case <-t.C:
		}
	}
}
