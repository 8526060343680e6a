package e2e

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"testing"

	"duplex/secondary"
	"duplex/transport"
)

// TestMain doubles as the secondary site's process for crash tests: re-executed
// with DUPLEX_E2E_ROLE=secondary, the test binary runs a secondary until it is
// killed.
func TestMain(m *testing.M) {
	if os.Getenv("DUPLEX_E2E_ROLE") == "secondary" {
		os.Exit(runSecondaryProcess())
	}
	os.Exit(m.Run())
}

func runSecondaryProcess() int {
	dir, addr := os.Getenv("DUPLEX_E2E_DIR"), os.Getenv("DUPLEX_E2E_ADDR")
	blocks, _ := strconv.Atoi(os.Getenv("DUPLEX_E2E_BLOCKS"))
	fatal := func(err error) int {
		fmt.Fprintln(os.Stderr, "secondary process:", err)
		return 1
	}
	_, vols, subs, err := openVolumes(dir, layout.Volumes, blocks)
	if err != nil {
		return fatal(err)
	}
	sec, err := secondary.Open(secondaryConfig(dir, vols, subs))
	if err != nil {
		return fatal(err)
	}
	ln, err := transport.ListenTCP(addr, nil, 0)
	if err != nil {
		return fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	fmt.Println("ready", ln.Addr())
	if err := sec.Run(ctx, ln); err != nil {
		return fatal(err)
	}
	return 0
}
