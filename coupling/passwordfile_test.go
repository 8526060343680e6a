package coupling

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"duplex/config"
)

// TestAnEmptyPasswordFileIsRefused: a password file that holds nothing
// (emptied, cut to its newline) is refused, naming it: read as the empty
// password, etcd's client skips authentication, and every call is refused
// by an etcd that needs it, which the coupler takes for etcd unreachable.
// The refusal says both ways on: the password, or, for an etcd without
// authentication (with which an empty file went unnoticed before), no
// username and password_file at all.
func TestAnEmptyPasswordFileIsRefused(t *testing.T) {
	for name, content := range map[string]string{"empty": "", "a newline": "\n", "CRLF": "\r\n"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			pw := filepath.Join(dir, "etcd-password")
			if err := os.WriteFile(pw, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg := &config.Config{Dir: dir, Coupling: config.Coupling{Group: "g", Etcd: []string{"http://127.0.0.1:1"}, Username: "u", PasswordFile: pw}}
			st, err := DialConfig(cfg)
			if err == nil {
				st.Close()
			}
			if err == nil || !strings.Contains(err.Error(), pw) || !strings.Contains(err.Error(), "empty") ||
				!strings.Contains(err.Error(), "password in it") || !strings.Contains(err.Error(), "remove username and password_file") {
				t.Errorf("DialConfig with %s %s: %v, want it refused naming the file as empty, and saying to write the password or, "+
					"for an etcd without authentication, to remove username and password_file", pw, name, err)
			}
		})
	}
}
