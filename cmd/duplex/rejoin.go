package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"time"

	"duplex/config"
	"duplex/control"
	"duplex/failover"
	"duplex/secondary"
	"duplex/site"
)

var rejoinSynopsis = synopsis{"rejoin", "--config FILE [--yes] [--log-level LEVEL]"}

// runRejoin, at the stopped old primary once the secondary was promoted,
// says what making it the promoted site's secondary copies and discards,
// per volume; with --yes it does so and runs as that secondary until SIGINT
// or SIGTERM. Run again (after a stop or a kill -9), it runs as that
// secondary again, the copy taken up where it was.
func runRejoin(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags(rejoinSynopsis, "At the old primary, stopped, once the secondary was promoted: says per volume which regions "+
		"a rejoin as the promoted site's secondary copies from it (those this site may hold writes of that the promoted site "+
		"never had, which are discarded, and those the promoted site wrote since). With --yes, this site becomes the promoted "+
		"site's secondary (its link on [primary] listen, its journal in [primary] journal), the promoted site copies those "+
		"regions, and replication runs the other way; it runs until SIGINT or SIGTERM, and again when run again. "+
		"At a promoted site that a switchover handed the session back from, the same: it becomes the secondary of the "+
		"old primary again, which copies the regions it wrote since. A coupled session, which its switchover took out of its "+
		"group, joins the group again with the rejoin (as duplex couple add does, once); the rejoin is refused until the other site has left it (run it again then).")
	path := fs.configFlag("its [primary] section, and the promoted site's control address in [secondary]")
	yes := fs.Bool("yes", false, "rejoin after the report, and run as the promoted site's secondary")
	level := fs.logLevelFlag("info")
	if err := fs.parseNoArgs(args, stdout); err != nil {
		return err
	}
	cfg, err := fs.loadConfig(*path)
	if err != nil {
		return err
	}
	log, err := fs.logger(*level)
	if err != nil {
		return err
	}
	if !cfg.HasPrimary() {
		return fs.configLacks(*path, "has no [primary] section: duplex rejoin runs at the old primary, which it describes")
	}
	if cfg.Secondary.Control == "" {
		return fs.configLacks(*path, "names no [secondary] control address to reach the promoted site at")
	}
	// At a promoted site that handed the session back by a switchover:
	// the way back to the session's own direction.
	switch r, err := site.ReadRejoinBack(cfg); {
	case err == nil:
		fmt.Fprintf(stdout, "this site rejoined the session's primary (primary again since %s) as its secondary at %s\n",
			r.PromotedAt, control.FormatTime(r.At))
		if !*yes {
			fmt.Fprintln(stdout, "run again with --yes to run as its secondary")
			return nil
		}
		return runRejoined(ctx, cfg, log, r, true, stdout)
	case !errors.Is(err, site.ErrNotRejoined):
		return err
	}
	var backErr error
	switch _, err := site.ReverseSwitchover(cfg); {
	case err == nil:
		r, err := planRejoinBack(ctx, cfg, *yes, stdout, nil)
		if err != nil || r.At == 0 {
			return err
		}
		return runRejoined(ctx, cfg, log, r, true, stdout)
	case !errors.Is(err, failover.ErrNoSwitchover):
		return err
	case site.ReversePrimary(cfg):
		// A promoted site that ran as the primary: the old primary may
		// have failed over back while this site was down. It says so by
		// following this site's data generation.
		ch, err := fetchChanges(ctx, cfg, "primary", 5*time.Second)
		took, genErr := site.TookBack(cfg, ch)
		if genErr != nil {
			return genErr
		}
		if err == nil && took {
			r, err := planRejoinBack(ctx, cfg, *yes, stdout, &ch)
			if err != nil || r.At == 0 {
				return err
			}
			return runRejoined(ctx, cfg, log, r, true, stdout)
		}
		backErr = err
	}
	r, err := site.ReadRejoin(cfg)
	back := false
	if err == nil {
		if back, err = site.PromotedBack(cfg); err != nil {
			return err
		}
	}
	switch {
	case err == nil && back:
		// Killed after the other site handed the session back, before
		// the pair state was made: the primary makes it, and serves.
		fmt.Fprintln(stdout, "the other site handed the session back to this site by a switchover: serving as the session's primary (duplex primary --config FILE from now on)")
		return servePromotedBack(ctx, cfg, log, site.Listeners{}, stdout)
	case err == nil && site.ReversePrimary(cfg):
		// Both sites' files in one directory (the demo's layout): the
		// record is the old primary's, and the promoted site's pair state
		// is here too, so which site the operator means is not known.
		fmt.Fprintf(stdout, "the old primary (its pair state in %s) rejoined the promoted site (primary since %s) as its secondary at %s; "+
			"the promoted site's files are in this directory too: it runs with duplex promote --config %s\n",
			site.PairStateDir(cfg), r.PromotedAt, control.FormatTime(r.At), *path)
		if !*yes {
			fmt.Fprintln(stdout, "run again with --yes to run the old primary as its secondary")
			return nil
		}
	case err == nil:
		fmt.Fprintf(stdout, "this site rejoined the promoted site (primary since %s) as its secondary at %s\n",
			r.PromotedAt, control.FormatTime(r.At))
		if !*yes {
			fmt.Fprintln(stdout, "run again with --yes to run as its secondary")
			return nil
		}
	case errors.Is(err, site.ErrNotRejoined):
		if r, err = planRejoin(ctx, cfg, *yes, stdout); err != nil || r.At == 0 {
			if err != nil && backErr != nil {
				err = fmt.Errorf("%w (nor did the old primary answer as having taken the session back from this site: %v)", err, backErr)
			}
			return err
		}
	default:
		return err
	}
	return runRejoined(ctx, cfg, log, r, false, stdout)
}

