package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"duplex/config"
	"duplex/control"
)

var pairRateSynopsis = synopsis{"pair rate", "--config FILE [--addr ADDR [--ca FILE]] [--copy RATE] [--link RATE] [--timeout D]"}

type pairRateFlags struct {
	pairFlags
	copyRate, linkRate *string
}

func newPairRateFlags() pairRateFlags {
	f := newPairFlags(pairRateSynopsis, "Changes the running primary's rate limits, those given, and prints both as they now are; "+
		"with neither, it prints them. The config file is not changed: a restart takes its values again.")
	return pairRateFlags{pairFlags: f,
		copyRate: f.String("copy", "", "the copy rate limit `RATE` in bytes per second, with an optional unit (\"50MiB\"); 0: no limit"),
		linkRate: f.String("link", "", "the link rate limit `RATE` in bytes per second, with an optional unit (\"100MiB\"); 0: no limit"),
	}
}

// runPairRate changes the primary's rate limits, or prints them.
func runPairRate(ctx context.Context, args []string, stdout io.Writer) error {
	f := newPairRateFlags()
	f.negativeArg = f.rateArg
	pos, err := f.parse(args, stdout)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return f.rateArg(pos[0])
	}
	// Given is told from empty by the flags set: an empty value (a
	// script's --copy "$RATE" with RATE unset) is a bad value, not a flag
	// left out.
	given := map[string]bool{}
	f.Visit(func(fl *flag.Flag) { given[fl.Name] = true })
	copyRate, err := f.rate("copy", *f.copyRate, given["copy"])
	if err != nil {
		return err
	}
	linkRate, err := f.rate("link", *f.linkRate, given["link"])
	if err != nil {
		return err
	}
	cfg, err := f.session()
	if err != nil {
		return err
	}
	if copyRate != nil || linkRate != nil {
		if err := f.needToken(cfg, *f.config); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, *f.timeout)
	defer cancel()
	at, err := f.target(ctx, cfg, stdout)
	if err != nil {
		return err
	}
	at.Session = cfg.Session
	var rates control.Rates
	if copyRate == nil && linkRate == nil {
		st, err := fetchPrimary(ctx, at, cfg.Session)
		if err != nil {
			return err
		}
		if st.CopyRateLimit != nil {
			rates.Copy = *st.CopyRateLimit
		}
		if st.LinkRateLimit != nil {
			rates.Link = *st.LinkRateLimit
		}
	} else {
		tok, err := token(cfg)
		if err != nil {
			return err
		}
		if rates, err = control.SetRates(ctx, at, tok, copyRate, linkRate); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "copy rate limit: %s\nlink rate limit: %s\n", rateText(rates.Copy), rateText(rates.Link))
	return nil
}

// rateArg is the error of an argument given to pair rate, which takes
// none: one that reads as a rate ("pair rate 50MiB", "pair rate -5") was
// meant as one, and is told how rates are given, and why a negative one
// is none; another is told that rate takes no volume.
func (f pairRateFlags) rateArg(arg string) error {
	how := "give a rate with --copy RATE or --link RATE, in bytes per second with an optional unit (\"50MiB\"), 0 for no limit"
	if negativeNumber.MatchString(arg) {
		return f.usageErrorf("%q is not a valid rate: a negative number; %s", arg, how)
	}
	if _, err := config.ParseSize(arg); err == nil {
		return f.usageErrorf("%q: a rate is not an argument: %s", arg, how)
	}
	return f.usageErrorf("rate takes no volume: duplex %s %s", pairRateSynopsis.path, pairRateSynopsis.args)
}

// rate parses the value of --copy or --link: nil when not given.
func (f pairRateFlags) rate(flag, text string, given bool) (*int64, error) {
	if !given {
		return nil, nil
	}
	v, err := config.ParseSize(text)
	if err != nil {
		// The size's error names the value as the flag's does: once.
		return nil, f.usageErrorf("--%s %q: %s", flag, text, strings.TrimPrefix(err.Error(), fmt.Sprintf("size %q: ", text)))
	}
	if v > 0 && v < config.MinRateLimit {
		return nil, f.usageErrorf("--%s %q: too small: 0 (no limit) or at least %s a second, e.g. \"50MiB\"", flag, text, config.MinRateLimit)
	}
	n := int64(v)
	return &n, nil
}

// rateText renders a rate limit for the operator.
func rateText(bps int64) string {
	if bps <= 0 {
		return "none"
	}
	return bytesIEC(bps) + "/s"
}
