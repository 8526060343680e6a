package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"duplex/config"
	"duplex/control"
	"duplex/failover"
	"duplex/secondary"
	"duplex/site"
)

var promoteSynopsis = synopsis{"promote", "--config FILE [--force] [--timeout D] [--drain-timeout D] [--log-level LEVEL]"}

// runPromote makes the secondary site the session's primary and serves its
// volumes read-write until SIGINT or SIGTERM; run again (after a stop or a
// kill -9), it serves them again, with the regions changed since the
// promotion intact.
func runPromote(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags(promoteSynopsis, "At the secondary after losing the primary: applies every journaled group (as recover does), "+
		"fences the secondary, and serves its volumes read-write over NBD on the secondary's nbd address, tracking the regions "+
		"written from then on for a later rejoin. Run again, it serves the promoted site again. At the old primary that rejoined "+
		"the promoted site as its secondary, once that site is lost: fails over back, serving this site as the session's primary again "+
		"(duplex rejoin at the other site then follows it, discarding what it wrote since). "+
		"Where no duplex secondary ever ran with the config's [secondary] paths (neither state.json nor its journal there: "+
		"a wrong --config, or its file system not mounted), it exits 1 saying that directory holds no secondary, and makes and serves nothing.")
	path := fs.configFlag("its [secondary] section")
	force := fs.Bool("force", false, "promote even though a primary is connected to the running secondary: it is cut off and refused for good")
	timeout := fs.applyTimeoutFlag()
	drain := fs.Duration("drain-timeout", 5*time.Minute, "with [primary] listen set (the promoted site replicates to the old primary once it rejoins): "+
		"on SIGINT or SIGTERM, how long to keep shipping held updates before exiting, `D` such as 30s or 5m")
	level := fs.logLevelFlag("info")
	cfg, log, err := fs.parseSite(args, stdout, "secondary", path, level)
	if err != nil {
		return err
	}
	// The old primary that rejoined the promoted site, and is not that
	// site: promote fails over back to it. A record of either that is
	// damaged is refused: read as none, the site here would be promoted as
	// the [secondary] section's. The rejoin record is read only where the
	// promoted site is not here: where it is (both sites in one
	// directory), it is served again whatever the old primary's records
	// hold, and they may be what a failed disk left.
	switch _, err := failover.ReadPromotion(nil, site.PromotedDir(cfg)); {
	case errors.Is(err, failover.ErrNotPromoted):
		switch _, err := site.ReadRejoin(cfg); {
		case err == nil:
			return promoteBack(ctx, cfg, log, *force, *timeout, stdout)
		case !errors.Is(err, site.ErrNotRejoined):
			return wrapOnce("cannot promote", err)
		}
	case err != nil:
		return wrapOnce("cannot promote", err)
	}
	if err := failedOverBack(cfg, *path); err != nil {
		return err
	}
	// Before anything is fenced or recorded, both for good: a site that
	// cannot serve would be neither a secondary any more nor a primary.
	if err := site.CheckServe(cfg); err != nil {
		return wrapOnce("cannot promote", err)
	}
	st, running, err := runningSecondary(ctx, cfg)
	if err != nil {
		return err
	}
	if running {
		return promoteRunning(ctx, cfg, st, *force, *timeout, stdout)
	}
	pr, fresh, recovered, err := site.Promote(ctx, cfg, log, nil)
	if errors.Is(err, secondary.ErrInterrupted) {
		// A stop while the journal replays: the next promote replays the
		// rest. Not promoted, so not a success.
		return fmt.Errorf("promote stopped, nothing fenced or recorded: %w", err)
	}
	if err != nil {
		return wrapOnce("cannot promote", err)
	}
	if fresh {
		if pr.ConsistencyTime == 0 {
			fmt.Fprintln(stdout, "no consistency group was ever applied: the volumes hold no replicated data")
		} else {
			printRecovered(stdout, recovered)
		}
		if c := recovered.Coupling; c != nil {
			printCoupledTime(stdout, "promoted at", c.Group, c.RecoveryTime, c.AppliedThrough)
		}
		fmt.Fprintf(stdout, "promoted: this site is the session's primary from now on (data generation %s; the old primary is refused)\n", pr.Generation)
	}
	return servePromoted(ctx, cfg, log, pr, *drain, site.Listeners{}, stdout)
}

