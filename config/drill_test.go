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
