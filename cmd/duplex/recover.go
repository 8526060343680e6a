package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http/httptrace"
	"strings"
	"sync/atomic"
	"time"

	"duplex/config"
	"duplex/control"
	"duplex/secondary"
	"duplex/site"
)

var recoverSynopsis = synopsis{"recover", "--config FILE [--coupled] [--force] [--at TIME] [--timeout D] [--log-level LEVEL]"}

// applyTimeoutFlag defines --timeout of the commands that fence a running
// secondary.
func (f *cmdFlags) applyTimeoutFlag() *time.Duration {
	// 0 would give up before the fence request could leave.
	f.positiveDuration("timeout")
	return f.Duration("timeout", 30*time.Minute, "how long to wait for a running secondary to apply the groups it journaled, "+
		"which it does before it fences, `D` such as 30m or 2h (more than 0)")
}

// runningSecondary returns the status of the session's secondary if it
// runs: running is false when it has no control address or does not answer
// within 2 s. A site that answers that it starts holds the site, and takes
// no command yet: that is the error.
func runningSecondary(ctx context.Context, cfg *config.Config) (st control.Status, running bool, err error) {
	if cfg.Secondary.Control == "" {
		return st, false, nil
	}
	at, err := controlOf(cfg, "secondary")
	if err != nil {
		return st, false, err
	}
	fctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err = control.Fetch(fctx, at)
	if err == nil && st.Starting != nil {
		return st, true, fmt.Errorf("%w; it holds the volumes: or stop it (SIGTERM) first", startingError(at, st))
	}
	return st, err == nil, nil
}

