package main

import (
	"path/filepath"
	"strings"
	"testing"

	"duplex/config"
)

// TestPairAddrAtAnAddressOfAnotherKindSaysSo: --addr naming one of the
// config's addresses that is not a control address (an NBD address, the
// link's) is refused before anything is sent, naming the key it is and
// the control addresses. Before, the operation went there and failed on
// what answered: 'malformed HTTP response "NBDMAGICIHAVEOPT..."' at an NBD
// address, 'connection reset by peer' at the link's.
func TestPairAddrAtAnAddressOfAnotherKindSaysSo(t *testing.T) {
	_, path := pairSession(t, map[string]string{"vol1": "duplex"})
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	c.Primary.NBD, c.Secondary.NBD = "127.0.0.1:20290", "127.0.0.1:20291"
	c.Secondary.Listen, c.Primary.Secondary, c.Primary.Listen = "127.0.0.1:20292", "127.0.0.1:20292", "127.0.0.1:20293"
	c.Primary.Journal = filepath.Join(filepath.Dir(path), "primary", "journal")
	c.Secondary.Control = "127.0.0.1:20294"
	text, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, text, 0o644)
	for _, tc := range []struct{ addr, key string }{
		{"127.0.0.1:20290", "primary.nbd"},
		{"http://127.0.0.1:20291", "secondary.nbd"},
		{"127.0.0.1:20292", "secondary.listen"},
		{"127.0.0.1:20293", "primary.listen"},
	} {
		code, out, errs := runCmd("pair", "delete", "vol1", "--config", path, "--addr", tc.addr)
		if code != exitUsage || !strings.Contains(errs, tc.key) || !strings.Contains(errs, c.Primary.Control) || !strings.Contains(errs, c.Secondary.Control) {
			t.Errorf("pair delete vol1 --addr %s: exit %d, stdout %q, stderr %q; want a usage error naming %s and both control addresses",
				tc.addr, code, out, errs, tc.key)
		}
	}
}
