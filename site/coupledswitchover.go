package site

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"duplex/config"
	"duplex/control"
	"duplex/coupling"
	"duplex/disk"
)

// A planned switchover of a member of a coupled group (package coupling)
// hands the session over only once the member's secondary has applied
// every group its primary acknowledged, and the member then leaves the
// group. The secondary applies no update past the group's master time,
// which reaches the member's last group a publish round or two after it
// was journaled (every other member must have journaled every update
// stamped up to it, and the member must have read that): the promotion
// waits for that before its fence, which stops applying where the limit
// is, rather than fence short of the group and refuse. Nothing is applied
// past the master time, so the others' consistency is untouched. Once
// promoted, the member's last published time would hold the master time
// of the others for ever: it leaves the group (coupling.Coupler.Leave),
// membership and time, so that they go on applying.

// coupledApplyWait bounds how long the promotion of a coupled secondary
// waits for the master time to let it apply the last group its primary
// acknowledged: a few publish rounds while every member runs; past it a
// member holds the master time back, and the switchover is refused.
var coupledApplyWait = 10 * time.Second

// awaitCoupledApplied waits until the secondary applied through group, the
// last the primary acknowledged, or says why not within coupledApplyWait.
// That group may be an empty one journaled at idle after the last write:
// the promotion's fence must find it applied all the same.
func (s *Secondary) awaitCoupledApplied(group uint64) error {
	deadline := time.Now().Add(coupledApplyWait)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		st := s.sec.Stats()
		switch {
		case st.Group >= group:
			return nil
		case st.Stopped != "":
			return fmt.Errorf("this secondary stopped replicating (%s): it cannot take over", st.Stopped)
		case time.Now().After(deadline):
			c := s.coupler.Status()
			why := c.Held
			if why == "" {
				why = fmt.Sprintf("the master time %s is member %s's time", control.FormatTime(c.Master), c.Laggard)
				if c.Silent > 0 {
					why += fmt.Sprintf(", which has not advanced for %s", c.Silent.Round(time.Millisecond))
				}
			}
			return fmt.Errorf("coupled group %q: after %s this secondary has applied through group %d, short of group %d, the last group the "+
				"primary acknowledged (its last acknowledged write's, or one journaled after it without writes while the primary was idle), "+
				"and applies no further than the group's master time (%s): the switchover waits for every member's time to reach that "+
				"group's; once it does (or duplex couple remove takes a member that will not come back out of the group), switch over again",
				s.cfg.Coupling.Group, coupledApplyWait, st.Group, group, why)
		}
		<-tick.C
	}
}

// leaveWait bounds the switchover's own attempt to leave the group.
const leaveWait = 2 * time.Second

// leaveFile, beside a secondary's state file, records that its promotion
// by a switchover owes its coupled group a leave. Written before the
// promotion's marker (promoting.json), so that a promotion recorded always
// finds it; removed once etcd took the member out. Without a promotion
// record it is void (the switchover was refused or undone), and the
// secondary's start removes it: a later duplex promote, a failover, keeps
// the member in its group. With one, the promoted site finishes the leave
// at every start until it is done, so that neither a restart nor an etcd
// that does not answer leaves the member's last time holding the master
// time of the others.
const leaveFile = "coupling-leave.json"

// owed is a change of the membership of a coupled group that a site owes
// it: a leave (leaveFile) or a join (joinFile).
type owed struct {
	Group  string `json:"group"`
	Member string `json:"member"`
	// Membership is, for a leave, the membership it takes out
	// (coupling.View.Memberships): a later one (duplex couple add, a
	// rejoin) stays.
	Membership string `json:"membership,omitempty"`
}

func leavePath(cfg *config.Config) string {
	return filepath.Join(filepath.Dir(StatePath(cfg)), leaveFile)
}

func writeOwed(fsys disk.FS, path string, cfg *config.Config, membership string) error {
	b, _ := json.Marshal(owed{Group: cfg.Coupling.Group, Member: cfg.Session, Membership: membership})
	if err := disk.WriteFileAtomic(disk.Or(fsys), path, append(b, '\n')); err != nil {
		return fmt.Errorf("coupled group %q: %w", cfg.Coupling.Group, err)
	}
	return nil
}

