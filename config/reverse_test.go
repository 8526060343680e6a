package config

import (
	"reflect"
	"strings"
	"testing"
)

// TestReversed: the reverse direction swaps the sites' places, keeps each
// site's keys with its site, and reversing twice gives the config back.
func TestReversed(t *testing.T) {
	c := Demo(t.TempDir())
	c.Primary.Listen, c.Primary.Journal = "127.0.0.1:7404", c.Dir+"/primary/journal"
	c.Primary.TLSCert, c.Primary.TLSKey, c.Primary.TLSCA = "/a/cert", "/a/key", "/a/ca"
	c.Secondary.TLSCert, c.Secondary.TLSKey, c.Secondary.TLSCA = "/b/cert", "/b/key", "/b/ca"
	r, err := c.Reversed()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r.Primary.NBD, c.Secondary.NBD; got != want {
		t.Errorf("reverse primary nbd %q, want the secondary's %q", got, want)
	}
	if got, want := r.Primary.Secondary, c.Primary.Listen; got != want {
		t.Errorf("reverse primary dials %q, want primary.listen %q", got, want)
	}
	if got, want := r.Secondary.Journal, c.Primary.Journal; got != want {
		t.Errorf("reverse secondary journal %q, want primary.journal %q", got, want)
	}
	if got, want := r.Primary.TLSCert, "/b/cert"; got != want {
		t.Errorf("reverse primary's link certificate %q, want the promoted site's %q", got, want)
	}
	if got, want := r.Secondary.TLSCert, "/a/cert"; got != want {
		t.Errorf("reverse secondary's link certificate %q, want the old primary's %q", got, want)
	}
	v, _, ok := r.PrimaryVolume("vol1")
	if sv, _ := c.SecondaryVolume("vol1"); !ok || v.Path != sv.Path || v.Size != 256*MiB {
		t.Errorf("reverse primary vol1 %+v, want the secondary's path %q at 256MiB", v, sv.Path)
	}
	if err := r.Validate(); err != nil {
		t.Errorf("the reversed demo does not validate: %v", err)
	}
	back, err := r.Reversed()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, c) {
		t.Errorf("reversed twice:\n%+v\nwant\n%+v", back, c)
	}
	c.Primary.Listen = ""
	if _, err := c.Reversed(); err == nil || !strings.Contains(err.Error(), "primary.listen") {
		t.Errorf("without primary.listen: %v", err)
	}
}
