package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"duplex/config"
	"duplex/internal/testenv"
)

// freeURL is an http URL on a reserved port (testenv.FreeAddr) for an etcd
// to listen on: it binds later, and again when a test restarts it.
func freeURL(t *testing.T) string {
	t.Helper()
	return "http://" + testenv.FreeAddr(t)
}

// TestCouple changes and lists a coupled group's membership in a real etcd,
// which duplex etcd runs until it is stopped.
func TestCouple(t *testing.T) {
	dir := t.TempDir()
	client := freeURL(t)
	ctx, stop := context.WithCancel(context.Background())
	var etcdOut, etcdErr syncBuffer
	etcdDone := make(chan int, 1)
	go func() {
		etcdDone <- run(ctx, []string{"etcd", "--dir", filepath.Join(dir, "etcd"), "--listen", client, "--peer", freeURL(t)}, &etcdOut, &etcdErr)
	}()
	defer func() {
		stop()
		if code := <-etcdDone; code != exitOK || etcdErr.String() != "" {
			t.Errorf("duplex etcd, stopped: exit %d, stderr %q; want exit 0 and nothing logged at error", code, etcdErr.String())
		}
	}()
	for deadline := time.Now().Add(60 * time.Second); !strings.Contains(etcdOut.String(), "etcd serving clients at "+client); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("duplex etcd did not serve: stdout %q, stderr %q", etcdOut.String(), etcdErr.String())
		}
	}
	c := config.Demo(dir)
	c.Coupling = config.Coupling{Group: "payments", Etcd: []string{client}, Lease: config.Duration(10 * time.Second), Publish: config.Duration(20 * time.Millisecond)}
	text, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "duplex.toml")
	if err := os.WriteFile(path, text, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"couple", "add", "--config", path}, 0, "session " + c.Session + " is a member of coupled group payments"},
		{[]string{"couple", "add", "--config", path, "other"}, 0, "session other is a member"},
		{[]string{"couple", "list", "--config", path}, 0, "coupled group payments: 2 members"},
		{[]string{"couple", "list", "--config", path}, 0, "master consistency time unknown: a member has published no time"},
		{[]string{"couple", "remove", "--config", path, "other"}, 0, "session other is no longer a member"},
		{[]string{"couple", "list", "--config", path}, 0, "1 members"},
		{[]string{"couple", "rename", "--config", path}, exitUsage, "unknown operation"},
		{[]string{"couple", "--config", path}, exitUsage, "want add, remove or list"},
	} {
		code, out, errs := runCmd(step.args...)
		if code != step.code || !strings.Contains(out+errs, step.want) {
			t.Errorf("duplex %s: exit %d\n%s%s\nwant exit %d and %q", strings.Join(step.args, " "), code, out, errs, step.code, step.want)
		}
	}
	// A config without [coupling] names no group.
	c.Coupling = config.Coupling{}
	text, _ = c.Encode()
	plain := filepath.Join(dir, "plain.toml")
	os.WriteFile(plain, text, 0o644)
	if code, _, errs := runCmd("couple", "list", "--config", plain); code != exitUsage || !strings.Contains(errs, "has no [coupling] section") {
		t.Errorf("couple list without [coupling]: exit %d, %s", code, errs)
	}
}