// readOwed returns the change owed at path, ok false if none.
func readOwed(fsys disk.FS, path string) (o owed, ok bool, err error) {
	b, err := disk.ReadFile(disk.Or(fsys), path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return o, false, nil
	case err != nil:
		return o, false, fmt.Errorf("a change of a coupled group owed: %w", err)
	}
	err = disk.DecodeRecord(b, &o, "group", "member")
	if err == nil && (o.Group == "" || o.Member == "") {
		err = errors.New("it names no group or member")
	}
	if err != nil {
		return owed{}, false, disk.Damaged("record of a change of a coupled group owed", path, err)
	}
	return o, true, nil
}

func removeOwed(fsys disk.FS, path string) error {
	fsys = disk.Or(fsys)
	switch err := fsys.Remove(path); {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("a change of a coupled group owed: %w", err)
	}
	return fsys.SyncDir(filepath.Dir(path))
}

func writePendingLeave(fsys disk.FS, cfg *config.Config, membership string) error {
	return writeOwed(fsys, leavePath(cfg), cfg, membership)
}

func readPendingLeave(fsys disk.FS, cfg *config.Config) (owed, bool, error) {
	o, ok, err := readOwed(fsys, leavePath(cfg))
	switch {
	case errors.Is(err, disk.ErrDamaged):
		err = fmt.Errorf("%w: it records the leave of coupled group %q this session's switchover owes, with the membership the leave "+
			"takes out, without which no leave is made: duplex couple remove %s (with the group's config) takes the session out; then remove the file",
			err, cfg.Coupling.Group, cfg.Session)
	case err != nil:
		// A running promoted site reads it again until it can
		// (finishLeave), and makes the leave then.
		err = fmt.Errorf("%w: no leave of coupled group %q is made until the promoted site reads it (it reads it again every second while it "+
			"runs): make it readable, or else take the session out with duplex couple remove %s (with the group's config), then remove the file",
			err, cfg.Coupling.Group, cfg.Session)
	}
	return o, ok, err
}

// otherLeave says what to do about the leave l owed at cfg's site that is
// not of cfg's group and session (the config changed since the
// switchover), "" if it is: the site never makes it.
func otherLeave(cfg *config.Config, l owed) string {
	if l.Group == cfg.Coupling.Group && l.Member == cfg.Session {
		return ""
	}
	return fmt.Sprintf("%s records that a switchover owes coupled group %s the leave of session %s, not of this config's session %s of group %s, "+
		"and no leave is made of it: duplex couple remove %s with that group's config, then remove the file", leavePath(cfg), l.Group, l.Member,
		cfg.Session, cfg.Coupling.Group, l.Member)
}

func removePendingLeave(fsys disk.FS, cfg *config.Config) error {
	return removeOwed(fsys, leavePath(cfg))
}

// leaveOwed returns the group cfg's site owes a leave, "" if none. One
// whose record cannot be read (said so in the log) is owed: taken as none,
// a rejoin would couple the session again before it left. unread says,
// for one the site never makes (its record not read, or of another group
// or session), why and what to do: a rejoin waiting for it waits for
// ever.
func leaveOwed(fsys disk.FS, cfg *config.Config, log *slog.Logger) (group, unread string) {
	l, ok, err := readPendingLeave(fsys, cfg)
	if err != nil {
		log.Error("coupling: cannot read whether this session owes its coupled group a leave: taken as owed", "err", err)
		return cfg.Coupling.Group, err.Error()
	}
	if !ok {
		return "", ""
	}
	return l.Group, otherLeave(cfg, l)
}

