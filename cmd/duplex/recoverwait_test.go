package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"duplex/control"
)

// fencingSecondary is the control address of a running secondary whose
// fence waits for its volumes: each status answer shows one more group
// applied, and the fence returns once applied reaches journaled.
type fencingSecondary struct {
	mu        sync.Mutex
	applied   uint64
	journaled uint64
	fencing   bool
	fenced    chan struct{}
}

func (f *fencingSecondary) status() control.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fencing && f.applied < f.journaled {
		f.applied++
		if f.applied == f.journaled {
			close(f.fenced)
		}
	}
	applied, journaled := f.applied, f.journaled
	return control.Status{Session: "startup", Role: "secondary", Link: "disconnected", Group: &applied, JournaledGroup: &journaled,
		ConsistencyTime: "2026-12-02T15:00:00Z"}
}

func (f *fencingSecondary) fence() (int64, error) {
	f.mu.Lock()
	f.fencing = true
	f.mu.Unlock()
	<-f.fenced
	return time.Date(2026, 12, 2, 15, 0, 0, 0, time.UTC).UnixNano(), nil
}

// serveFencing serves f as the secondary of a session config, and returns
// the config's path.
func serveFencing(t *testing.T, f *fencingSecondary) string {
	return serveSecondary(t, &control.Server{Status: f.status, Fence: f.fence})
}

// serveSecondary serves srv as the running secondary of a session config
// that names a control token, and returns the config's path.
func serveSecondary(t *testing.T, srv *control.Server) string {
	t.Helper()
	dir := t.TempDir()
	c := startupSession(dir)
	c.ControlTokenFile = "token"
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	srv.Token = "secret"
	go srv.Serve(ctx, ln)
	c.Secondary.Control = ln.Addr().String()
	return writeSessionConfig(t, dir, c)
}

// TestRecoverWaitsForTheSecondaryToApply: a running secondary with a
// backlog to apply fences only once it is applied. recover waits for it as
// long as --timeout says, showing how far applying has got, and when it
// gives up says that the fence goes on and how to wait for it.
func TestRecoverWaitsForTheSecondaryToApply(t *testing.T) {
	t.Run("backlog applied", func(t *testing.T) {
		path := serveFencing(t, &fencingSecondary{journaled: 4, fenced: make(chan struct{})})
		code, out, errs := runCmd("recover", "--config", path, "--timeout", "5m")
		t.Logf("recover:\n%s", out)
		if code != exitOK {
			t.Fatalf("exit %d: stdout %q, stderr %q", code, out, errs)
		}
		for _, want := range []string{"applying its journal before it fences", "of 4 journaled", "secondary fenced"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("timeout", func(t *testing.T) {
		path := serveFencing(t, &fencingSecondary{journaled: 1 << 40, fenced: make(chan struct{})})
		code, out, errs := runCmd("recover", "--config", path, "--timeout", "3s")
		t.Logf("recover: %s", errs)
		if code != exitFailure {
			t.Fatalf("exit %d, want %d: stdout %q, stderr %q", code, exitFailure, out, errs)
		}
		for _, want := range []string{"not fenced within 3s", "goes on at the secondary", "--timeout"} {
			if !strings.Contains(errs, want) {
				t.Errorf("error lacks %q: %q", want, errs)
			}
		}
	})
}
