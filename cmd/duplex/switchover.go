package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"duplex/control"
)

var switchoverSynopsis = synopsis{"switchover", "--config FILE [--timeout D]"}

// runSwitchover hands the session to the other site, planned: the primary
// daemon does it (it holds the writes) and answers with the write pause.
func runSwitchover(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags(switchoverSynopsis, "At the running primary, for a planned switchover: ships every held update while writes go on, "+
		"then holds the writes (the pause), ships the rest, and once the running secondary has journaled and applied the group of "+
		"the last acknowledged write, promotes it in place: it serves the volumes read-write on its nbd address from then on, "+
		"and this site refuses writes (NBD ESHUTDOWN) and starts no more as the primary (duplex rejoin here follows the new primary). "+
		"Writes that arrive during the pause wait; they fail with ESHUTDOWN once the other site took over, and go on if the "+
		"switchover fails or is refused, which changes nothing. Refused while the link is down or a pair is not duplex. "+
		"Prints the write pause and the consistency time the other site took over at.")
	path := fs.configFlag("both sites' control addresses and the control token")
	timeout := fs.Duration("timeout", 2*time.Minute, "how long the switchover may take, drain included, `D` such as 90s or 5m; "+
		"past it, it is abandoned and writes resume")
	if err := fs.parseNoArgs(args, stdout); err != nil {
		return err
	}
	if *timeout <= 0 {
		return fs.usageErrorf("--timeout %s: want a positive duration such as 90s or 5m", *timeout)
	}
	cfg, err := fs.loadConfig(*path)
	if err != nil {
		return err
	}
	tok, err := token(cfg)
	if err != nil {
		return err
	}
	at, err := controlOf(cfg, "primary")
	if err != nil {
		return err
	}
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	st, err := control.Fetch(fctx, at)
	cancel()
	switch {
	case err != nil:
		return fmt.Errorf("switchover runs at the running primary, whose control address does not answer: %w", err)
	case st.SwitchedOverAt != "":
		return fmt.Errorf("this site was switched over at %s: the other site is the primary since %s", st.SwitchedOverAt, st.PrimarySince)
	case st.Role != "primary" || st.PromotedAt != "":
		return fmt.Errorf("the site at %s is not the session's original primary (role %s): a switchover back from a promoted site needs the reverse replication (duplex rejoin)", at, st.Role)
	case st.Link != "connected":
		return fmt.Errorf("switchover refused, nothing changed: the link to the secondary is %s: the other site cannot take everything", st.Link)
	}
	fmt.Fprintf(stdout, "switchover of session %s to the secondary site (control %s): draining, then pausing writes\n", cfg.Session, cfg.Secondary.Control)
	// The primary gives up at the timeout, then answers.
	sctx, cancel := context.WithTimeout(ctx, *timeout+control.AnswerMargin+time.Minute)
	defer cancel()
	res, err := control.Switchover(sctx, at, tok, *timeout)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "switched over: the secondary site is the session's primary since %s, serving read-write on NBD %s\n", res.PromotedAt, cfg.Secondary.NBD)
	fmt.Fprintf(stdout, "consistent as of %s (group %d): it holds every write acknowledged here\n", res.ConsistencyTime, res.Group)
	fmt.Fprintf(stdout, "write pause: %s (writes held from %s; drain before it, with writes going on: %s)\n",
		seconds(res.PauseSeconds), res.PausedAt, seconds(res.DrainSeconds))
	if res.Warning != "" {
		fmt.Fprintln(stdout, "warning:", res.Warning)
	}
	fmt.Fprintln(stdout, "this site refuses writes from now on; stop its primary daemon, then duplex rejoin --config FILE here makes it the new primary's secondary")
	return nil
}

func seconds(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(time.Millisecond).String()
}
