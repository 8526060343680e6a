package journal

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// killChildEnv names the journal directory a child process of
// TestKilledWhileRecycling appends to until it is killed.
const killChildEnv = "DUPLEX_JOURNAL_KILL_CHILD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(killChildEnv); dir != "" {
		killChild(dir)
		return
	}
	os.Exit(m.Run())
}

// killRecord is record i's data as run wrote it: run and i, then bytes
// derived from both, of a length that varies with i, so that the records
// of two runs at one index differ and a kill lands at every offset.
func killRecord(run, i uint64) []byte {
	n := 16 + int(i*7919%3001)
	b := make([]byte, n)
	binary.BigEndian.PutUint64(b[0:], run)
	binary.BigEndian.PutUint64(b[8:], i)
	r := rand.New(rand.NewPCG(run, i))
	for k := 16; k < n; k++ {
		b[k] = byte(r.Uint32())
	}
	return b
}

// checkKillRecord says what is wrong with data as record index, or "".
func checkKillRecord(index uint64, data []byte) string {
	if len(data) < 16 {
		return fmt.Sprintf("record %d of %d bytes", index, len(data))
	}
	run, i := binary.BigEndian.Uint64(data[0:]), binary.BigEndian.Uint64(data[8:])
	if i != index {
		return fmt.Sprintf("record %d holds record %d of run %d", index, i, run)
	}
	if !bytes.Equal(data, killRecord(run, i)) {
		return fmt.Sprintf("record %d (run %d) is not as written", index, run)
	}
	return ""
}

// killChild appends records to the journal in dir, from its last on, and
// prints the index of each record a Sync covered; it releases all but
// the last few segments as it goes, so that nearly every segment is a
// spare written over. It runs until killed.
func killChild(dir string) {
	run, _ := strconv.ParseUint(os.Getenv("DUPLEX_JOURNAL_KILL_RUN"), 10, 64)
	j, err := Open(dir, Options{SegmentSize: 16 << 10})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	w := bufio.NewWriter(os.Stdout)
	for i := j.LastIndex() + 1; ; i++ {
		if err := j.Append(i, killRecord(run, i)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		if i%3 != 0 {
			continue
		}
		if err := j.Sync(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Fprintln(w, i)
		w.Flush()
		if i > 30 {
			if err := j.Release(i - 30); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
		}
	}
}

// TestKilledWhileRecycling kills with SIGKILL, many times over, a process
// that appends to a journal whose segments are nearly all spares written
// over (records of an earlier life after the new ones), at moments spread
// over the segment. Each time the journal must open, hold every record a
// Sync covered, and hold no record but as a run wrote it at its index:
// none of an earlier life, none of an earlier run's at an index a later
// run wrote again.
func TestKilledWhileRecycling(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a child process 24 times")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "j")
	rng := rand.New(rand.NewPCG(41, 5))
	const kills = 24
	longCuts := 0
	for run := uint64(1); run <= kills; run++ {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), killChildEnv+"="+dir, fmt.Sprintf("DUPLEX_JOURNAL_KILL_RUN=%d", run))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		var synced uint64
		lines := 5 + rng.IntN(120)
		for k := 0; k < lines && sc.Scan(); k++ {
			synced, _ = strconv.ParseUint(sc.Text(), 10, 64)
		}
		// Past the last line read: somewhere in the records after it.
		time.Sleep(time.Duration(rng.IntN(300)) * time.Microsecond)
		cmd.Process.Kill()
		for sc.Scan() {
			synced, _ = strconv.ParseUint(sc.Text(), 10, 64)
		}
		cmd.Wait()
		if synced == 0 {
			t.Fatalf("run %d synced nothing: %s", run, stderr.String())
		}
		segs := segFiles(t, dir)
		last := segs[len(segs)-1]
		before := fileSize(t, last)
		j, err := Open(dir, Options{SegmentSize: 16 << 10})
		if err != nil {
			t.Fatalf("run %d: Open after the kill: %v", run, err)
		}
		if st, err := os.Stat(last); err != nil || st.Size() < before-directAlign {
			longCuts++ // the kill left records of the file's earlier life after the new ones
		}
		if got := j.LastIndex(); got < synced {
			t.Fatalf("run %d: journal ends at %d after the kill, but a Sync covered %d", run, got, synced)
		}
		var n int
		err = j.Replay(0, func(index uint64, data []byte) error {
			n++
			if bad := checkKillRecord(index, data); bad != "" {
				return fmt.Errorf("%s", bad)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if longCuts == 0 {
		t.Fatal("no kill came while a spare was written over: the test tests nothing of recycling")
	}
	t.Logf("%d of %d kills left a recycled segment with its earlier life after the new records", longCuts, kills)
}