// runRecover makes the secondary's volumes usable after the primary is lost:
// a stopped secondary applies every journaled group it may, a running one is
// fenced; either way it reports per volume what the copy holds.
func runRecover(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags(recoverSynopsis, "At the secondary after losing the primary: applies every journaled group "+
		"(but those of an unfinished resync), prints the consistency time and, per volume, what its copy holds. "+
		"It takes over the copy a secondary made and never makes one: where no duplex secondary ever ran with the config's [secondary] paths "+
		"(neither state.json nor its journal there: a wrong --config, or its file system not mounted), it exits 1 saying that directory holds no secondary, and makes nothing there.")
	path := fs.configFlag("its [secondary] section")
	force := fs.Bool("force", false, "take the secondary over: recover even though a primary is connected to the running secondary, "+
		"and fence a stopped one, so that its volumes can be written and the old primary is refused for good; "+
		"stopped (SIGTERM) before it fences, it does not fence, and once it fences it finishes")
	at := fs.String("at", "", "take every volume back to the newest consistency group at or before `TIME` that the history "+
		"([secondary] history) holds: RFC 3339 (2026-01-02T15:04:05Z) or relative to now (-15m); fences the secondary, as --force "+
		"(stopped before it fences, it changes nothing more)")
	timeout := fs.applyTimeoutFlag()
	coupled := fs.Bool("coupled", false, "for a session in a coupled group ([coupling]): bring the stopped secondary to the group's one recovery time, "+
		"the same at every member (the first member to recover fixes it in etcd), and print it")
	level := fs.logLevelFlag("info")
	cfg, log, err := fs.parseSite(args, stdout, "secondary", path, level)
	if err != nil {
		return err
	}
	if *at != "" && *coupled {
		return &usageError{cmd: "recover", err: errors.New("--at and --coupled: --coupled brings the group to its one recovery time, --at this session to a time of its own; give one")}
	}
	if *coupled && !cfg.Coupled() {
		return fs.usageErrorf("--coupled: --config %s has no [coupling] section: the session is in no coupled group", *path)
	}
	var target time.Time
	if *at != "" {
		if target, err = parseAt(*at, time.Now()); err != nil {
			return &usageError{cmd: "recover", err: err}
		}
		if cfg.Secondary.History <= 0 {
			// The config lacks what --at reads, as one without [coupling]
			// lacks what --coupled does: the input, exit 2.
			return fs.configLacks(*path, "sets no [secondary] history: recover --at takes the volumes back with the history the secondary keeps, "+
				"which is off: set history = \"24h\" (how far back to reach) in its [secondary] section and start the secondary again; "+
				"only groups applied from then on can be recovered to")
		}
	}
	st, running, err := runningSecondary(ctx, cfg)
	if err != nil {
		return err
	}
	if running && cfg.Coupled() {
		return fmt.Errorf("the secondary of coupled session %q runs: stop it (SIGTERM), then run duplex recover --coupled, "+
			"which brings every member of group %q to one time", cfg.Session, cfg.Coupling.Group)
	}
	if !running {
		// Before the group's recovery time is asked for: the first member
		// to ask fixes it for every member, and a wrong config must not.
		if err := site.HeldSecondary(nil, cfg); err != nil {
			return err
		}
	}
	var groupTime, journaled int64
	if *coupled {
		if groupTime, journaled, err = site.CoupledRecoveryTime(ctx, cfg, nil); err != nil {
			return fmt.Errorf("recover --coupled: %w", err)
		}
	}
	if *at != "" {
		if running {
			window := ""
			if st.HistoryOldest != "" {
				window = fmt.Sprintf(" (it can go back from %s to %s)", st.HistoryOldest, st.HistoryNewest)
			}
			return fmt.Errorf("recover --at takes a stopped secondary back in time: stop the secondary daemon%s, then run it again", window)
		}
		return recoverAt(ctx, cfg, log, target, stdout)
	}
	if running {
		if st.Link == "connected" && !*force {
			return primaryConnected("recover", st.Peer, "take the secondary over now")
		}
		return recoverRunning(ctx, cfg, *timeout, stdout)
	}
	s, err := site.OpenSecondary(cfg, log, site.SecondaryOptions{Offline: true, Context: ctx, CouplingLimit: groupTime})
	if err != nil {
		return err
	}
	defer s.Close()
	pos := s.Replica().Position()
	if *force {
		if err := stoppedBeforeFence(ctx, "--force", s.Replica()); err != nil {
			return err
		}
		if _, err := s.Replica().Fence(); err != nil {
			return err
		}
		g, _ := s.Replica().Generation()
		fmt.Fprintf(stdout, "secondary fenced: its volumes start data generation %s; the old primary is refused from now on, also after restarts\n", g)
	}
	if pos.Time == 0 {
		fmt.Fprintln(stdout, "no consistency group was ever applied: the secondary volumes hold no replicated data")
		return nil
	}
	printRecovered(stdout, s.Status())
	switch {
	case *coupled:
		printCoupledTime(stdout, "recovered to", cfg.Coupling.Group, control.FormatTime(groupTime),
			control.FormatTime(site.CoupledHeld(groupTime, journaled, pos.Time)))
	case cfg.Coupled():
		fmt.Fprintf(stdout, "coupled session: the volumes are at the last master time of group %s this secondary applied through; "+
			"duplex recover --coupled brings every member to one time\n", cfg.Coupling.Group)
	}
	fmt.Fprintln(stdout, "the secondary volumes are usable")
	if !*force {
		// Without the fence, a primary that comes back would replicate
		// into volumes written here, mixing both sites' data.
		fmt.Fprintln(stdout, "before writing to them, run duplex recover --force: it fences the secondary so that the old primary is refused")
	}
	return nil
}

// primaryConnected is the refusal of command (recover, promote) at a
// running secondary that a primary replicates to, peer: worded as the
// command's other refusals of a running site are, what to do in lower
// case after the colon, and --force spelled as the command line it is.
func primaryConnected(command, peer, force string) error {
	return fmt.Errorf("%s: a primary (%s) is connected to the running secondary, which still replicates from it: "+
		"stop the primary, then run duplex %s again; or %s with duplex %s --force (the primary is cut off, and refused for good)",
		command, peer, command, force, command)
}

// stoppedBeforeFence is the error of a recover that fences, stopped
// (SIGINT, SIGTERM) while the secondary's start ran, when the start ended
// anyway within site.SecondaryStartStopGrace: the operator stopped it to
// keep the site as it is, so it does not fence. The fence itself, once
// begun, is finished: it is one step a stop must not cut in half (with
// --at, the fence and the undo to the target, which a recover run again
// after a kill completes). A secondary an earlier recover fenced stays so.
func stoppedBeforeFence(ctx context.Context, flag string, sec *secondary.Secondary) error {
	if ctx.Err() == nil {
		return nil
	}
	if _, fenced := sec.Generation(); fenced {
		return fmt.Errorf("stopped before fencing (%v): nothing more is done; the secondary was fenced by an earlier recover, "+
			"and refuses its old primary as before; run duplex recover %s again to finish", context.Cause(ctx), flag)
	}
	return fmt.Errorf("stopped before fencing (%v): the secondary is not fenced and takes its primary again when it restarts; "+
		"the groups its start applied stay applied, as after any start; run duplex recover %s again to take it over", context.Cause(ctx), flag)
}

