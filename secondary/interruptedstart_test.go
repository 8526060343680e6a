package secondary

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"

	"duplex/consistency"
	"duplex/journal"
	"duplex/recordset"
)

// TestStartInterruptedDuringReplay: a secondary asked to stop while it
// replays its journal stops at a group boundary of the replay without
// applying the rest, and leaves the journal and the state file as they
// were: the next start replays every group, and the volumes end as if
// nothing had interrupted it.
func TestStartInterruptedDuringReplay(t *testing.T) {
	const groups = 8
	r := newRig(t, map[string]int64{"a": 1 << 20})
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	j, err := journal.Open(r.config().JournalDir, journal.Options{MaxRecord: MaxGroupBytes})
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 1<<20)
	for n := uint64(1); n <= groups; n++ {
		data := bytes.Repeat([]byte{byte(n)}, 4096)
		off := int64(n-1) * 4096
		copy(want[off:], data)
		g := &consistency.Group{Number: n, Time: int64(n) * 1000, Through: map[string]uint64{"ss1": n},
			Updates: []recordset.Update{{Volume: "a", Kind: recordset.KindWrite, Offset: uint64(off), Length: 4096,
				Timestamp: int64(n)*1000 - 1, Seq: n, Data: data}}}
		enc, err := consistency.EncodeGroup(nil, rigSession, g)
		if err != nil {
			t.Fatal(err)
		}
		if err := j.Append(n, enc); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	statePath := r.config().StatePath
	stateBefore, err := os.ReadFile(statePath)
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the stop came while the daemon was starting
	r.openVolumes()
	cfg := r.config()
	cfg.Context = ctx
	if sec, err := Open(cfg); !errors.Is(err, ErrInterrupted) {
		if err == nil {
			sec.Close()
		}
		t.Fatalf("Open with its context ended: %v, want ErrInterrupted", err)
	} else {
		t.Logf("interrupted: %v", err)
	}
	got := make([]byte, 1<<20)
	if err := r.vols["a"].ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, make([]byte, 1<<20)) {
		t.Error("an interrupted start applied journaled groups")
	}
	if after, err := os.ReadFile(statePath); err != nil || !bytes.Equal(after, stateBefore) {
		t.Errorf("an interrupted start changed the state file (%v):\n%s\nthen\n%s", err, stateBefore, after)
	}
	for _, v := range r.vols {
		v.Close()
	}

	r.open() // the next start replays everything
	if pos := r.sec.Position(); pos.Group != groups {
		t.Fatalf("after the next start: at group %d, want %d", pos.Group, groups)
	}
	if err := r.sec.ReadAt("a", got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("after the next start the volume is not what the journaled groups wrote")
	}
}
