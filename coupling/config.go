package coupling

import (
	"fmt"
	"os"
	"strings"
	"time"

	"duplex/config"
	"duplex/tlsconf"
)

// DialConfig returns the Store of the group that cfg's [coupling] names.
func DialConfig(cfg *config.Config) (*EtcdStore, error) {
	tlsConf, err := tlsconf.Etcd(cfg)
	if err != nil {
		return nil, err
	}
	pw := ""
	if cfg.Coupling.Username != "" { // config: password_file is set with it
		b, err := os.ReadFile(cfg.Resolve(cfg.Coupling.PasswordFile))
		if err != nil {
			return nil, fmt.Errorf("coupling.password_file: %w", err)
		}
		pw = strings.TrimRight(string(b), "\r\n")
		if pw == "" {
			// etcd's client skips authentication without a password: every
			// call would be refused, taken for etcd unreachable. An etcd
			// without authentication took it, as it takes no user at all.
			return nil, fmt.Errorf("coupling.password_file %s is empty: write user %s's etcd password in it "+
				"(for an etcd without authentication, remove username and password_file from [coupling] instead)",
				cfg.Resolve(cfg.Coupling.PasswordFile), cfg.Coupling.Username)
		}
	}
	return DialEtcd(EtcdConfig{Group: cfg.Coupling.Group, Endpoints: cfg.Coupling.Etcd, TLS: tlsConf,
		Username: cfg.Coupling.Username, Password: pw, Lease: time.Duration(cfg.Coupling.Lease)})
}
