package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"duplex/actlog"
	"duplex/bitmap"
	"duplex/control"
	"duplex/failover"
	"duplex/nbd"
	"duplex/site"
	"duplex/workload"
)

// promoteWrite is one write a client issued to the promoted site.
type promoteWrite struct {
	vol   int
	off   int64
	data  []byte
	acked bool
}

// promoteClient writes to the promoted site's volumes, one write at a time
// (each issued once the one before it was acknowledged, so the writes
// acknowledged are a prefix of those issued), into slots no other write
// touches, until ctx ends or a write fails.
func promoteClient(ctx context.Context, addr string, names []string, slots []promoteWrite, log *[]promoteWrite, mu *sync.Mutex) error {
	conns := make([]*nbd.Client, len(names))
	for i, n := range names {
		c, err := nbd.Dial(addr, n)
		if err != nil {
			return err
		}
		defer c.Close()
		conns[i] = c
	}
	for _, w := range slots {
		if ctx.Err() != nil {
			return nil
		}
		mu.Lock()
		*log = append(*log, w)
		i := len(*log) - 1
		mu.Unlock()
		if err := conns[w.vol].WriteAt(w.data, w.off); err != nil {
			return err
		}
		mu.Lock()
		(*log)[i].acked = true
		mu.Unlock()
	}
	return nil
}

