package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"duplex/config"
	"duplex/control"
	"duplex/coupling"
	"duplex/coupling/etcdserver"
	"duplex/site"
	"duplex/workload"
)

// The coupled demo's group, its sessions, and the ports it takes from
// --port-base N: five for each session, as the plain demo's, then etcd's
// client and peer ports.
const (
	coupledDemoGroup = "demo"
	coupledDemoPorts = 12
	// coupledDemoVolume is each volume's size: the two sessions' initial
	// copies are a quarter of the plain demo's each.
	coupledDemoVolume = 64 * config.MiB
)

var coupledDemoSessions = []string{"db", "app"}

// coupledDemo runs duplex demo --coupled: an embedded etcd and two sessions
// of one coupled group, all in this process on loopback, each session in
// its own directory under dir, with a dependent-write workload whose
// writes go to the volumes of both sessions.
func coupledDemo(ctx context.Context, dir string, ports portBase, withWorkload bool, log *slog.Logger, level string, stdout io.Writer) error {
	// etcd warns of every slow request, which a loaded machine makes many
	// of: below debug and info, the demo shows its errors only.
	etcdLevel := strings.ToLower(level)
	if etcdLevel != "debug" && etcdLevel != "info" {
		etcdLevel = "error"
	}
	srv, err := startDemoEtcd(filepath.Join(dir, "etcd"), ports, etcdLevel, log)
	if err != nil {
		return err
	}
	defer srv.Close()
	clientURL := srv.ClientURL

	// Membership is what holds the master time, so both sessions join
	// before either secondary runs: a member that found itself alone in
	// the group would apply what its partner has not journaled yet. The
	// store added them reads the group for the status line.
	var cfgs, files []*config.Config
	var store *coupling.EtcdStore
	for i, name := range coupledDemoSessions {
		session := coupledDemoSession(filepath.Join(dir, name), name, clientURL, ports, i)
		if err := os.MkdirAll(session.Dir, 0o755); err != nil {
			return err
		}
		cfg, err := writeDemoConfig(session)
		if err != nil {
			return err
		}
		if store == nil {
			if store, err = coupling.DialConfig(cfg); err != nil {
				return err
			}
			defer store.Close()
		}
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = coupling.Add(actx, store, cfg.Session, time.Now())
		cancel()
		if err != nil {
			return fmt.Errorf("couple add %s: %w", cfg.Session, err)
		}
		cfgs, files = append(cfgs, cfg), append(files, session)
	}
	var sessions []*demoSession
	var failed error
	for i, cfg := range cfgs {
		d, err := startDemoSession(ctx, cfg, files[i], log, site.SecondaryOptions{}, site.DiskRetry{})
		if d != nil {
			sessions = append(sessions, d)
		}
		if failed = err; failed != nil {
			break
		}
	}
	if failed == nil {
		printCoupledDemo(stdout, dir, clientURL, sessions)
	}

	vols := demoVolumes(sessions)
	layout := workload.Layout{Volumes: len(vols.vols), BlocksPerVolume: demoRegion / workload.BlockSize, Clients: 4}
	var stopWork func() error
	if withWorkload && failed == nil {
		layout, failed = vols.nextRun(layout)
	}
	if withWorkload && failed == nil {
		fmt.Fprintf(stdout, "Running a dependent-write workload: %d clients over the %d volumes of both sessions (last %s of each),\n"+
			"each write depending on the one its client wrote before, whichever session either went to.\n\n",
			layout.Clients, len(vols.vols), bytesIEC(demoRegion))
		stopWork = vols.run(layout)
	}

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	line := newStatusLine(stdout)
loop:
	for failed == nil {
		select {
		case <-ctx.Done():
			break loop
		case err := <-srv.Err():
			failed = fmt.Errorf("etcd: %w", err)
		case <-tick.C:
			for _, d := range sessions {
				if err := d.stopped(); err != nil {
					failed = fmt.Errorf("session %s: %w", d.cfg.Session, err)
					break loop
				}
			}
			line.update(groupLine(ctx, store, sessions))
		}
	}
	line.end()

	if stopWork != nil {
		if err := stopWork(); err != nil && failed == nil {
			failed = fmt.Errorf("workload: %v", err)
		}
	}
	var master int64
	if failed == nil {
		fmt.Fprintln(stdout, "Stopping: waiting for the master time to pass the last write at both secondaries...")
		master, failed = waitMasterPast(sessions, time.Now(), time.Minute)
	}
	fmt.Fprintln(stdout, "Stopping both sessions...")
	behind := map[string]string{}
	for _, d := range sessions {
		notDuplex(d.prim.Status(), d.cfg, d.cfg.Session+"/", behind)
	}
	var stops []error
	for _, d := range sessions {
		// Whatever the primaries ship from now on holds no write; and
		// once one member stops, the master time stops too, short of the
		// other's last groups, which its secondary keeps journaled.
		if _, err := d.stop(false); err != nil {
			stops = append(stops, fmt.Errorf("session %s: %w", d.cfg.Session, err))
		}
	}
	if failed == nil {
		// Each session's, the one's failure no reason to leave the
		// other's unsaid.
		failed = errors.Join(stops...)
	}
	if failed != nil {
		return failed
	}
	fmt.Fprintf(stdout, "Verification (both secondaries applied through the master time %s):\n", control.FormatTime(master))
	if err := verifyDemo(cfgs, layout, stopWork != nil, behind, stdout); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "The sessions' files stay in %s; run the demo again with --coupled --dir %s to continue them.\n", dir, dir)
	return nil
}

