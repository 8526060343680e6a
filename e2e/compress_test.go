package e2e

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"duplex/config"
	"duplex/consistency"
	"duplex/transport"
	"duplex/workload"
)

// TestCompressedDependentWritesUnderLinkFaults is the dependent-write test
// with record sets compressed on the link: frames dropped, duplicated,
// reordered and corrupted are detected and recovered as plain ones are,
// and the invariant holds after every applied group.
func TestCompressedDependentWritesUnderLinkFaults(t *testing.T) {
	t.Parallel()
	groups := 400
	if testing.Short() {
		groups = 150
	}
	faults := transport.Faults{Drop: 0.02, Duplicate: 0.02, Reorder: 0.05, Corrupt: 0.02, Disconnect: 0.003, MaxDelay: time.Millisecond}
	net := transport.NewMemNetwork(3, faults)
	// A sidefile of 256 KiB, not the 2 MiB of the plain test, paces the
	// clients to groups an eighth the size: compressing is most of what
	// this test costs under the race detector, and the faults are drawn
	// per frame, so smaller frames meet every kind of fault after far
	// fewer bytes compressed, each group checked as before.
	r := startDependentRun(t, net, secondaryOpts{},
		primaryOpts{interval: 2 * time.Millisecond, retransmit: 40 * time.Millisecond, sidefile: 256 << 10, compress: true}, 43)
	r.waitGroups(t, groups)
	strikeEveryFault(t, net, faults, r.moreGroups(t))
	n := r.finish(t)
	p, sec := r.p, r.sec
	ms, ss, fs := p.mover.Stats(), sec.sec.Stats(), net.Stats()
	t.Logf("%d groups checked, 0 violations; link: %d frames, %d dropped, %d duplicated, %d reordered, %d corrupted, %d disconnects; secondary saw %d corrupt; record sets: sent %d bytes plain as %d, received %d as %d",
		n, fs.Frames, fs.Dropped, fs.Duplicated, fs.Reordered, fs.Corrupted, fs.Disconnects, ss.CorruptFrames,
		ms.RecordSetBytes, ms.RecordSetWireBytes, ss.RecordSetBytes, ss.RecordSetWireBytes)
	if fs.Dropped == 0 || fs.Duplicated == 0 || fs.Reordered == 0 || fs.Corrupted == 0 || fs.Disconnects == 0 {
		t.Fatalf("not every fault was injected: %+v", fs)
	}
	if ss.CorruptFrames == 0 {
		t.Fatalf("the secondary detected no corrupt frame")
	}
	if !ms.Compressing || ms.RecordSetWireBytes*2 > ms.RecordSetBytes || ss.RecordSetWireBytes*2 > ss.RecordSetBytes {
		t.Fatalf("the link did not compress: primary sent %d bytes as %d (compressing: %v), secondary received %d as %d",
			ms.RecordSetBytes, ms.RecordSetWireBytes, ms.Compressing, ss.RecordSetBytes, ss.RecordSetWireBytes)
	}
}

// With one site from before compression, the session works as before:
// a primary configured to compress sends plain record sets to a secondary
// that does not announce it, and a primary that does not compress is read
// by a secondary that could take compressed ones.
func TestCompressionMixedVersions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name            string
		compress, plain bool
	}{
		{"compressing primary, secondary of before", true, true},
		{"primary of before, new secondary", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A sidefile of 2 MiB, as in the other dependent-write tests,
			// paces the clients: with the default 64 MiB they outrun the
			// link with frames of up to 16 MiB, and the secondary keeps
			// every frame received while its Former holds an update
			// (frameLedger), gigabytes under the race detector.
			r := startDependentRun(t, transport.NewMemNetwork(1, transport.Faults{}), secondaryOpts{plain: tc.plain},
				primaryOpts{interval: 2 * time.Millisecond, retransmit: 40 * time.Millisecond, sidefile: 2 << 20, compress: tc.compress}, 44)
			r.waitGroups(t, 60)
			r.finish(t)
			p, sec := r.p, r.sec
			ms, ss := p.mover.Stats(), sec.sec.Stats()
			if ms.Compressing || ms.RecordSetBytes == 0 || ms.RecordSetWireBytes != ms.RecordSetBytes || ss.RecordSetWireBytes != ss.RecordSetBytes {
				t.Fatalf("record sets: compressing %v, sent %d bytes plain as %d, received %d as %d; want all plain",
					ms.Compressing, ms.RecordSetBytes, ms.RecordSetWireBytes, ss.RecordSetBytes, ss.RecordSetWireBytes)
			}
		})
	}
}

