package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"duplex/disk"
	"duplex/recordset"
	"duplex/site"
)

// hangRenamesEnv names a file whose replacement (the rename of an atomic
// write onto it) hangs for good in a duplex process the tests start
// (secondaryFS): a disk that stops answering as the secondary's start
// records what it replayed.
const hangRenamesEnv = "DUPLEX_TEST_HANG_RENAMES_ONTO"

func hangRenamesOnto(path string) {
	in := disk.NewInjector(nil)
	in.Inject(disk.Fault{Op: disk.OpRename, Under: path, Hang: make(chan struct{})})
	secondaryFS = in
}

// TestASecondaryStartGivenUpAsItRecordsItsReplayRestartsWhole: a
// secondary's start replays a backlog of journaled groups into its
// volumes, then records them in state.json, whose replacement hangs (its
// disk stopped answering). SIGTERM gives the start up (exit 1), and the
// process ends with the volumes ahead of the state file, the new one
// left in its temporary file; or a kill -9 follows the SIGTERM within the
// grace. Either way the next start reads the state file the last one
// wrote, replays every group again over the volumes, and ends at the
// backlog's last group, each region holding the last group that wrote
// it.
func TestASecondaryStartGivenUpAsItRecordsItsReplayRestartsWhole(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	for _, killed := range []bool{false, true} {
		name := "SIGTERM"
		if killed {
			name = "SIGTERM then kill -9"
		}
		t.Run(name, func(t *testing.T) {
			const chunk, groups = 64 << 10, 8
			path, cfg := secondaryBacklog(t, groups, func(n uint64) recordset.Update {
				return recordset.Update{Volume: "vol1", Kind: recordset.KindWrite, Offset: uint64(int64(n-1) % 4 * chunk), Length: chunk,
					Data: bytes.Repeat([]byte{byte(n)}, chunk)}
			})
			state := site.StatePath(cfg)
			before, err := os.ReadFile(state)
			if err != nil {
				t.Fatal(err)
			}
			vol1 := cfg.Secondary.Volumes[0].Path
			cmd := duplexCommand("secondary", "--config", path, "--log-level", "debug")
			cmd.Env = append(cmd.Env, hangRenamesEnv+"="+state)
			log := &syncBuffer{}
			cmd.Stdout, cmd.Stderr = log, log
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill() })
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			// The replay has written the last group into the volume
			// once region 3 holds group 8's bytes, and then waits on
			// the state file's replacement.
			for end := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				if b := readAt(t, vol1, 3*chunk, 1); b != nil && b[0] == groups {
					break
				}
				if time.Now().After(end) {
					t.Fatalf("the replay has not reached the volume after 30 s:\n%s", log.String())
				}
			}
			time.Sleep(200 * time.Millisecond)
			if after, err := os.ReadFile(state); err != nil || !bytes.Equal(after, before) {
				t.Fatalf("the state file changed as its replacement hangs (%v):\n%s", err, after)
			}
			cmd.Process.Signal(syscall.SIGTERM)
			if killed {
				time.Sleep(100 * time.Millisecond)
				cmd.Process.Signal(syscall.SIGKILL)
			}
			select {
			case err := <-exited:
				var ee *exec.ExitError
				switch {
				case killed:
					t.Logf("killed: %v", err)
				case !errors.As(err, &ee) || ee.ExitCode() != exitFailure || !strings.Contains(log.String(), "stopped while starting"):
					t.Errorf("the secondary given up as it records its replay exited %v, want status %d, stopped while starting:\n%s", err, exitFailure, log.String())
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("the secondary has not exited 10 s after SIGTERM:\n%s", log.String())
			}
			if strings.Contains(log.String(), "secondary started") {
				t.Errorf("the secondary served, its start hung:\n%s", log.String())
			}
			temps, _ := filepath.Glob(state + "*")
			t.Logf("left beside the state file: %v", temps)

			// The next start, on a disk that answers.
			var out, errb bytes.Buffer
			if code := run(t.Context(), []string{"recover", "--config", path, "--log-level", "error"}, &out, &errb); code != exitOK {
				t.Fatalf("the next start (duplex recover) exited %d: %s%s", code, out.String(), errb.String())
			}
			if !strings.Contains(out.String(), "(group 8)") {
				t.Errorf("the next start did not end at group %d:\n%s", groups, out.String())
			}
			for r := int64(0); r < 4; r++ {
				want := byte(groups - 3 + r) // groups 5..8 wrote regions 0..3 last
				if b := readAt(t, vol1, r*chunk, chunk); !bytes.Equal(b, bytes.Repeat([]byte{want}, chunk)) {
					t.Errorf("vol1 region %d after the next start: not group %d's bytes", r, want)
				}
			}
			if left, _ := filepath.Glob(state + ".*"); len(left) > 0 {
				t.Errorf("the next start left the temporary files of the one given up: %v", left)
			}
		})
	}
}

// readAt reads n bytes of file path at off, nil if it cannot.
func readAt(t *testing.T, path string, off int64, n int) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
		return nil
	}
	return b
}
