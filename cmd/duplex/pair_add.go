package main

import (
	"context"
	"io"
)

var pairAddSynopsis = synopsis{"pair add", "VOLUME|--all --config FILE [--addr ADDR [--ca FILE]] [--wait] [--timeout D]"}

type pairAddFlags struct {
	volumeFlags
	wait *bool
}

func newPairAddFlags() pairAddFlags {
	f := newVolumeFlags(pairAddSynopsis, "Makes a volume a pair (again, after pair delete): its initial copy runs while writes go on.")
	return pairAddFlags{volumeFlags: f, wait: f.Bool("wait", false, "wait until the copy completes, with a progress bar: through a refusal of the secondary "+
		"that passes by itself (a disk fault it retries, an apply under way) for up to --timeout, ended by one that lasts")}
}

// runPairAdd starts the initial copy of a volume that is not a pair.
func runPairAdd(ctx context.Context, args []string, stdout io.Writer) error {
	f := newPairAddFlags()
	pos, err := f.parse(args, stdout)
	if err != nil {
		return err
	}
	return doVolumeOp(ctx, f.volumeFlags, pos, volumeOp{name: "add", wire: "add", wait: *f.wait}, stdout)
}
