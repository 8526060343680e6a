package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"duplex/control"
)

var statusSynopsis = synopsis{"status", "(--config FILE | --addr ADDR [--ca FILE]) [--json]"}

// runStatus prints the status of the sites that the config names, or of the
// one at --addr; it fails if one of them does not answer, or answers that
// it starts, having printed those that did.
func runStatus(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags(statusSynopsis, "Queries running sites on their control addresses: with --config, both sites of the session. "+
		"A site answers from right after it took its lock: while it starts, STARTING and what the start waits for, and how long. "+
		"Exits 0 once every site asked runs, whatever the state of its pairs and link (suspended, lagging, disconnected: the output says); "+
		"1 if one does not answer or is still starting (its state not read yet), having printed every status it got.")
	path := fs.configFlag("the control addresses of both sites")
	addr := fs.String("addr", "", "control `ADDR` of one site: host:port, or its URL (https://host:port for a site with control_tls_cert)")
	caFile := fs.String("ca", "", "with --addr: check the site's HTTPS certificate against the CA in `FILE` (PEM; default the system's roots)")
	asJSON := fs.Bool("json", false, "print JSON (with --config: an array of both sites)")
	if err := fs.parseNoArgs(args, stdout); err != nil {
		return err
	}
	var addrs []control.Endpoint
	var keys []string // with --config, the key that gives each of addrs
	switch {
	case *path != "" && *addr != "":
		return fs.usageErrorf("use --config or --addr, not both")
	case *caFile != "" && *addr == "":
		return fs.usageErrorf("--ca goes with --addr: with --config, control_tls_ca names the CA")
	case *addr != "":
		var tlsConf *tls.Config
		if *caFile != "" {
			pool, err := loadCAFile(fs.syn.path, *caFile)
			if err != nil {
				return err
			}
			tlsConf = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		at, err := control.ParseEndpoint(*addr, tlsConf)
		if err != nil {
			return fs.usageErrorf("--addr: %v", err)
		}
		addrs = []control.Endpoint{at}
	case *path != "":
		cfg, err := fs.loadConfig(*path)
		if err != nil {
			return err
		}
		for _, role := range []string{"primary", "secondary"} {
			if at, err := controlOf(cfg, role); err != nil {
				return err
			} else if at.Addr != "" {
				addrs = append(addrs, at)
				keys = append(keys, role+".control")
			}
		}
		if len(addrs) == 0 {
			return fs.configLacks(*path, "names no control address: give primary.control or secondary.control there, or --addr ADDR")
		}
	default:
		return fs.usageErrorf("--config FILE or --addr ADDR is required")
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var sts []control.Status
	var failed []string
	for i, a := range addrs {
		st, err := control.Fetch(ctx, a)
		switch {
		case errors.Is(err, control.ErrNBDAddress) && keys == nil:
			return fs.usageErrorf("--addr %s %v (it answered with NBD's greeting): give the site's control address, "+
				"its config's primary.control or secondary.control (or --config FILE, for both)", *addr, control.ErrNBDAddress)
		case errors.Is(err, control.ErrWrongScheme) && keys == nil:
			return &usageError{cmd: fs.syn.path, err: fmt.Errorf("--addr %s: %w", *addr, err)}
		case errors.Is(err, control.ErrNBDAddress):
			failed = append(failed, fmt.Sprintf("%s: its %s, %s, %v (it answered with NBD's greeting): give the site's control address there",
				*path, keys[i], a.Addr, control.ErrNBDAddress))
			continue
		case err != nil:
			failed = append(failed, err.Error())
			continue
		}
		sts = append(sts, st)
		if st.Starting != nil {
			// Its status says nothing of its volumes yet: not a site
			// that runs, as when it did not answer.
			failed = append(failed, startingSite(a, st)+": its state is not read yet")
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if *path != "" {
			if sts == nil {
				sts = []control.Status{}
			}
			enc.Encode(sts)
		} else if len(sts) == 1 {
			enc.Encode(sts[0])
		}
	} else {
		for _, st := range sts {
			printStatus(stdout, st)
		}
	}
	if failed != nil {
		return errors.New(strings.Join(failed, "; "))
	}
	return nil
}

// fetchRunning is control.Fetch for a command that acts on what the
// status says: a site that starts has not read its state yet, and its
// status says nothing of it; that is the error.
func fetchRunning(ctx context.Context, at control.Endpoint) (control.Status, error) {
	st, err := control.Fetch(ctx, at)
	if err == nil && st.Starting != nil {
		return st, startingError(at, st)
	}
	return st, err
}

// startingError says that the site at at, whose status is st, starts.
func startingError(at control.Endpoint, st control.Status) error {
	return fmt.Errorf("not yet: %s: run the command again once it runs (duplex status)", startingSite(at, st))
}

// startingSite says that the site at at, whose status is st, starts, and
// what its start waits for.
func startingSite(at control.Endpoint, st control.Status) string {
	return fmt.Sprintf("the %s at %s %s", st.Role, at.Addr, isStarting(st))
}

// isStarting says that a site whose status is st starts, and what its
// start waits for.
func isStarting(st control.Status) string {
	s := st.Starting
	what := ""
	if s.Step != "" {
		what = fmt.Sprintf(", waiting for %s for %.0fs", s.Step, s.StepSeconds)
	}
	return fmt.Sprintf("is starting (since %s%s)", s.Since, what)
}

// loadCAFile reads the PEM certificates of a CA given on the command line
// to the command at path ("status", "pair add"). A file missing,
// unreadable or holding no certificate is the command called the wrong
// way, as a bad flag value is, and refused before anything is sent.
func loadCAFile(cmd, path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, &usageError{cmd: cmd, err: fmt.Errorf("--ca: %w", err)}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, &usageError{cmd: cmd, err: fmt.Errorf("--ca: %s holds no PEM certificate: give the CA's certificate, PEM-encoded", path)}
	}
	return pool, nil
}

// lagText renders a status lag: "unknown" while the site has no
// consistency time, never a 0 that would pass for a current secondary.
func lagText(seconds *float64) string {
	if seconds == nil {
		return "unknown"
	}
	return time.Duration(*seconds * float64(time.Second)).Round(time.Millisecond).String()
}

// refusedNow says whether the primary whose status is st is refused by its
// secondary: refused says so, every pair suspended too; a primary before
// it says so in refusal_passes of a passing refusal, and in each pair not
// suspended of either.
func refusedNow(st control.Status) bool {
	return st.Refused || st.RefusalPasses || slices.ContainsFunc(st.Volumes, func(v control.VolumeStatus) bool {
		return strings.HasPrefix(v.Note, control.RefusedNote)
	})
}

func printStatus(w io.Writer, st control.Status) {
	fmt.Fprintf(w, "%s role:%s link:%s\n", st.Session, st.Role, st.Link)
	if s := st.Starting; s != nil {
		// Nothing else is known until the state is read.
		fmt.Fprintf(w, "  STARTING since %s: its state is not read yet, and it takes no command until it runs\n", s.Since)
		if s.Step != "" {
			fmt.Fprintf(w, "  waiting for %s for %s (since %s)\n",
				s.Step, time.Duration(s.StepSeconds*float64(time.Second)).Round(100*time.Millisecond), s.StepSince)
		}
		return
	}
	if st.SwitchedOverAt != "" {
		fmt.Fprintf(w, "  switched-over:%s (the session's primary is the %s site since %s; this site takes no writes)\n", st.SwitchedOverAt, st.PrimarySite, st.PrimarySince)
	}
	switch {
	case st.PromotedAt != "" && st.Role == "secondary":
		// An old primary that rejoined the promoted site.
		fmt.Fprintf(w, "  rejoined: the other site is primary since %s (promoted; its volumes held this site's data as of %s)\n", st.PromotedAt, st.PromotedFrom)
	case st.PromotedAt != "":
		fmt.Fprintf(w, "  primary-since:%s (promoted; its volumes held the old primary's data as of %s)\n", st.PromotedAt, st.PromotedFrom)
	}
	if st.NoPairs != "" {
		// Its role and a suspended link alone read as a primary whose
		// pairs are suspended; it holds none, and says what brings
		// replication back.
		fmt.Fprintf(w, "  NO-PAIRS: %s\n", st.NoPairs)
	}
	if st.LastError != "" {
		// Why the link is down, or why the other site was refused.
		if st.LastErrorAt != "" {
			fmt.Fprintf(w, "  last-error: %s (at %s)\n", st.LastError, st.LastErrorAt)
		} else {
			fmt.Fprintf(w, "  last-error: %s\n", st.LastError)
		}
	}
	if refusedNow(st) {
		// The notes and last-error read the same whether the refusal
		// passes or lasts: whether to wait or to act is this line's.
		if st.RefusalPasses {
			fmt.Fprintln(w, "  REFUSED (passing: the secondary takes this primary again by itself; retrying)")
		} else {
			fmt.Fprintln(w, "  REFUSED (lasting: an operator must act; last-error says the ways on)")
		}
	}
	if st.Stopped != "" {
		fmt.Fprintf(w, "  STOPPED: %s\n", st.Stopped)
	}
	if st.GroupsWait != "" {
		fmt.Fprintf(w, "  GROUPS-WAIT: %s\n", st.GroupsWait)
	}
	if st.CheckpointOwed != "" {
		fmt.Fprintf(w, "  CHECKPOINT-OWED: %s\n", st.CheckpointOwed)
	}
	if r := st.DiskRetry; r != nil {
		fmt.Fprintf(w, "  RETRYING: attempt %d at %s: opens its journal and volumes again, as a restart does\n", r.Attempt, r.Next)
	}
	if st.DiskWait != "" {
		fmt.Fprintf(w, "  DISK-WAIT: %s\n", st.DiskWait)
	}
	ct := st.ConsistencyTime
	if ct == "" {
		ct = "none yet"
	}
	fmt.Fprintf(w, "  consistency-time:%s lag:%s\n", ct, lagText(st.LagSeconds))
	if st.LinkAckAgeSeconds != nil {
		// The link's state alone stays "connected" behind a partition
		// that drops every packet, until the silence time.
		fmt.Fprintf(w, "  link-acked:%s ago\n", lagText(st.LinkAckAgeSeconds))
	}
	if st.JournaledTime != "" {
		fmt.Fprintf(w, "  journaled-time:%s (journaled and acknowledged at the secondary, held unapplied by a resync or the coupled group's master time: "+
			"it recovers to consistency-time)\n", st.JournaledTime)
	}
	if st.SidefileBytes != nil && st.SidefileLimitBytes != nil {
		fmt.Fprintf(w, "  sidefile:%s/%s", bytesIEC(*st.SidefileBytes), bytesIEC(*st.SidefileLimitBytes))
		if st.Resends > 0 {
			fmt.Fprintf(w, " resends:%d", st.Resends)
		}
		fmt.Fprintln(w)
	}
	if st.CopyRateLimit != nil || st.LinkRateLimit != nil {
		var c, l int64
		if st.CopyRateLimit != nil {
			c = *st.CopyRateLimit
		}
		if st.LinkRateLimit != nil {
			l = *st.LinkRateLimit
		}
		fmt.Fprintf(w, "  copy-rate-limit:%s link-rate-limit:%s\n", rateText(c), rateText(l))
	}
	if st.Compression != "" {
		fmt.Fprintf(w, "  compression:%s", st.Compression)
		if st.CompressionRatio != nil {
			fmt.Fprintf(w, " ratio:%.2f", *st.CompressionRatio)
		}
		fmt.Fprintln(w)
	}
	if st.BurstWaitSeconds != nil {
		wait := "off"
		if *st.BurstWaitSeconds > 0 {
			wait = time.Duration(*st.BurstWaitSeconds * float64(time.Second)).Round(time.Microsecond).String()
		}
		fmt.Fprintf(w, "  burst-wait:%s\n", wait)
	}
	if st.ActivityLogOff != "" {
		fmt.Fprintf(w, "  activity-log:off (%s)\n", st.ActivityLogOff)
	}
	for _, vol := range slices.Sorted(maps.Keys(st.ActivityLogFlushSeconds)) {
		fmt.Fprintf(w, "  activity-log:flushing %s for %s\n", vol, time.Duration(st.ActivityLogFlushSeconds[vol]*float64(time.Second)).Round(time.Second))
	}
	if st.GroupsApplied != nil && st.JournalBytes != nil {
		fmt.Fprintf(w, "  groups-applied:%d journal:%s", *st.GroupsApplied, bytesIEC(*st.JournalBytes))
		if st.Laggard != "" {
			fmt.Fprintf(w, " slowest-subsystem:%s", st.Laggard)
		}
		fmt.Fprintln(w)
	}
	if c := st.Coupling; c != nil {
		mt := c.MasterTime
		if mt == "" {
			mt = "unknown"
		}
		fmt.Fprintf(w, "  coupled-group:%s members:%s master-time:%s applied-through:%s gated-groups:%d\n",
			c.Group, strings.Join(c.Members, ","), mt, cmp.Or(c.AppliedThrough, "none yet"), c.GatedGroups)
		if c.Laggard != "" {
			gone := ""
			if c.LaggardGone {
				gone = " (gone: its lease of life expired)"
			}
			fmt.Fprintf(w, "  laggard:%s silent:%.1fs%s\n", c.Laggard, c.LaggardSilentSeconds, gone)
		}
		if c.Held != "" {
			fmt.Fprintf(w, "  master-time-held: %s (since %s)\n", c.Held, c.HeldSince)
		}
		if c.AddUnfinished != "" {
			fmt.Fprintf(w, "  add-unfinished: %s\n", c.AddUnfinished)
		}
		if c.JournalFullSince != "" {
			fmt.Fprintf(w, "  journal-full: the gated groups leave no room for another; acknowledging nothing until they are applied or there is room (since %s)\n",
				c.JournalFullSince)
		}
		if c.RecoveryTime != "" {
			fmt.Fprintf(w, "  coupled-recovery-time:%s\n", c.RecoveryTime)
		}
	}
	if st.HistoryBytes != nil {
		if st.HistoryOldest != "" {
			fmt.Fprintf(w, "  history:%s to %s", st.HistoryOldest, st.HistoryNewest)
		} else {
			fmt.Fprint(w, "  history:none yet")
		}
		fmt.Fprintf(w, " (%s)\n", bytesIEC(*st.HistoryBytes))
		if st.HistoryOverLimit != "" {
			fmt.Fprintf(w, "  history over its limit: %s\n", st.HistoryOverLimit)
		}
	}
	if d := st.Drill; d != nil {
		fmt.Fprintf(w, "  drill:%s as of %s (group %d), its writes %s and the before images it needs %s of drill_bytes %s, their index %s in memory (duplex drill stop discards them)\n",
			d.NBD, d.ConsistencyTime, d.Group, bytesIEC(d.ScratchBytes), bytesIEC(d.BeforeImageBytes), bytesIEC(d.ScratchLimitBytes), bytesIEC(d.IndexBytes))
		if d.Failed != "" {
			fmt.Fprintf(w, "  drill failed: %s\n", d.Failed)
		}
	}
	if st.DrillEnded != "" {
		fmt.Fprintf(w, "  drill ended: %s\n", st.DrillEnded)
	}
	for _, v := range st.Volumes {
		fmt.Fprintf(w, "  %s subsystem:%s state:%s size:%s", v.Name, v.Subsystem, v.State, bytesIEC(v.SizeBytes))
		switch {
		case v.State == "pending" && v.CopyEndAwaitsSecondary && v.CopyBytes != nil:
			fmt.Fprintf(w, " copy:%s read, its end awaits the secondary", bytesIEC(*v.CopyBytes))
		case v.State == "pending" && v.CopyBytes != nil && v.CopyLeftBytes != nil:
			fmt.Fprintf(w, " copy:%s left of %s", bytesIEC(*v.CopyLeftBytes), bytesIEC(*v.CopyBytes))
		case v.State == "pending":
			// A daemon from before copy_bytes, or the secondary's
			// status: what it has.
			fmt.Fprintf(w, " copied:%s", bytesIEC(v.CopiedBytes))
		}
		if v.ChangedBytes != nil {
			fmt.Fprintf(w, " changed-since-promotion:%s", bytesIEC(*v.ChangedBytes))
		}
		switch {
		case v.Auto:
			// Suspended by the session itself: it resumes by itself.
			fmt.Fprintf(w, " auto-suspended:%q", v.Reason)
		case v.Reason != "" && v.State == "suspended":
			// Suspended by the session, for the operator to resume (a
			// copy's read of the primary volume hung).
			fmt.Fprintf(w, " suspended-by-session:%q", v.Reason)
		}
		if v.RejoinOwed {
			// Its resume waits for the old primary's rejoin; the note
			// says what to do.
			fmt.Fprint(w, " awaiting-rejoin")
		}
		if v.Note != "" {
			// Why it does not resume (the secondary's journal has no room),
			// or why its copy does not go on (its last try failed).
			fmt.Fprintf(w, " waiting:%q", v.Note)
		}
		fmt.Fprintln(w)
	}
}

func bytesIEC(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
