package config

import (
	"strings"
	"testing"
)

// TestDrillNBD: [secondary] drill_nbd is an address of its own, off when
// left out.
func TestDrillNBD(t *testing.T) {
	base := minimal + "[secondary]\nlisten = \"127.0.0.1:7402\"\nnbd = \"127.0.0.1:10810\"\njournal = \"j\"\n%s[[secondary.volume]]\nname = \"v\"\npath = \"w.img\"\n"
	with := func(add string) string { return strings.Replace(base, "%s", add, 1) }
	c, err := Parse([]byte(with("drill_nbd = \"127.0.0.1:10811\"\n")), "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Secondary.DrillNBD != "127.0.0.1:10811" {
		t.Errorf("drill_nbd = %q", c.Secondary.DrillNBD)
	}
	if _, err := Parse([]byte(with("drill_nbd = \"127.0.0.1:10810\"\n")), ""); err == nil || !strings.Contains(err.Error(), "drill_nbd") {
		t.Errorf("drill_nbd on the read-only exports' address: %v", err)
	}
	if _, err := Parse([]byte(with("drill_nbd = \"nowhere\"\n")), ""); err == nil || !strings.Contains(err.Error(), "secondary.drill_nbd:") {
		t.Errorf("drill_nbd not an address: %v", err)
	}
}

// TestDrillBytes: [secondary] drill_bytes bounds a drill's scratch file,
// DefaultDrillBytes when left out with drill_nbd set; it needs drill_nbd.
func TestDrillBytes(t *testing.T) {
	base := minimal + "[secondary]\nlisten = \"127.0.0.1:7402\"\njournal = \"j\"\n%s[[secondary.volume]]\nname = \"v\"\npath = \"w.img\"\n"
	with := func(add string) string { return strings.Replace(base, "%s", add, 1) }
	c, err := Parse([]byte(with("drill_nbd = \"127.0.0.1:10811\"\n")), "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Secondary.DrillBytes != DefaultDrillBytes {
		t.Errorf("left out: drill_bytes = %v, want %v", c.Secondary.DrillBytes, Size(DefaultDrillBytes))
	}
	if c, err = Parse([]byte(with("drill_nbd = \"127.0.0.1:10811\"\ndrill_bytes = \"100GiB\"\n")), ""); err != nil || c.Secondary.DrillBytes != 100*GiB {
		t.Errorf("drill_bytes = \"100GiB\": %v, %v", c, err)
	}
	if c, err = Parse([]byte(with("")), ""); err != nil || c.Secondary.DrillBytes != 0 {
		t.Errorf("no drill_nbd: drill_bytes %v, %v", c, err)
	}
	for _, bad := range []struct{ add, want string }{
		{"drill_bytes = \"1GiB\"\n", "set without drill_nbd"},
		{"drill_nbd = \"127.0.0.1:10811\"\ndrill_bytes = \"4KiB\"\n", "at least 1MiB"},
		{"drill_nbd = \"127.0.0.1:10811\"\ndrill_bytes = \"0\"\n", "0 is too small"},
	} {
		if _, err := Parse([]byte(with(bad.add)), ""); err == nil || !strings.Contains(err.Error(), "secondary.drill_bytes") || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: %v, want secondary.drill_bytes: ...%s", bad.add, err, bad.want)
		}
	}
}
