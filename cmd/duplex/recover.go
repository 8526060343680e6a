package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"duplex/control"
	"duplex/site"
)

func runRecover(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("recover", stderr)
	path := fs.String("config", "", "session config `FILE`")
	force := fs.Bool("force", false, "recover even though a primary is connected to the running secondary")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	cfg, code := loadConfig(*path, stderr)
	if cfg == nil {
		return code
	}
	if cfg.Secondary.Control != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := control.Fetch(ctx, cfg.Secondary.Control)
		cancel()
		if err == nil {
			if st.Link == "connected" && !*force {
				fmt.Fprintf(stderr, "recover: a primary (%s) is connected to the running secondary: it is still replicating. Stop the primary, or use --force.\n", st.Peer)
				return exitFailure
			}
			fmt.Fprintf(stderr, "recover: the secondary daemon is still running (control %s): stop it first, then run recover.\n", cfg.Secondary.Control)
			return exitFailure
		}
	}
	s, err := site.OpenSecondary(cfg, nil, site.SecondaryOptions{Offline: true})
	if err != nil {
		fmt.Fprintln(stderr, "recover:", err)
		return exitFailure
	}
	defer s.Close()
	pos := s.Replica().Position()
	if pos.Time == 0 {
		fmt.Fprintln(stdout, "no consistency group was ever applied: the secondary volumes hold no replicated data")
		return exitOK
	}
	ts := control.FormatTime(pos.Time)
	fmt.Fprintf(stdout, "consistent as of %s (group %d)\n", ts, pos.Group)
	for _, v := range s.Status().Volumes {
		fmt.Fprintf(stdout, "  %s (%s): consistent as of %s\n", v.Name, v.Subsystem, ts)
	}
	fmt.Fprintln(stdout, "the secondary volumes are usable")
	return exitOK
}
