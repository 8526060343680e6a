package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"duplex/bench/harness"
	"duplex/coupling"
)

// TestCoupledScale measures a coupled group as it grows: with 2, 4 and 8
// sessions (each a primary and a secondary process, one etcd), every
// session's vol1 taking one 4 KiB write every 50 ms, it samples the group
// in etcd every 100 ms for DUPLEX_COUPLED_WINDOW (default 20s) and reports
// how far the master time (the least member time) trails the newest member
// time and the wall clock, and what each session costs etcd: puts,
// transactions, raft proposals, WAL bytes and client bytes received per
// second, the reads of the group and the bytes they send (etcd's
// /metrics), and etcd's CPU (/proc). The sampler's own reads are taken off
// the reads; they add ten small requests a second to the bytes. A
// measurement, run with DUPLEX_BENCH=1 (DUPLEX_COUPLED_SIZES picks the
// sizes); it asserts no figure.
func TestCoupledScale(t *testing.T) {
	if os.Getenv("DUPLEX_BENCH") == "" {
		t.Skip("a measurement: run with DUPLEX_BENCH=1")
	}
	sizes := []int{2, 4, 8}
	if v := os.Getenv("DUPLEX_COUPLED_SIZES"); v != "" {
		sizes = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(f)
			if err != nil || n < 1 {
				t.Fatalf("DUPLEX_COUPLED_SIZES=%q: want sizes like 2,4,8", v)
			}
			sizes = append(sizes, n)
		}
	}
	window := 20 * time.Second
	if v := os.Getenv("DUPLEX_COUPLED_WINDOW"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("DUPLEX_COUPLED_WINDOW=%q: %v", v, err)
		}
		window = d
	}
	var rows []string
	for _, n := range sizes {
		t.Run(fmt.Sprintf("%d sessions", n), func(t *testing.T) {
			rows = append(rows, measureCoupled(t, n, window))
		})
	}
	t.Logf("\n| sessions | samples | master behind newest p50 / p99 / max ms | master behind clock p50 / p99 / max ms | puts/s | txns/s | proposals/s | WAL B/s | B/s received | reads/s | B/s sent | etcd CPU ms/s | load average |\n"+
		"|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n%s\n(etcd figures per session)", strings.Join(rows, "\n"))
}

// measureCoupled runs a group of n sessions under the light load and
// returns its row of the table.
func measureCoupled(t *testing.T, n int, window time.Duration) string {
	// Small sidefiles: eight secondaries on one file system each start
	// only with room for two groups as large as their primary's sidefiles.
	e, s := coupledGroup(t, groupOpts{sessions: n, volSize: 4 << 20, sidefile: 4 << 20})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	writeErr := make(chan error, n)
	for i := range s {
		c := dialNBD(t, s[i].cfg.Primary.NBD, "vol1")
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			b := make([]byte, 4096)
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				if err := c.WriteAt(b, int64(k%1024)*4096); err != nil {
					writeErr <- err
					return
				}
			}
		}()
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()
	store, err := coupling.DialEtcd(coupling.EtcdConfig{Group: "payments", Endpoints: []string{e.url}, Lease: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	time.Sleep(2 * time.Second) // the load settles

	m0, cpu0, t0 := etcdMetrics(t, e.url), etcdCPU(t, e), time.Now()
	var behindNewest, behindClock []float64
	reads := 0
	for time.Since(t0) < window {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		view, err := store.Read(ctx)
		cancel()
		reads++
		now := time.Now().UnixNano()
		if err == nil && len(view.Reports) == n {
			var master, newest int64
			for _, r := range view.Reports {
				if master == 0 || r.Time < master {
					master = r.Time
				}
				newest = max(newest, r.Time)
			}
			behindNewest = append(behindNewest, float64(newest-master)/1e6)
			behindClock = append(behindClock, float64(now-master)/1e6)
		}
		time.Sleep(100 * time.Millisecond)
	}
	m1, cpu1, el := etcdMetrics(t, e.url), etcdCPU(t, e), time.Since(t0)
	select {
	case err := <-writeErr:
		t.Fatalf("a write failed: %v", err)
	default:
	}
	load, _ := os.ReadFile("/proc/loadavg")
	per := func(name string) float64 { return (m1[name] - m0[name]) / el.Seconds() / float64(n) }
	q := func(v []float64) string {
		if len(v) == 0 {
			return "none"
		}
		slices.Sort(v)
		at := func(p float64) float64 { return v[int(p*float64(len(v)-1))] }
		return fmt.Sprintf("%.1f / %.1f / %.1f", at(0.5), at(0.99), v[len(v)-1])
	}
	m1["etcd_mvcc_range_total"] -= float64(reads)
	row := fmt.Sprintf("| %d | %d | %s | %s | %.1f | %.1f | %.1f | %.0f | %.0f | %.1f | %.0f | %.2f | %s |", n, len(behindClock), q(behindNewest), q(behindClock),
		per("etcd_mvcc_put_total"), per("etcd_mvcc_txn_total"), per("etcd_server_proposals_committed_total"),
		per("etcd_disk_wal_write_bytes_total"), per("etcd_network_client_grpc_received_bytes_total"),
		per("etcd_mvcc_range_total"), per("etcd_network_client_grpc_sent_bytes_total"),
		float64((cpu1-cpu0).Microseconds())/1e3/el.Seconds()/float64(n), strings.Join(strings.Fields(string(load))[:3], " "))
	t.Log(row)
	// What the group's history costs etcd's database while nothing is
	// compacted (duplex etcd keeps Retention of it): toward its quota.
	t.Logf("etcd's database grew %.0f B/s a session (%.1f MB an hour), %.0f B/s in use",
		per("etcd_mvcc_db_total_size_in_bytes"), per("etcd_mvcc_db_total_size_in_bytes")*3600/1e6, per("etcd_mvcc_db_total_size_in_use_in_bytes"))
	return row
}

// etcdMetrics reads etcd's /metrics, each metric summed over its labels.
func etcdMetrics(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatalf("etcd /metrics: %v", err)
	}
	defer resp.Body.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(f[0], "{")
		if v, err := strconv.ParseFloat(f[1], 64); err == nil {
			m[name] += v
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("etcd /metrics: %v", err)
	}
	return m
}

func etcdCPU(t *testing.T, e *etcdProcess) time.Duration {
	t.Helper()
	d, err := harness.ProcCPU(e.cmd.Process.Pid)
	if err != nil {
		t.Fatalf("etcd's CPU: %v", err)
	}
	return d
}
