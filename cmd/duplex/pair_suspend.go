package main

import (
	"context"
	"io"
)

var pairSuspendSynopsis = synopsis{"pair suspend", "VOLUME|--all --config FILE [--addr ADDR [--ca FILE]] [--drain] [--timeout D]"}

type pairSuspendFlags struct {
	volumeFlags
	drain *bool
}

func newPairSuspendFlags() pairSuspendFlags {
	f := newVolumeFlags(pairSuspendSynopsis, "Stops shadowing a pair after the group in flight; its writes are recorded as changed regions "+
		"until pair resume copies them.")
	return pairSuspendFlags{volumeFlags: f, drain: f.Bool("drain", false, "first ship everything already queued; a drain that does not end within --timeout "+
		"leaves the pairs as they were")}
}

// runPairSuspend suspends a pair, or every pair at one point of the timer.
func runPairSuspend(ctx context.Context, args []string, stdout io.Writer) error {
	f := newPairSuspendFlags()
	pos, err := f.parse(args, stdout)
	if err != nil {
		return err
	}
	return doVolumeOp(ctx, f.volumeFlags, pos, volumeOp{name: "suspend", wire: "suspend", drain: *f.drain}, stdout)
}
