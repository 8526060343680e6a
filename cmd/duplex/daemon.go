package main

import (
	"context"
	"fmt"
	"io"
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

func runPrimary(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("primary", stderr)
	path := fs.String("config", "", "session config `FILE` (TOML)")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	drain := fs.Duration("drain-timeout", 5*time.Minute, "on SIGTERM, how long to keep shipping held updates before exiting")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	cfg, code := loadConfig(*path, stderr)
	if cfg == nil {
		return code
	}
	log, err := newLogger(stderr, *level)
	if err != nil {
		fmt.Fprintln(stderr, "duplex:", err)
		return exitUsage
	}
	p, err := site.OpenPrimary(cfg, log, site.PrimaryOptions{})
	if err != nil {
		log.Error("cannot start primary", "err", err)
		return exitFailure
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Info("primary started", "session", cfg.Session, "secondary", cfg.Primary.Secondary)
	if err := p.Run(ctx, *drain); err != nil {
		log.Error("primary stopped", "err", err)
		return exitFailure
	}
	log.Info("primary stopped cleanly")
	return exitOK
}

func runSecondary(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("secondary", stderr)
	path := fs.String("config", "", "session config `FILE` (TOML)")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	cfg, code := loadConfig(*path, stderr)
	if cfg == nil {
		return code
	}
	log, err := newLogger(stderr, *level)
	if err != nil {
		fmt.Fprintln(stderr, "duplex:", err)
		return exitUsage
	}
	s, err := site.OpenSecondary(cfg, log, site.SecondaryOptions{})
	if err != nil {
		log.Error("cannot start secondary", "err", err)
		return exitFailure
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Info("secondary started", "session", cfg.Session, "listen", cfg.Secondary.Listen)
	if err := s.Run(ctx); err != nil {
		log.Error("secondary stopped", "err", err)
		return exitFailure
	}
	log.Info("secondary stopped cleanly")
	return exitOK
}