// servePromoted serves the promoted site until ctx ends: after duplex
// promote, and in a secondary daemon a switchover promoted in place, on
// the listeners that secondary handed over (kept), which it owns.
func servePromoted(ctx context.Context, cfg *config.Config, log *slog.Logger, pr failover.Promotion, drain time.Duration, kept site.Listeners, stdout io.Writer) error {
	if site.Reversing(cfg) {
		return runReversePrimary(ctx, cfg, log, pr, drain, kept, stdout)
	}
	p, err := site.OpenPromoted(cfg, log, site.PromotedOptions{Listeners: kept, Context: ctx})
	if err != nil {
		return wrapOnce("cannot serve the promoted site", err)
	}
	log.Info("promote started", "session", cfg.Session, "nbd", p.NBDAddr(), "control", p.ControlAddr(),
		"primary_since", control.FormatTime(pr.At), "promoted_consistency_time", control.FormatTime(pr.ConsistencyTime))
	fmt.Fprintf(stdout, "serving %d volumes read-write on NBD %s; the regions written since %s are tracked for rejoin\n",
		len(cfg.Secondary.Volumes), p.NBDAddr(), trackedSince(pr))
	if err := p.Run(ctx); err != nil {
		return wrapOnce("promoted site stopped", err)
	}
	log.Info("promoted site stopped cleanly")
	return nil
}

// trackedSince says since when a promoted site tracks the regions
// written: the promotion's consistency time, or, with no group ever
// applied (no such time), the promotion itself.
func trackedSince(pr failover.Promotion) string {
	if pr.ConsistencyTime == 0 {
		return "the promotion at " + control.FormatTime(pr.At)
	}
	return control.FormatTime(pr.ConsistencyTime)
}

// promoteRunning answers a promote while a site runs on the secondary's
// control address. The promoted site cannot share the volumes with a running
// secondary daemon: a connected primary is refused without force, else the
// daemon is fenced as recover fences it (the primary is cut off at once, and
// refused from then on) and the operator is told to stop it and promote
// again.
func promoteRunning(ctx context.Context, cfg *config.Config, st control.Status, force bool, timeout time.Duration, stdout io.Writer) error {
	if st.PromotedAt != "" {
		return fmt.Errorf("the promoted site is running already (at %s, primary since %s)", cfg.Secondary.Control, st.PromotedAt)
	}
	if st.Link == "connected" && !force {
		return primaryConnected("promote", st.Peer, "promote it now")
	}
	if cfg.Coupled() {
		// Fenced where it runs, at the last master time it applied
		// through, it would stay there: a fenced secondary applies nothing
		// more, and the group's recovery time may be later.
		return fmt.Errorf("the secondary of coupled session %q runs: stop it (SIGTERM), then run duplex promote again, "+
			"which promotes it at the one recovery time of group %q that every member is promoted or recovered to", cfg.Session, cfg.Coupling.Group)
	}
	if cfg.TokenPath() == "" {
		return errors.New("the secondary daemon is running: stop it (SIGTERM), then run duplex promote again")
	}
	if err := recoverRunning(ctx, cfg, timeout, stdout); err != nil {
		return err
	}
	return errors.New("the secondary daemon is running: stop it (SIGTERM), then run duplex promote again to serve its volumes")
}

