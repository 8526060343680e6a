package secondary

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"duplex/disk"
	"duplex/transport"
)

// identity is what the secondary must remember across restarts about whose
// data it holds, beside the state file: the data generation it follows, the
// fence recover set, and the primary process whose record sets it journaled
// last. It is rewritten atomically, only when one of them changes (a new
// primary process connects, recover fences): never on the data path.
type identity struct {
	// Generation is the history the secondary volumes belong to: the
	// primary's that it follows, or, once fenced, the one recover started
	// here. Zero: a fresh secondary, which adopts the first primary's.
	Generation transport.Generation `json:"generation"`
	// Fenced is when recover took the volumes over (RFC 3339): from then on
	// they may hold writes no primary has, and no primary is accepted.
	Fenced string `json:"fenced,omitempty"`
	// Follows is the primary's generation the volumes followed until the
	// fence: named in refusals so the operator sees where histories split.
	Follows transport.Generation `json:"follows,omitempty"`
	// Instance is the primary process of the last Welcome. Only that process
	// may resend a record set whose first updates are already journaled.
	Instance uint64 `json:"primary_instance,string,omitempty"`
}

// IdentityPath is where a secondary whose state file is statePath keeps its
// identity.
func IdentityPath(statePath string) string {
	return filepath.Join(filepath.Dir(statePath), "identity.json")
}

func readIdentity(fsys disk.FS, path string) (identity, error) {
	var id identity
	b, err := disk.ReadFile(fsys, path)
	if errors.Is(err, os.ErrNotExist) {
		return id, nil
	}
	if err != nil {
		return id, fmt.Errorf("secondary identity %s: %w", path, err)
	}
	if err := json.Unmarshal(b, &id); err != nil {
		return id, fmt.Errorf("secondary identity %s: %w", path, err)
	}
	return id, nil
}

func writeIdentity(fsys disk.FS, path string, id identity) error {
	b, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return fmt.Errorf("secondary identity %s: %w", path, err)
	}
	if err := disk.WriteFileAtomic(fsys, path, append(b, '\n')); err != nil {
		return fmt.Errorf("secondary identity: %w", err)
	}
	return nil
}

// setIdentity persists id and then makes it current; s.mu held. Rare: a new
// primary process, or a fence.
func (s *Secondary) setIdentity(id identity) error {
	if id == s.ident {
		return nil
	}
	if err := writeIdentity(disk.Or(s.cfg.FS), IdentityPath(s.cfg.StatePath), id); err != nil {
		return err
	}
	s.ident = id
	return nil
}