// recoverRunning takes over a running secondary: it fences it (the primary is
// disconnected and refused from now on) and reports its consistency time. A
// running secondary's volumes are always at a group boundary (the last one
// before a resync in progress, whose groups stay journaled and unapplied):
// readable through its read-only exports, and usable by other software once
// the daemon stops. The fence applies every group journaled first, which
// after a long backlog takes as long as the volumes need: recover waits for
// at most timeout, saying how far applying has got.
func recoverRunning(ctx context.Context, cfg *config.Config, timeout time.Duration, stdout io.Writer) error {
	tp := cfg.TokenPath()
	if tp == "" {
		return errors.New("the secondary daemon is running and the config names no control_token_file to fence it with: stop the daemon, then run recover")
	}
	token, err := control.ReadToken(tp)
	if err != nil {
		return err
	}
	at, err := controlOf(cfg, "secondary")
	if err != nil {
		return err
	}
	fctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// Whether the request left decides what a timeout means: a fence asked
	// goes on at the secondary (it does not watch the connection), one never
	// asked leaves the secondary taking its primary.
	var sent atomic.Bool
	fctx = httptrace.WithClientTrace(fctx, &httptrace.ClientTrace{WroteRequest: func(w httptrace.WroteRequestInfo) {
		if w.Err == nil {
			sent.Store(true)
		}
	}})
	fenced := make(chan error, 1)
	go func() { fenced <- control.FenceSecondary(fctx, at, token) }()
	progress := newFenceProgress(stdout)
	t := time.NewTicker(fenceProgressEvery)
	defer t.Stop()
	for waiting := true; waiting; {
		select {
		case err = <-fenced:
			waiting = false
		case <-t.C:
			sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
			if st, serr := control.Fetch(sctx, at); serr == nil {
				progress.show(st)
			}
			scancel()
		}
	}
	if err != nil {
		// Stopped (SIGTERM): a fence asked is not taken back.
		if ctx.Err() != nil && !sent.Load() {
			return fmt.Errorf("stopped before fencing (%v): the fence request did not leave, the secondary is not fenced and still takes its primary", context.Cause(ctx))
		}
		if ctx.Err() != nil {
			return fmt.Errorf("stopped while the secondary fences (%v): the fence goes on at the secondary, which applies its journal first and "+
				"does not watch this request%s; duplex status shows when it is fenced, and duplex recover run again waits for it", context.Cause(ctx), progress.last)
		}
		if fctx.Err() != nil && !sent.Load() {
			return fmt.Errorf("the fence request did not reach the secondary within %s (--timeout): it was not fenced and still takes its primary; "+
				"run duplex recover again with a longer --timeout (%w)", timeout, err)
		}
		if fctx.Err() != nil {
			return fmt.Errorf("the secondary has not fenced within %s (--timeout)%s: the fence goes on at the secondary, "+
				"which applies its journal first; run duplex recover again to wait for it (with a longer --timeout), "+
				"and duplex status to see how far applying has got", timeout, progress.last)
		}
		return err
	}
	st, err := control.Fetch(ctx, at)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "secondary fenced: it accepts no primary any more")
	printRecovered(stdout, st)
	fmt.Fprintln(stdout, "stop the secondary daemon to use its volumes read-write")
	return nil
}

// fenceProgressEvery is how often recover asks a fencing secondary how far
// it has got.
const fenceProgressEvery = time.Second

// fenceProgress says how far a fencing secondary has got: a line when a
// group more is applied, and every half minute while none is.
type fenceProgress struct {
	w       io.Writer
	start   time.Time
	shown   time.Time
	applied uint64
	last    string // what the last status said, for the timeout's error
}

