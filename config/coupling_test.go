package config

import (
	"strings"
	"testing"
	"time"
)

func TestCoupling(t *testing.T) {
	base := minimal + "\n" + minimalSecondary
	for _, tc := range []struct {
		name, section, wantErr string
	}{
		{"none", "", ""},
		{"group and one endpoint", "[coupling]\ngroup = \"payments\"\netcd = [\"http://127.0.0.1:2379\"]", ""},
		{"tls", "[coupling]\ngroup = \"payments\"\netcd = [\"https://etcd1.example:2379\", \"https://etcd2.example:2379\"]\ntls_ca = \"ca.pem\"\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"", ""},
		{"no group", "[coupling]\netcd = [\"http://127.0.0.1:2379\"]", "coupling.group: missing: name the coupled group"},
		{"no endpoints", "[coupling]\ngroup = \"payments\"", "coupling.etcd: missing: the etcd endpoints"},
		{"bad group", "[coupling]\ngroup = \"pay ments\"\netcd = [\"http://127.0.0.1:2379\"]", "coupling.group: \"pay ments\" is not a valid name"},
		{"endpoint without scheme", "[coupling]\ngroup = \"g\"\netcd = [\"127.0.0.1:2379\"]", "coupling.etcd[0]: \"127.0.0.1:2379\" is not an etcd endpoint"},
		{"endpoint without port", "[coupling]\ngroup = \"g\"\netcd = [\"http://etcd\"]", "coupling.etcd[0]: \"etcd\" is not a host:port"},
		{"endpoint with path", "[coupling]\ngroup = \"g\"\netcd = [\"http://etcd:2379/v3\"]", "no path"},
		{"endpoint twice", "[coupling]\ngroup = \"g\"\netcd = [\"http://etcd:2379\", \"http://etcd:2379\"]", "coupling.etcd[1]: \"http://etcd:2379\" is also coupling.etcd[0]"},
		{"not a list", "[coupling]\ngroup = \"g\"\netcd = \"http://etcd:2379\"", "coupling.etcd: must be an array of strings"},
		{"not strings", "[coupling]\ngroup = \"g\"\netcd = [2379]", "coupling.etcd: entry 0 must be a string"},
		{"http with tls", "[coupling]\ngroup = \"g\"\netcd = [\"http://etcd:2379\"]\ntls_ca = \"ca.pem\"", "plain http, but [coupling] has TLS settings"},
		{"cert without key", "[coupling]\ngroup = \"g\"\netcd = [\"https://etcd:2379\"]\ntls_cert = \"c.pem\"", "coupling.tls_key: missing"},
		{"user without password", "[coupling]\ngroup = \"g\"\netcd = [\"https://etcd:2379\"]\nusername = \"u\"", "coupling.password_file: missing"},
		{"lease too short", "[coupling]\ngroup = \"g\"\netcd = [\"http://etcd:2379\"]\nlease = \"1s\"", "coupling.lease: 1s: must be from 2s to 1h"},
		{"misspelt key", "[coupling]\ngroup = \"g\"\netcd = [\"http://etcd:2379\"]\netdc = []", "did you mean \"etcd\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(base+tc.section), "/cfg")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.section == "" {
				if c.Coupled() {
					t.Error("coupled without [coupling]")
				}
				return
			}
			if !c.Coupled() || time.Duration(c.Coupling.Lease) != 10*time.Second || time.Duration(c.Coupling.Publish) != 20*time.Millisecond ||
				time.Duration(c.Coupling.ClockUncertainty) != time.Millisecond {
				t.Errorf("coupled %v, lease %s, publish %s: want the defaults 10s and 20ms", c.Coupled(), c.Coupling.Lease, c.Coupling.Publish)
			}
			if c.Coupling.TLSCA != "" && c.Coupling.TLSCA != "/cfg/ca.pem" {
				t.Errorf("tls_ca %q, want it resolved against the config's directory", c.Coupling.TLSCA)
			}
			// Encode writes what Parse reads back.
			back, text := reparse(t, c, "/cfg")
			if strings.Join(back.Coupling.Etcd, ",") != strings.Join(c.Coupling.Etcd, ",") || back.Coupling.Group != c.Coupling.Group {
				t.Errorf("encoded and parsed again: %+v, want %+v\n%s", back.Coupling, c.Coupling, text)
			}
		})
	}
}
