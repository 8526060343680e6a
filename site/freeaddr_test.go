package site

import (
	"testing"

	"duplex/internal/testenv"
)

// TestRestartedSitesListenOnReservedAddresses: the switchover tests stop a
// secondary and start it again on the addresses it bound
// (TestSwitchoverWithAFenceThatStaysHoldsTheWritesUntilARestartUndoesIt),
// and the hand-over tests bind the handed addresses again to see them
// freed. An address of port 0 lies in the kernel's ephemeral range, where
// any process on this shared machine binding port 0 or connecting may take
// it in between, and the bind then fails "address already in use". So these
// rigs' addresses must be reserved ones (testenv.FreeAddr).
func TestRestartedSitesListenOnReservedAddresses(t *testing.T) {
	cfg := switchoverConfig(t)
	h, nbd, ctl := handedListeners(t)
	h.NBD.Close()
	h.Control.Close()
	for _, a := range []string{cfg.Secondary.Listen, cfg.Secondary.Control, cfg.Secondary.NBD, nbd, ctl} {
		testenv.CheckReserved(t, a)
	}
}