// voidStaleLeave, at the start of a secondary that is not promoted,
// removes a leave owed: its switchover never took over. Under the
// journal's lock, as undoInterruptedPromotion: the leave owed of a
// secondary running on this journal, its promotion under way, stays.
func voidStaleLeave(fsys disk.FS, cfg *config.Config) error {
	if _, ok, err := readPendingLeave(fsys, cfg); !ok && err == nil {
		return nil
	}
	lock, err := disk.Or(fsys).Lock(filepath.Join(cfg.Secondary.Journal, "LOCK"))
	switch {
	case errors.Is(err, os.ErrNotExist): // no journal: nothing runs on it
	case err != nil:
		return nil
	default:
		defer lock.Close()
	}
	return removePendingLeave(fsys, cfg)
}

// leaveGroup takes the member out of its coupled group once a switchover
// promoted it in place, and removes the leave owed. etcd unreachable, the
// leave stays owed: the promoted site finishes it (finishLeave), in this
// process and after a restart. Meanwhile the member's last time holds the
// master time of the others, as any time does while etcd is unreachable.
func (s *Secondary) leaveGroup() {
	ctx, cancel := context.WithTimeout(context.Background(), leaveWait)
	err := s.coupler.Leave(ctx)
	cancel()
	if err != nil {
		s.log.Error("switchover: promoted, but this session could not leave its coupled group yet: its last time holds the other members' "+
			"master time until it does; the promoted site goes on trying while it runs, after a restart too (duplex couple remove "+
			s.cfg.Session+" does it too)", "err", err)
		return
	}
	if err := removePendingLeave(s.fsys, s.cfg); err != nil {
		// The promoted site leaves again, which changes nothing.
		s.log.Warn("switchover: left the coupled group; the record of the leave owed stays", "err", err)
	}
}

// leaveRetry is how often a promoted site asks etcd again for a leave owed.
var leaveRetry = time.Second

// finishLeave, at a promoted site, takes the member out of its coupled
// group if a switchover's leave is owed (leaveFile), trying every
// leaveRetry until etcd answers or ctx ends; store nil dials the etcd of
// [coupling]. A record it cannot read is read again as often, until it
// can (an operator made it readable, or removed it): the other site's
// rejoin waits for the leave, and a read at the start alone left it
// waiting for a restart. It returns at once when nothing is owed; done is
// closed once nothing is. ended is closed once it does nothing more: the
// site's stop waits for it, or a read, a leave or a log line of the
// stopped site could come after the stop (and after another site started
// on its directory).
func finishLeave(ctx context.Context, cfg *config.Config, fsys disk.FS, store coupling.Store, log *slog.Logger) (done, ended <-chan struct{}) {
	ch := make(chan struct{})
	end := make(chan struct{})
	l, ok, err := readPendingLeave(fsys, cfg)
	switch {
	case err != nil:
		log.Error("coupling: cannot read whether this session owes its coupled group a leave: reading it again while the site runs", "err", err)
	case !ok:
		close(ch)
		close(end)
		return ch, end
	default:
		if fix := otherLeave(cfg, l); fix != "" {
			log.Error("coupling: "+fix, "config_group", cfg.Coupling.Group)
			close(end)
			return ch, end
		}
		log.Warn("coupling: this session was switched over and has not left its coupled group yet: leaving it", "group", l.Group, "member", l.Member)
	}
	unread := err != nil
	retry := leaveRetry
	go func() {
		defer close(end)
		var dialed *coupling.EtcdStore
		defer func() {
			if dialed != nil {
				dialed.Close()
			}
		}()
		for try := 0; ; try++ {
			// A record the start could not read is read again a retry
			// later: at once it would find nothing new.
			if try > 0 || unread {
				select {
				case <-ctx.Done():
					return
				case <-time.After(retry):
				}
			}
			// The first try too: the goroutine may first run after
			// the stop.
			if ctx.Err() != nil {
				return
			}
			if unread {
				var ok bool
				l, ok, err = readPendingLeave(fsys, cfg)
				switch {
				case err != nil:
					if try%60 == 0 && try > 0 {
						log.Error("coupling: cannot read whether this session owes its coupled group a leave yet: reading it again", "err", err)
					}
					continue
				case !ok:
					log.Info("coupling: the record of the leave owed is gone: this session owes its coupled group no leave")
					close(ch)
					return
				}
				if fix := otherLeave(cfg, l); fix != "" {
					log.Error("coupling: "+fix, "config_group", cfg.Coupling.Group)
					return
				}
				unread = false
				log.Warn("coupling: this session was switched over and has not left its coupled group yet: leaving it", "group", l.Group, "member", l.Member)
			}
			st := store
			if st == nil {
				if dialed == nil {
					if dialed, err = coupling.DialConfig(cfg); err != nil {
						// What dialing refuses (a password or TLS file)
						// lasts until the operator acts: tried as often
						// as etcd, and said as rarely.
						if try == 0 || try%60 == 0 {
							log.Warn("coupling: cannot dial etcd to leave the coupled group yet: trying again", "err", err)
						}
						continue
					}
				}
				st = dialed
			}
			lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := st.Leave(lctx, l.Member, l.Membership)
			cancel()
			if err != nil {
				if try == 0 || try%60 == 0 {
					log.Warn("coupling: cannot leave the coupled group yet: this session's last time holds the other members' master time "+
						"until it does; trying again", "err", err)
				}
				continue
			}
			if err := removePendingLeave(fsys, cfg); err != nil {
				log.Warn("coupling: left the coupled group; the record of the leave owed stays (the next start leaves again, which changes nothing)", "err", err)
			}
			log.Info("coupling: this session left its coupled group: its last time no longer holds the master time", "group", l.Group)
			close(ch)
			return
		}
	}()
	return ch, end
}

