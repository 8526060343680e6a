package site

import (
	"context"
	"fmt"
	"time"

	"duplex/control"
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

// awaitCoupledApplied waits until the secondary applied through group, or
// says why not within coupledApplyWait.
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
			return fmt.Errorf("coupled group %q: after %s this secondary has applied through group %d, short of group %d, which holds the primary's "+
				"last acknowledged write, and applies no further than the group's master time (%s): the switchover waits for every member's "+
				"time to pass that write; once it does (or duplex couple remove takes a member that will not come back out of the group), switch over again",
				s.cfg.Coupling.Group, coupledApplyWait, st.Group, group, why)
		}
		<-tick.C
	}
}

// leaveWait bounds the switchover's own attempt to leave the group.
const leaveWait = 2 * time.Second

// leaveGroup takes the member out of its coupled group once a switchover
// promoted it in place. etcd unreachable, it goes on trying in the
// background while the process runs, with the etcd client handed over
// from the secondary: meanwhile the member's last time holds the master
// time of the others, as any time does while etcd is unreachable.
func (s *Secondary) leaveGroup() {
	ctx, cancel := context.WithTimeout(context.Background(), leaveWait)
	err := s.coupler.Leave(ctx)
	cancel()
	if err == nil {
		return
	}
	s.log.Error("switchover: promoted, but this session could not leave its coupled group yet: its last time holds the other members' "+
		"master time until it does; trying again while this process runs (duplex couple remove "+s.cfg.Session+" does it too)", "err", err)
	dialed := s.takeDialed() // closed once the member left, not by close
	go func() {
		if dialed != nil {
			defer dialed.Close()
		}
		for {
			time.Sleep(time.Second)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := s.coupler.Leave(ctx)
			cancel()
			if err == nil {
				s.log.Info("switchover: this session left its coupled group")
				return
			}
		}
	}()
}
