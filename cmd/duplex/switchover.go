package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"duplex/config"
	"duplex/control"
)

var switchoverSynopsis = synopsis{"switchover", "--config FILE [--timeout D]"}

// runSwitchover hands the session to the other site, planned: the daemon
// of the site running as the primary does it (it holds the writes) and
// answers with the write pause.
func runSwitchover(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags(switchoverSynopsis, "For a planned switchover, asked of the site running as the session's primary (the [primary] section's, "+
		"or a promoted [secondary] site's, which hands the session back): ships every held update while writes go on, "+
		"then holds the writes (the pause), ships the rest, and once the running secondary has journaled and applied the last group "+
		"it acknowledged (the last acknowledged write's, or an empty one journaled after it at idle), promotes it in place: it serves the volumes read-write on its nbd address from then on, "+
		"and this site refuses writes (NBD ESHUTDOWN) and starts no more as the primary (duplex rejoin here follows the new primary). "+
		"Writes that arrive during the pause wait; they fail with ESHUTDOWN once the other site took over, and go on if the "+
		"switchover fails or is refused, which changes nothing; if the other site, asked to take over, does not say whether it does, "+
		"they stay held until it says (duplex status shows switchover_in_doubt and the way out). "+
		"Refused while the link is down or a pair is not duplex (deleted included). "+
		"A member of a coupled group ([coupling]) waits for the group's master time to reach that group's time, "+
		"and leaves the group once the other site took over, so that its last time holds no other member's. "+
		"Prints the write pause and the consistency time the other site took over at.")
	path := fs.configFlag("both sites' control addresses and the control token")
	timeout := fs.Duration("timeout", 2*time.Minute, "how long the switchover may take, drain included, `D` such as 90s or 5m; "+
		"past it, it is abandoned and writes resume")
	fs.positiveDuration("timeout")
	if err := fs.parseNoArgs(args, stdout); err != nil {
		return err
	}
	cfg, err := fs.loadConfig(*path)
	if err != nil {
		return err
	}
	if err := fs.needToken(cfg, *path); err != nil {
		return err
	}
	tok, err := token(cfg)
	if err != nil {
		return err
	}
	from, to, at, st, err := runningPrimary(ctx, cfg)
	if err != nil {
		return err
	}
	if st.Link != "connected" {
		return fmt.Errorf("switchover refused, nothing changed: the link to the %s site is %s: the other site cannot take everything", to, st.Link)
	}
	toNBD := cfg.Secondary.NBD
	if to == "primary" {
		toNBD = cfg.Primary.NBD
	}
	toControl, _ := controlOf(cfg, to)
	fmt.Fprintf(stdout, "switchover of session %s from the %s site to the %s site (control %s): draining, then pausing writes\n",
		cfg.Session, from, to, toControl.Addr)
	// The primary gives up at the timeout, then answers: past it, it may
	// wait for the other site's answer, settle a lost one, and wait for
	// the new primary to serve, 30 s each at most.
	sctx, cancel := context.WithTimeout(ctx, *timeout+control.AnswerMargin+2*time.Minute)
	defer cancel()
	res, err := control.Switchover(sctx, at, tok, *timeout)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "switched over: the %s site is the session's primary since %s, serving read-write on NBD %s\n", to, res.PromotedAt, toNBD)
	fmt.Fprintf(stdout, "consistent as of %s (group %d): it holds every write the %s site acknowledged\n", res.ConsistencyTime, res.Group, from)
	fmt.Fprintf(stdout, "write pause: %s (writes held from %s; drain before it, with writes going on: %s)\n",
		seconds(res.PauseSeconds), res.PausedAt, seconds(res.DrainSeconds))
	if res.Warning != "" {
		fmt.Fprintln(stdout, "warning:", res.Warning)
	}
	fmt.Fprintf(stdout, "the %s site refuses writes from now on; stop its daemon, then duplex rejoin --config FILE there makes it the new primary's secondary\n", from)
	return nil
}

func seconds(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(time.Millisecond).String()
}

// runningPrimary finds the site that runs as the session's primary and may
// hand it over: the [primary] section's, or, once it was promoted, the
// [secondary] section's (the switchover back). from names it, to the other.
func runningPrimary(ctx context.Context, cfg *config.Config) (from, to string, at control.Endpoint, st control.Status, err error) {
	var errs []string
	for _, role := range []string{"primary", "secondary"} {
		at, err := controlOf(cfg, role)
		if err != nil {
			return "", "", control.Endpoint{}, control.Status{}, err
		}
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		st, err := control.Fetch(fctx, at)
		cancel()
		other := "secondary"
		if role == "secondary" {
			other = "primary"
		}
		switch {
		case err != nil:
			errs = append(errs, fmt.Sprintf("the %s site's control address %s does not answer (%v)", role, at.Addr, err))
		case st.Starting != nil:
			errs = append(errs, fmt.Sprintf("the %s site: %v", role, startingError(at, st)))
		case st.SwitchedOverAt != "":
			errs = append(errs, fmt.Sprintf("the %s site was switched over at %s: the %s site is the primary since %s", role, st.SwitchedOverAt, st.PrimarySite, st.PrimarySince))
		case st.Role != "primary":
			errs = append(errs, fmt.Sprintf("the %s site at %s runs as the %s", role, at.Addr, st.Role))
		default:
			return role, other, at, st, nil
		}
	}
	return "", "", control.Endpoint{}, control.Status{}, fmt.Errorf("switchover runs at the session's running primary, and neither site is one: %s",
		strings.Join(errs, "; "))
}
