package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"time"

	"duplex/control"
)

var statusSynopsis = synopsis{"status", "(--config FILE | --addr ADDR) [--json]"}

// runStatus prints the status of the sites that the config names, or of the
// one at --addr; it fails if one of them does not answer, having printed
// those that did.
func runStatus(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags(statusSynopsis, "Queries running sites on their control addresses: with --config, both sites of the session.")
	path := fs.configFlag("the control addresses of both sites")
	addr := fs.String("addr", "", "control `ADDR` of one site (host:port, or the status page's URL)")
	asJSON := fs.Bool("json", false, "print JSON (with --config: an array of both sites)")
	if err := fs.parseNoArgs(args, stdout); err != nil {
		return err
	}
	var addrs []string
	switch {
	case *path != "" && *addr != "":
		return fs.usageErrorf("use --config or --addr, not both")
	case *addr != "":
		a, err := controlAddr(*addr)
		if err != nil {
			return fs.usageErrorf("--addr %q: %v", *addr, err)
		}
		addrs = []string{a}
	case *path != "":
		cfg, err := fs.loadConfig(*path)
		if err != nil {
			return err
		}
		for _, a := range []string{cfg.Primary.Control, cfg.Secondary.Control} {
			if a != "" {
				addrs = append(addrs, a)
			}
		}
		if len(addrs) == 0 {
			return errors.New("the config names no control address")
		}
	default:
		return fs.usageErrorf("--config FILE or --addr ADDR is required")
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var sts []control.Status
	var failed []string
	for _, a := range addrs {
		st, err := control.Fetch(ctx, a)
		if err != nil {
			failed = append(failed, err.Error())
			continue
		}
		sts = append(sts, st)
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

// controlAddr returns the host:port of a control address given as
// host:port or as the status page's URL (http://127.0.0.1:7401/, as the
// demo prints it), or says why it is neither.
func controlAddr(s string) (string, error) {
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		switch {
		case err != nil:
			return "", fmt.Errorf("not a URL: %v", err)
		case u.Scheme != "http":
			return "", fmt.Errorf("a control address serves http, not %s: give host:port", u.Scheme)
		case u.Port() == "":
			return "", errors.New("the URL has no port: give host:port, e.g. 127.0.0.1:7401")
		}
		return u.Host, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || port == "" {
		return "", errors.New("want host:port, e.g. 127.0.0.1:7401")
	}
	return net.JoinHostPort(host, port), nil
}

// lagText renders a status lag: "unknown" while the site has no
// consistency time, never a 0 that would pass for a current secondary.
func lagText(seconds *float64) string {
	if seconds == nil {
		return "unknown"
	}
	return time.Duration(*seconds * float64(time.Second)).Round(time.Millisecond).String()
}

func printStatus(w io.Writer, st control.Status) {
	fmt.Fprintf(w, "%s role:%s link:%s\n", st.Session, st.Role, st.Link)
	if st.PromotedAt != "" {
		fmt.Fprintf(w, "  primary-since:%s (promoted; its volumes held the old primary's data as of %s)\n", st.PromotedAt, st.PromotedFrom)
	}
	if st.LastError != "" {
		// Why the link is down, or why the other site was refused.
		if st.LastErrorAt != "" {
			fmt.Fprintf(w, "  last-error: %s (at %s)\n", st.LastError, st.LastErrorAt)
		} else {
			fmt.Fprintf(w, "  last-error: %s\n", st.LastError)
		}
	}
	if st.Stopped != "" {
		fmt.Fprintf(w, "  STOPPED: %s\n", st.Stopped)
	}
	ct := st.ConsistencyTime
	if ct == "" {
		ct = "none yet"
	}
	fmt.Fprintf(w, "  consistency-time:%s lag:%s\n", ct, lagText(st.LagSeconds))
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
	if st.GroupsApplied != nil && st.JournalBytes != nil {
		fmt.Fprintf(w, "  groups-applied:%d journal:%s", *st.GroupsApplied, bytesIEC(*st.JournalBytes))
		if st.Laggard != "" {
			fmt.Fprintf(w, " slowest-subsystem:%s", st.Laggard)
		}
		fmt.Fprintln(w)
	}
	for _, v := range st.Volumes {
		fmt.Fprintf(w, "  %s subsystem:%s state:%s size:%s", v.Name, v.Subsystem, v.State, bytesIEC(v.SizeBytes))
		if v.State == "pending" {
			fmt.Fprintf(w, " copied:%s", bytesIEC(v.CopiedBytes))
		}
		if v.ChangedBytes != nil {
			fmt.Fprintf(w, " changed-since-promotion:%s", bytesIEC(*v.ChangedBytes))
		}
		if v.Auto {
			// Suspended by the session itself: it resumes by itself.
			fmt.Fprintf(w, " auto-suspended:%q", v.Reason)
		}
		if v.Note != "" {
			// Why it does not resume (the secondary's journal has no room).
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
