package control

import (
	"crypto/tls"
	"strings"
	"testing"
)

// TestParseEndpoint: --addr takes host:port or the control address's URL;
// https (or a CA with a bare host:port) means TLS, and what is neither is
// refused saying what is wanted.
func TestParseEndpoint(t *testing.T) {
	ca := &tls.Config{}
	for _, tc := range []struct {
		in      string
		conf    *tls.Config
		want    string // Endpoint.String(); "" for an error
		wantErr string
	}{
		{"127.0.0.1:7401", nil, "http://127.0.0.1:7401", ""},
		{"127.0.0.1:7401", ca, "https://127.0.0.1:7401", ""},
		{"http://127.0.0.1:7401/", nil, "http://127.0.0.1:7401", ""},
		{"https://10.1.2.3:7401", nil, "https://10.1.2.3:7401", ""},
		{"https://[::1]:7401/", ca, "https://[::1]:7401", ""},
		{"http://127.0.0.1:7401", ca, "", "needs an https:// URL"},
		{"127.0.0.1", nil, "", "neither host:port nor a URL"},
		{"https://10.1.2.3/", nil, "", "with its port"},
		{"https://10.1.2.3:7401/v1/status", nil, "", "with its port"},
		{"ftp://10.1.2.3:7401", nil, "", "want http or https"},
		// A port no connection can be made to fails as a usage error,
		// not at the dial ("invalid port"), which reads as the site's.
		{"127.0.0.1:99999", nil, "", "port 99999: want 1 to 65535"},
		{"127.0.0.1:0", nil, "", "port 0: want 1 to 65535"},
		{"https://10.1.2.3:70000", nil, "", "port 70000: want 1 to 65535"},
		{"127.0.0.1:nosuchservice", nil, "", `port "nosuchservice"`},
		// A service's name passes the dial's lookup but not the URL the
		// request is sent to, whose port is digits only.
		{"127.0.0.1:http", nil, "", `port "http"`},
		{"[::1]:https", ca, "", `port "https"`},
		{"127.0.0.1:07401", nil, "http://127.0.0.1:07401", ""},
	} {
		at, err := ParseEndpoint(tc.in, tc.conf)
		switch {
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("ParseEndpoint(%q) = %v, %v; want an error saying %q", tc.in, at, err, tc.wantErr)
		case tc.wantErr == "" && (err != nil || at.String() != tc.want):
			t.Errorf("ParseEndpoint(%q) = %v, %v; want %s", tc.in, at, err, tc.want)
		case tc.wantErr == "" && tc.conf != nil && at.TLS != tc.conf:
			t.Errorf("ParseEndpoint(%q) did not keep the CA's TLS configuration", tc.in)
		}
	}
}
