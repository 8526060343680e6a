package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"duplex/config"
	"duplex/control"
	"duplex/secondary"
	"duplex/site"
)

// parseAt reads recover's --at: an RFC 3339 time, or a duration before now
// written with a minus sign ("-15m", "-1h30m").
func parseAt(s string, now time.Time) (time.Time, error) {
	t, err := control.ParseTime(s, now)
	if err != nil {
		return time.Time{}, fmt.Errorf("--at %w", err)
	}
	return t, nil
}

// recoverAt takes a stopped secondary back to the newest group at or
// before at: it opens it (applying what is journaled), fences it, undoes
// the groups after the target from its history, and reports the group and
// time reached. Run again after a kill -9, it reaches the same group.
func recoverAt(ctx context.Context, cfg *config.Config, log *slog.Logger, at time.Time, stdout io.Writer) error {
	s, err := site.OpenSecondary(cfg, log, site.SecondaryOptions{Offline: true, Context: ctx})
	if err != nil {
		return err
	}
	defer s.Close()
	if err := stoppedBeforeFence(ctx, "--at TIME", s.Replica()); err != nil {
		return err
	}
	r := s.Replica()
	if r.Position().Time == 0 {
		return errors.New("recover --at: no consistency group was ever applied: the secondary volumes hold no replicated data")
	}
	if _, err := r.FenceToRecover(); err != nil {
		return err
	}
	st, err := s.RecoverTo(at.UnixNano())
	if errors.Is(err, secondary.ErrOutsideWindow) {
		return fmt.Errorf("recover --at %s: %w", control.FormatTime(at.UnixNano()), err)
	}
	if err != nil {
		return err
	}
	g, _ := r.Generation()
	fmt.Fprintf(stdout, "recovered to group %d, consistent as of %s (the newest point of the history at or before %s)\n",
		st.Group, control.FormatTime(st.Time), control.FormatTime(at.UnixNano()))
	fmt.Fprintf(stdout, "secondary fenced: its volumes start data generation %s; the old primary is refused from now on, also after restarts\n", g)
	printRecovered(stdout, s.Status())
	fmt.Fprintln(stdout, "the secondary volumes are usable")
	return nil
}