// fetchChanges asks the site of role what it changed since its promotion.
func fetchChanges(ctx context.Context, cfg *config.Config, role string, timeout time.Duration) (control.Changes, error) {
	at, err := controlOf(cfg, role)
	if err != nil {
		return control.Changes{}, err
	}
	fctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return control.FetchChanges(fctx, at)
}

// planRejoinBack reports, at a promoted site that the old primary took the
// session back from (by a switchover here, or by a failover back while
// this site was down), what rejoining the old primary as its secondary
// copies (and discards) and, if yes, begins it. ch, if not nil, is what
// the old primary said it changed.
func planRejoinBack(ctx context.Context, cfg *config.Config, yes bool, stdout io.Writer, known *control.Changes) (site.Rejoined, error) {
	var ch control.Changes
	if known != nil {
		ch = *known
	} else {
		var err error
		if ch, err = fetchChanges(ctx, cfg, "primary", 30*time.Second); err != nil {
			return site.Rejoined{}, fmt.Errorf("cannot learn what the old primary changed since it took the session back (is it running?): %w", err)
		}
	}
	plan, err := site.PlanRejoinBack(cfg, ch)
	if err != nil {
		return site.Rejoined{}, err
	}
	_, swErr := site.ReverseSwitchover(cfg)
	if swErr == nil {
		fmt.Fprintf(stdout, "the old primary took the session back at %s by a switchover; its volumes held this site's data as of %s, "+
			"and this site holds no write it lacks\n", ch.PromotedAt, control.FormatTime(ch.ConsistencyTime))
	} else {
		fmt.Fprintf(stdout, "the old primary took the session back at %s by a failover while this site was down; its volumes held "+
			"this site's data as of %s: what this site wrote since is discarded\n", ch.PromotedAt, control.FormatTime(ch.ConsistencyTime))
	}
	if !reportRejoinPlan(stdout, plan, yes, func(v site.RejoinVolume) {
		if swErr == nil {
			fmt.Fprintf(stdout, "  %s: copy %d bytes (%d regions) of %d: written there since\n", v.Name, v.Copy, v.Union.Count(), v.Size)
			return
		}
		fmt.Fprintln(stdout, rejoinPlanLine(v, "the old primary", "there since"))
	}) {
		return site.Rejoined{}, nil
	}
	r, err := site.BeginRejoinBack(cfg, ch, plan)
	if err != nil {
		return site.Rejoined{}, wrapOnce("cannot rejoin", err)
	}
	fmt.Fprintf(stdout, "rejoined: this site is the session's secondary again (data generation %s); "+
		"its volumes stay as they are until the copy ends\n", r.Generation)
	return r, nil
}

// reportRejoinPlan prints a rejoin's plan, a line per volume (volume) and
// the total, and reports whether to go on: only with --yes (else it says
// nothing changed).
func reportRejoinPlan(stdout io.Writer, plan []site.RejoinVolume, yes bool, volume func(site.RejoinVolume)) bool {
	var total, size int64
	for _, v := range plan {
		volume(v)
		total += v.Copy
		size += v.Size
	}
	fmt.Fprintf(stdout, "in all: copy %d bytes of %d\n", total, size)
	if !yes {
		fmt.Fprintln(stdout, "nothing changed: run again with --yes to rejoin")
	}
	return yes
}

