package site

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"duplex/coupling"
)

// damages are what a record of the site's may hold instead of what it
// wrote: cut short, bytes of something else, a JSON value of the wrong
// shape or types, and values that decode to nothing (the zero record, as
// if the file were not there).
var damages = []struct {
	name  string
	spoil func(b []byte) []byte
}{
	{"truncated", func(b []byte) []byte { return b[:len(b)/2] }},
	{"zeros", func(b []byte) []byte { return make([]byte, len(b)) }},
	{"garbage", func([]byte) []byte { return []byte("\x89PNG\r\n\x1a\n not a record") }},
	{"wrong types", func([]byte) []byte {
		return []byte(`{"session": 7, "applied_group": "x", "generation": [1], "through": 3, "volumes": 1}`)
	}},
	{"an array", func([]byte) []byte { return []byte(`[{"id": "x"}]`) }},
	{"null", func([]byte) []byte { return []byte("null\n") }},
	{"an empty object", func([]byte) []byte { return []byte("{}\n") }},
	{"empty", func([]byte) []byte { return nil }},
}

// secondaryRecords are the records beside a secondary's journal that it
// reads as it opens, and what each holds of the written file the test
// damages (nil: the test writes one).
func secondaryRecords(r *retrying) map[string][]byte {
	dir := filepath.Dir(StatePath(r.cfg))
	return map[string][]byte{
		StatePath(r.cfg):                     nil,
		filepath.Join(dir, "identity.json"):  nil,
		filepath.Join(dir, promoteEndedFile): []byte(`[{"id":"r1","why":"cancelled by the primary"}]` + "\n"),
	}
}

// TestADamagedRecordOfASecondaryStopsItsStart: a secondary whose state
// file, identity or record of the promotions it refused is damaged (cut
// short, overwritten, a JSON value of another shape) refuses to start,
// naming the file, saying it is damaged and what to do; none is taken as
// missing (a new session's secondary, which would forget the applied
// group, the volumes' pair states, the fence or the refusals), and none
// panics.
func TestADamagedRecordOfASecondaryStopsItsStart(t *testing.T) {
	r := retryingForGood(t, 50*time.Millisecond)
	r.stop()
	if err := <-r.ended; err != nil {
		t.Logf("RunSecondary: %v", err)
	}
	r.in.Clear()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for path, written := range secondaryRecords(r) {
		b := written
		if b == nil {
			var err error
			if b, err = os.ReadFile(path); err != nil {
				t.Fatal(err)
			}
		}
		for _, d := range damages {
			t.Run(filepath.Base(path)+"/"+d.name, func(t *testing.T) {
				if err := os.WriteFile(path, d.spoil(b), 0o600); err != nil {
					t.Fatal(err)
				}
				defer os.WriteFile(path, b, 0o600)
				s, err := OpenSecondary(r.cfg, log, SecondaryOptions{})
				if err == nil {
					s.Close()
					t.Fatalf("the secondary started with %s %s", path, d.name)
				}
				t.Logf("%v", err)
				for _, w := range []string{path, "damaged", "put back"} {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("the error does not say %q", w)
					}
				}
				if lasting(err) == "" {
					t.Errorf("an attempt to open again after a disk fault that met it would try again")
				}
			})
		}
	}
}

// TestADamagedJoinOwedIsWrittenAnew: the record that a secondary a rejoin
// made owes its coupled group a join is read only for being there, and
// holds the config's group and session: damaged, it is written anew and
// the join made, rather than the start refused; the session becomes a
// member and the record goes.
func TestADamagedJoinOwedIsWrittenAnew(t *testing.T) {
	store := coupling.NewMemStore()
	cfg := coupledConfig(t, "joining")
	if err := os.MkdirAll(filepath.Dir(joinPath(cfg)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(joinPath(cfg), []byte(`{"group": "g", "memb`), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	_, _, prim, _, _ := linkSites(t, cfg, slog.New(slog.NewTextHandler(logs, nil)), SecondaryOptions{CouplingStore: store})
	if len(logs.lines("join owed", "damaged", joinPath(cfg))) == 0 {
		t.Errorf("the log does not say the record of the join owed was damaged:\n%s", logs)
	}
	if err := prim.Write(context.Background(), "vol1", bytes.Repeat([]byte{0x5a}, 4096), 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the session a member of its group, no join owed", func() bool {
		v, err := store.Read(context.Background())
		_, owed, rerr := readOwed(nil, joinPath(cfg))
		return err == nil && slices.Contains(v.Members, "joining") && !owed && rerr == nil
	})
}
