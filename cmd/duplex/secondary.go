package main

import (
	"context"
	"errors"
	"io"
	"time"

	"duplex/control"
	"duplex/disk"
	"duplex/secondary"
	"duplex/site"
)

// secondaryFS holds the secondary's journal and state file: nil, the
// disk, but for tests that fail it.
var secondaryFS disk.FS

var secondarySynopsis = synopsis{"secondary", "--config FILE [--log-level LEVEL] [--disk-retry-max D]"}

// runSecondary runs the secondary site until SIGINT or SIGTERM.
func runSecondary(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags(secondarySynopsis, "Runs the secondary site: it receives the primary's time-interval groups, "+
		"journals them, applies them as consistency groups, and serves read-only NBD exports of the copy. "+
		"A duplex switchover at the primary promotes it in place: it then serves the volumes read-write, as duplex promote does.")
	path := fs.configFlag("its [secondary] section")
	level := fs.logLevelFlag("info")
	retryMax := fs.Duration("disk-retry-max", site.DefaultDiskRetryMax, "after a disk fault stopped the secondary, the longest wait before it opens "+
		"its journal and volumes again to resume, as a restart does (from 1s, doubling), `D` such as 30s or 5m; 0: stay stopped until restarted")
	cfg, log, err := fs.parseSite(args, stdout, "secondary", path, level)
	if err != nil {
		return err
	}
	started := func(s *site.Secondary) {
		log.Info("secondary started", "session", cfg.Session, "listen", s.ListenAddr(),
			"nbd", s.NBDAddr(), "control", s.ControlAddr())
	}
	// A stop while the journal replays ends the replay at a group
	// boundary: the next start replays the rest, as after a crash.
	opts := site.SecondaryOptions{Context: ctx, FS: secondaryFS}
	var s *site.Secondary
	if *retryMax > 0 {
		s, err = site.RunSecondary(ctx, cfg, log, opts, site.DiskRetry{First: min(site.DefaultDiskRetryFirst, *retryMax), Max: *retryMax}, started)
	} else if s, err = site.OpenSecondary(cfg, log, opts); err == nil {
		started(s)
		err = s.Run(ctx)
	}
	if errors.Is(err, secondary.ErrInterrupted) {
		log.Info("secondary stopped while starting", "err", err)
		return nil
	}
	if s == nil {
		return wrapOnce("cannot start secondary", err)
	}
	var promoted *site.PromotedError
	if errors.As(err, &promoted) && ctx.Err() != nil {
		// Promoted by a switchover under way when the stop came: the
		// promotion is recorded, and the stop is the operator's.
		s.HandOver().Close()
		log.Warn("promoted by a switchover as the secondary stopped: this site is the session's primary; duplex promote serves its volumes read-write",
			"promoted_at", control.FormatTime(promoted.Promotion.At), "err", err)
		return nil
	}
	if errors.As(err, &promoted) {
		// A switchover promoted this site: it serves its volumes
		// read-write from now on, on the addresses it had.
		log.Warn("promoted by a switchover: serving the volumes read-write", "promoted_at", control.FormatTime(promoted.Promotion.At))
		return servePromoted(ctx, s.PromotedConfig(), log, promoted.Promotion, 5*time.Minute, s.HandOver(), stdout)
	}
	if err != nil {
		return wrapOnce("secondary stopped", err)
	}
	log.Info("secondary stopped cleanly")
	return nil
}
