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
	return pairAddFlags{volumeFlags: f, wait: f.Bool("wait", false, "wait until the copy completes, with a progress bar; ended once it has made no progress for --timeout "+
		"(the link down, a secondary that refuses this primary for now or stays broken, the pair suspended), at once by a refusal that lasts")}
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
