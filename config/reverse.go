package config

import "errors"

// Reversed returns the session with the sites' roles swapped, as it runs
// once the secondary was promoted and the primary rejoined it (package
// failover): the promoted site, with the [secondary] section's addresses
// and volumes, is the primary, dialing the old primary at [primary]
// listen; the old primary, with the [primary] section's volumes and
// addresses, is its secondary, journaling in [primary] journal. Each site
// keeps its own TLS keys: the promoted site's link keys ([secondary]
// tls_*) are the client's, the old primary's the server's. The sidefile,
// pacing, rate and compression settings are the session's, and reversing
// the result gives the config back. It needs [primary] listen and journal.
func (c *Config) Reversed() (*Config, error) {
	if !c.HasPrimary() || !c.HasSecondary() {
		return nil, errors.New("the reverse direction needs both sites in the config")
	}
	if c.Primary.Listen == "" || c.Primary.Journal == "" {
		return nil, errors.New("primary.listen and primary.journal are not set: the old primary needs them to run as the secondary of the promoted site")
	}
	p, s := c.Primary, c.Secondary
	r := *c
	// The session's settings of [primary] stay; its places are the
	// promoted site's, and tls_server_name, a name in the old secondary's
	// certificate, is not the old primary's.
	r.Primary = p
	r.Primary.NBD, r.Primary.Control, r.Primary.Secondary, r.Primary.Listen, r.Primary.Journal = s.NBD, s.Control, p.Listen, s.Listen, s.Journal
	r.Primary.ServerName, r.Primary.Security, r.Primary.Subsystems = "", s.Security, nil
	r.Secondary = Secondary{Listen: p.Listen, Control: p.Control, NBD: p.NBD, Journal: p.Journal, Security: p.Security}
	for _, ss := range p.Subsystems {
		rs := Subsystem{ID: ss.ID}
		for _, v := range ss.Volumes {
			r.Secondary.Volumes = append(r.Secondary.Volumes, SecondaryVolume{Name: v.Name, Path: v.Path})
			if sv, ok := c.SecondaryVolume(v.Name); ok {
				rs.Volumes = append(rs.Volumes, Volume{Name: v.Name, Path: sv.Path, Size: v.Size})
			}
		}
		r.Primary.Subsystems = append(r.Primary.Subsystems, rs)
	}
	return &r, nil
}
