package main

import (
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"duplex/config"
)

// TestPairOperationAtASiteThatGivesNoStatusFailsAtOnce: the site that
// would take the operation, named by --addr or the config's primary (no
// secondary control address), does not give its status: it takes the
// connection and never answers, or nothing listens there. The operation
// is not sent: the command fails once the status wait is over, exit 1,
// naming the address, saying nothing was sent, and how to check the site.
// Before, the operation was sent anyway and, at a site that does not
// answer, waited out --timeout (10 s here; 5 min by default) for the same
// silence.
func TestPairOperationAtASiteThatGivesNoStatusFailsAtOnce(t *testing.T) {
	defer func(w time.Duration) { pairStatusWait = w }(pairStatusWait)
	pairStatusWait = 300 * time.Millisecond
	silent := silentListener(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close()
	fp, path := pairSession(t, map[string]string{"vol1": "duplex"})
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	c.Primary.Control, c.Secondary.Control = silent, ""
	text, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	alone := filepath.Join(filepath.Dir(path), "alone.toml")
	writeFile(t, alone, text, 0o644)
	for _, tc := range []struct {
		name, addr, says string
		args             []string
	}{
		{"--addr silent", silent, "in time", []string{"pair", "suspend", "vol1", "--config", path, "--addr", silent}},
		{"--addr silent, rate", silent, "in time", []string{"pair", "rate", "--copy", "50MiB", "--config", path, "--addr", silent}},
		{"--addr silent, --all", silent, "in time", []string{"pair", "suspend", "--all", "--config", path, "--addr", silent}},
		{"--addr refused", refused, "connection refused", []string{"pair", "delete", "vol1", "--config", path, "--addr", refused}},
		{"the config's primary silent", silent, "in time", []string{"pair", "suspend", "vol1", "--config", alone}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			code, out, errs := runCmd(append(tc.args, "--timeout", "10s")...)
			took := time.Since(start)
			if code != exitFailure || !strings.Contains(errs, tc.addr) || !strings.Contains(errs, tc.says) ||
				!strings.Contains(errs, "nothing was sent") || !strings.Contains(errs, "duplex status --addr") {
				t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 1 naming %s, %q, that nothing was sent and duplex status --addr",
					strings.Join(tc.args[:3], " "), code, out, errs, tc.addr, tc.says)
			}
			if byAddr := slices.Contains(tc.args, "--addr"); byAddr == strings.Contains(errs, "name the site that takes the operation with --addr") {
				t.Errorf("%s: stderr %q; want it to say to name the site with --addr only where --addr did not name it", strings.Join(tc.args[:3], " "), errs)
			}
			if took > pairStatusWait+3*time.Second {
				t.Errorf("%s failed after %s; want it at once after the status wait (%s)", strings.Join(tc.args[:3], " "), took, pairStatusWait)
			}
			if len(fp.calls) != 0 {
				t.Errorf("calls at the session's primary: %v", fp.calls)
			}
		})
	}
}
