package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"duplex/bitmap"
	"duplex/internal/testenv"
	"duplex/nbd"
	"duplex/site"
)

// startPromote runs duplex promote until the returned stop is called, and
// returns the NBD address it serves on and its output so far.
func startPromote(t *testing.T, path string) (addr string, out *testenv.LogBuffer, stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out = &testenv.LogBuffer{}
	var errb testenv.LogBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"promote", "--config", path, "--log-level", "error"}, out, &errb) }()
	re := regexp.MustCompile(`read-write on NBD (\S+?)(;| as )`)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			addr = m[1]
			break
		}
		select {
		case code := <-done:
			cancel()
			t.Fatalf("duplex promote exited %d before serving: stdout %q, stderr %q", code, out.String(), errb.String())
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("duplex promote does not serve within 30s: stdout %q, stderr %q", out.String(), errb.String())
		}
	}
	return addr, out, func() int {
		cancel()
		code := <-done
		if code != exitOK {
			t.Errorf("duplex promote exited %d after its context ended: stderr %q", code, errb.String())
		}
		return code
	}
}

// TestPromoteServesAndRestarts: promote at a stopped secondary promotes it
// once, serves its volumes read-write, and records the regions written; a
// second run serves them again with the regions kept, and the secondary
// daemon refuses to start over the promotion.
func TestPromoteServesAndRestarts(t *testing.T) {
	dir := t.TempDir()
	c := startupSession(dir)
	c.Secondary.Control = ""
	path := writeSessionConfig(t, dir, c)
	cfg := firstStart(t, path)

	addr, out, stop := startPromote(t, path)
	for _, w := range []string{"no consistency group was ever applied", "promoted: this site is the session's primary"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("the first promote does not say %q:\n%s", w, out)
		}
	}
	cl, err := nbd.Dial(addr, "vol1")
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte{0x7e}, 4096)
	if err := cl.WriteAt(data, 3*bitmap.DefaultRegion-2048); err != nil { // two regions
		t.Fatal(err)
	}
	cl.Close()
	stop()

	// The write reached the secondary's volume, and its regions the bitmap.
	sv, _ := cfg.SecondaryVolume("vol1")
	img, err := os.ReadFile(sv.Path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(img[3*bitmap.DefaultRegion-2048:][:4096], data) {
		t.Error("the write through the promoted site's NBD export is not in the secondary volume")
	}
	checkChanged := func(when string) {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(site.PromotedDir(cfg), "vol1.bitmap"))
		if err != nil {
			t.Fatal(err)
		}
		bm, err := bitmap.Decode(b, int64(len(img)))
		if err != nil {
			t.Fatal(err)
		}
		var got []int64
		for r, _, _, ok := bm.Next(0); ok; r, _, _, ok = bm.Next(r + 1) {
			got = append(got, r)
		}
		if len(got) != 2 || got[0] != 2 || got[1] != 3 {
			t.Errorf("%s: vol1's changed regions are %v, want [2 3]", when, got)
		}
	}
	checkChanged("after a stop")

	code, sout, serr := runCmd("secondary", "--config", path, "--log-level", "error")
	if code != exitFailure || !strings.Contains(serr, "promoted") {
		t.Errorf("duplex secondary over a promotion: exit %d, stdout %q, stderr %q; want exit 1 saying the site was promoted", code, sout, serr)
	}

	_, out, stop = startPromote(t, path)
	if strings.Contains(out.String(), "promoted: this site") {
		t.Errorf("the second promote promoted again:\n%s", out)
	}
	stop()
	checkChanged("after a restart")
}
