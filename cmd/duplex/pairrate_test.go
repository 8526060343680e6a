package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"duplex/control"
	"duplex/ratelimit"
)

// rateSession serves a primary's rate limits on a control address, as the
// primary does, and writes a config naming it, with a token.
func rateSession(t *testing.T) (path, addr string) {
	t.Helper()
	dir := t.TempDir()
	copyRate, linkRate := ratelimit.New(0), ratelimit.New(0)
	status := func() control.Status {
		c, l := copyRate.Rate(), linkRate.Rate()
		return control.Status{Role: "primary", CopyRateLimit: &c, LinkRateLimit: &l}
	}
	set := func(c, l *int64) (control.Rates, error) {
		if c != nil {
			copyRate.SetRate(*c)
		}
		if l != nil {
			linkRate.SetRate(*l)
		}
		return control.Rates{Copy: copyRate.Rate(), Link: linkRate.Rate()}, nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go (&control.Server{Status: status, SetRates: set, Token: "secret"}).Serve(ctx, ln)
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
	path = filepath.Join(dir, "duplex.toml")
	if err := os.WriteFile(path, text, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, ln.Addr().String()
}

// TestPairRateChangesStatus: `duplex pair rate` changes the primary's rate
// limits at run time, and `duplex status` shows them, as text and JSON.
func TestPairRateChangesStatus(t *testing.T) {
	path, addr := rateSession(t)
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"pair", "rate", "--config", path, "--copy", "50MiB", "--timeout", "10s"}, &out, &errb); code != exitOK {
		t.Fatalf("pair rate --copy 50MiB: exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "copy rate limit: 50.0 MiB/s") || !strings.Contains(out.String(), "link rate limit: none") {
		t.Fatalf("pair rate printed:\n%s", out.String())
	}
	out.Reset()
	// Flags after the operation or before it; the copy limit is kept.
	if code := run(context.Background(), []string{"pair", "--link", "1000000", "rate", "--config", path}, &out, &errb); code != exitOK {
		t.Fatalf("pair rate --link: exit %d: %s", code, errb.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"status", "--addr", addr}, &out, &errb); code != exitOK {
		t.Fatalf("status: exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "copy-rate-limit:50.0 MiB/s link-rate-limit:976.6 KiB/s") {
		t.Fatalf("status does not show the rates:\n%s", out.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"status", "--addr", addr, "--json"}, &out, &errb); code != exitOK {
		t.Fatalf("status --json: exit %d: %s", code, errb.String())
	}
	var st control.Status
	if err := json.Unmarshal(out.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	if st.CopyRateLimit == nil || *st.CopyRateLimit != 50<<20 || st.LinkRateLimit == nil || *st.LinkRateLimit != 1000000 {
		t.Fatalf("status --json rates: %s", out.String())
	}
	// Without --copy or --link, it prints the rates as they are.
	out.Reset()
	if code := run(context.Background(), []string{"pair", "rate", "--config", path}, &out, &errb); code != exitOK {
		t.Fatalf("pair rate: exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "copy rate limit: 50.0 MiB/s\nlink rate limit: 976.6 KiB/s") {
		t.Fatalf("pair rate printed:\n%s", out.String())
	}
	// 0 lifts a limit.
	out.Reset()
	if code := run(context.Background(), []string{"pair", "rate", "--config", path, "--copy", "0"}, &out, &errb); code != exitOK {
		t.Fatalf("pair rate --copy 0: exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "copy rate limit: none") {
		t.Fatalf("pair rate --copy 0 printed:\n%s", out.String())
	}
}

func TestPairRateRefusesBadValues(t *testing.T) {
	path, _ := rateSession(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"rate", "--config", path, "--copy", "-5MiB"}, "must not be negative"},
		{[]string{"rate", "--config", path, "--link", "fast"}, "unknown unit"},
		{[]string{"rate", "--config", path, "--link", "50"}, `--link "50": too small`},
		// Quoted as given: the space the size's parse lets pass shows.
		{[]string{"rate", "--config", path, "--link", "1 "}, `--link "1 ": too small`},
		{[]string{"rate", "--config", path, "--copy", " 5 fast"}, `--copy " 5 fast": unknown unit "fast"`},
		{[]string{"rate", "vol1", "--config", path, "--copy", "1MiB"}, "rate takes no volume"},
		// A rate given bare, not as a flag's value: the negative one was
		// said to be an unknown flag -5.
		{[]string{"rate", "-5", "--config", path}, `pair rate: "-5" is not a valid rate: a negative number; give a rate with --copy RATE or --link RATE`},
		{[]string{"rate", "--config", path, "-5MiB"}, `"-5MiB" is not a valid rate: a negative number`},
		{[]string{"rate", "--config", path, "--", "-5"}, `"-5" is not a valid rate: a negative number`},
		{[]string{"rate", "50MiB", "--config", path}, `"50MiB": a rate is not an argument: give a rate with --copy RATE or --link RATE`},
		{[]string{"suspend", "vol1", "--config", path, "--copy", "1MiB"}, "pair suspend: unknown flag --copy"},
		{[]string{"rate", "--config", path, "--copy", "1MiB", "--timeout", "0s"}, `--timeout "0s": must be positive`},
	} {
		var out, errb bytes.Buffer
		code := run(context.Background(), append([]string{"pair"}, tc.args...), &out, &errb)
		if code != exitUsage || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("pair %s: exit %d, stderr %q; want exit %d and %q", strings.Join(tc.args, " "), code, errb.String(), exitUsage, tc.want)
		}
	}
}

// TestPairRateEmptyValueIsBadUsage: `--copy=` or `--link ""` (a script's
// `--copy "$RATE"` with RATE unset) is a bad value, exit 2, as the usage
// rules have it; taken for "not given", it exits 0 having changed nothing,
// and prints the old rate as if it were the one asked for.
func TestPairRateEmptyValueIsBadUsage(t *testing.T) {
	path, _ := rateSession(t)
	for _, args := range [][]string{{"--copy="}, {"--link", ""}, {"--copy", "50MiB", "--link="}} {
		var out, errb bytes.Buffer
		argv := append([]string{"pair", "rate", "--config", path, "--timeout", "10s"}, args...)
		if code := run(context.Background(), argv, &out, &errb); code != exitUsage {
			t.Errorf("pair rate %q: exit %d, want %d (a bad value); printed %q", args, code, exitUsage, out.String())
		}
	}
}