// runReversePrimary serves the promoted site as the primary of the reverse
// direction: its pairs suspended, their changed regions tracked, until the
// old primary rejoins (duplex rejoin --yes there), which resumes them.
func runReversePrimary(ctx context.Context, cfg *config.Config, log *slog.Logger, pr failover.Promotion, drain time.Duration, kept site.Listeners, stdout io.Writer) error {
	p, err := site.OpenReversePrimary(cfg, log, site.PrimaryOptions{Listeners: kept, Context: ctx})
	if err != nil {
		return wrapOnce("cannot serve the promoted site", err)
	}
	log.Info("promote started", "session", cfg.Session, "nbd", p.NBDAddr(), "control", p.ControlAddr(), "rejoin_at", cfg.Primary.Listen,
		"primary_since", control.FormatTime(pr.At), "promoted_consistency_time", control.FormatTime(pr.ConsistencyTime))
	fmt.Fprintf(stdout, "serving %d volumes read-write on NBD %s as the session's primary; the regions written since %s are tracked "+
		"until the old primary rejoins (duplex rejoin --yes there), then replicated to it at %s\n",
		len(cfg.Secondary.Volumes), p.NBDAddr(), trackedSince(pr), cfg.Primary.Listen)
	if err := p.Run(ctx, drain); err != nil {
		return wrapOnce("promoted site stopped", err)
	}
	log.Info("promoted site stopped cleanly")
	return nil
}

// promoteBack fails over back: at the old primary that rejoined the
// promoted site as its secondary, once that site is lost, it promotes this
// site (as promote promotes a secondary) and serves it as the session's
// primary again, every pair suspended until the other site rejoins.
func promoteBack(ctx context.Context, cfg *config.Config, log *slog.Logger, force bool, timeout time.Duration, stdout io.Writer) error {
	rev, err := cfg.Reversed()
	if err != nil {
		return wrapOnce("cannot promote", err)
	}
	st, running, err := runningSecondary(ctx, rev)
	if err != nil {
		return err
	}
	if running && st.Role == "secondary" {
		return promoteRunning(ctx, rev, st, force, timeout, stdout)
	}
	pr, fresh, recovered, err := site.PromoteBack(ctx, cfg, log)
	if errors.Is(err, secondary.ErrInterrupted) {
		return fmt.Errorf("promote stopped, nothing fenced or recorded: %w", err)
	}
	if err != nil {
		return wrapOnce("cannot promote", err)
	}
	if fresh {
		printRecovered(stdout, recovered)
		fmt.Fprintf(stdout, "promoted: this site, the old primary, is the session's primary again from now on (data generation %s; "+
			"the promoted site it rejoined is refused, and discards what it wrote since when it rejoins)\n", pr.Generation)
		fmt.Fprintln(stdout, "from now on, start this site with duplex primary --config FILE (after a stop or a kill -9 too), not duplex promote")
	}
	return servePromotedBack(ctx, cfg, log, site.Listeners{}, stdout)
}

// failedOverBack refuses a promote at the old primary that failed over
// back (its pair state holds that promotion, and the rejoin record that
// made promote fail over back is gone once the site first started as the
// primary again): promote would take this site for the [secondary]
// section's site and promote a fresh, empty one at those paths, serving
// it read-write beside the session's real primary. Nothing at those paths
// was ever a secondary here (no state file), nor promoted; where one was
// (both sites in one directory), promote goes on, whatever the old
// primary's promotion record holds: it is read, and refused damaged, only
// where it decides.
func failedOverBack(cfg *config.Config, path string) error {
	switch _, err := failover.ReadPromotion(nil, site.PromotedDir(cfg)); {
	case err == nil:
		return nil
	case !errors.Is(err, failover.ErrNotPromoted):
		return wrapOnce("cannot promote", err)
	}
	if _, err := os.Stat(site.StatePath(cfg)); !errors.Is(err, os.ErrNotExist) {
		return nil
	}
	pr, err := failover.ReadPromotion(nil, site.PairStateDir(cfg))
	switch {
	case errors.Is(err, failover.ErrNotPromoted):
		return nil
	case err != nil:
		return wrapOnce("cannot promote", err)
	}
	return fmt.Errorf("this site failed over back and is the session's primary again (since %s, data generation %s): "+
		"serve it with duplex primary --config %s; duplex promote here would promote the [secondary] section's site",
		control.FormatTime(pr.At), pr.Generation, path)
}
