package secondary

import (
	"fmt"
	"path/filepath"

	"duplex/apply"
	"duplex/disk"
	"duplex/transport"
)

// Seed writes the state file and the identity of a secondary that has
// never run, to start from st following generation gen: an old primary
// that rejoins the promoted site (package failover) starts with its
// volumes as they are, each suspended as of the promotion's consistency
// time, following the promoted site's generation, so that the resync
// which copies the regions either site changed is held (the volumes stay
// as they are until it ends) as every resync is. The identity is written
// first: a state file never names a generation's volumes without it.
func Seed(fsys disk.FS, statePath string, st apply.State, gen transport.Generation) error {
	fsys = disk.Or(fsys)
	if err := fsys.MkdirAll(filepath.Dir(statePath), 0o755); err != nil {
		return fmt.Errorf("secondary state: %w", err)
	}
	if err := writeIdentity(fsys, IdentityPath(statePath), identity{Generation: gen}); err != nil {
		return err
	}
	return apply.WriteStateFS(fsys, statePath, st)
}