// rejoinPlanLine is a volume's line of a rejoin's plan: what is copied,
// what here is discarded (other never had it) and what was written there
// since, then why the whole volume is copied, if it is.
func rejoinPlanLine(v site.RejoinVolume, other, there string) string {
	line := fmt.Sprintf("  %s: copy %d bytes (%d regions) of %d: %d bytes here may hold writes %s never had "+
		"(discarded), %d bytes %s", v.Name, v.Copy, v.Union.Count(), v.Size, v.Here, other, v.There, there)
	if v.Gone {
		// Nothing here to discard: what the image held is gone already.
		line = fmt.Sprintf("  %s: copy %d bytes (%d regions) of %d: its image here was gone, %d bytes %s",
			v.Name, v.Copy, v.Union.Count(), v.Size, v.There, there)
	}
	if v.Whole != "" {
		line += "; the whole volume: " + v.Whole
	}
	return line
}

// servePromotedBack serves the old primary of cfg as the session's primary
// once the promoted site handed the session back: OpenPrimary makes its
// pair state from the promotion the switchover recorded here. kept are the
// listeners its secondary handed over, if it ran as one, which it owns.
func servePromotedBack(ctx context.Context, cfg *config.Config, log *slog.Logger, kept site.Listeners, stdout io.Writer) error {
	p, err := site.OpenPrimary(cfg, log, site.PrimaryOptions{Listeners: kept, Context: ctx})
	if err != nil {
		return wrapOnce("cannot serve as the primary again", err)
	}
	log.Info("primary started", "session", cfg.Session, "secondary", cfg.Primary.Secondary, "nbd", p.NBDAddr(), "control", p.ControlAddr())
	fmt.Fprintf(stdout, "serving %d volumes read-write on NBD %s as the session's primary again; the regions written are tracked "+
		"until the other site rejoins (duplex rejoin --yes there), then replicated to it\n", len(cfg.VolumeNames()), p.NBDAddr())
	if err := p.Run(ctx, 5*time.Minute); err != nil {
		return wrapOnce("primary stopped", err)
	}
	log.Info("primary stopped cleanly")
	return nil
}

// planRejoin reports what a rejoin copies and, if yes, begins it.
func planRejoin(ctx context.Context, cfg *config.Config, yes bool, stdout io.Writer) (site.Rejoined, error) {
	at, err := controlOf(cfg, "secondary")
	if err != nil {
		return site.Rejoined{}, err
	}
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	ch, err := control.FetchChanges(fctx, at)
	cancel()
	if err != nil {
		return site.Rejoined{}, fmt.Errorf("cannot learn what the promoted site changed (is duplex promote running at the secondary?): %w", err)
	}
	plan, err := site.PlanRejoin(cfg, ch)
	if err != nil {
		return site.Rejoined{}, err
	}
	fmt.Fprintf(stdout, "the promoted site is primary since %s; its volumes held this site's data as of %s\n",
		ch.PromotedAt, control.FormatTime(ch.ConsistencyTime))
	if ch.HeldGroups > 0 {
		// Those groups' writes were journaled (so this site's activity log
		// let go of them) but never applied there.
		fmt.Fprintf(stdout, "the promoted site journaled %d groups after that time that it never applied (a resync, or its coupled group's master time, held them): "+
			"their regions are not counted below\n", ch.HeldGroups)
	}
	if !reportRejoinPlan(stdout, plan, yes, func(v site.RejoinVolume) {
		fmt.Fprintln(stdout, rejoinPlanLine(v, "the promoted site", "written there since"))
	}) {
		return site.Rejoined{}, nil
	}
	if _, err := cfg.Reversed(); err != nil {
		return site.Rejoined{}, wrapOnce("cannot rejoin", err)
	}
	r, err := site.BeginRejoin(cfg, ch, plan)
	if err != nil {
		return site.Rejoined{}, wrapOnce("cannot rejoin", err)
	}
	fmt.Fprintf(stdout, "rejoined: this site is the promoted site's secondary from now on (data generation %s); "+
		"its volumes stay as they are until the copy ends\n", r.Generation)
	return r, nil
}

// runRejoined runs the old primary as the secondary of the promoted site,
// and tells the promoted site the regions to copy if it was not told yet.
// back: at a promoted site that handed the session back, it runs as the
// session's secondary, and tells the old primary.
func runRejoined(ctx context.Context, cfg *config.Config, log *slog.Logger, r site.Rejoined, back bool, stdout io.Writer) error {
	open, peer, as := site.OpenRejoined, "secondary", "the promoted site's secondary"
	if back {
		// This site is the promoted one: the primary it follows again is
		// the old primary, which took the session back.
		open, peer, as = site.OpenRejoinedBack, "primary", "the session's secondary again"
	}
	s, err := open(cfg, log, r, site.SecondaryOptions{Context: ctx})
	if errors.Is(err, secondary.ErrInterrupted) {
		log.Info("secondary stopped while starting", "err", err)
		return nil
	}
	if err != nil {
		return wrapOnce("cannot start as "+as, err)
	}
	log.Info("rejoin started", "session", cfg.Session, "listen", s.ListenAddr(), "nbd", s.NBDAddr(), "control", s.ControlAddr(),
		"primary_since", r.PromotedAt)
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- s.Run(rctx) }()
	if !r.Delivered {
		if err := deliverRejoin(rctx, cfg, peer, log, r, done, stdout); err != nil {
			stop()
			<-done
			return err
		}
	}
	return rejoinedEnded(ctx, cfg, log, s, <-done, back, stdout)
}

