package coupling

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"duplex/disk"
)

// TestADamagedMarkIsNotTakenAsNone: a mark cut short, of the wrong types,
// null or {} is refused, naming the file and what to do, never read as no
// mark (a limit of zero, which forgets what the secondary applied through).
func TestADamagedMarkIsNotTakenAsNone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "coupling.json")
	for _, b := range []string{`{"group":"g","thro`, `{"group":1,"through":"x"}`, `null`, `{}`, ``, "\x00\x00"} {
		if err := os.WriteFile(path, []byte(b), 0o600); err != nil {
			t.Fatal(err)
		}
		_, ok, err := ReadMark(path)
		if err == nil || ok || !errors.Is(err, disk.ErrDamaged) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "put back") {
			t.Errorf("a mark %q: %v, %v; want refused as damaged, naming it", b, ok, err)
		}
	}
	if err := WriteMark(path, Mark{Group: "g", Through: 5}); err != nil {
		t.Fatal(err)
	}
	if m, ok, err := ReadMark(path); err != nil || !ok || m != (Mark{Group: "g", Through: 5}) {
		t.Errorf("a mark written: %+v %v %v", m, ok, err)
	}
}
