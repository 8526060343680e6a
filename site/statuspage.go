package site

import (
	"duplex/config"
	"duplex/control"
)

// sessionSites names both sites of the session for the status page, this
// site's control address as bound (its config may ask for any port).
func sessionSites(cfg *config.Config, role, boundControl string) []control.Site {
	var sites []control.Site
	if cfg.HasPrimary() {
		sites = append(sites, control.Site{Role: "primary", Control: cfg.Primary.Control, NBD: cfg.Primary.NBD})
	}
	if cfg.HasSecondary() {
		sites = append(sites, control.Site{Role: "secondary", Control: cfg.Secondary.Control, NBD: cfg.Secondary.NBD,
			Listen: cfg.Secondary.Listen})
	}
	for i := range sites {
		if sites[i].Role == role && boundControl != "" {
			sites[i].Control = boundControl
		}
	}
	return sites
}
