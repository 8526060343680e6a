package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"duplex/config"
	"duplex/control"
	"duplex/internal/testenv"
	"duplex/transport"
	"duplex/workload"
)

// artifactDir is where browser tests leave their screenshots:
// $DUPLEX_ARTIFACTS (scripts/test.sh sets it to artifacts/ at the top of
// the tree), or the test's temporary directory.
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("DUPLEX_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("DUPLEX_ARTIFACTS: %v", err)
	}
	return dir
}

// browser starts a headless chromium for the test, with the options extra
// beside the usual ones, or skips the test when there is none.
func browser(t *testing.T, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		testenv.Missing(t, "chromium not installed: apt-get install chromium (the status page is tested in a real browser)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 1100),
		chromedp.UserDataDir(t.TempDir()),
	)
	opts = append(opts, extra...)
	if os.Geteuid() == 0 {
		// Chromium refuses to run as root with its sandbox.
		opts = append(opts, chromedp.NoSandbox)
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first action starts the browser, which lives as long as the
	// context of that action: no timeout on it, but a watchdog, as a loaded
	// machine may take a while.
	watchdog := time.AfterFunc(2*time.Minute, cancel)
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[int](`1`)); err != nil {
		t.Fatalf("starting chromium %s: %v", path, err)
	}
	if !watchdog.Stop() {
		t.Fatalf("chromium %s did not start within 2 minutes", path)
	}
	return ctx
}

// pageErrors collects what the browser reports as wrong with the pages it
// shows from now on: uncaught exceptions, and errors it logs (a refusal by
// the Content-Security-Policy, say), but not failed requests, which the page
// shows itself.
func pageErrors(t *testing.T, ctx context.Context) func() []string {
	t.Helper()
	if _, err := chromedp.Call(ctx, cdplog.Enable, cdp.Empty{}); err != nil {
		t.Fatalf("chromium log: %v", err)
	}
	var mu sync.Mutex
	var errs []string
	add := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		errs = append(errs, s)
	}
	exceptions, entries := chromedp.Events(ctx, runtime.ExceptionThrown), chromedp.Events(ctx, cdplog.EntryAdded)
	go func() {
		for ev, err := range exceptions {
			if err != nil {
				return
			}
			add((&chromedp.ExceptionError{ExceptionDetails: ev.ExceptionDetails}).Error())
		}
	}()
	go func() {
		for ev, err := range entries {
			if err != nil {
				return
			}
			if ev.Entry.Level == cdplog.EntryLevelError && ev.Entry.Source != cdplog.EntrySourceNetwork {
				add(fmt.Sprintf("%s: %s (%s)", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL))
			}
		}
	}()
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(errs)
	}
}

// evaluate runs js in the page and returns its value.
func evaluate[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	ectx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	v, err := chromedp.Run(ectx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("in the page: %s: %v", js, err)
	}
	return v
}

// navigate opens url in the browser.
func navigate(t *testing.T, ctx context.Context, url string) {
	t.Helper()
	nav, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := chromedp.Do(nav, chromedp.Navigate(url)); err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
}

// waitPage waits for cond, failing at once if the browser reports errors in
// the page (errorsSoFar, from pageErrors).
func waitPage(t *testing.T, errorsSoFar func() []string, d time.Duration, what string, cond func() bool) {
	t.Helper()
	waitFor(t, d, what, func() bool {
		if errs := errorsSoFar(); len(errs) > 0 {
			t.Fatalf("waiting for %s, the browser reports errors in the page:\n%s", what, strings.Join(errs, "\n"))
		}
		time.Sleep(200 * time.Millisecond)
		return cond()
	})
}

// chartPoints returns how many points the page's chart id shows.
func chartPoints(t *testing.T, ctx context.Context, id string) int {
	t.Helper()
	return evaluate[int](t, ctx, `Number(document.getElementById("`+id+`").dataset.points)`)
}

// waitVolumeStates waits until the page's volume table shows each volume
// in the state status reports, and returns the page's states.
func waitVolumeStates(t *testing.T, ctx context.Context, errorsSoFar func() []string, status func() control.Status) map[string]string {
	t.Helper()
	var page map[string]string
	waitPage(t, errorsSoFar, time.Minute, "the page's volume states to be the site's", func() bool {
		page = evaluate[map[string]string](t, ctx, `Object.fromEntries(
			[...document.querySelectorAll("#volumes tbody tr")].map(tr =>
				[tr.dataset.volume, tr.querySelector("td.state").textContent]))`)
		site := map[string]string{}
		for _, v := range status().Volumes {
			site[v.Name] = v.State
		}
		return fmt.Sprint(page) == fmt.Sprint(site)
	})
	return page
}