// TestDaemonsPromote is the failover half of the round trip through the
// daemons: a dependent-write workload at the primary; promote refused while
// the primary is connected; kill -9 of the primary; recover and promote at
// the secondary, whose volumes then hold a consistent image; writes to the
// promoted site over NBD (qemu-io's, where it is installed, and two clients
// of dependent writes); kill -9 of the promoted site in the middle of them;
// promote again: every acknowledged write is there, and the changed-region
// bitmaps hold every region an acknowledged write touched and none that no
// write touched, neither the old primary's; rejoin at the old primary
// reports the union of both sites' regions it would copy.
func TestDaemonsPromote(t *testing.T) {
	t.Parallel()
	const (
		volSize      = 16 << 20
		regionBlocks = 128 // the workload's blocks per volume: 512 KiB
	)
	s := newSession(t, sessionOpts{name: "e2e-promote", volSize: volSize})
	s.start()
	names := s.cfg.VolumeNames()

	code, out, errOut := runDuplex(t, "promote", "--config", s.path)
	if code != 1 || !strings.Contains(errOut, "connected") {
		t.Fatalf("promote with the primary connected: exit %d, stdout %q, stderr %q; want exit 1 saying a primary is connected", code, out, errOut)
	}
	if st := s.secondaryStatus(); st.Fenced || st.Link != "connected" {
		t.Fatalf("a refused promote changed the secondary: fenced %v, link %s", st.Fenced, st.Link)
	}

	// The dependent-write workload at the primary, killed under way.
	lay := workload.Layout{Volumes: len(names), BlocksPerVolume: regionBlocks, Clients: 4}
	target := dialTarget(t, s.cfg.Primary.NBD, names, lay, 0)
	wctx, stopWorkload := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := workload.Run(wctx, lay, target, 0, uint64(time.Now().UnixNano()))
		done <- err
	}()
	target.waitAcked(t)
	time.Sleep(300 * time.Millisecond)
	s.prim.kill()
	stopWorkload()
	<-done
	target.close()
	s.waitPrimaryGone()
	s.stopSecondary()

	prom := s.recoverAndPromote()
	st := s.secondaryStatus()
	if st.Role != "primary" || st.PromotedAt == "" || st.PromotedFrom == "" {
		t.Fatalf("the promoted site's status: role %q, promoted_at %q, promoted_consistency_time %q; want primary with both times",
			st.Role, st.PromotedAt, st.PromotedFrom)
	}
	for _, v := range st.Volumes {
		if v.ChangedBytes == nil || *v.ChangedBytes != 0 {
			t.Fatalf("volume %s: changed_bytes %v right after the promotion, want 0", v.Name, v.ChangedBytes)
		}
	}

	// What the old primary's workload left is a state it had.
	var readers []*nbd.Client
	for _, n := range names {
		readers = append(readers, dialNBD(t, s.cfg.Secondary.NBD, n))
	}
	read := func(v int, b []byte, off int64) error { return readers[v].ReadAt(b, off) }
	vs, err := workload.Check(lay, read)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs[:min(len(vs), 10)] {
		t.Errorf("after the promotion: %s", v)
	}
	img, _, err := workload.ReadImage(lay, read)
	if err != nil {
		t.Fatal(err)
	}
	if written, _ := img.Stats(); written == 0 {
		t.Fatal("the promoted site holds none of the workload's writes: the check ran on empty volumes")
	}

	// Two clients write the promoted site, each one write at a time, into
	// slots past the workload's region: 4 KiB writes, and 8 KiB ones that
	// straddle two 64 KiB regions.
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	var slots []promoteWrite
	for vol := range names {
		end := int64(volSize / bitmap.DefaultRegion)
		if vol == 0 {
			end-- // vol1's last region is qemu-io's
		}
		for r := int64(regionBlocks * workload.BlockSize / bitmap.DefaultRegion); r < end; r++ {
			if rng.IntN(3) != 0 {
				continue
			}
			off, n := r*bitmap.DefaultRegion+int64(rng.IntN(8))*4096, 4096
			if rng.IntN(4) == 0 && r+1 < end {
				off, n = (r+1)*bitmap.DefaultRegion-4096, 8192
				r++
			}
			data := bytes.Repeat([]byte{byte(rng.Uint32())}, n)
			binary.BigEndian.PutUint64(data, uint64(len(slots)+1))
			slots = append(slots, promoteWrite{vol: vol, off: off, data: data})
		}
	}
	rng.Shuffle(len(slots), func(i, j int) { slots[i], slots[j] = slots[j], slots[i] })
	// A real client first, where one is installed: qemu-io writes vol1's
	// last region and reads it back.
	var toolWrites []promoteWrite
	if _, err := exec.LookPath("qemu-io"); err == nil {
		off := int64(volSize - bitmap.DefaultRegion + 4096)
		qemuIO(t, nbdURI(s.cfg.Secondary.NBD, names[0]), false,
			fmt.Sprintf("write -P 0x5a %d 8192", off), fmt.Sprintf("read -P 0x5a %d 8192", off))
		toolWrites = append(toolWrites, promoteWrite{vol: 0, off: off, data: bytes.Repeat([]byte{0x5a}, 8192), acked: true})
	} else {
		t.Log("qemu-io not installed (apt-get install qemu-utils): the promoted site is written by the Go NBD client only")
	}
	var mu sync.Mutex
	var logs [2][]promoteWrite
	cctx, stopClients := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	half := len(slots) / 2
	for i, part := range [][]promoteWrite{slots[:half], slots[half:]} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			promoteClient(cctx, s.cfg.Secondary.NBD, names, part, &logs[i], &mu)
		}()
	}
	waitFor(t, time.Minute, "writes acknowledged by the promoted site", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(logs[0]) > 20 && len(logs[1]) > 20
	})
	prom.kill()
	stopClients()
	wg.Wait()
	acked, issued := slices.Clone(toolWrites), slices.Clone(toolWrites)
	for _, l := range logs {
		for _, w := range l {
			issued = append(issued, w)
			if w.acked {
				acked = append(acked, w)
			}
		}
	}
	t.Logf("%d writes acknowledged by the promoted site before its kill -9, %d issued", len(acked), len(issued))

	prom = s.startPromote()
	for i := range readers {
		readers[i] = dialNBD(t, s.cfg.Secondary.NBD, names[i])
	}
	for _, w := range acked {
		got := make([]byte, len(w.data))
		if err := readers[w.vol].ReadAt(got, w.off); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, w.data) {
			t.Fatalf("an acknowledged write of %d bytes at %d of %s is lost after kill -9 of the promoted site", len(w.data), w.off, names[w.vol])
		}
	}
	// The old primary's workload is still as it was.
	if vs, err := workload.Check(lay, read); err != nil || len(vs) > 0 {
		t.Fatalf("after the restart: %v, %d violations", err, len(vs))
	}
	var changed int64
	for _, v := range s.secondaryStatus().Volumes {
		changed += *v.ChangedBytes
	}
	resp, err := http.Get("http://" + s.cfg.Secondary.Control + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := fmt.Sprintf(`duplex_changed_bytes{role="primary",session="e2e-promote"} %v`, float64(changed)); !strings.Contains(string(metrics), want) {
		t.Errorf("the promoted site's /metrics has no %q:\n%s", want, metrics)
	}
	checkRejoinPlan(t, s, names, volSize)
	if code := prom.stop(); code != 0 {
		t.Fatalf("the promoted site exited %d after SIGTERM, want 0", code)
	}

	regionsOf := func(ws []promoteWrite) []map[int64]bool {
		out := make([]map[int64]bool, len(names))
		for i := range out {
			out[i] = map[int64]bool{}
		}
		for _, w := range ws {
			for r := w.off / bitmap.DefaultRegion; r*bitmap.DefaultRegion < w.off+int64(len(w.data)); r++ {
				out[w.vol][r] = true
			}
		}
		return out
	}
	must, may := regionsOf(acked), regionsOf(issued)
	var total int64
	for i, n := range names {
		b, err := os.ReadFile(filepath.Join(site.PromotedDir(s.cfg), n+".bitmap"))
		if err != nil {
			t.Fatal(err)
		}
		bm, err := bitmap.Decode(b, volSize)
		if err != nil {
			t.Fatal(err)
		}
		var got []int64
		for r, _, l, ok := bm.Next(0); ok; r, _, l, ok = bm.Next(r + 1) {
			got = append(got, r)
			total += l
			if !may[i][r] {
				t.Errorf("%s: region %d is marked changed, but no write to the promoted site touched it", n, r)
			}
		}
		for r := range must[i] {
			if !slices.Contains(got, r) {
				t.Errorf("%s: region %d holds an acknowledged write but is not marked changed", n, r)
			}
		}
	}
	if total != changed {
		t.Errorf("status said %d bytes changed, the bitmaps cover %d", changed, total)
	}
	pr, err := failover.ReadPromotion(nil, site.PromotedDir(s.cfg))
	if err != nil {
		t.Fatal(err)
	}
	if pr.Follows == 0 || pr.Generation == pr.Follows {
		t.Errorf("the promotion's generations: %s following %s; want a new one following the old primary's", pr.Generation, pr.Follows)
	}
}