func newFenceProgress(w io.Writer) *fenceProgress {
	return &fenceProgress{w: w, start: time.Now(), applied: ^uint64(0)}
}

func (p *fenceProgress) show(st control.Status) {
	if st.Group == nil {
		return
	}
	applied, journaled := *st.Group, *st.Group
	if st.JournaledGroup != nil {
		journaled = *st.JournaledGroup
	}
	var held uint64
	if st.HeldGroups != nil {
		held = *st.HeldGroups
	}
	var what string
	if applied+held < journaled {
		what = fmt.Sprintf("group %d applied of %d journaled", applied, journaled-held)
		if held > 0 {
			what += fmt.Sprintf(" (%d more held by a resync stay unapplied)", held)
		}
	} else {
		what = fmt.Sprintf("group %d applied; flushing the volumes", applied)
	}
	p.last = ", last seen with " + what
	if applied == p.applied && time.Since(p.shown) < 30*time.Second {
		return
	}
	p.applied, p.shown = applied, time.Now()
	fmt.Fprintf(p.w, "the secondary is applying its journal before it fences: %s (%s)\n", what, time.Since(p.start).Round(time.Second))
}

// recoveredHeadline is printRecovered's first line, which must agree with
// the volumes' lines: the consistency time of the applied group is every
// volume's only when each holds a consistent copy as of it. It always
// holds "consistent as of T (group G)", the session's consistency time,
// which scripts read.
func recoveredHeadline(st control.Status, group uint64) string {
	asOf := fmt.Sprintf("consistent as of %s (group %d)", st.ConsistencyTime, group)
	consistent, sameTime := 0, true
	for _, v := range st.Volumes {
		switch {
		case v.Consistency == "":
			// A status without the per-volume words: consistent as of
			// the applied group, as the volume's line says.
			consistent++
		case v.ConsistencyTime != "":
			consistent++
			sameTime = sameTime && v.ConsistencyTime == st.ConsistencyTime
		}
	}
	n := len(st.Volumes)
	switch {
	case consistent == n && sameTime:
		return asOf
	case consistent == n:
		return asOf + ", each volume as its line below says"
	case consistent == 0:
		return "no volume is " + asOf + " or any other time: each line below says why"
	default:
		return fmt.Sprintf("%d of %d volumes %s or as its line below says; the others are not consistent", consistent, n, asOf)
	}
}

// printRecovered says what the secondary volumes hold, per volume: the
// running and the stopped secondary report the same durable group, since
// status reports only what is applied.
func printRecovered(w io.Writer, st control.Status) {
	group := uint64(0)
	if st.Group != nil {
		group = *st.Group
	}
	fmt.Fprintln(w, recoveredHeadline(st, group))
	for _, v := range st.Volumes {
		c := v.Consistency
		if c == "" {
			c = "consistent as of " + st.ConsistencyTime
		}
		fmt.Fprintf(w, "  %s (%s): %s\n", v.Name, v.Subsystem, c)
	}
	if st.HeldGroups != nil && *st.HeldGroups > 0 {
		var held int64
		if st.HeldBytes != nil {
			held = *st.HeldBytes
		}
		fmt.Fprintf(w, "a resync of %s was in progress: %d groups (%d bytes) journaled after group %d are not applied, so that the volumes stay consistent\n",
			strings.Join(st.Resyncing, ", "), *st.HeldGroups, held, group)
	}
}

// printCoupledTime says at which time a member recovered or promoted at
// its group's time holds its writes: the group's, unless it was added (or
// rejoined) at the others' time past what its secondary had journaled.
func printCoupledTime(w io.Writer, done, group, groupTime, held string) {
	if held == groupTime {
		fmt.Fprintf(w, "coupled group %s: %s the group's time %s, which every member reaches with duplex promote or duplex recover --coupled\n",
			group, done, groupTime)
		return
	}
	fmt.Fprintf(w, "coupled group %s: %s the group's time %s, but this session's volumes hold its writes only through %s: "+
		"it was added to the group (duplex couple add, or a rejoin) at the other members' time, past what its secondary had journaled, "+
		"and its writes stamped between were made before it was coupled with theirs; every member reaches %s with duplex promote or "+
		"duplex recover --coupled\n", group, done, groupTime, held, groupTime)
}