// demoEtcdURLs picks the embedded etcd's URLs (a test's twin picks one
// that is taken).
var demoEtcdURLs = coupledDemoEtcdURLs

// startDemoEtcd starts the coupled demo's embedded etcd in dir on the URLs
// of ports (see coupledDemoEtcdURLs). With --port-base 0 those are ports
// that were free when picked, which etcd binds itself a moment later (it
// takes URLs, not listeners, and advertises what it is given): anything
// on the machine may have bound one, or connected from it, meanwhile. A
// bind that fails so is tried again on two other ports; etcd binds both
// before it writes anything to dir. Once bound, they are etcd's, and the
// sessions' configs are written with them after.
func startDemoEtcd(dir string, ports portBase, level string, log *slog.Logger) (*etcdserver.Server, error) {
	const tries = 5
	for try := 1; ; try++ {
		clientURL, peerURL, err := demoEtcdURLs(ports)
		if err != nil {
			return nil, err
		}
		srv, err := etcdserver.Start(dir, clientURL, peerURL, level, os.Stderr)
		if err == nil || !ports.set || ports.n != 0 || !errors.Is(err, syscall.EADDRINUSE) || try == tries {
			return srv, err
		}
		log.Info("etcd's ports were taken since they were picked: picking others", "client", clientURL, "peer", peerURL, "err", err)
	}
}

// coupledDemoEtcdURLs returns etcd's client and peer URLs: ports N+10 and
// N+11 of --port-base N, two free ports for --port-base 0, etcd's own
// defaults without it.
func coupledDemoEtcdURLs(ports portBase) (client, peer string, err error) {
	if !ports.set {
		return "http://127.0.0.1:2379", "http://127.0.0.1:2380", nil
	}
	if ports.n != 0 {
		return "http://127.0.0.1:" + strconv.Itoa(ports.n+10), "http://127.0.0.1:" + strconv.Itoa(ports.n+11), nil
	}
	// etcd advertises the URLs it is given, so a port it would pick itself
	// is no use: these are free now, and bound a moment later, picked
	// again if one was taken meanwhile (see startDemoEtcd).
	var urls [2]string
	for i := range urls {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", "", err
		}
		defer ln.Close()
		urls[i] = "http://" + ln.Addr().String()
	}
	return urls[0], urls[1], nil
}

// coupledDemoSession is the demo session named name in dir, member i of
// the group: session db on the plain demo's ports, app on the next ones.
func coupledDemoSession(dir, name, etcdURL string, ports portBase, i int) *config.Config {
	c := config.Demo(dir)
	c.Session = name
	for s := range c.Primary.Subsystems {
		for v := range c.Primary.Subsystems[s].Volumes {
			c.Primary.Subsystems[s].Volumes[v].Size = coupledDemoVolume
		}
	}
	c.Coupling = config.Coupling{Group: coupledDemoGroup, Etcd: []string{etcdURL}, Lease: config.Duration(10 * time.Second),
		Publish: config.Duration(20 * time.Millisecond),
		// Both primaries read this host's clock; 1ms is what hosts synchronized by
		// NTP on a LAN would set, so the demo writes as they would.
		ClockUncertainty: config.Duration(time.Millisecond)}
	switch {
	case ports.set && ports.n != 0:
		portBase{n: ports.n + 5*i, set: true}.apply(c)
	case ports.set:
		ports.apply(c)
	case i > 0:
		// The next of each of the plain demo's ports.
		c.Primary.NBD, c.Secondary.NBD = "127.0.0.1:"+strconv.Itoa(10809+2*i), "127.0.0.1:"+strconv.Itoa(10810+2*i)
		c.Primary.Control, c.Secondary.Listen, c.Secondary.Control = "127.0.0.1:"+strconv.Itoa(7401+3*i), "127.0.0.1:"+strconv.Itoa(7402+3*i), "127.0.0.1:"+strconv.Itoa(7403+3*i)
		c.Primary.Secondary = c.Secondary.Listen
	}
	return c
}

