package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"duplex/config"
	"duplex/control"
	"duplex/site"
)

func runRecover(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("recover", stderr)
	path := fs.String("config", "", "session config `FILE`")
	force := fs.Bool("force", false, "take the secondary over: recover even though a primary is connected to the running secondary, "+
		"and fence a stopped one, so that its volumes can be written and the old primary is refused for good")
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
			return recoverRunning(cfg, stdout, stderr)
		}
	}
	s, err := site.OpenSecondary(cfg, nil, site.SecondaryOptions{Offline: true})
	if err != nil {
		fmt.Fprintln(stderr, "recover:", err)
		return exitFailure
	}
	defer s.Close()
	pos := s.Replica().Position()
	if *force {
		if _, err := s.Replica().Fence(); err != nil {
			fmt.Fprintln(stderr, "recover:", err)
			return exitFailure
		}
		g, _ := s.Replica().Generation()
		fmt.Fprintf(stdout, "secondary fenced: its volumes start data generation %s; the old primary is refused from now on, also after restarts\n", g)
	}
	if pos.Time == 0 {
		fmt.Fprintln(stdout, "no consistency group was ever applied: the secondary volumes hold no replicated data")
		return exitOK
	}
	printRecovered(stdout, s.Status())
	fmt.Fprintln(stdout, "the secondary volumes are usable")
	if !*force {
		// Without the fence, a primary that comes back would replicate
		// into volumes written here, mixing both sites' data.
		fmt.Fprintln(stdout, "before writing to them, run duplex recover --force: it fences the secondary so that the old primary is refused")
	}
	return exitOK
}

// recoverRunning takes over a running secondary: it fences it (the primary is
// disconnected and refused from now on) and reports its consistency time. A
// running secondary's volumes are always at a group boundary (the last one
// before a resync in progress, whose groups stay journaled and unapplied):
// readable through its read-only exports, and usable by other software once
// the daemon stops.
func recoverRunning(cfg *config.Config, stdout, stderr io.Writer) int {
	tp := cfg.TokenPath()
	if tp == "" {
		fmt.Fprintln(stderr, "recover: the secondary daemon is running and the config names no control_token_file to fence it with: stop the daemon, then run recover")
		return exitFailure
	}
	token, err := control.ReadToken(tp)
	if err != nil {
		fmt.Fprintln(stderr, "recover:", err)
		return exitFailure
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := control.FenceSecondary(ctx, cfg.Secondary.Control, token); err != nil {
		fmt.Fprintln(stderr, "recover:", err)
		return exitFailure
	}
	st, err := control.Fetch(ctx, cfg.Secondary.Control)
	if err != nil {
		fmt.Fprintln(stderr, "recover:", err)
		return exitFailure
	}
	fmt.Fprintln(stdout, "secondary fenced: it accepts no primary any more")
	printRecovered(stdout, st)
	fmt.Fprintln(stdout, "stop the secondary daemon to use its volumes read-write")
	return exitOK
}

// printRecovered says what the secondary volumes hold, per volume: the
// running and the stopped secondary report the same durable group, since
// status reports only what is applied.
func printRecovered(w io.Writer, st control.Status) {
	group := uint64(0)
	if st.Group != nil {
		group = *st.Group
	}
	fmt.Fprintf(w, "consistent as of %s (group %d)\n", st.ConsistencyTime, group)
	for _, v := range st.Volumes {
		c := v.Consistency
		if c == "" {
			c = "consistent as of " + st.ConsistencyTime
		}
		fmt.Fprintf(w, "  %s (%s): %s\n", v.Name, v.Subsystem, c)
	}
	if st.HeldGroups != nil && *st.HeldGroups > 0 {
		var held int64
		if st.HeldBytes != nil {
			held = *st.HeldBytes
		}
		fmt.Fprintf(w, "a resync of %s was in progress: %d groups (%d bytes) journaled after group %d are not applied, so that the volumes stay consistent\n",
			strings.Join(st.Resyncing, ", "), *st.HeldGroups, held, group)
	}
}
