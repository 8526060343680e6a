package control

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/performance"
	"github.com/chromedp/chromedp"
)

// TestStatusPageCost1024Volumes measures what the status page costs with a
// session of 1,024 volumes and a full history: the browser's time in script,
// layout and tasks, and this process's CPU serving it, over 30 s. It checks
// that the page shows every volume and every sample, and logs the figures
// (no bound on them: the machine's load decides). Run it with
// DUPLEX_PAGE_COST=1 go test -run PageCost -v ./control
func TestStatusPageCost1024Volumes(t *testing.T) {
	if os.Getenv("DUPLEX_PAGE_COST") == "" {
		t.Skip("a measurement: set DUPLEX_PAGE_COST=1")
	}
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium not installed: apt-get install chromium")
	}
	vols := make([]VolumeStatus, 1024)
	for i := range vols {
		vols[i] = VolumeStatus{Name: fmt.Sprintf("vol%04d", i), Subsystem: fmt.Sprintf("ss%03d", i/8), State: "duplex",
			SizeBytes: 1 << 30, CopiedBytes: 1 << 30}
	}
	limit, used := int64(512<<20), int64(3<<20)
	polls := make(chan struct{}, 1000)
	// Every answer changes every row, as the primary's does: each volume's
	// consistency time moves on, and a tenth of them are copying.
	status := func() Status {
		polls <- struct{}{}
		n := len(polls)
		vs := append([]VolumeStatus(nil), vols...)
		for i := range vs {
			vs[i].ConsistencyTime = FormatTime(time.Now().UnixNano())
			if i%10 == n%10 {
				vs[i].State, vs[i].CopiedBytes = "pending", int64(n)<<20
			}
		}
		return Status{Session: "big", Role: "primary", Link: "connected", ConsistencyTime: FormatTime(time.Now().UnixNano()),
			SidefileBytes: &used, SidefileLimitBytes: &limit, Volumes: vs}
	}
	h := &History{}
	now := time.Now()
	for i := range HistoryLength {
		lag := 0.02
		h.Add(HistorySample{UnixMilli: now.Add(time.Duration(i-HistoryLength) * time.Second).UnixMilli(), LagSeconds: &lag,
			SidefileBytes: used, BytesReplicated: uint64(i) << 20})
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go h.Run(ctx, func() HistorySample {
		lag := 0.03
		return HistorySample{LagSeconds: &lag, SidefileBytes: used, BytesReplicated: uint64(time.Now().Unix()) << 20}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go (&Server{Status: status, History: h}).Serve(ctx, ln)

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.DisableGPU,
		chromedp.WindowSize(1280, 1000), chromedp.UserDataDir(t.TempDir()))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	if err := chromedp.Do(bctx, chromedp.Navigate("http://"+ln.Addr().String()+"/")); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(bctx, performance.Enable, performance.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second)
	metrics := func() map[string]float64 {
		res, err := chromedp.Call(bctx, performance.GetMetrics, cdp.Empty{})
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]float64{}
		for _, x := range res.Metrics {
			m[x.Name] = x.Value
		}
		return m
	}
	m0, cpu0, polls0 := metrics(), processCPU(), len(polls)
	time.Sleep(30 * time.Second)
	m1, cpu1, polls1 := metrics(), processCPU(), len(polls)

	rows, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll("#volumes tbody tr").length`))
	if err != nil || rows != len(vols) {
		t.Errorf("the page shows %d volumes (%v), want %d", rows, err, len(vols))
	}
	points, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.getElementById("lag-chart").dataset.points`))
	if err != nil || points != fmt.Sprint(HistoryLength) && points != fmt.Sprint(HistoryLength-1) {
		t.Errorf("the lag chart shows %s points (%v), want %d", points, err, HistoryLength)
	}
	var load [3]float64
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Sscan(string(b), &load[0], &load[1], &load[2])
	}
	t.Logf("load average %.2f; over 30 s: %d status polls; browser script %.2f s, layout %.2f s, style %.2f s, all tasks %.2f s; "+
		"this process (server, test, chromedp) %.3f s CPU",
		load[0], polls1-polls0, m1["ScriptDuration"]-m0["ScriptDuration"], m1["LayoutDuration"]-m0["LayoutDuration"],
		m1["RecalcStyleDuration"]-m0["RecalcStyleDuration"], m1["TaskDuration"]-m0["TaskDuration"], (cpu1 - cpu0).Seconds())
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
