package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"duplex/control"
	"duplex/site"
)

var rejoinSynopsis = synopsis{"rejoin", "--config FILE [--yes]"}

// runRejoin says, at the stopped old primary, what making it the secondary
// of the promoted site would copy and discard, per volume. The copy itself
// is not built yet: with --yes it says so and changes nothing.
func runRejoin(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags(rejoinSynopsis, "At the old primary, stopped, once the secondary was promoted: says per volume which regions "+
		"a rejoin as the promoted site's secondary would copy from it (those this site may hold writes of that the promoted site "+
		"never had, which are discarded, and those the promoted site wrote since), and changes nothing.")
	path := fs.configFlag("its [primary] section, and the promoted site's control address in [secondary]")
	yes := fs.Bool("yes", false, "go on with the rejoin after the report")
	if err := fs.parseNoArgs(args, stdout); err != nil {
		return err
	}
	cfg, err := fs.loadConfig(*path)
	if err != nil {
		return err
	}
	if cfg.Secondary.Control == "" {
		return errors.New("the config names no [secondary] control address to reach the promoted site at")
	}
	at, err := controlOf(cfg, "secondary")
	if err != nil {
		return err
	}
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	ch, err := control.FetchChanges(fctx, at)
	cancel()
	if err != nil {
		return fmt.Errorf("cannot learn what the promoted site changed (is duplex promote running at the secondary?): %w", err)
	}
	plan, err := site.PlanRejoin(cfg, ch)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "the promoted site is primary since %s; its volumes held this site's data as of %s\n",
		ch.PromotedAt, control.FormatTime(ch.ConsistencyTime))
	if ch.HeldGroups > 0 {
		// Those groups' writes were journaled (so this site's activity log
		// let go of them) but never applied there.
		fmt.Fprintf(stdout, "the promoted site journaled %d groups after that time that it never applied (a resync was in progress): "+
			"their regions are not counted below\n", ch.HeldGroups)
	}
	var total, size int64
	for _, v := range plan {
		fmt.Fprintf(stdout, "  %s: copy %d bytes (%d regions) of %d: %d bytes here may hold writes the promoted site never had "+
			"(discarded), %d bytes written there since", v.Name, v.Copy, v.Union.Count(), v.Size, v.Here, v.There)
		if v.Whole != "" {
			fmt.Fprintf(stdout, "; the whole volume: %s", v.Whole)
		}
		fmt.Fprintln(stdout)
		total += v.Copy
		size += v.Size
	}
	fmt.Fprintf(stdout, "in all: copy %d bytes of %d\n", total, size)
	if !*yes {
		fmt.Fprintln(stdout, "nothing changed: run again with --yes to rejoin")
		return nil
	}
	return errors.New("the copy from the promoted site is not built yet: nothing was changed")
}
