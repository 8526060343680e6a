package site

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"duplex/disk"
	"duplex/journal"
	"duplex/secondary"
	"duplex/volume"
)

// TestASecondaryStopsOnWhatNoRetryCanChange: a secondary retrying after a
// disk fault whose next attempt finds something no retry can change (a
// volume of another size than the session's, a journal damaged beyond a
// torn tail, a state file of another session) stops retrying: RunSecondary
// returns an error that says what was found and what to do, for the
// daemon to exit with it and its supervisor to see, rather than try again
// for ever while the disk's error, long gone, hides the real one.
func TestASecondaryStopsOnWhatNoRetryCanChange(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spoil func(t *testing.T, r *retrying)
		want  []string // in RunSecondary's error
	}{
		{"a volume of another size", func(t *testing.T, r *retrying) {
			if err := os.Truncate(r.cfg.Secondary.Volumes[1].Path, 3<<20); err != nil {
				t.Fatal(err)
			}
		}, []string{"3145728 bytes", "no retry can change"}},
		{"a journal damaged beyond a torn tail", func(t *testing.T, r *retrying) {
			segs, err := filepath.Glob(filepath.Join(r.cfg.Secondary.Journal, "*"))
			if err != nil || len(segs) == 0 {
				t.Fatalf("the journal's segments: %v %v", segs, err)
			}
			slices.Sort(segs)
			f, err := os.OpenFile(segs[0], os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt([]byte("XXXX"), 0); err != nil {
				t.Fatal(err)
			}
		}, []string{"journal corrupt", "no retry can change"}},
		{"a state file of another session", func(t *testing.T, r *retrying) {
			path := StatePath(r.cfg)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var st map[string]any
			if err := json.Unmarshal(b, &st); err != nil {
				t.Fatal(err)
			}
			st["session"] = "another"
			if b, err = json.Marshal(st); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}, []string{"belongs to session", "no retry can change"}},
		{"a state file cut short", func(t *testing.T, r *retrying) {
			b, err := os.ReadFile(StatePath(r.cfg))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(StatePath(r.cfg), b[:len(b)/2], 0o600); err != nil {
				t.Fatal(err)
			}
		}, []string{"state.json", "damaged", "no retry can change"}},
		{"an identity of the wrong types", func(t *testing.T, r *retrying) {
			if err := os.WriteFile(secondary.IdentityPath(StatePath(r.cfg)), []byte(`{"generation": "x", "fenced": 1}`), 0o600); err != nil {
				t.Fatal(err)
			}
		}, []string{"identity.json", "damaged", "no retry can change"}},
		{"a record of the promotions refused overwritten", func(t *testing.T, r *retrying) {
			path := filepath.Join(filepath.Dir(StatePath(r.cfg)), promoteEndedFile)
			if err := os.WriteFile(path, []byte("\x00\x00\x00\x00"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, []string{"promote-ended.json", "damaged", "no retry can change"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := retryingForGood(t, 50*time.Millisecond)
			tc.spoil(t, r)
			// The disk works again: only what was spoiled keeps the
			// secondary from opening.
			r.in.Clear()
			select {
			case err := <-r.ended:
				if err == nil {
					t.Fatalf("RunSecondary ended with nil, want the error no retry can change")
				}
				t.Logf("RunSecondary: %v", err)
				for _, w := range tc.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("RunSecondary's error does not say %q", w)
					}
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("RunSecondary still retries 10 s after the secondary was spoiled: %d attempts failed; the last:\n%s",
					len(r.logs.lines("opening again after a disk fault failed")), last(r.logs.lines("opening again after a disk fault failed")))
			}
		})
	}
}

func last(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	return lines[len(lines)-1]
}

// TestAVolumeGoneWhileASecondaryRetriesIsWaitedFor: a volume image that
// is not there when the secondary opens again after a disk fault (its
// file system not mounted again yet) is neither created again, empty, for
// the journal's groups since the last checkpoint to be applied over
// zeros, nor a reason to stop: the attempts go on, saying the volume is
// gone, and once it is back the secondary opens and runs.
func TestAVolumeGoneWhileASecondaryRetriesIsWaitedFor(t *testing.T) {
	r := retryingForGood(t, 50*time.Millisecond)
	path := r.cfg.Secondary.Volumes[1].Path
	aside := path + ".aside"
	if err := os.Rename(path, aside); err != nil {
		t.Fatal(err)
	}
	r.in.Clear()
	waitFor(t, 30*time.Second, "attempts that say the volume is gone", func() bool {
		return len(r.logs.lines("opening again after a disk fault failed", "is gone")) >= 3
	})
	if _, err := os.Stat(path); err == nil {
		t.Fatalf("an attempt to open again created %s, which the secondary held, again", path)
	}
	if err := os.Rename(aside, path); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the secondary open again once the volume is back", func() bool {
		return len(r.logs.lines("opened again after a disk fault")) > 0
	})
	select {
	case err := <-r.ended:
		t.Fatalf("RunSecondary ended: %v", err)
	default:
	}
}

// TestWhatARetryMayChange: which failed attempts to open a secondary again
// are tried again (the disk's answers, which may heal) and which stop it
// (what the attempt read is wrong).
func TestWhatARetryMayChange(t *testing.T) {
	for _, tc := range []struct {
		err  error
		stop bool
	}{
		{fmt.Errorf("journal x: %w", syscall.EIO), false},
		{fmt.Errorf("journal x: %w", syscall.ENOSPC), false},
		{fmt.Errorf("journal x: %w", syscall.EDQUOT), false},
		{fmt.Errorf("state x: %w", syscall.EROFS), false},
		{fmt.Errorf("volume x: block device in use: %w", syscall.EBUSY), false},
		{fmt.Errorf("volume x: is gone (%w)", fs.ErrNotExist), false},
		{fmt.Errorf("volume x: the block device is empty (0 bytes)"), false},
		{fmt.Errorf("journal x: %w", os.ErrDeadlineExceeded), false},
		{fmt.Errorf("control token: stat x: %w", fs.ErrPermission), false},
		{fmt.Errorf("journal x: offset 0: %w: bad magic", journal.ErrCorrupt), true},
		{fmt.Errorf("secondary: %w", volume.ErrWrongSize), true},
		{fmt.Errorf("secondary: state x belongs to session %q, not %q: %w", "a", "b", secondary.ErrOtherSession), true},
		{fmt.Errorf("secondary: %w", disk.Damaged("state file", "x", errors.New("null, not a record"))), true},
	} {
		if got := lasting(tc.err) != ""; got != tc.stop {
			t.Errorf("%v: stops %v, want %v", tc.err, got, tc.stop)
		}
	}
}
