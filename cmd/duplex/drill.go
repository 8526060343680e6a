package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"duplex/control"
)

var drillSynopsis = synopsis{"drill", "start|stop --config FILE [--at TIME]"}

// runDrill starts or stops a failover drill at the running secondary.
func runDrill(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags(drillSynopsis, "start serves writable NBD exports of the secondary volumes, on [secondary] drill_nbd, as of "+
		"TIME (RFC 3339 or -15m, within [secondary] history; left out: the group applied now); their writes are kept in memory "+
		"apart from the replicated volumes, while replication and the journal go on. stop ends the drill and discards its writes.")
	path := fs.configFlag("its [secondary] section")
	at := fs.String("at", "", "the past `TIME` the drill shows: RFC 3339 (2026-01-02T15:04:05Z) or relative to now (-15m)")
	pos, err := fs.parse(args, stdout)
	if err != nil {
		return err
	}
	if *path == "" {
		return fs.usageErrorf("--config FILE is required")
	}
	switch {
	case len(pos) == 0:
		return fs.usageErrorf("the operation is missing: start or stop")
	case pos[0] != "start" && pos[0] != "stop":
		return fs.usageErrorf("unknown operation %q: want start or stop", pos[0])
	}
	if len(pos) > 1 {
		return fs.usageErrorf("unexpected argument %q: drill %s takes no other", pos[1], pos[0])
	}
	stop := pos[0] == "stop"
	if stop && *at != "" {
		return fs.usageErrorf("--at is for drill start")
	}
	if *at != "" {
		if _, err := control.ParseTime(*at, time.Now()); err != nil {
			return fs.usageErrorf("--at %v", err)
		}
	}
	cfg, err := fs.loadConfig(*path)
	if err != nil {
		return err
	}
	if !cfg.HasSecondary() || cfg.Secondary.Control == "" {
		return fs.configLacks(*path, "names no [secondary] control address: drills run at the secondary, through it")
	}
	if err := fs.needToken(cfg, *path); err != nil {
		return err
	}
	ep, err := controlOf(cfg, "secondary")
	if err != nil {
		return err
	}
	tok, err := token(cfg)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	res, err := control.Drill(cctx, ep, tok, control.DrillRequest{At: *at, Stop: stop})
	if err != nil {
		return err
	}
	if stop {
		fmt.Fprintf(stdout, "drill stopped: %d bytes of its writes discarded; the replicated volumes never held them\n", res.ScratchBytes)
		return nil
	}
	fmt.Fprintf(stdout, "drill started: writable exports on %s, each volume consistent as of %s (group %d); its writes are kept apart and discarded by duplex drill stop\n",
		res.NBD, res.ConsistencyTime, res.Group)
	return nil
}
