package main

import (
	"context"
	"fmt"
	"io"
)

var versionSynopsis = synopsis{"version", ""}

func runVersion(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags(versionSynopsis, "Prints the version of this binary.")
	if err := fs.parseNoArgs(args, stdout); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "duplex", version)
	return nil
}
