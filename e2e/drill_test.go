package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"duplex/config"
	"duplex/internal/testenv"
)

var drillRE = regexp.MustCompile(`writable exports on (\S+), each volume consistent as of (\S+) \(group (\d+)\)`)

// TestDaemonsDrillFilesystem: ext4 on a volume, written continuously at the
// primary; a drill at a past time T serves the volume as of T read-write:
// e2fsck -p replays its journal there, it mounts, takes files; meanwhile
// replication goes on, and once the drill is stopped and the primary
// drained, the secondary volume is byte for byte the primary's: no write
// of the drill reached it. The journal is unchanged by the drill, though
// replication appends to it and releases from it meanwhile: every record
// journaled when the drill started and still there after it is byte for
// byte what it was, and neither the journal nor the history holds a byte
// the drill wrote (a token its file repeats, which its scratch file does
// hold while it runs).
func TestDaemonsDrillFilesystem(t *testing.T) {
	needExt4OverNBD(t)
	testenv.NeedTool(t, "e2fsck", "e2fsprogs")
	const volSize = 64 << 20
	s := newSession(t, sessionOpts{name: "e2e-drill", volSize: volSize, token: "e2e-drill-token", edit: func(c *config.Config) {
		c.Secondary.History = config.Duration(time.Hour)
		c.Secondary.DrillNBD = testenv.FreeAddr(t)
	}})
	s.start()
	primDir, drillDir := filepath.Join(t.TempDir(), "primary"), filepath.Join(t.TempDir(), "drill")
	for _, d := range []string{primDir, drillDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	unmountPrim := ext4OverNBD(t, nbdURI(s.cfg.Primary.NBD, "vol1"), primDir, true)
	// Files written and synced, one step after another, until stop.
	var stop atomic.Bool
	steps := make(chan int, 1)
	go func() {
		n := 0
		data := make([]byte, 256<<10)
		for !stop.Load() {
			for i := range data {
				data[i] = byte(n + i*7)
			}
			if err := os.WriteFile(filepath.Join(primDir, fmt.Sprintf("file%d", n%64)), data, 0o644); err != nil {
				break
			}
			syncFS(primDir)
			n++
		}
		steps <- n
	}()
	time.Sleep(1500 * time.Millisecond)
	at := time.Now().UTC().Format(time.RFC3339Nano)
	time.Sleep(1000 * time.Millisecond)

	code, out, errOut := runDuplex(t, "drill", "start", "--config", s.path, "--at", at)
	if code != 0 {
		t.Fatalf("drill start --at %s: exit %d\n%s%s", at, code, out, errOut)
	}
	m := drillRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("drill start: no address and group in %q", out)
	}
	t.Logf("drill at %s: %s", at, strings.TrimSpace(out))
	secBefore := s.secondaryStatus().Group
	historyDir := filepath.Join(filepath.Dir(s.cfg.Secondary.Journal), "history")
	journalBefore := journalRecords(t, s.cfg.Secondary.Journal)
	historyBefore := journalRecords(t, historyDir)
	unmountDrill := ext4OverNBDWith(t, nbdURI(m[1], "vol1"), drillDir, false, func(dev string) {
		// The file system was mounted at T: its journal is replayed, into
		// the drill's writes.
		out, err := exec.Command("e2fsck", "-p", dev).CombinedOutput()
		var ee *exec.ExitError
		if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 1) {
			t.Fatalf("e2fsck -p on the drill's volume: %v\n%s", err, out)
		}
		t.Logf("e2fsck -p on the drill's volume: %v %s", err, strings.TrimSpace(string(out)))
	})
	drilled := writeStepTree(t, drillDir, "drill", 99)
	token := []byte(fmt.Sprintf("written in the failover drill only, %x ", time.Now().UnixNano()))
	token = append(token, strings.Repeat(".", 64-len(token))...)
	if err := os.WriteFile(filepath.Join(drillDir, "drill-only"), bytes.Repeat(token, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	unmountDrill()
	scratch := filepath.Join(filepath.Dir(s.cfg.Secondary.Journal), "drill.scratch")
	if !fileHolds(t, scratch, token) {
		t.Fatalf("the drill's scratch file %s does not hold what the drill wrote", scratch)
	}
	if d := s.secondaryStatus().Drill; d == nil || d.NBD != m[1] || d.ConsistencyTime != m[2] || d.ScratchBytes == 0 {
		t.Errorf("status during the drill: %+v; want it at %s as of %s, holding its writes", d, m[1], m[2])
	}
	if code, out, _ := runDuplex(t, "status", "--config", s.path); code != 0 || !strings.Contains(out, "drill:"+m[1]) {
		t.Errorf("duplex status during the drill: exit %d, no drill line:\n%s", code, out)
	}
	if code, out, errOut := runDuplex(t, "drill", "stop", "--config", s.path); code != 0 {
		t.Fatalf("drill stop: exit %d\n%s%s", code, out, errOut)
	} else {
		t.Logf("%s", strings.TrimSpace(out))
	}
	if d := s.secondaryStatus().Drill; d != nil {
		t.Errorf("status after drill stop: %+v", d)
	}
	secAfter := s.secondaryStatus().Group
	if secAfter == nil || secBefore == nil || *secAfter <= *secBefore {
		t.Errorf("replication did not go on during the drill: group %v before, %v after", secBefore, secAfter)
	}
	// Checkpoints may release every journal record of the drill's start
	// before it ends (a secondary that keeps up does); the history, kept
	// an hour here and framed the same way, still holds its records then.
	journalSame := unchangedRecords(t, "journal", journalBefore, journalRecords(t, s.cfg.Secondary.Journal))
	historySame := unchangedRecords(t, "history", historyBefore, journalRecords(t, historyDir))
	if journalSame+historySame == 0 {
		t.Errorf("none of the %d journal and %d history records there when the drill started is left to compare", len(journalBefore), len(historyBefore))
	}
	for _, dir := range []string{s.cfg.Secondary.Journal, historyDir} {
		files, _ := filepath.Glob(filepath.Join(dir, "*"))
		for _, f := range files {
			if fileHolds(t, f, token) {
				t.Errorf("%s holds what the drill wrote", f)
			}
		}
	}

	stop.Store(true)
	n := <-steps
	unmountPrim()
	s.drainPrimary()
	s.stopSecondary()
	p, q := s.volumePaths("vol1")
	if testenv.SHA256File(t, p) != testenv.SHA256File(t, q) {
		t.Fatal("after the drill and a drain, the secondary volume differs from the primary's")
	}
	if fileHolds(t, q, token) {
		t.Fatal("the secondary volume holds what the drill wrote")
	}
	t.Logf("%d files written at the primary, %d files written in the drill; the secondary volume is the primary's", n, len(drilled))
	loadavg, _ := os.ReadFile("/proc/loadavg")
	t.Logf("load average %s", strings.TrimSpace(string(loadavg)))
}

// unchangedRecords reports any record of before that after holds with
// other bytes, and returns how many records both hold.
func unchangedRecords(t *testing.T, what string, before, after map[uint64][32]byte) int {
	t.Helper()
	same := 0
	for idx, sum := range before {
		if got, ok := after[idx]; ok {
			if got != sum {
				t.Errorf("%s record %d changed during the drill", what, idx)
			}
			same++
		}
	}
	t.Logf("%s: %d records when the drill started, %d after it, %d of them in both and unchanged", what, len(before), len(after), same)
	return same
}

// syncFS syncs the file system holding dir.
func syncFS(dir string) {
	if f, err := os.Open(dir); err == nil {
		f.Sync()
		f.Close()
	}
	exec.Command("sync", "-f", dir).Run()
}

// gappedRecord reads the record with gaps at pos of the segment b, as
// package journal lays it out (its doc, "Records with gaps"): its data
// without the gaps, where the next record starts, and whether it is whole
// and its CRC holds.
func gappedRecord(b []byte, pos int, salt []byte, table *crc32.Table) ([]byte, int, bool) {
	be := binary.BigEndian
	if pos+32 > len(b) {
		return nil, 0, false
	}
	n, count, total := int(be.Uint32(b[pos+16:])), int(be.Uint32(b[pos+20:])), int(be.Uint32(b[pos+24:]))
	at := pos + 32 + 8*count
	end := at + n + total
	if count > n || end > len(b) {
		return nil, 0, false
	}
	data := make([]byte, 0, n)
	p, from := at, 0
	for k := range count {
		gapAt, gapLen := int(be.Uint32(b[pos+32+8*k:])), int(be.Uint32(b[pos+36+8*k:]))
		if gapAt < from || gapAt > n || p+gapAt-from+gapLen > end {
			return nil, 0, false
		}
		data = append(data, b[p:p+gapAt-from]...)
		p += gapAt - from + gapLen
		from = gapAt
	}
	if p+n-from != end {
		return nil, 0, false
	}
	data = append(data, b[p:end]...)
	covered := append(append(append([]byte(nil), salt...), b[pos+8:pos+16]...), b[pos+16:pos+32+8*count]...)
	if crc32.Update(crc32.Checksum(covered, table), table, data) != be.Uint32(b[pos+4:]) {
		return nil, 0, false
	}
	return data, end + (8-end%8)%8, true
}

// fileHolds says whether the file at path holds b.
func fileHolds(t *testing.T, path string, b []byte) bool {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Contains(data, b)
}

// journalRecords reads the journal's segment files as package journal
// lays them out (its doc): each whole record's index and the SHA-256 of
// its data, up to the first record not yet whole in each segment.
func journalRecords(t *testing.T, dir string) map[uint64][32]byte {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	table := crc32.MakeTable(crc32.Castagnoli)
	out := map[uint64][32]byte{}
	for _, seg := range segs {
		b, err := os.ReadFile(seg)
		if errors.Is(err, os.ErrNotExist) {
			continue // released meanwhile
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(b) < 16 || string(b[:4]) != "DXJL" {
			t.Fatalf("%s: not a journal segment", seg)
		}
		// Version 2 adds a salt to the header, and each record's CRC
		// covers it before the index and data; version 1 has neither.
		// Version 3 adds records with gaps.
		start, salt := 16, []byte(nil)
		v := binary.BigEndian.Uint32(b[4:])
		switch v {
		case 1:
		case 2, 3:
			if len(b) < 24 {
				continue // being created
			}
			start, salt = 24, b[16:24]
		default:
			t.Fatalf("%s: journal segment version %d", seg, v)
		}
		for pos := start; pos+16 <= len(b); {
			n := int(binary.BigEndian.Uint32(b[pos:]))
			sum := binary.BigEndian.Uint32(b[pos+4:])
			if v == 3 && uint32(n) == 0xffffffff {
				data, next, ok := gappedRecord(b, pos, salt, table)
				if !ok {
					break
				}
				out[binary.BigEndian.Uint64(b[pos+8:])] = sha256.Sum256(data)
				pos = next
				continue
			}
			if pos+16+n > len(b) || crc32.Update(crc32.Checksum(salt, table), table, b[pos+8:pos+16+n]) != sum {
				break
			}
			out[binary.BigEndian.Uint64(b[pos+8:])] = sha256.Sum256(b[pos+16 : pos+16+n])
			pos += 16 + (n+7)&^7
		}
	}
	return out
}
