package site

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSecondPrimaryTouchesNoStateFile: a second primary on the config of a
// running one is refused before it writes any file of the pair-state
// directory, with an error naming the directory and the holder's pid, and
// the first one's state is as it was.
func TestSecondPrimaryTouchesNoStateFile(t *testing.T) {
	cfg := linkConfig(t)
	cfg.Primary.Secondary = "127.0.0.1:1" // nothing listens: no link is needed
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	first, err := OpenPrimary(cfg, log, PrimaryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		first.actlog.Close()
		first.close()
	}()
	dir := PairStateDir(cfg)
	before := snapshotDir(t, dir)
	// Modification times have a granularity: a rewrite must show.
	time.Sleep(20 * time.Millisecond)

	second, err := OpenPrimary(cfg, log, PrimaryOptions{})
	if err == nil {
		second.close()
		t.Fatal("a second primary opened the pair state of a running one")
	}
	t.Logf("refused: %v", err)
	for _, want := range []string{dir, fmt.Sprintf("pid %d", os.Getpid())} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	after := snapshotDir(t, dir)
	for name, was := range before {
		if now, ok := after[name]; !ok {
			t.Errorf("%s was removed", name)
		} else if now != was {
			t.Errorf("%s was written: %s, then %s", name, was, now)
		}
	}
	for name := range after {
		if _, ok := before[name]; !ok {
			t.Errorf("%s was created", name)
		}
	}
}

// snapshotDir names each file of dir with its size, modification time and
// content.
func snapshotDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = fmt.Sprintf("%d bytes at %s, %q", fi.Size(), fi.ModTime().Format(time.RFC3339Nano), data)
	}
	return out
}