// promotedSecondary is what the site a switchover promoted a secondary
// into takes over from it: its addresses, bound (HandOver).
type promotedSecondary interface {
	NBDAddr() string
	ControlAddr() string
	PromotedConfig() *config.Config
	HandOver() site.Listeners
}

// rejoinedEnded ends runRejoined once its secondary s's Run returned err:
// promoted by a switchover, it serves the site this one became, unless
// the operator's stop came with the promotion.
func rejoinedEnded(ctx context.Context, cfg *config.Config, log *slog.Logger, s promotedSecondary, err error, back bool, stdout io.Writer) error {
	var promoted *site.PromotedError
	switch {
	case errors.As(err, &promoted) && ctx.Err() != nil:
		// Promoted by a switchover under way when the stop came, as at
		// duplex secondary: the promotion is recorded, and the stop is
		// the operator's. The next start serves the site this one
		// became.
		s.HandOver().Close()
		next := "duplex promote serves its volumes read-write"
		if !back {
			next = "duplex primary (or duplex rejoin --yes) serves it"
		}
		log.Warn("promoted by a switchover as the secondary stopped: this site is the session's primary; "+next,
			"promoted_at", control.FormatTime(promoted.Promotion.At), "err", err)
		return nil
	case errors.As(err, &promoted) && back:
		// A switchover at the primary promoted this site again, as it
		// promotes any secondary.
		log.Warn("promoted by a switchover: serving the volumes read-write", "promoted_at", control.FormatTime(promoted.Promotion.At))
		return servePromoted(ctx, s.PromotedConfig(), log, promoted.Promotion, 5*time.Minute, s.HandOver(), stdout)
	case errors.As(err, &promoted):
		// The promoted site handed the session back: this site is the
		// primary again, on the addresses it had.
		log.Warn("the other site handed the session back by a switchover: serving as the session's primary",
			"promoted_at", control.FormatTime(promoted.Promotion.At))
		c := *cfg
		if a := s.NBDAddr(); a != "" {
			c.Primary.NBD = a
		}
		if a := s.ControlAddr(); a != "" {
			c.Primary.Control = a
		}
		return servePromotedBack(ctx, &c, log, s.HandOver(), stdout)
	case err != nil:
		return wrapOnce("secondary stopped", err)
	}
	log.Info("rejoined secondary stopped cleanly")
	return nil
}

// deliverRejoin tells the promoted site the regions this site discards,
// until it answers, and records that it did. A promoted site that is not
// reachable is asked again every few seconds: the secondary runs meanwhile.
func deliverRejoin(ctx context.Context, cfg *config.Config, peer string, log *slog.Logger, r site.Rejoined, done chan error, stdout io.Writer) error {
	who := "the promoted site"
	if peer == "primary" {
		who = "the session's primary"
	}
	tok, err := token(cfg)
	if err != nil {
		return fmt.Errorf("cannot tell %s what to copy: %w", who, err)
	}
	at, err := controlOf(cfg, peer)
	if err != nil {
		return err
	}
	req := control.RejoinRequest{Generation: r.Generation, Volumes: r.Discarded}
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		res, err := control.RequestRejoin(cctx, at, tok, req)
		cancel()
		if err == nil {
			if _, err := r.MarkDelivered(cfg); err != nil {
				log.Warn(who+" copies the regions, but that it does is not recorded: a rerun asks it again", "err", err)
			}
			var total int64
			names := make([]string, 0, len(res.CopyBytes))
			for name, n := range res.CopyBytes {
				total += n
				names = append(names, name)
			}
			sort.Strings(names)
			fmt.Fprintf(stdout, who+" resumed %d pairs and copies %d bytes:", len(res.Resumed), total)
			for _, name := range names {
				fmt.Fprintf(stdout, " %s %d", name, res.CopyBytes[name])
			}
			fmt.Fprintln(stdout)
			return nil
		}
		if res.Error != "" && !control.RefusedStarting(err) && !control.RefusedStopping(err) {
			// The promoted site refused: asking again changes nothing.
			// One that starts, or stops, has not read its state, or
			// takes no command now: it is asked again, as one that
			// does not answer.
			return fmt.Errorf(who+" refused the rejoin: %w", err)
		}
		log.Warn("cannot reach "+who+" to start the copy; trying again", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case err := <-done:
			done <- err
			return nil
		case <-time.After(2 * time.Second):
		}
	}
}
