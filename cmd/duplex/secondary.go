package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"duplex/control"
	"duplex/secondary"
	"duplex/site"
)

var secondarySynopsis = synopsis{"secondary", "--config FILE [--log-level LEVEL]"}

// runSecondary runs the secondary site until SIGINT or SIGTERM.
func runSecondary(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags(secondarySynopsis, "Runs the secondary site: it receives the primary's time-interval groups, "+
		"journals them, applies them as consistency groups, and serves read-only NBD exports of the copy. "+
		"A duplex switchover at the primary promotes it in place: it then serves the volumes read-write, as duplex promote does.")
	path := fs.configFlag("its [secondary] section")
	level := fs.logLevelFlag("info")
	cfg, log, err := fs.parseSite(args, stdout, path, level)
	if err != nil {
		return err
	}
	// A stop while the journal replays ends the replay at a group
	// boundary: the next start replays the rest, as after a crash.
	s, err := site.OpenSecondary(cfg, log, site.SecondaryOptions{Context: ctx})
	if errors.Is(err, secondary.ErrInterrupted) {
		log.Info("secondary stopped while starting", "err", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("cannot start secondary: %w", err)
	}
	log.Info("secondary started", "session", cfg.Session, "listen", s.ListenAddr(),
		"nbd", s.NBDAddr(), "control", s.ControlAddr())
	err = s.Run(ctx)
	var promoted *site.PromotedError
	if errors.As(err, &promoted) && ctx.Err() != nil {
		// Promoted by a switchover under way when the stop came: the
		// promotion is recorded, and the stop is the operator's.
		s.HandOver().Close()
		log.Warn("promoted by a switchover as the secondary stopped: this site is the session's primary; duplex promote serves its volumes read-write",
			"promoted_at", control.FormatTime(promoted.Promotion.At))
		return nil
	}
	if errors.As(err, &promoted) {
		// A switchover promoted this site: it serves its volumes
		// read-write from now on, on the addresses it had.
		log.Warn("promoted by a switchover: serving the volumes read-write", "promoted_at", control.FormatTime(promoted.Promotion.At))
		return servePromoted(ctx, s.PromotedConfig(), log, promoted.Promotion, 5*time.Minute, s.HandOver(), stdout)
	}
	if err != nil {
		return fmt.Errorf("secondary stopped: %w", err)
	}
	log.Info("secondary stopped cleanly")
	return nil
}