// checkRejoinPlan runs duplex rejoin at the old primary, killed -9, while
// the promoted site runs: per volume, it must report copying the union of
// the old primary's activity-log regions (writes the promoted site may
// never have had) and the promoted site's changed regions, far less than
// the volume; --yes changes nothing yet, and says so.
func checkRejoinPlan(t *testing.T, s *procSession, names []string, volSize int64) {
	t.Helper()
	code, out, errOut := runDuplex(t, "rejoin", "--config", s.path)
	if code != 0 {
		t.Fatalf("rejoin exited %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	t.Logf("rejoin:\n%s", out)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	ch, err := control.FetchChanges(ctx, control.Endpoint{Addr: s.cfg.Secondary.Control})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	marks, err := actlog.ReadMarks(nil, filepath.Join(site.PairStateDir(s.cfg), "activity.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		there, err := bitmap.Decode(ch.Volumes[n], volSize)
		if err != nil {
			t.Fatal(err)
		}
		union := there.Clone()
		for _, rg := range marks[n] {
			union.Set(rg[0], rg[1])
		}
		want := fmt.Sprintf("  %s: copy %d bytes (%d regions) of %d: ", n, union.DirtyBytes(), union.Count(), volSize)
		if !strings.Contains(out, want) {
			t.Errorf("rejoin does not report %q", want)
		}
		if union.DirtyBytes() > volSize/2 {
			t.Errorf("%s: the rejoin would copy %d bytes of %d", n, union.DirtyBytes(), volSize)
		}
	}
	// Without [primary] listen and journal there is nowhere to run as the
	// promoted site's secondary: nothing changes.
	code, out, errOut = runDuplex(t, "rejoin", "--config", s.path, "--yes")
	if code != 1 || !strings.Contains(errOut, "primary.listen") {
		t.Errorf("rejoin --yes: exit %d, stdout %q, stderr %q; want exit 1 asking for primary.listen", code, out, errOut)
	}
	if _, err := site.ReadRejoin(s.cfg); !errors.Is(err, site.ErrNotRejoined) {
		t.Errorf("a refused rejoin --yes recorded a rejoin: %v", err)
	}
}
