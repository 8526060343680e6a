package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"duplex/site"
	"duplex/timer"
)

var primarySynopsis = synopsis{"primary", "--config FILE [--drain-timeout D] [--log-level LEVEL]"}

// runPrimary runs the primary site until SIGINT or SIGTERM, then ships what
// it holds (bounded by --drain-timeout) and exits.
func runPrimary(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags(primarySynopsis, "Runs the primary site: the NBD exports of its volumes and the data mover. "+
		"SIGINT or SIGTERM stops new writes and ships everything held before it exits.")
	path := fs.configFlag("its [primary] section")
	drain := fs.Duration("drain-timeout", 5*time.Minute, "on SIGINT or SIGTERM, how long to keep shipping held updates before exiting, `D` such as 30s or 5m")
	level := fs.logLevelFlag("info")
	cfg, log, err := fs.parseSite(args, stdout, path, level)
	if err != nil {
		return err
	}
	if batchErr != nil {
		log.Warn("threads left under the default scheduling policy, not SCHED_BATCH: correct, if costlier per request",
			"switched", batched, "err", batchErr)
	} else if batched > 0 {
		log.Debug("threads under SCHED_BATCH", "switched", batched)
	}
	// SIGTERM ends a start that waits on a disk, too.
	opts := site.PrimaryOptions{Context: ctx}
	// Tests step the common timer's clock of this process alone.
	if path := os.Getenv(timer.StepFileEnv); path != "" {
		opts.Clock = timer.StepFile(path)
		log.Warn("the common timer reads the wall clock stepped by the offset in a file, for tests", "env", timer.StepFileEnv, "file", path)
	}
	p, err := site.OpenPrimary(cfg, log, opts)
	if err != nil {
		return fmt.Errorf("cannot start primary: %w", err)
	}
	// The addresses bound, which differ from the config's where it asks for
	// port 0.
	log.Info("primary started", "session", cfg.Session, "secondary", cfg.Primary.Secondary,
		"nbd", p.NBDAddr(), "control", p.ControlAddr())
	if err := p.Run(ctx, *drain); err != nil {
		return fmt.Errorf("primary stopped: %w", err)
	}
	log.Info("primary stopped cleanly")
	return nil
}
