package secondary

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"duplex/disk"
	"duplex/recordset"
	"duplex/transport"
	"duplex/volume"
)

// linkRig runs sec, which a test opened with its volume v (vol1, of size
// bytes), and links a test primary to it as gateRig's (instance 7), which
// reads and drops every frame after the Welcome. r.cancel and r.wg stop
// sec's Run; closing sec and v is left to the test.
func linkRig(t *testing.T, sec *Secondary, v *volume.Volume, size int64) *gateRig {
	t.Helper()
	r := &gateRig{sec: sec, vol: v, net: transport.NewMemNetwork(1, transport.Faults{})}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.wg.Add(1)
	go func() { defer r.wg.Done(); sec.Run(ctx, r.net) }()
	conn, err := r.net.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.Send(transport.EncodeHello(transport.Hello{Session: "s", Subsystems: []string{"ss1"}, Instance: 7,
		Volumes: []transport.VolumeInfo{{Name: "vol1", Size: size}}})); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Recv(); err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			if _, err := conn.Recv(); err != nil {
				return
			}
		}
	}()
	r.conn = conn
	return r
}

// stop stops the Run of a linkRig and closes its secondary and volume.
func (r *gateRig) stop() {
	r.cancel()
	r.wg.Wait()
	r.sec.Close()
	r.vol.Close()
}

// scaledRig opens a secondary of one volume, vol1 of size bytes of 0xEE,
// whose journal, state and history (bound histMax) live on a scaledFS of
// the capacity and scale given, and whose largest group is largest.
type scaledRig struct {
	dir, root              string
	fs                     *scaledFS
	size, histMax, largest int64
}

func newScaledRig(t *testing.T, size, scale, capacity, histMax, largest int64) *scaledRig {
	t.Helper()
	q := &scaledRig{dir: t.TempDir(), size: size, histMax: histMax, largest: largest}
	q.root = filepath.Join(q.dir, "fs")
	if err := os.MkdirAll(q.root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(q.dir, "vol1.img"), bytes.Repeat([]byte{0xEE}, int(size)), 0o644); err != nil {
		t.Fatal(err)
	}
	q.fs = &scaledFS{FS: disk.OS, root: q.root, scale: scale, capacity: capacity}
	return q
}

// open opens the secondary; the volume is closed again if it fails.
func (q *scaledRig) open(t *testing.T) (*Secondary, *volume.Volume, error) {
	t.Helper()
	v, err := volume.Open(filepath.Join(q.dir, "vol1.img"), q.size)
	if err != nil {
		t.Fatal(err)
	}
	sec, err := Open(Config{Session: "s", Subsystems: []string{"ss1"}, Volumes: map[string]*volume.Volume{"vol1": v},
		JournalDir: filepath.Join(q.root, "journal"), StatePath: filepath.Join(q.root, "state.json"),
		History: HistoryConfig{Dir: filepath.Join(q.root, "history"), Window: time.Hour, MaxBytes: q.histMax},
		FS:      q.fs, LargestGroup: q.largest,
		JournalFree: func() (uint64, error) { n, _ := q.fs.Available(q.root); return uint64(n), nil },
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		v.Close()
		return nil, nil, err
	}
	return sec, v, nil
}

// wholeCopy is a first copy of vol1, whole in one group: the block blk
// written with b between its start and its end.
func wholeCopy(blk uint64, b byte) []recordset.Update {
	return []recordset.Update{recordset.Marker{State: recordset.StateFirstCopy, Bytes: 4096}.Update("vol1"), blockWrite(blk, b),
		recordset.Marker{State: recordset.StateCopyEnd}.Update("vol1")}
}
