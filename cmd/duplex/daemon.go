package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"duplex/config"
	"duplex/site"
)

func loadConfig(path string, stderr io.Writer) (*config.Config, int) {
	if path == "" {
		fmt.Fprintln(stderr, "--config FILE is required")
		return nil, exitUsage
	}
	cfg, err := config.Load(path)
	if err != nil {
		fmt.Fprintln(stderr, "duplex:", err)
		return nil, exitFailure
	}
	return cfg, 0
}

// daemonSetup parses a daemon's flags and loads its config and logger; ok is
// false when the caller must return code.
func daemonSetup(name string, args []string, stderr io.Writer, extra func(fs *flag.FlagSet)) (cfg *config.Config, log *slog.Logger, code int, ok bool) {
	fs := newFlags(name, stderr)
	path := fs.String("config", "", "session config `FILE` (TOML)")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if extra != nil {
		extra(fs)
	}
	if code, ok := parse(fs, args); !ok {
		return nil, nil, code, false
	}
	cfg, code = loadConfig(*path, stderr)
	if cfg == nil {
		return nil, nil, code, false
	}
	log, err := newLogger(stderr, *level)
	if err != nil {
		fmt.Fprintln(stderr, "duplex:", err)
		return nil, nil, exitUsage, false
	}
	return cfg, log, 0, true
}

func runPrimary(args []string, stdout, stderr io.Writer) int {
	var drain *time.Duration
	cfg, log, code, ok := daemonSetup("primary", args, stderr, func(fs *flag.FlagSet) {
		drain = fs.Duration("drain-timeout", 5*time.Minute, "on SIGTERM, how long to keep shipping held updates before exiting")
	})
	if !ok {
		return code
	}
	p, err := site.OpenPrimary(cfg, log, site.PrimaryOptions{})
	if err != nil {
		log.Error("cannot start primary", "err", err)
		return exitFailure
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The addresses bound, which differ from the config's where it asks for
	// port 0.
	log.Info("primary started", "session", cfg.Session, "secondary", cfg.Primary.Secondary,
		"nbd", p.NBDAddr(), "control", p.ControlAddr())
	if err := p.Run(ctx, *drain); err != nil {
		log.Error("primary stopped", "err", err)
		return exitFailure
	}
	log.Info("primary stopped cleanly")
	return exitOK
}

func runSecondary(args []string, stdout, stderr io.Writer) int {
	cfg, log, code, ok := daemonSetup("secondary", args, stderr, nil)
	if !ok {
		return code
	}
	s, err := site.OpenSecondary(cfg, log, site.SecondaryOptions{})
	if err != nil {
		log.Error("cannot start secondary", "err", err)
		return exitFailure
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Info("secondary started", "session", cfg.Session, "listen", s.ListenAddr(),
		"nbd", s.NBDAddr(), "control", s.ControlAddr())
	if err := s.Run(ctx); err != nil {
		log.Error("secondary stopped", "err", err)
		return exitFailure
	}
	log.Info("secondary stopped cleanly")
	return exitOK
}
