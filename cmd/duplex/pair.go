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

func runPair(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("pair", stderr)
	path := fs.String("config", "", "session config `FILE` (control address and token)")
	wait := fs.Bool("wait", false, "wait until the operation completes, with a progress bar")
	drain := fs.Bool("drain", false, "suspend: first ship everything already queued")
	all := fs.Bool("all", false, "every volume of the session")
	timeout := fs.Duration("timeout", control.DefaultDrainTimeout, "how long the operation may take; suspend --drain gives up draining in time to answer, and leaves the pairs as they were")
	inconsistent := fs.Bool("inconsistent", false, "resume: accept that the secondary copy is not consistent until the resync completes (when its journal cannot hold the resync)")
	copyRate := fs.String("copy", "", "rate: the copy rate limit `RATE` in bytes per second, with an optional unit (\"50MiB\"); 0: no limit")
	linkRate := fs.String("link", "", "rate: the link rate limit `RATE` in bytes per second, with an optional unit (\"100MiB\"); 0: no limit")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: duplex pair add|suspend|resume|delete VOLUME|--all [--config FILE] [--wait] [--drain] [--timeout D] [--inconsistent]")
		fmt.Fprintln(stderr, "       duplex pair rate [--config FILE] [--copy RATE] [--link RATE] [--timeout D]")
		fs.PrintDefaults()
	}
	flagArgs, pos := splitArgs(args, map[string]bool{"config": true, "timeout": true, "copy": true, "link": true})
	if code, ok := parse(fs, flagArgs); !ok {
		return code
	}
	if len(pos) == 1 && pos[0] == "rate" {
		return runPairRate(*path, *copyRate, *linkRate, *timeout, stdout, stderr)
	}
	if len(pos) > 0 && pos[0] == "rate" {
		fmt.Fprintln(stderr, "pair: rate takes no volume: duplex pair rate --config FILE [--copy RATE] [--link RATE]")
		return exitUsage
	}
	if *copyRate != "" || *linkRate != "" {
		fmt.Fprintln(stderr, "pair: --copy and --link apply to rate only")
		return exitUsage
	}
	if len(pos) < 1 || (len(pos) < 2 && !*all) || len(pos) > 2 || (*all && len(pos) != 1) {
		fs.Usage()
		return exitUsage
	}
	op := pos[0]
	switch op {
	case "add", "suspend", "resume", "delete":
	default:
		fmt.Fprintf(stderr, "pair: unknown operation %q: want add, suspend, resume, delete or rate\n", op)
		return exitUsage
	}
	if *inconsistent && op != "resume" {
		fmt.Fprintln(stderr, "pair: --inconsistent applies to resume only")
		return exitUsage
	}
	if *drain && op != "suspend" {
		fmt.Fprintln(stderr, "pair: --drain applies to suspend only")
		return exitUsage
	}
	if *timeout <= 0 {
		fmt.Fprintln(stderr, "pair: --timeout must be positive")
		return exitUsage
	}
	cfg, code := loadConfig(*path, stderr)
	if cfg == nil {
		return code
	}
	if cfg.Primary.Control == "" {
		fmt.Fprintln(stderr, "pair: the config names no primary control address")
		return exitFailure
	}
	tp := cfg.TokenPath()
	if tp == "" {
		fmt.Fprintln(stderr, "pair: the config names no control_token_file; pair operations need it")
		return exitFailure
	}
	token, err := control.ReadToken(tp)
	if err != nil {
		fmt.Fprintln(stderr, "pair:", err)
		return exitFailure
	}
	vols := pos[1:]
	if *all {
		vols = cfg.VolumeNames()
	}
	for _, vol := range vols {
		if _, _, ok := cfg.PrimaryVolume(vol); !ok {
			fmt.Fprintf(stderr, "pair: no volume %q in session %q: its volumes are %s\n", vol, cfg.Session, strings.Join(cfg.VolumeNames(), ", "))
			return exitUsage
		}
	}
	// The operation never waits without bound; --wait then shows progress
	// until the operator stops it.
	ctx, cancel := context.WithTimeout(context.Background(), *timeout+control.AnswerMargin)
	defer cancel()
	if *all {
		st, err := control.Fetch(ctx, cfg.Primary.Control)
		if err != nil {
			fmt.Fprintln(stderr, "duplex:", err)
			return exitFailure
		}
		vols = applicable(op, vols, st, stdout)
		if op == "suspend" || op == "resume" {
			// One operation at the primary: every pair changes at one point
			// of the common timer, not one after another while writes go on.
			if len(vols) == 0 {
				return exitOK
			}
			res, err := control.AllPairsOp(ctx, cfg.Primary.Control, token, op, *drain)
			if err != nil {
				fmt.Fprintln(stderr, "duplex:", err)
				return exitFailure
			}
			for _, vol := range res.Volumes {
				fmt.Fprintf(stdout, "%s: %s requested\n", vol, op)
			}
			if *wait && op == "resume" {
				return waitDuplex(context.Background(), cfg, res.Volumes, stdout, stderr)
			}
			return exitOK
		}
	}
	for _, vol := range vols {
		wire := op
		if *inconsistent {
			wire = "resume-inconsistent"
		}
		res, err := control.PairOp(ctx, cfg.Primary.Control, token, vol, wire, *drain)
		if err != nil {
			fmt.Fprintln(stderr, "duplex:", err)
			return exitFailure
		}
		switch op {
		case "delete":
			if res.ConsistentAsOf != "" {
				fmt.Fprintf(stdout, "%s: no longer a pair; its secondary copy was last consistent as of %s\n", vol, res.ConsistentAsOf)
			} else {
				fmt.Fprintf(stdout, "%s: no longer a pair; its secondary copy was never consistent\n", vol)
			}
		default:
			fmt.Fprintf(stdout, "%s: %s requested\n", vol, op)
		}
	}
	if *wait && (op == "add" || op == "resume") {
		return waitDuplex(context.Background(), cfg, vols, stdout, stderr)
	}
	return exitOK
}