// TestSitesDependentWritesCompressed is the sites' dependent-write test on
// a session configured with compression = "zstd", built as the daemons
// build it: the primary's status shows the compression in use and its
// ratio, and both sites' metrics count the bytes. (The link's faults with
// compressed record sets are TestCompressedDependentWritesUnderLinkFaults'.)
func TestSitesDependentWritesCompressed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := siteSession(t, dir, func(c *config.Config) {
		c.Interval = config.Duration(2 * time.Millisecond)
		// The least sidefile the config takes paces the clients: the
		// record sets the primary compresses under the race detector,
		// two of 2 MiB, held groups for seconds apart at a load of 10
		// and for over 30 s, the stall limit, at 55.
		c.Primary.SidefileLimit = config.MiB
		c.Primary.Compression, c.Primary.CompressionLevel = "zstd", 1
	})
	net := transport.NewMemNetwork(1, transport.Faults{})
	var bad violations
	s := startSites(t, cfg, net, func(g *consistency.Group, read func(string, []byte, int64) error) {
		vs, err := workload.Check(layout, func(vol int, b []byte, off int64) error { return read(siteVolume(vol), b, off) })
		bad.add(g.Number, vs, err)
	})
	s.waitDuplex(t)
	n0, _ := bad.snapshot()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := workload.Run(ctx, layout, s, 0, 45)
		done <- err
	}()
	waitGroups(t, &bad, n0+50, 30*time.Second, func() string { return replicationState(s.prim.Mover(), s.sec.Replica()) })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("workload: %v", err)
	}
	s.quiesce(t)
	if _, list := bad.snapshot(); len(list) > 0 {
		t.Fatalf("violations:\n%v", list)
	}
	assertConverged(t, layout.Volumes, layout.BlocksPerVolume, s.readPrimary, s.readSecondary)
	st := s.prim.Status()
	if st.Compression != "zstd" || st.CompressionRatio == nil || *st.CompressionRatio < 2 {
		t.Fatalf("primary status: compression %q, ratio %v; want zstd and at least 2", st.Compression, st.CompressionRatio)
	}
	t.Logf("compression ratio %.2f", *st.CompressionRatio)
	ss := s.sec.Replica().Stats()
	if ss.RecordSetWireBytes == 0 || float64(ss.RecordSetBytes)/float64(ss.RecordSetWireBytes) < 2 {
		t.Fatalf("secondary received %d bytes of record sets as %d", ss.RecordSetBytes, ss.RecordSetWireBytes)
	}
	// The metrics of the same names mean the same at both sites: sent and
	// received.
	for _, addr := range []string{s.prim.ControlAddr(), s.sec.ControlAddr()} {
		plain, wire := scrape(t, addr, "duplex_link_record_set_bytes_total"), scrape(t, addr, "duplex_link_record_set_wire_bytes_total")
		if wire == 0 || plain/wire < 2 {
			t.Errorf("%s: record sets of %.0f bytes plain took %.0f on the link", addr, plain, wire)
		}
	}
}

// scrape returns the value of one metric at a control address.
func scrape(t *testing.T, addr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(body)) {
		if strings.HasPrefix(line, name+"{") {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				t.Fatalf("%s: %q: %v", addr, line, err)
			}
			return v
		}
	}
	t.Fatalf("%s: no metric %s", addr, name)
	return 0
}
