package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"duplex/config"
	"duplex/site"
)

// firstStart opens the secondary of the config at path as a daemon's
// first start does, and closes it: a secondary that ran but never
// received a group, which recover and promote take over.
func firstStart(t *testing.T, path string) *config.Config {
	t.Helper()
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	startedOnce(t, cfg)
	return cfg
}

// startedOnce is firstStart of the secondary of cfg.
func startedOnce(t *testing.T, cfg *config.Config) {
	t.Helper()
	s, err := site.OpenSecondary(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), site.SecondaryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

// TestRecoverAndPromoteRefuseAConfigWhoseSecondaryNeverRan: recover,
// recover --at, recover --coupled and promote with a config at whose [secondary] paths no
// secondary ever ran (a wrong --config in a runbook) are refused, exit 1,
// naming the directory, and make nothing there: no images, no
// directories. Made anyway, the empty volumes would be reported usable,
// or served read-write as the recovered data.
func TestRecoverAndPromoteRefuseAConfigWhoseSecondaryNeverRan(t *testing.T) {
	for _, args := range [][]string{{"recover"}, {"recover", "--at", "-1m"}, {"recover", "--coupled"}, {"promote"}} {
		cmd := strings.Join(args, " ")
		t.Run(cmd, func(t *testing.T) {
			dir := t.TempDir()
			c := startupSession(dir)
			c.Secondary.Control = ""
			c.Secondary.History = config.Duration(time.Hour)
			if args[len(args)-1] == "--coupled" {
				// Refused before etcd is asked (here none answers): the
				// first member to ask fixes the group's recovery time.
				c.Coupling = config.Coupling{Group: "g", Etcd: []string{"http://127.0.0.1:1"}, Lease: config.Duration(10 * time.Second),
					Publish: config.Duration(20 * time.Millisecond)}
			}
			path := writeSessionConfig(t, dir, c)
			secDir := filepath.Dir(c.Secondary.Journal)
			// Bounded: a promote that went ahead would serve until it ends.
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var out, errb bytes.Buffer
			code := run(ctx, append(args, "--config", path, "--log-level", "error"), &out, &errb)
			if code != exitFailure || !strings.Contains(errb.String(), secDir+" holds no secondary") ||
				strings.Contains(out.String(), "no consistency group was ever applied") {
				t.Errorf("duplex %s --config %s: exit %d, stdout %q, stderr %q; want exit 1 saying %s holds no secondary",
					cmd, path, code, out.String(), errb.String(), secDir)
			}
			if _, err := os.Stat(secDir); !os.IsNotExist(err) {
				entries, _ := os.ReadDir(secDir)
				var names []string
				for _, e := range entries {
					names = append(names, e.Name())
				}
				t.Errorf("duplex %s made %s (err %v), holding %v; want nothing made", cmd, secDir, err, names)
			}
			for _, v := range c.Secondary.Volumes {
				if _, err := os.Stat(v.Path); !os.IsNotExist(err) {
					t.Errorf("duplex %s made the image %s (err %v); want nothing made", cmd, v.Path, err)
				}
			}
		})
	}
}
