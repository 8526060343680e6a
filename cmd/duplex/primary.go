package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"duplex/site"
	"duplex/timer"
	"duplex/transport"
)

var primarySynopsis = synopsis{"primary", "--config FILE [--drain-timeout D] [--overwrite-secondary GEN] [--log-level LEVEL]"}

// overwriteConsent is --overwrite-secondary's value: the data generation
// of the secondary whose copies the operator lets this run of the
// primary overwrite, as the secondary's refusal names it ("none" for a
// secondary that follows none). Naming it, rather than a bare yes, keeps a
// flag left in a service's command line from overwriting other copies
// later: it is no consent for any secondary but the one that refused.
type overwriteConsent struct {
	gen *transport.Generation
}

func (c *overwriteConsent) String() string {
	switch {
	case c == nil || c.gen == nil:
		return ""
	case *c.gen == 0:
		return "none"
	}
	return c.gen.String()
}

func (c *overwriteConsent) Set(v string) error {
	var g transport.Generation
	if v != "none" {
		if len(v) != 16 {
			return fmt.Errorf("want the secondary's data generation, 16 hex digits as its refusal names it, or none")
		}
		if err := g.UnmarshalText([]byte(v)); err != nil || g == 0 {
			return fmt.Errorf("want the secondary's data generation, 16 hex digits as its refusal names it, or none")
		}
	}
	c.gen = &g
	return nil
}

// runPrimary runs the primary site until SIGINT or SIGTERM, then ships what
// it holds (bounded by --drain-timeout) and exits.
func runPrimary(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags(primarySynopsis, "Runs the primary site: the NBD exports of its volumes and the data mover. "+
		"SIGINT or SIGTERM stops new writes and ships everything held before it exits.")
	path := fs.configFlag("its [primary] section")
	drain := fs.Duration("drain-timeout", 5*time.Minute, "on SIGINT or SIGTERM, how long to keep shipping held updates before exiting, `D` such as 30s or 5m")
	var overwrite overwriteConsent
	fs.Var(&overwrite, "overwrite-secondary", "let this run overwrite the copies of the secondary that follows data generation `GEN` "+
		"(16 hex digits, or none), as its refusal of this primary names it: its copies are discarded and every pair copied whole. "+
		"Only where the primary's data is the one to keep: if the secondary's copies are the good ones, run duplex promote at the secondary instead")
	level := fs.logLevelFlag("info")
	cfg, log, err := fs.parseSite(args, stdout, "primary", path, level)
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
	opts := site.PrimaryOptions{Context: ctx, OverwriteSecondary: overwrite.gen}
	if overwrite.gen != nil {
		log.Warn("consent given to overwrite the copies of the secondary that follows this data generation, if it refuses this primary for them",
			"overwrite_secondary", overwrite.String())
	}
	// Tests step the common timer's clock of this process alone.
	if path := os.Getenv(timer.StepFileEnv); path != "" {
		opts.Clock = timer.StepFile(path)
		log.Warn("the common timer reads the wall clock stepped by the offset in a file, for tests", "env", timer.StepFileEnv, "file", path)
	}
	p, err := site.OpenPrimary(cfg, log, opts)
	if err != nil {
		return wrapOnce("cannot start primary", err)
	}
	// The addresses bound, which differ from the config's where it asks for
	// port 0.
	log.Info("primary started", "session", cfg.Session, "secondary", cfg.Primary.Secondary,
		"nbd", p.NBDAddr(), "control", p.ControlAddr())
	if err := p.Run(ctx, *drain); err != nil {
		return wrapOnce("primary stopped", err)
	}
	log.Info("primary stopped cleanly")
	return nil
}
