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
		"regions, and replication runs the other way; it runs until SIGINT or SIGTERM, and again when run again.")
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
	if cfg.Secondary.Control == "" {
		return errors.New("the config names no [secondary] control address to reach the promoted site at")
	}
	r, err := site.ReadRejoin(cfg)
	switch {
	case err == nil:
		fmt.Fprintf(stdout, "this site rejoined the promoted site (primary since %s) as its secondary at %s\n",
			r.PromotedAt, control.FormatTime(r.At))
		if !*yes {
			fmt.Fprintln(stdout, "run again with --yes to run as its secondary")
			return nil
		}
	case errors.Is(err, site.ErrNotRejoined):
		if r, err = planRejoin(ctx, cfg, *yes, stdout); err != nil || r.At == 0 {
			return err
		}
	default:
		return err
	}
	return runRejoined(ctx, cfg, log, r, stdout)
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
		fmt.Fprintf(stdout, "the promoted site journaled %d groups after that time that it never applied (a resync was in progress): "+
			"their regions are not counted below\n", ch.HeldGroups)
	}
	var total, size int64
	for _, v := range plan {
		fmt.Fprintf(stdout, "  %s: copy %d bytes (%d regions) of %d: %d bytes here may hold writes the promoted site never had "+
			"(discarded), %d bytes written there since", v.Name, v.Copy, v.Union.Count(), v.Size, v.Here, v.There)
		if v.Whole != "" {
			fmt.Fprintf(stdout, "; the whole volume: %s", v.Whole)
		}
		fmt.Fprintln(stdout)
		total += v.Copy
		size += v.Size
	}
	fmt.Fprintf(stdout, "in all: copy %d bytes of %d\n", total, size)
	if !yes {
		fmt.Fprintln(stdout, "nothing changed: run again with --yes to rejoin")
		return site.Rejoined{}, nil
	}
	if _, err := cfg.Reversed(); err != nil {
		return site.Rejoined{}, fmt.Errorf("cannot rejoin: %w", err)
	}
	r, err := site.BeginRejoin(cfg, ch, plan)
	if err != nil {
		return site.Rejoined{}, fmt.Errorf("cannot rejoin: %w", err)
	}
	fmt.Fprintf(stdout, "rejoined: this site is the promoted site's secondary from now on (data generation %s); "+
		"its volumes stay as they are until the copy ends\n", r.Generation)
	return r, nil
}

// runRejoined runs the old primary as the secondary of the promoted site,
// and tells the promoted site the regions to copy if it was not told yet.
func runRejoined(ctx context.Context, cfg *config.Config, log *slog.Logger, r site.Rejoined, stdout io.Writer) error {
	s, err := site.OpenRejoined(cfg, log, r, site.SecondaryOptions{Context: ctx})
	if errors.Is(err, secondary.ErrInterrupted) {
		log.Info("secondary stopped while starting", "err", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("cannot start as the promoted site's secondary: %w", err)
	}
	log.Info("rejoin started", "session", cfg.Session, "listen", s.ListenAddr(), "nbd", s.NBDAddr(), "control", s.ControlAddr(),
		"primary_since", r.PromotedAt)
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- s.Run(rctx) }()
	if !r.Delivered {
		if err := deliverRejoin(rctx, cfg, log, r, done, stdout); err != nil {
			stop()
			<-done
			return err
		}
	}
	if err := <-done; err != nil {
		return fmt.Errorf("secondary stopped: %w", err)
	}
	log.Info("rejoined secondary stopped cleanly")
	return nil
}

// deliverRejoin tells the promoted site the regions this site discards,
// until it answers, and records that it did. A promoted site that is not
// reachable is asked again every few seconds: the secondary runs meanwhile.
func deliverRejoin(ctx context.Context, cfg *config.Config, log *slog.Logger, r site.Rejoined, done chan error, stdout io.Writer) error {
	tok, err := token(cfg)
	if err != nil {
		return fmt.Errorf("cannot tell the promoted site what to copy: %w", err)
	}
	at, err := controlOf(cfg, "secondary")
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
				log.Warn("the promoted site copies the regions, but that it does is not recorded: a rerun asks it again", "err", err)
			}
			var total int64
			names := make([]string, 0, len(res.CopyBytes))
			for name, n := range res.CopyBytes {
				total += n
				names = append(names, name)
			}
			sort.Strings(names)
			fmt.Fprintf(stdout, "the promoted site resumed %d pairs and copies %d bytes:", len(res.Resumed), total)
			for _, name := range names {
				fmt.Fprintf(stdout, " %s %d", name, res.CopyBytes[name])
			}
			fmt.Fprintln(stdout)
			return nil
		}
		if res.Error != "" {
			// The promoted site refused: asking again changes nothing.
			return fmt.Errorf("the promoted site refused the rejoin: %w", err)
		}
		log.Warn("cannot reach the promoted site to start the copy; trying again", "err", err)
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
