package main

import (
	"context"
	"io"
)

var pairResumeSynopsis = synopsis{"pair resume", "VOLUME|--all --config FILE [--addr ADDR [--ca FILE]] [--wait] [--inconsistent] [--timeout D]"}

type pairResumeFlags struct {
	volumeFlags
	wait, inconsistent *bool
}

func newPairResumeFlags() pairResumeFlags {
	f := newVolumeFlags(pairResumeSynopsis, "Resumes a suspended pair: it copies only the regions changed while suspended.")
	return pairResumeFlags{volumeFlags: f,
		wait: f.Bool("wait", false, "wait until the resync completes, with a progress bar; ended once it has made no progress for --timeout "+
			"(the link down, a secondary that refuses this primary for now or stays broken, the pair suspended), at once by a refusal that lasts"),
		inconsistent: f.Bool("inconsistent", false, "accept that the secondary copy is not consistent until the resync completes "+
			"(when its journal cannot hold the resync)"),
	}
}

// runPairResume resumes a pair, or every suspended pair at one point of the
// timer.
func runPairResume(ctx context.Context, args []string, stdout io.Writer) error {
	f := newPairResumeFlags()
	pos, err := f.parse(args, stdout)
	if err != nil {
		return err
	}
	op := volumeOp{name: "resume", wire: "resume", wait: *f.wait}
	if *f.inconsistent {
		if *f.all {
			return f.usageErrorf("--inconsistent takes one VOLUME, not --all")
		}
		op.wire = "resume-inconsistent"
	}
	return doVolumeOp(ctx, f.volumeFlags, pos, op, stdout)
}
