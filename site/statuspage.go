package site

import (
	"net"

	"duplex/config"
	"duplex/control"
)

// sessionSites names both sites of the session for the status page: this
// site by the addresses it bound (its config may ask for any port), the
// other as the config names it, leaving out an address whose port the other
// site picks when it starts (port 0), which this one cannot know.
func sessionSites(cfg *config.Config, self control.Site) []control.Site {
	var sites []control.Site
	if cfg.HasPrimary() {
		sites = append(sites, control.Site{Role: "primary", Control: known(cfg.Primary.Control), NBD: known(cfg.Primary.NBD)})
	}
	if cfg.HasSecondary() {
		sites = append(sites, control.Site{Role: "secondary", Control: known(cfg.Secondary.Control), NBD: known(cfg.Secondary.NBD),
			Listen: known(cfg.Secondary.Listen)})
	}
	for i := range sites {
		if sites[i].Role == self.Role {
			sites[i] = self
		}
		// A link to the other site's page over HTTPS, by the name its
		// certificate holds.
		if sites[i].Role == "primary" && cfg.Primary.ControlTLSCert != "" {
			sites[i].TLS, sites[i].ServerName = true, cfg.Primary.ControlTLSServerName
		}
		if sites[i].Role == "secondary" && cfg.Secondary.ControlTLSCert != "" {
			sites[i].TLS, sites[i].ServerName = true, cfg.Secondary.ControlTLSServerName
		}
	}
	return sites
}

// known returns addr, or "" if its port is picked at start.
func known(addr string) string {
	if _, port, err := net.SplitHostPort(addr); err == nil && port == "0" {
		return ""
	}
	return addr
}
