package main

import (
	"context"
	"io"
)

var pairDeleteSynopsis = synopsis{"pair delete", "VOLUME|--all --config FILE [--addr ADDR [--ca FILE]] [--timeout D]"}

func newPairDeleteFlags() volumeFlags {
	return newVolumeFlags(pairDeleteSynopsis, "Stops shadowing a volume for good; it prints when the secondary copy was last consistent.")
}

// runPairDelete ends a pair.
func runPairDelete(ctx context.Context, args []string, stdout io.Writer) error {
	f := newPairDeleteFlags()
	pos, err := f.parse(args, stdout)
	if err != nil {
		return err
	}
	return doVolumeOp(ctx, f, pos, volumeOp{name: "delete", wire: "delete"}, stdout)
}