// waitLeaveEnded, at a site's stop, waits for finishLeave's ended, wait at
// most: a read of the record held up by a disk that stopped answering must
// not keep the site from stopping. A nil ended (nothing started) is not
// waited for.
func waitLeaveEnded(ended <-chan struct{}, wait time.Duration, log *slog.Logger) {
	if ended == nil {
		return
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ended:
	case <-t.C:
		log.Error("stopping while the leave owed to the coupled group is under way (the disk of its record may have stopped answering): not waited for beyond " + wait.String())
	}
}

// joinFile, beside the state file of a secondary that a rejoin made (the
// old primary as the secondary of the promoted site, or the promoted site
// as the secondary of the old primary again), records that the session
// owes its coupled group a join: its switchover left the group, and the
// rejoin couples it again in its new direction. Written by the rejoin,
// removed once the secondary's Coupler found the session a member (it adds
// it if not): only once, so that a member removed afterwards stays out.
const joinFile = "coupling-join.json"

func joinPath(cfg *config.Config) string {
	return filepath.Join(filepath.Dir(StatePath(cfg)), joinFile)
}

// oweJoin records, at the start of a rejoin that makes the site of sec
// the secondary of the session, that the session joins its coupled group
// again.
func oweJoin(cfg, sec *config.Config) error {
	if !cfg.Coupled() {
		return nil
	}
	if err := writeOwed(nil, joinPath(sec), sec, ""); err != nil {
		return fmt.Errorf("rejoin: the join owed: %w", err)
	}
	return nil
}

// refuseWhileLeaveOwed refuses a rejoin while the site it rejoins has not
// left the coupled group its switchover took the session out of: the
// session is still a member there by its old membership, which the
// rejoined secondary would take for its own, and which the leave, once
// etcd answers, takes out.
func refuseWhileLeaveOwed(cfg *config.Config, ch control.Changes) error {
	if ch.CouplingLeaveOwed == "" {
		return nil
	}
	if ch.CouplingLeaveUnread != "" {
		// No leave is made there until the operator acts there: waiting
		// alone ends never.
		return fmt.Errorf("rejoin: the other site owes coupled group %q a leave since its switchover, which it cannot make as things are: %s. "+
			"Do that at the other site, then run duplex rejoin again", ch.CouplingLeaveOwed, ch.CouplingLeaveUnread)
	}
	return fmt.Errorf("rejoin: the other site has not left coupled group %q yet since its switchover (etcd has not answered it; "+
		"it tries every second while it runs): run duplex rejoin again once duplex couple list --config FILE no longer shows session %s",
		ch.CouplingLeaveOwed, cfg.Session)
}
