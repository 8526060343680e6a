package journal

import (
	"hash/crc32"
	"testing"
)

// TestAppendSumLargeRecordSurvivesReopen: a record of 512 MiB or more
// appended with AppendSum and synced is read back after a reopen, as one
// appended with Append is. The secondary journals consistency groups of up
// to 2 GiB (secondary.MaxGroupBytes) with AppendSum; a record whose stored
// checksum does not match its bytes is dropped as a torn tail at Open, so
// the acknowledged group it holds would be lost at the next restart.
func TestAppendSumLargeRecordSurvivesReopen(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 512 MiB")
	}
	data := make([]byte, 1<<29+4096)
	for i := 0; i < len(data); i += 4096 {
		data[i] = byte(i >> 12)
	}
	dir := t.TempDir()
	opts := Options{MaxRecord: 1 << 30}
	j := openT(t, dir, opts)
	if err := j.Append(1, []byte("group 1")); err != nil {
		t.Fatal(err)
	}
	if err := j.AppendSum(2, data, crc32.Checksum(data, castagnoli)); err != nil {
		t.Fatal(err)
	}
	if err := j.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("reopen after a synced AppendSum of %d bytes: %v", len(data), err)
	}
	defer j.Close()
	if last := j.LastIndex(); last != 2 {
		t.Fatalf("after a synced AppendSum of record 2 (%d bytes) and a reopen, the journal ends at record %d: the record's checksum does not match its bytes", len(data), last)
	}
}
