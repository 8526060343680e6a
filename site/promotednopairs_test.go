package site

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"duplex/control"
)

// TestAPromotedSiteWithoutTheReverseDirectionSaysSo: a promoted site whose
// config's [primary] has no listen and journal (the demo's layout) runs
// without the reverse direction: it is the session's primary and holds no
// pairs. A pair operation or a rate change, routed to it as the primary,
// is refused saying so, naming the keys that bring replication back, and
// its status says it too, so that reading its rate limits fails rather
// than print "none" as if limits were read. It said "this site has no
// pairs (pair operations run at the primary)", at the primary.
func TestAPromotedSiteWithoutTheReverseDirectionSaysSo(t *testing.T) {
	cfg := linkConfig(t)
	cfg.Secondary.NBD, cfg.Secondary.Control = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Primary.Listen, cfg.Primary.Journal = "", ""
	cfg.ControlTokenFile = filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(cfg.ControlTokenFile, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	firstStart(t, cfg)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()
	if _, _, _, err := Promote(ctx, cfg, quiet, nil); err != nil {
		t.Fatal(err)
	}
	p, err := OpenPromoted(cfg, quiet, PromotedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	runUntil(t, func(ctx context.Context) { p.Run(ctx) })
	at := control.Endpoint{Addr: p.ControlAddr()}
	// The control address answers from the open, "not yet: starting",
	// until the run has read the site's state: ask only once it runs.
	waitFor(t, 10*time.Second, "the promoted site to run", func() bool {
		st, err := control.Fetch(ctx, at)
		return err == nil && st.Starting == nil
	})
	says := func(what string, err error) {
		t.Helper()
		if err == nil {
			t.Errorf("%s at the promoted site without the reverse direction: taken, want refused", what)
			return
		}
		for _, want := range []string{"replicates nowhere", "primary.listen", "primary.journal", "duplex rejoin"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: %q, want it to say %q", what, err, want)
			}
		}
		if strings.Contains(err.Error(), "run at the primary") {
			t.Errorf("%s: %q sends the operator to the primary, which this site is", what, err)
		}
	}
	_, err = control.PairOp(ctx, at, "secret", "vol1", "suspend", false)
	says("pair suspend vol1", err)
	_, err = control.AllPairsOp(ctx, at, "secret", "resume", false)
	says("pair resume --all", err)
	copyRate := int64(50 << 20)
	_, err = control.SetRates(ctx, at, "secret", &copyRate, nil)
	says("pair rate --copy", err)
	st, err := control.Fetch(ctx, at)
	if err != nil {
		t.Fatal(err)
	}
	if st.Role != "primary" || !strings.Contains(st.NoPairs, "primary.listen") {
		t.Errorf("the promoted site's status: role %q, no_pairs %q; want primary, saying why it holds no pairs", st.Role, st.NoPairs)
	}
}
