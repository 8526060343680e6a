package main

import (
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
)

// nbdGreeter listens where an NBD export would and greets each connection
// as an NBD server does (newstyle, fixed), then reads the client's flags
// and, not knowing those an HTTP request's first bytes make, hangs up.
func nbdGreeter(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.Write([]byte("NBDMAGICIHAVEOPT\x00\x03"))
				io.ReadFull(c, make([]byte, 4))
			}()
		}
	}()
	return ln.Addr().String()
}

// TestStatusAtAnNBDPortSaysSo: status --addr at an NBD export's port is
// the address mistaken, said plainly, with where the control address is
// found, and exits 2; a config whose control address is an NBD port has
// the key named. Before, exit 1 with 'malformed HTTP response
// "NBDMAGICIHAVEOPT\x00\x03"'.
func TestStatusAtAnNBDPortSaysSo(t *testing.T) {
	nbd := nbdGreeter(t)
	code, out, errs := runCmd("status", "--addr", nbd)
	for _, want := range []string{"--addr " + nbd, "NBD export", "not a control address", "primary.control", "secondary.control"} {
		if code != exitUsage || !strings.Contains(errs, want) || strings.Contains(errs, "malformed") {
			t.Errorf("status --addr %s: exit %d, stdout %q, stderr %q; want exit %d saying %q", nbd, code, out, errs, exitUsage, want)
		}
	}
	dir := t.TempDir()
	c := startupSession(dir)
	c.Primary.Control, c.Secondary.Control = nbd, ""
	path := writeSessionConfig(t, dir, c)
	code, out, errs = runCmd("status", "--config", path)
	for _, want := range []string{"NBD export", "not a control address", "primary.control", filepath.Base(path)} {
		if code != exitFailure || !strings.Contains(errs, want) || strings.Contains(errs, "malformed") {
			t.Errorf("status --config (primary.control %s): exit %d, stdout %q, stderr %q; want exit %d saying %q", nbd, code, out, errs, exitFailure, want)
		}
	}
}
