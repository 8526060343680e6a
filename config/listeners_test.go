package config

import (
	"strings"
	"testing"
)

// TestListenersThatCollideAreRefused: "each listener needs its own address"
// is checked by the text of the address, so two listeners on one port that
// the kernel cannot both bind pass: ":P" (every interface) or "0.0.0.0:P"
// beside "127.0.0.1:P", and "localhost:P" beside "127.0.0.1:P". The site
// then fails at start with "bind: address already in use" for a port the
// error does not say which other key holds, or, with both sites on one
// machine, whichever site starts second fails.
func TestListenersThatCollideAreRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(c *Config)
	}{
		{"every interface and loopback", func(c *Config) { c.Primary.Control = ":" + port(c.Primary.NBD) }},
		{"0.0.0.0 and loopback", func(c *Config) { c.Primary.Control = "0.0.0.0:" + port(c.Primary.NBD) }},
		{"localhost and 127.0.0.1", func(c *Config) { c.Secondary.Control = "localhost:" + port(c.Primary.Control) }},
	} {
		c := Demo(t.TempDir())
		tc.mutate(c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), "each listener needs its own address") {
			t.Errorf("%s: primary.nbd %q, primary.control %q, secondary.control %q: Validate says %v, want the listeners' collision",
				tc.name, c.Primary.NBD, c.Primary.Control, c.Secondary.Control, err)
		}
	}
}

func port(addr string) string { return addr[strings.LastIndex(addr, ":")+1:] }
