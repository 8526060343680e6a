package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"

	"duplex/config"
	"duplex/consistency"
	"duplex/failover"
	"duplex/journal"
	"duplex/recordset"
	"duplex/secondary"
	"duplex/site"
)

// TestPromoteStoppedDuringReplayStops: duplex promote asked to stop (SIGTERM)
// while it applies the secondary's journal stops at a group boundary, as
// duplex secondary and duplex recover do, leaving the state file as it was
// and the site neither fenced nor promoted. Promote opens the secondary
// without the command's context, so the replay runs to its end whatever
// the stop (a long backlog holds SIGTERM for as long as the volumes take
// it), and then the site is fenced and promoted all the same.
func TestPromoteStoppedDuringReplayStops(t *testing.T) {
	// A secondary with journaled groups it has not applied: a stopped
	// daemon's backlog.
	const chunk = 64 << 10
	path, cfg := secondaryBacklog(t, 8, func(n uint64) recordset.Update {
		return recordset.Update{Volume: "vol1", Kind: recordset.KindWrite, Offset: uint64(int64(n-1) % 4 * chunk), Length: chunk,
			Data: bytes.Repeat([]byte{byte(n)}, chunk)}
	})
	stateBefore, err := os.ReadFile(site.StatePath(cfg))
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel() // SIGTERM came as the promote began its replay
	var out, errb bytes.Buffer
	code := run(ctx, []string{"promote", "--config", path, "--log-level", "error"}, &out, &errb)
	t.Logf("duplex promote exited %d: stdout %q, stderr %q", code, out.String(), errb.String())
	if _, err := failover.ReadPromotion(nil, site.PromotedDir(cfg)); !errors.Is(err, failover.ErrNotPromoted) {
		t.Errorf("a promote stopped before its replay promoted the site all the same (%v): it replayed the whole journal first", err)
	}
	if after, err := os.ReadFile(site.StatePath(cfg)); err != nil || !bytes.Equal(after, stateBefore) {
		t.Errorf("a promote stopped before its replay applied the journal and changed the state file (%v):\n%s\nthen\n%s", err, stateBefore, after)
	}
}

// secondaryBacklog writes the config of a stopped secondary in a new
// directory and journals there groups 1..groups, which it has not applied:
// group n, of time n*1000, holds update(n), stamped just before it.
// It returns the config's path and the config.
func secondaryBacklog(t *testing.T, groups uint64, update func(n uint64) recordset.Update) (string, *config.Config) {
	t.Helper()
	dir := t.TempDir()
	c := startupSession(dir)
	c.Secondary.Control = ""
	path := writeSessionConfig(t, dir, c)
	cfg := firstStart(t, path)
	j, err := journal.Open(cfg.Secondary.Journal, journal.Options{MaxRecord: secondary.MaxGroupBytes})
	if err != nil {
		t.Fatal(err)
	}
	for n := uint64(1); n <= groups; n++ {
		u := update(n)
		u.Timestamp, u.Seq = int64(n)*1000-1, n
		g := &consistency.Group{Number: n, Time: int64(n) * 1000, Through: map[string]uint64{"ss1": n, "ss2": 0},
			Updates: []recordset.Update{u}}
		enc, err := consistency.EncodeGroup(nil, cfg.Session, g)
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
	return path, cfg
}
