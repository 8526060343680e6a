package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
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
	// copied is the state an added or resumed pair goes to: "pending"
	// when empty; "duplex" for a copy that ends at once.
	copied string
	// lag, if set, is the primary's link: connected, its secondary's
	// acknowledged time that many seconds old.
	lag *float64
	// held has a suspend's drain never end (updates held for a
	// secondary that does not acknowledge them): it fails once its
	// bound runs out, the pair left as it was, as the primary's does.
	held bool
}

func (f *fakePairs) copyState() string {
	if f.copied != "" {
		return f.copied
	}
	return "pending"
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
	return f.op(vol, "add", func(s string) bool { return s == "" }, f.copyState())
}
func (f *fakePairs) Suspend(ctx context.Context, vol string, drain bool) error {
	if drain && f.held {
		<-ctx.Done()
		return fmt.Errorf("could not drain before suspending, so %s is left as it was, not suspended: %w", vol, context.Cause(ctx))
	}
	return f.op(vol, "suspend", func(s string) bool { return s != "" }, "suspended")
}
func (f *fakePairs) Resume(vol string) error {
	return f.op(vol, "resume", func(s string) bool { return s == "suspended" }, f.copyState())
}
func (f *fakePairs) ResumeInconsistent(vol string) error {
	return f.op(vol, "resume-inconsistent", func(s string) bool { return s == "suspended" }, f.copyState())
}
func (f *fakePairs) Delete(vol string) (time.Time, error) {
	return time.Time{}, f.op(vol, "delete", func(s string) bool { return s != "" }, "")
}

// SuspendAll and ResumeAll change every pair they apply to in one call, as
// the primary does at one point of its timer.
func (f *fakePairs) SuspendAll(ctx context.Context, drain bool) ([]string, error) {
	if drain && f.held {
		<-ctx.Done()
		return nil, fmt.Errorf("could not drain before suspending, so no pair is suspended: %w", context.Cause(ctx))
	}
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
	if f.lag != nil {
		st.Link, st.LagSeconds = "connected", f.lag
	}
	for _, v := range []string{"vol1", "vol2", "vol3", "vol4"} {
		if f.state[v] != "" {
			st.Volumes = append(st.Volumes, control.VolumeStatus{Name: v, State: f.state[v], SizeBytes: 1 << 20, CopiedBytes: 1 << 20})
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

// TestPairOperationsFlagsAnywhere: every operation on a volume takes its
// flags before the operation, between it and the volume, or after both.
func TestPairOperationsFlagsAnywhere(t *testing.T) {
	cases := []struct {
		op, from, to, said string
		flags              []string
	}{
		{"add", "", "pending", "vol2: add requested", nil},
		{"suspend", "duplex", "suspended", "vol2: suspend requested", []string{"--timeout", "10s"}},
		{"resume", "suspended", "pending", "vol2: resume requested", []string{"--timeout=10s"}},
		{"resume", "suspended", "pending", "vol2: resume requested", []string{"--inconsistent"}},
		{"delete", "duplex", "", "vol2: no longer a pair; its secondary copy was never consistent", nil},
	}
	for _, c := range cases {
		t.Run(strings.Join(append([]string{c.op}, c.flags...), " "), func(t *testing.T) {
			for _, order := range []string{"flags last", "flags between", "flags first"} {
				fp, path := pairSession(t, map[string]string{"vol1": "duplex", "vol2": c.from})
				flags := append([]string{"--config", path}, c.flags...)
				var args []string
				switch order {
				case "flags last":
					args = append([]string{"pair", c.op, "vol2"}, flags...)
				case "flags between":
					args = append(append([]string{"pair", c.op}, flags...), "vol2")
				case "flags first":
					args = append(append([]string{"pair"}, flags...), c.op, "vol2")
				}
				code, out, errs := runCmd(args...)
				if code != exitOK || errs != "" || !strings.Contains(out, c.said) {
					t.Errorf("duplex %s: exit %d, stdout %q, stderr %q; want exit 0 and %q", strings.Join(args, " "), code, out, errs, c.said)
				}
				if got := fp.state["vol2"]; got != c.to {
					t.Errorf("%s: vol2 is %q, want %q", order, got, c.to)
				}
				if fp.state["vol1"] != "duplex" {
					t.Errorf("%s: vol1 changed to %q", order, fp.state["vol1"])
				}
				wantCall := c.op + " vol2"
				if slices.Contains(c.flags, "--inconsistent") {
					wantCall = "resume-inconsistent vol2"
				}
				if len(fp.calls) != 1 || fp.calls[0] != wantCall {
					t.Errorf("%s: calls %v, want [%s]", order, fp.calls, wantCall)
				}
			}
		})
	}
}

// TestPairWaitPrintsLines: pair add --wait, its output not a terminal,
// prints its progress one line per update, never a carriage return.
func TestPairWaitPrintsLines(t *testing.T) {
	fp, path := pairSession(t, map[string]string{"vol1": "duplex"})
	fp.copied = "duplex"
	code, out, errs := runCmd("pair", "add", "--wait", "vol3", "--config", path)
	if code != exitOK || errs != "" {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	want := "vol3: add requested\n[==============================] 100.0%  1.0 MiB/1.0 MiB"
	if !strings.HasPrefix(out, want) || !strings.HasSuffix(out, "\nduplex; 0 B copied\n") || strings.Contains(out, "\r") {
		t.Errorf("pair add --wait printed %q, want lines starting %q", out, want)
	}
}

// TestPairAddWaitEitherOrder: the two orders an operator writes, the
// volume before --config or after it, each with --wait, add the pair and
// wait for its copy alike.
func TestPairAddWaitEitherOrder(t *testing.T) {
	for _, order := range [][]string{
		{"pair", "add", "vol3", "--config", "F", "--wait"},
		{"pair", "add", "--config", "F", "vol3", "--wait"},
	} {
		fp, path := pairSession(t, map[string]string{"vol1": "duplex"})
		fp.copied = "duplex"
		args := slices.Clone(order)
		args[slices.Index(args, "F")] = path
		code, out, errs := runCmd(args...)
		if code != exitOK || errs != "" || !strings.HasPrefix(out, "vol3: add requested\n") || !strings.HasSuffix(out, "\nduplex; 0 B copied\n") {
			t.Errorf("duplex %s: exit %d, stdout %q, stderr %q; want exit 0, the add and the copy's end", strings.Join(order, " "), code, out, errs)
		}
		if len(fp.calls) != 1 || fp.calls[0] != "add vol3" || fp.state["vol3"] != "duplex" {
			t.Errorf("duplex %s: calls %v, vol3 %q; want one add and vol3 duplex", strings.Join(order, " "), fp.calls, fp.state["vol3"])
		}
	}
}
