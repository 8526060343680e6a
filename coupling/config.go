package coupling

import (
	"time"

	"duplex/config"
)

// DialConfig returns the Store of the group that cfg's [coupling] names.
func DialConfig(cfg *config.Config) (*EtcdStore, error) {
	tlsConf, err := cfg.EtcdTLS()
	if err != nil {
		return nil, err
	}
	pw, err := cfg.EtcdPassword()
	if err != nil {
		return nil, err
	}
	return DialEtcd(EtcdConfig{Group: cfg.Coupling.Group, Endpoints: cfg.Coupling.Etcd, TLS: tlsConf,
		Username: cfg.Coupling.Username, Password: pw, Lease: time.Duration(cfg.Coupling.Lease)})
}
