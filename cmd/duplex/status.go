package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"duplex/control"
)

func runStatus(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("status", stderr)
	path := fs.String("config", "", "session config `FILE`: query both sites of the session")
	addr := fs.String("addr", "", "control `ADDR` of one site (host:port)")
	asJSON := fs.Bool("json", false, "print JSON (with --config: an array of both sites)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	var addrs []string
	switch {
	case *path != "" && *addr != "":
		fmt.Fprintln(stderr, "status: use --config or --addr, not both")
		return exitUsage
	case *addr != "":
		addrs = []string{*addr}
	case *path != "":
		cfg, code := loadConfig(*path, stderr)
		if cfg == nil {
			return code
		}
		for _, a := range []string{cfg.Primary.Control, cfg.Secondary.Control} {
			if a != "" {
				addrs = append(addrs, a)
			}
		}
		if len(addrs) == 0 {
			fmt.Fprintln(stderr, "status: the config names no control address")
			return exitFailure
		}
	default:
		fmt.Fprintln(stderr, "status: --config FILE or --addr ADDR is required")
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var sts []control.Status
	code := exitOK
	for _, a := range addrs {
		st, err := control.Fetch(ctx, a)
		if err != nil {
			fmt.Fprintln(stderr, "duplex:", err)
			code = exitFailure
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
		return code
	}
	for _, st := range sts {
		printStatus(stdout, st)
	}
	return code
}

func printStatus(w io.Writer, st control.Status) {
	fmt.Fprintf(w, "%s role:%s link:%s\n", st.Session, st.Role, st.Link)
	if st.Stopped != "" {
		fmt.Fprintf(w, "  STOPPED: %s\n", st.Stopped)
	}
	ct := st.ConsistencyTime
	if ct == "" {
		ct = "none yet"
	}
	fmt.Fprintf(w, "  consistency-time:%s lag:%s\n", ct, time.Duration(st.LagSeconds*float64(time.Second)).Round(time.Millisecond))
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
