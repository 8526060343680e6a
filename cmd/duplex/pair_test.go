package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"duplex/config"
	"duplex/control"
)

// fakePairs is a primary's pair operations over states kept in memory, with
// the primary's refusals: a pair must be suspended to resume, and so on.
type fakePairs struct {
	mu    sync.Mutex
	state map[string]string // "" = not a pair
	calls []string
}

func (f *fakePairs) op(vol, op string, ok func(string) bool, next string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, op+" "+vol)
	if !ok(f.state[vol]) {
		return fmt.Errorf("%s: cannot %s a pair that is %q", vol, op, f.state[vol])
	}
	f.state[vol] = next
	return nil
}

func (f *fakePairs) Add(vol string) error {
	return f.op(vol, "add", func(s string) bool { return s == "" }, "pending")
}
func (f *fakePairs) Suspend(_ context.Context, vol string, _ bool) error {
	return f.op(vol, "suspend", func(s string) bool { return s != "" }, "suspended")
}
func (f *fakePairs) Resume(vol string) error {
	return f.op(vol, "resume", func(s string) bool { return s == "suspended" }, "pending")
}
func (f *fakePairs) ResumeInconsistent(vol string) error {
	return f.op(vol, "resume", func(s string) bool { return s == "suspended" }, "pending")
}
func (f *fakePairs) Delete(vol string) (time.Time, error) {
	return time.Time{}, f.op(vol, "delete", func(s string) bool { return s != "" }, "")
}

// SuspendAll and ResumeAll change every pair they apply to in one call, as
// the primary does at one point of its timer.
func (f *fakePairs) SuspendAll(_ context.Context, _ bool) ([]string, error) {
	return f.all("suspend", func(s string) bool { return s != "" }, "suspended")
}
func (f *fakePairs) ResumeAll() ([]string, error) {
	return f.all("resume", func(s string) bool { return s == "suspended" }, "pending")
}
func (f *fakePairs) all(op string, ok func(string) bool, next string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, op+" --all")
	var vols []string
	for _, v := range []string{"vol1", "vol2", "vol3", "vol4"} {
		if ok(f.state[v]) {
			f.state[v] = next
			vols = append(vols, v)
		}
	}
	return vols, nil
}

func (f *fakePairs) status() control.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := control.Status{Role: "primary"}
	for _, v := range []string{"vol1", "vol2", "vol3", "vol4"} {
		if f.state[v] != "" {
			st.Volumes = append(st.Volumes, control.VolumeStatus{Name: v, State: f.state[v]})
		}
	}
	return st
}

// pairSession serves fake pairs on a control address and writes a config
// naming it, with a token.
func pairSession(t *testing.T, state map[string]string) (*fakePairs, string) {
	t.Helper()
	dir := t.TempDir()
	fp := &fakePairs{state: state}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &control.Server{Status: fp.status, Pairs: fp, Token: "secret"}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go srv.Serve(ctx, ln)
	c := startupSession(dir)
	c.Primary.Control = ln.Addr().String()
	c.ControlTokenFile = "token"
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	text, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "duplex.toml")
	if err := os.WriteFile(path, text, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(path); err != nil {
		t.Fatal(err)
	}
	return fp, path
}

// TestPairAllSkipsPairsAlreadyThere: --all applies the operation to every
// pair it applies to, and only reports the others. Before, the first volume
// already in the wanted state (a pair the session resumed by itself, a
// deleted one) ended the command, and the volumes after it were left as they
// were.
func TestPairAllSkipsPairsAlreadyThere(t *testing.T) {
	cases := []struct {
		op         string
		state      map[string]string
		want       map[string]string
		wantCalled int
	}{
		// Suspend and resume go to the primary as one operation: pairs
		// changed one after another while writes go on would leave the
		// secondary in a state the primary never held.
		{"resume", map[string]string{"vol1": "duplex", "vol2": "suspended", "vol3": "", "vol4": "suspended"},
			map[string]string{"vol1": "duplex", "vol2": "pending", "vol3": "", "vol4": "pending"}, 1},
		// A suspended pair is suspended again: one the session suspended by
		// itself then stays suspended when the link returns.
		{"suspend", map[string]string{"vol1": "suspended", "vol2": "duplex", "vol3": "", "vol4": "pending"},
			map[string]string{"vol1": "suspended", "vol2": "suspended", "vol3": "", "vol4": "suspended"}, 1},
		{"add", map[string]string{"vol1": "duplex", "vol2": "", "vol3": "suspended", "vol4": ""},
			map[string]string{"vol1": "duplex", "vol2": "pending", "vol3": "suspended", "vol4": "pending"}, 2},
		{"delete", map[string]string{"vol1": "duplex", "vol2": "", "vol3": "suspended", "vol4": "pending"},
			map[string]string{"vol1": "", "vol2": "", "vol3": "", "vol4": ""}, 3},
	}
	for _, c := range cases {
		t.Run(c.op, func(t *testing.T) {
			fp, path := pairSession(t, c.state)
			var out, errb bytes.Buffer
			if code := run(context.Background(), []string{"pair", c.op, "--all", "--config", path}, &out, &errb); code != exitOK {
				t.Fatalf("duplex pair %s --all: exit %d\nstdout: %s\nstderr: %s", c.op, code, out.String(), errb.String())
			}
			for v, want := range c.want {
				if got := fp.state[v]; got != want {
					t.Errorf("%s: %q after pair %s --all, want %q", v, got, c.op, want)
				}
			}
			if len(fp.calls) != c.wantCalled {
				t.Errorf("calls %v, want %d", fp.calls, c.wantCalled)
			}
			if (c.op == "suspend" || c.op == "resume") && (len(fp.calls) != 1 || fp.calls[0] != c.op+" --all") {
				t.Errorf("calls %v, want the one operation %q", fp.calls, c.op+" --all")
			}
			if !strings.Contains(out.String(), "left as") {
				t.Errorf("output does not say which volumes were left as they were:\n%s", out.String())
			}
		})
	}
}
