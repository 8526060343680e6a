package e2e

import (
	"testing"

	"duplex/internal/testenv"
)

// TestRestartedDaemonsListenOnReservedAddresses: a daemon session's
// daemons are killed -9 and started again (restartPrimary), stopped and
// promoted or rejoined, and each time bind the session's addresses again.
// An address of port 0, written back as the daemon bound it, lies in the
// kernel's ephemeral range: between the kill and the restart any process on
// this shared machine that binds port 0 or connects may take it, and the
// daemon then fails "bind: address already in use". The session's
// listeners must be reserved ones (testenv.FreeAddr).
func TestRestartedDaemonsListenOnReservedAddresses(t *testing.T) {
	t.Parallel()
	s := newSession(t, sessionOpts{})
	c := s.cfg
	for _, a := range []string{c.Primary.NBD, c.Primary.Control, c.Primary.Secondary, c.Secondary.Listen, c.Secondary.Control, c.Secondary.NBD} {
		testenv.CheckReserved(t, a)
	}
}