func printCoupledDemo(w io.Writer, dir, etcdURL string, sessions []*demoSession) {
	var names []string
	for _, d := range sessions {
		names = append(names, d.cfg.Session)
	}
	first := sessions[0].cfg
	vol := first.VolumeNames()[0]
	pv, _, _ := first.PrimaryVolume(vol)
	fmt.Fprintf(w, "Duplex coupled demo: sessions %s in coupled group %q, in %s\n", strings.Join(names, " and "), coupledDemoGroup, dir)
	fmt.Fprintf(w, "  etcd            %s   (embedded, data in %s)\n", etcdURL, filepath.Join(dir, "etcd"))
	for _, d := range sessions {
		fmt.Fprintf(w, "  session %-7s primary NBD nbd://%s/<volume>   secondary NBD nbd://%s/<volume>   status http://%s/ http://%s/\n",
			d.cfg.Session, d.prim.NBDAddr(), d.secondary().NBDAddr(), d.prim.ControlAddr(), d.secondary().ControlAddr())
	}
	fmt.Fprintf(w, "  volumes         %v in each session (%s each)\n", first.VolumeNames(), bytesIEC(int64(pv.Size)))
	fmt.Fprintf(w, `
No secondary applies an update stamped after the group's master time: the least of
the times each member published (the time through which its secondary journaled
every update). Below, every second: the master time, its lag behind the clock, and
each member's time.

Try, in another terminal:
  go run ./cmd/duplex couple list --config %s
  go run ./cmd/duplex status --config %s
  qemu-io -f raw nbd://%s/%s -c 'write -P 0xab 0 1M'

Ctrl-C stops the workload, waits until both secondaries applied everything, stops
both sessions and verifies the secondaries together.
`, filepath.Join(first.Dir, "duplex.toml"), filepath.Join(sessions[len(sessions)-1].cfg.Dir, "duplex.toml"), sessions[0].prim.NBDAddr(), vol)
}

// groupLine is the coupled demo's status line: the group as etcd holds it.
func groupLine(ctx context.Context, store coupling.Store, sessions []*demoSession) string {
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	view, err := store.Read(rctx)
	if err != nil {
		return fmt.Sprintf("master time held: %v", err)
	}
	var master int64
	var members []string
	for _, m := range view.Members {
		r, ok := view.Reports[m]
		if !ok {
			members = append(members, m+" none yet")
			master = -1
			continue
		}
		members = append(members, m+" "+clockText(r.Time))
		if master == 0 || (master > 0 && r.Time < master) {
			master = r.Time
		}
	}
	var gated uint64
	for _, d := range sessions {
		gated += d.secondary().Replica().Stats().GatedGroups
	}
	if master <= 0 {
		return fmt.Sprintf("master time none yet  members: %s", strings.Join(members, ", "))
	}
	lag := time.Duration(time.Now().UnixNano() - master).Round(time.Millisecond)
	return fmt.Sprintf("master time %s  lag %6s  members: %s  groups waiting for it %d", clockText(master), lag, strings.Join(members, ", "), gated)
}

func clockText(ns int64) string { return time.Unix(0, ns).Format("15:04:05.000") }

// waitMasterPast waits until every session's secondary applies through a
// master time after t, holding no journaled group back: with the workload
// stopped, it then holds every write, and the sessions can stop with their
// secondaries identical to their primaries. It returns the least of the
// times they apply through.
func waitMasterPast(sessions []*demoSession, t time.Time, timeout time.Duration) (int64, error) {
	deadline := time.Now().Add(timeout)
	for {
		var least time.Time
		done := true
		for _, d := range sessions {
			c := d.secondary().Status().Coupling
			through, err := time.Parse(time.RFC3339Nano, c.AppliedThrough)
			if err != nil {
				through = time.Time{}
			}
			done = done && through.After(t) && c.GatedGroups == 0
			if least.IsZero() || through.Before(least) {
				least = through
			}
		}
		if done {
			return least.UnixNano(), nil
		}
		if time.Now().After(deadline) {
			return 0, errors.New("the group's master time did not pass the last write within " + timeout.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
