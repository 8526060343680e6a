package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"

	"duplex/coupling/etcdserver"
)

var etcdSynopsis = synopsis{"etcd", "--dir DIR [--listen URL] [--peer URL] [--log-level LEVEL]"}

// runEtcd runs a single-node etcd until SIGINT or SIGTERM: enough for
// coupled sessions on one machine (a demo, a test); production runs an
// etcd cluster of its own.
func runEtcd(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags(etcdSynopsis, "Runs a single-node etcd (embedded) for coupled sessions to try on one machine: "+
		"the [coupling] etcd endpoints name its --listen URL. It compacts its history each hour to what it was an hour before "+
		"(every member's publication is a revision). Production runs an etcd cluster of three or five nodes instead.")
	dir := fs.String("dir", "", "the `DIR` of etcd's data (created if missing)")
	listen := fs.String("listen", "http://127.0.0.1:2379", "the client `URL`")
	peer := fs.String("peer", "http://127.0.0.1:2380", "the peer `URL` (a single node has no peers, but etcd binds it)")
	level := fs.logLevelFlag("error")
	if err := fs.parseNoArgs(args, stdout); err != nil {
		return err
	}
	if *dir == "" {
		return fs.usageErrorf("--dir DIR is required")
	}
	// etcd logs through its own logger, at the levels --log-level names.
	if _, err := fs.logger(*level); err != nil {
		return err
	}
	for _, u := range []struct{ flag, url string }{{"listen", *listen}, {"peer", *peer}} {
		p, err := url.Parse(u.url)
		if err == nil {
			// A port no listener takes fails etcd's start, after --dir is made.
			if n, perr := strconv.ParseUint(p.Port(), 10, 16); perr != nil || n == 0 {
				err = errors.New("bad port")
			}
		}
		if err != nil || p.Scheme != "http" && p.Scheme != "https" || p.Hostname() == "" {
			return fs.usageErrorf("--%s %q: want an http or https URL with a port from 1 to 65535, e.g. http://127.0.0.1:2379", u.flag, u.url)
		}
	}
	// Created as etcd itself would, readable by its owner alone.
	if err := fs.dirFlag("dir", *dir, 0o700); err != nil {
		return err
	}
	srv, err := etcdserver.Start(*dir, *listen, *peer, strings.ToLower(*level), os.Stderr)
	if err != nil {
		return err
	}
	defer srv.Close()
	fmt.Fprintln(stdout, "etcd serving clients at", *listen)
	select {
	case <-ctx.Done():
		return nil
	case err := <-srv.Err():
		return fmt.Errorf("etcd: %w", err)
	}
}