// screenshot saves the page as name.png in the artifact directory.
func screenshot(t *testing.T, ctx context.Context, artifacts, name string) {
	t.Helper()
	shotCtx, cancelShot := context.WithTimeout(ctx, time.Minute)
	defer cancelShot()
	png, err := chromedp.Run(shotCtx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	out := filepath.Join(artifacts, name+".png")
	if err := os.WriteFile(out, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of %s: %s", name, out)
}

// TestStatusPageInABrowser opens each site's status page in headless
// chromium while a session with a control token runs a workload, one pair
// copying under a low copy rate and one suspended: the lag chart fills with
// points, the volume table shows each pair's state as the site reports it,
// and a screenshot of each page is left in the artifact directory.
func TestStatusPageInABrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a session and a browser")
	}
	ctx := browser(t)
	artifacts := artifactDir(t)
	errorsSoFar := pageErrors(t, ctx)

	dir := t.TempDir()
	const token = "0123456789abcdef-page-test-token"
	tokenPath := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenPath, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := siteSession(t, dir, func(c *config.Config) {
		c.Session = "page-test"
		c.ControlTokenFile = tokenPath
	})
	s := startSites(t, cfg, transport.NewMemNetwork(1, transport.Faults{}), nil)
	s.waitDuplex(t)

	wctx, stopWorkload := context.WithCancel(context.Background())
	workloadDone := make(chan error, 1)
	go func() {
		_, err := workload.Run(wctx, layout, s, 0, 11)
		workloadDone <- err
	}()
	defer func() {
		stopWorkload()
		if err := <-workloadDone; err != nil {
			t.Errorf("workload: %v", err)
		}
	}()

	// A copy slow enough to be seen in progress, and a suspended pair.
	slow := int64(2 << 10)
	if _, err := s.prim.SetRates(&slow, nil); err != nil {
		t.Fatal(err)
	}
	copying, suspended := siteVolume(3), siteVolume(2)
	if _, err := s.prim.Pairs().Delete(copying); err != nil {
		t.Fatal(err)
	}
	if err := s.prim.Pairs().Add(copying); err != nil {
		t.Fatal(err)
	}
	if err := s.prim.Pairs().Suspend(suspended); err != nil {
		t.Fatal(err)
	}

	for _, p := range []struct {
		role   string
		addr   string
		status func() control.Status
	}{
		{"primary", s.prim.ControlAddr(), s.prim.Status},
		{"secondary", s.sec.ControlAddr(), s.sec.Status},
	} {
		t.Run(p.role, func(t *testing.T) {
			navigate(t, ctx, "http://"+p.addr+"/")
			// The chart draws a point a second; the site has sampled
			// since it started.
			waitPage(t, errorsSoFar, 2*time.Minute, "the lag chart to show 10 points", func() bool { return chartPoints(t, ctx, "lag-chart") >= 10 })
			if n := chartPoints(t, ctx, "throughput-chart"); n < 5 {
				t.Errorf("throughput chart shows %d points", n)
			}
			if n := chartPoints(t, ctx, "sidefile-chart"); p.role == "primary" && n < 5 {
				t.Errorf("sidefile chart shows %d points", n)
			}

			// The table shows each volume in the state the site reports.
			page := waitVolumeStates(t, ctx, errorsSoFar, p.status)
			if len(page) != layout.Volumes || page[suspended] != "suspended" || page[siteVolume(0)] != "duplex" {
				t.Errorf("volume states on the page: %v", page)
			}
			if page[copying] != "pending" {
				t.Logf("%s finished its copy before the page showed it: %v", copying, page)
			}

			text := evaluate[string](t, ctx, `document.body.innerText`)
			for _, want := range []string{"page-test", p.role, "(this page)", "Slowest subsystem"} {
				if !strings.Contains(text, want) {
					t.Errorf("the page does not show %q:\n%s", want, text)
				}
			}
			if strings.Contains(text, token) {
				t.Error("the page shows the control token")
			}
			if sites := evaluate[int](t, ctx, `document.querySelectorAll("#sites li").length`); sites != 2 {
				t.Errorf("the page lists %d sites, want both", sites)
			}
			if alert := evaluate[string](t, ctx, `document.getElementById("alert").hidden ? "" : document.getElementById("alert").textContent`); alert != "" {
				t.Errorf("the page shows an alert: %s", alert)
			}
			if p.role == "primary" && page[copying] == "pending" {
				shown := evaluate[bool](t, ctx, `!document.querySelector('tr[data-volume="`+copying+`"] progress').hidden`)
				if !shown {
					t.Errorf("no copy progress bar for %s", copying)
				}
			}

			screenshot(t, ctx, artifacts, "statuspage-"+p.role)
			if errs := errorsSoFar(); len(errs) > 0 {
				t.Errorf("the browser reports errors in the page:\n%s", strings.Join(errs, "\n"))
			}
		})
	}
}