// runPairRate changes the primary's rate limits, those given, and prints
// both as they now are; with neither, it prints them.
func runPairRate(path, copyText, linkText string, timeout time.Duration, stdout, stderr io.Writer) int {
	if timeout <= 0 {
		fmt.Fprintln(stderr, "pair: --timeout must be positive")
		return exitUsage
	}
	parseRate := func(flag, text string) (*int64, bool) {
		if text == "" {
			return nil, true
		}
		v, err := config.ParseSize(text)
		if err != nil {
			fmt.Fprintf(stderr, "pair rate: --%s: %v\n", flag, err)
			return nil, false
		}
		if v > 0 && v < config.MinRateLimit {
			fmt.Fprintf(stderr, "pair rate: --%s: %s bytes per second is too small: 0 (no limit) or at least %s, e.g. \"50MiB\"\n", flag, v, config.MinRateLimit)
			return nil, false
		}
		n := int64(v)
		return &n, true
	}
	copyRate, ok1 := parseRate("copy", copyText)
	linkRate, ok2 := parseRate("link", linkText)
	if !ok1 || !ok2 {
		return exitUsage
	}
	cfg, code := loadConfig(path, stderr)
	if cfg == nil {
		return code
	}
	if cfg.Primary.Control == "" {
		fmt.Fprintln(stderr, "pair: the config names no primary control address")
		return exitFailure
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var rates control.Rates
	if copyRate == nil && linkRate == nil {
		st, err := control.Fetch(ctx, cfg.Primary.Control)
		if err != nil {
			fmt.Fprintln(stderr, "duplex:", err)
			return exitFailure
		}
		if st.CopyRateLimit != nil {
			rates.Copy = *st.CopyRateLimit
		}
		if st.LinkRateLimit != nil {
			rates.Link = *st.LinkRateLimit
		}
	} else {
		tp := cfg.TokenPath()
		if tp == "" {
			fmt.Fprintln(stderr, "pair: the config names no control_token_file; pair operations need it")
			return exitFailure
		}
		token, err := control.ReadToken(tp)
		if err != nil {
			fmt.Fprintln(stderr, "pair:", err)
			return exitFailure
		}
		if rates, err = control.SetRates(ctx, cfg.Primary.Control, token, copyRate, linkRate); err != nil {
			fmt.Fprintln(stderr, "duplex:", err)
			return exitFailure
		}
	}
	fmt.Fprintf(stdout, "copy rate limit: %s\nlink rate limit: %s\n", rateText(rates.Copy), rateText(rates.Link))
	return exitOK
}

// rateText renders a rate limit for the operator.
func rateText(bps int64) string {
	if bps <= 0 {
		return "none"
	}
	return bytesIEC(bps) + "/s"
}

// applicable returns the volumes of names that op applies to in the
// primary's status st, and says which it leaves as they are: with --all, one
// pair already resumed (the session resumes the pairs it suspended itself)
// or not a pair must not stop the operation on the others.
func applicable(op string, names []string, st control.Status, stdout io.Writer) []string {
	state := map[string]string{}
	for _, v := range st.Volumes {
		state[v.Name] = v.State
	}
	var out []string
	for _, name := range names {
		s, pair := state[name]
		switch {
		case op == "add" && pair:
			fmt.Fprintf(stdout, "%s: already a pair (%s), left as it is\n", name, s)
		case op != "add" && !pair:
			fmt.Fprintf(stdout, "%s: not a pair, left as it is\n", name)
		case op == "resume" && s != "suspended":
			fmt.Fprintf(stdout, "%s: not suspended (%s), left as it is\n", name, s)
		default:
			out = append(out, name)
		}
	}
	return out
}

// splitArgs separates flags (and the values of flags that take one) from
// positional arguments, so flags may follow the volume name.
func splitArgs(args []string, takesValue map[string]bool) (flags, pos []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" {
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if takesValue[name] && !strings.Contains(name, "=") && i+1 < len(args) {
			flags = append(flags, args[i+1])
			i++
		}
	}
	return flags, pos
}

// waitDuplex shows the copy's progress until every volume is duplex.
func waitDuplex(ctx context.Context, cfg *config.Config, vols []string, stdout, stderr io.Writer) int {
	start := time.Now()
	var first int64 = -1
	for {
		fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		st, err := control.Fetch(fctx, cfg.Primary.Control)
		cancel()
		if err != nil {
			fmt.Fprintln(stderr, "\nduplex:", err)
			return exitFailure
		}
		var size, copied, resynced int64
		done := true
		for _, v := range st.Volumes {
			for _, want := range vols {
				if v.Name == want {
					size += v.SizeBytes
					copied += v.CopiedBytes
					resynced += v.ResyncedBytes
					if v.State != "duplex" {
						done = false
					}
				}
			}
		}
		if first < 0 {
			first = copied
		}
		fmt.Fprint(stdout, "\r"+progressLine(copied, size, copied-first, time.Since(start)))
		if done {
			fmt.Fprintf(stdout, "\nduplex; %s copied\n", bytesIEC(resynced))
			return exitOK
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func progressLine(done, total, moved int64, elapsed time.Duration) string {
	const width = 30
	frac := 1.0
	if total > 0 {
		frac = float64(done) / float64(total)
	}
	n := int(frac * width)
	bar := strings.Repeat("=", n) + strings.Repeat(" ", width-n)
	rate := float64(moved) / max(elapsed.Seconds(), 0.001)
	eta := "--"
	if rate > 0 && done < total {
		eta = time.Duration(float64(total-done) / rate * float64(time.Second)).Round(time.Second).String()
	}
	return fmt.Sprintf("[%s] %5.1f%%  %s/%s  %s/s  ETA %s   ", bar, 100*frac, bytesIEC(done), bytesIEC(total), bytesIEC(int64(rate)), eta)
}
