package config

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// FieldError is one problem with a config, naming the field by its path in
// the file, e.g. "primary.subsystem[1].volume[0].size" (indexes from 0, in
// file order).
type FieldError struct {
	Field   string
	Problem string
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Problem
	}
	return e.Field + ": " + e.Problem
}

type problems []error

func (p *problems) add(field, format string, args ...any) {
	*p = append(*p, &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)})
}

// Validate checks the whole config and returns every problem found, joined
// with errors.Join; each is a *FieldError naming its field.
func (c *Config) Validate() error {
	var p problems
	if c.Session == "" {
		p.add("session", `missing: name the session, e.g. session = "payroll"`)
	} else if msg := nameProblem(c.Session, 64); msg != "" {
		p.add("session", "%s", msg)
	}
	if c.Interval < MinInterval || c.Interval > MaxInterval {
		p.add("interval", "%s is out of range: must be between %s and %s", c.Interval, MinInterval, MaxInterval)
	}
	hasP, hasS := c.HasPrimary(), c.HasSecondary()
	if !hasP && !hasS {
		p.add("", "the config describes neither site: add a [primary] section, a [secondary] section, or both")
	}
	if hasP {
		c.validatePrimary(&p)
	}
	if hasS {
		c.validateSecondary(&p)
	}
	if hasP && hasS {
		c.validatePair(&p)
	}
	c.validatePaths(&p)
	return errors.Join(p...)
}

// nameProblem says what is wrong with a session, subsystem or volume name.
func nameProblem(s string, max int) string {
	ok := len(s) >= 1 && len(s) <= max && isAlnum(s[0])
	for i := 0; ok && i < len(s); i++ {
		ok = isAlnum(s[i]) || s[i] == '.' || s[i] == '_' || s[i] == '-'
	}
	if ok {
		return ""
	}
	return fmt.Sprintf("%q is not a valid name: use 1 to %d letters, digits, '.', '_' or '-', starting with a letter or digit", s, max)
}

func isAlnum(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9'
}

// checkAddr validates a host:port address. A listen address may leave the
// host empty (all interfaces) and use port 0 (any free port); a dial address
// may not.
func checkAddr(p *problems, field, addr string, listen bool) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		p.add(field, "%q is not a host:port address (e.g. \"127.0.0.1:7402\")", addr)
		return
	}
	n, err := strconv.Atoi(port)
	lo := 1
	if listen {
		lo = 0
	}
	if err != nil || n < lo || n > 65535 {
		p.add(field, "%q: port %q must be a number from %d to 65535", addr, port, lo)
	}
	if !listen && host == "" {
		p.add(field, "%q: the host is missing", addr)
	}
}

// checkTLS checks that a site sets all three TLS files of one listener or
// dialer (prefix "" for the link's tls_*, "nbd_" for nbd_tls_*) or none.
func checkTLS(p *problems, site, prefix string, cert, key, ca string) {
	set := 0
	for _, f := range []string{cert, key, ca} {
		if f != "" {
			set++
		}
	}
	if set > 0 && set < 3 {
		names := prefix + "tls_cert, " + prefix + "tls_key and " + prefix + "tls_ca"
		for _, f := range []struct{ name, v string }{{"tls_cert", cert}, {"tls_key", key}, {"tls_ca", ca}} {
			if f.v == "" {
				p.add(site+"."+prefix+f.name, "missing: TLS needs %s all set (or none of them)", names)
			}
		}
	}
}

// checkInsecure refuses insecure = true where it can have no effect: the
// link has TLS, NBD (if served) has TLS and the control address (if any)
// has a token, so nothing is left for it to allow.
func (c *Config) checkInsecure(p *problems, site string, insecure, linkTLS, nbdTLS bool, nbd, control string) {
	if !insecure || !linkTLS || (nbd != "" && !nbdTLS) || (control != "" && c.ControlTokenFile == "") {
		return
	}
	p.add(site+".insecure", "cannot be true when the link has TLS (tls_cert, tls_key, tls_ca), NBD has TLS or is not served, "+
		"and the control address has a token or is not served: there is nothing left to allow, remove insecure")
}

func (c *Config) validatePrimary(p *problems) {
	pr := &c.Primary
	if pr.NBD == "" {
		p.add("primary.nbd", `missing: the NBD listen address, e.g. nbd = "127.0.0.1:10809"`)
	} else {
		checkAddr(p, "primary.nbd", pr.NBD, true)
	}
	if pr.Control != "" {
		checkAddr(p, "primary.control", pr.Control, true)
		if pr.Control == pr.NBD && !anyPort(pr.NBD) {
			p.add("primary.control", "%q is also primary.nbd: each listener needs its own address", pr.Control)
		}
	}
	if pr.Secondary == "" {
		p.add("primary.secondary", `missing: where the secondary listens, e.g. secondary = "127.0.0.1:7402"`)
	} else {
		checkAddr(p, "primary.secondary", pr.Secondary, false)
	}
	for _, r := range []struct {
		key string
		v   Size
	}{{"primary.copy_rate_limit", pr.CopyRateLimit}, {"primary.link_rate_limit", pr.LinkRateLimit}} {
		if r.v < 0 {
			p.add(r.key, "%d must not be negative: 0 or leave it out for no limit", int64(r.v))
		} else if r.v > 0 && r.v < MinRateLimit {
			p.add(r.key, "%s bytes per second is too small: 0 (no limit) or at least %s, e.g. \"50MiB\"", r.v, MinRateLimit)
		}
	}
	if pr.SidefileLimit < MinSidefileLimit {
		p.add("primary.sidefile_limit", "%s is too small: must be at least %s", pr.SidefileLimit, MinSidefileLimit)
	} else if n := Size(len(pr.Subsystems)); n > 0 && pr.SidefileLimit > MaxSidefileTotal/n {
		p.add("primary.sidefile_limit", "%s is too large for %d subsystems: together at most %s, the largest consistency group the secondary journals",
			pr.SidefileLimit, n, MaxSidefileTotal)
	}
	if pr.SuspendAfter <= 0 {
		p.add("primary.suspend_after", "%s: must be positive", pr.SuspendAfter)
	}
	if pr.PacingStart < 1 || pr.PacingStart > 99 {
		p.add("primary.pacing_start", "%d: must be a percentage from 1 to 99", pr.PacingStart)
	}
	if pr.PacingMaxDelay < 0 || pr.PacingMaxDelay > Duration(time.Second) {
		p.add("primary.pacing_max_delay", "%s: must be from 0s (no pacing) to 1s", pr.PacingMaxDelay)
	}
	checkTLS(p, "primary", "", pr.TLSCert, pr.TLSKey, pr.TLSCA)
	checkTLS(p, "primary", "nbd_", pr.NBDTLSCert, pr.NBDTLSKey, pr.NBDTLSCA)
	c.checkInsecure(p, "primary", pr.Insecure, c.primaryHasTLS(), c.primaryHasNBDTLS(), pr.NBD, pr.Control)
	if pr.ServerName != "" && !c.primaryHasTLS() {
		p.add("primary.tls_server_name", "has no effect without tls_cert, tls_key and tls_ca")
	}

	if len(pr.Subsystems) == 0 {
		p.add("primary.subsystem", "none: the primary needs at least one [[primary.subsystem]] with volumes")
	}
	ids := map[string]int{}
	names := map[string]string{}
	for i, ss := range pr.Subsystems {
		f := fmt.Sprintf("primary.subsystem[%d]", i)
		switch {
		case ss.ID == "":
			p.add(f+".id", `missing: give the subsystem an id, e.g. id = "ss1"`)
		case nameProblem(ss.ID, 64) != "":
			p.add(f+".id", "%s", nameProblem(ss.ID, 64))
		default:
			if j, dup := ids[ss.ID]; dup {
				p.add(f+".id", "%q is also the id of primary.subsystem[%d]: subsystem ids must be unique", ss.ID, j)
			} else {
				ids[ss.ID] = i
			}
		}
		if len(ss.Volumes) == 0 {
			p.add(f+".volume", "none: the subsystem needs at least one [[primary.subsystem.volume]]")
		}
		for j, v := range ss.Volumes {
			vf := fmt.Sprintf("%s.volume[%d]", f, j)
			switch {
			case v.Name == "":
				p.add(vf+".name", `missing: give the volume a name, e.g. name = "db-data"`)
			case nameProblem(v.Name, 128) != "":
				p.add(vf+".name", "%s", nameProblem(v.Name, 128))
			default:
				if other, dup := names[v.Name]; dup {
					p.add(vf+".name", "%q is also the name of %s: volume names must be unique in the session", v.Name, other)
				} else {
					names[v.Name] = vf
				}
			}
			if v.Path == "" {
				p.add(vf+".path", "missing: the volume's image file or device")
			}
			// No size (0): the size of the block device or existing image.
			switch {
			case v.Size < 0:
				p.add(vf+".size", "must be positive, e.g. size = \"1GiB\"")
			case v.Size%SectorSize != 0:
				p.add(vf+".size", "%d bytes is not a multiple of %d (the sector size)", int64(v.Size), SectorSize)
			}
		}
	}
}

func (c *Config) validateSecondary(p *problems) {
	s := &c.Secondary
	if s.Listen == "" {
		p.add("secondary.listen", `missing: the address the primary connects to, e.g. listen = "127.0.0.1:7402"`)
	} else {
		checkAddr(p, "secondary.listen", s.Listen, true)
	}
	seen := map[string]string{}
	if s.Listen != "" && !anyPort(s.Listen) {
		seen[s.Listen] = "secondary.listen"
	}
	for _, a := range []struct{ field, addr string }{{"secondary.control", s.Control}, {"secondary.nbd", s.NBD}} {
		if a.addr == "" {
			continue
		}
		checkAddr(p, a.field, a.addr, true)
		if other, dup := seen[a.addr]; dup {
			p.add(a.field, "%q is also %s: each listener needs its own address", a.addr, other)
		} else if !anyPort(a.addr) {
			seen[a.addr] = a.field
		}
	}
	if s.Journal == "" {
		p.add("secondary.journal", `missing: where the journal lives, e.g. journal = "secondary/journal"`)
	}
	checkTLS(p, "secondary", "", s.TLSCert, s.TLSKey, s.TLSCA)
	checkTLS(p, "secondary", "nbd_", s.NBDTLSCert, s.NBDTLSKey, s.NBDTLSCA)
	if s.NBD == "" && (s.NBDTLSCert != "" || s.NBDTLSKey != "" || s.NBDTLSCA != "") {
		p.add("secondary.nbd_tls_cert", "has no effect without secondary.nbd: set nbd to serve the read-only exports, or remove nbd_tls_*")
	}
	c.checkInsecure(p, "secondary", s.Insecure, c.secondaryHasTLS(), c.secondaryHasNBDTLS(), s.NBD, s.Control)

	if len(s.Volumes) == 0 {
		p.add("secondary.volume", "none: the secondary needs a [[secondary.volume]] for each primary volume")
	}
	names := map[string]int{}
	for i, v := range s.Volumes {
		f := fmt.Sprintf("secondary.volume[%d]", i)
		switch {
		case v.Name == "":
			p.add(f+".name", "missing: the name of the primary volume this copies")
		case nameProblem(v.Name, 128) != "":
			p.add(f+".name", "%s", nameProblem(v.Name, 128))
		default:
			if j, dup := names[v.Name]; dup {
				p.add(f+".name", "%q is also the name of secondary.volume[%d]: volume names must be unique", v.Name, j)
			} else {
				names[v.Name] = i
			}
		}
		if v.Path == "" {
			p.add(f+".path", "missing: the image file or device holding the copy")
		}
	}
}

// validatePair checks what spans both sites: the secondary copies exactly
// the primary's volumes, both ends agree on TLS, and, when both sites run on
// this machine, their listeners do not collide.
func (c *Config) validatePair(p *problems) {
	prim := map[string]bool{}
	for _, n := range c.VolumeNames() {
		prim[n] = true
	}
	sec := map[string]bool{}
	for i, v := range c.Secondary.Volumes {
		if v.Name == "" {
			continue
		}
		sec[v.Name] = true
		if !prim[v.Name] {
			p.add(fmt.Sprintf("secondary.volume[%d].name", i), "%q is not a volume of the primary", v.Name)
		}
	}
	for _, n := range c.VolumeNames() {
		if n != "" && !sec[n] {
			p.add("secondary.volume", "no entry for primary volume %q: add a [[secondary.volume]] with name = %q", n, n)
		}
	}
	pt, st := c.primaryHasTLS(), c.secondaryHasTLS()
	if pt && !st {
		p.add("secondary.tls_cert", "missing while [primary] sets tls_cert, tls_key and tls_ca: both ends of the link use TLS, or neither")
	}
	if st && !pt {
		p.add("primary.tls_cert", "missing while [secondary] sets tls_cert, tls_key and tls_ca: both ends of the link use TLS, or neither")
	}
	if c.sameMachine() {
		seen := map[string]string{}
		for _, a := range []struct{ field, addr string }{
			{"primary.nbd", c.Primary.NBD}, {"primary.control", c.Primary.Control},
			{"secondary.listen", c.Secondary.Listen}, {"secondary.control", c.Secondary.Control},
			{"secondary.nbd", c.Secondary.NBD},
		} {
			if a.addr == "" || anyPort(a.addr) {
				continue
			}
			other, dup := seen[a.addr]
			if dup && strings.HasPrefix(other, "secondary") != strings.HasPrefix(a.field, "secondary") {
				p.add(a.field, "%q is also %s, and both sites run on this machine: each listener needs its own address", a.addr, other)
			}
			if !dup {
				seen[a.addr] = a.field
			}
		}
	}
}

// sameMachine reports whether both sites are described and the link stays on
// loopback, so that both run on one machine.
func (c *Config) sameMachine() bool {
	return c.HasPrimary() && c.HasSecondary() &&
		(isLoopbackAddr(c.Primary.Secondary) || isLoopbackAddr(c.Secondary.Listen))
}

// validatePaths checks that no two volumes (nor a volume and the journal)
// share a path. Across the two sites this applies only when both run on this
// machine; on separate machines the same path on each is fine.
func (c *Config) validatePaths(p *problems) {
	seen := map[string]map[string]string{} // path -> site -> first field
	check := func(field, site, path string) {
		if path == "" {
			return
		}
		key := c.Resolve(path)
		sites := seen[key]
		if sites == nil {
			sites = map[string]string{}
			seen[key] = sites
		}
		other, dup := sites[site]
		if !dup && c.sameMachine() {
			for s, f := range sites {
				if s != site {
					other, dup = f, true
				}
			}
		}
		if dup {
			p.add(field, "%q is also %s: every volume and the journal need a path of their own", path, other)
		}
		if _, ok := sites[site]; !ok {
			sites[site] = field
		}
	}
	for i, ss := range c.Primary.Subsystems {
		for j, v := range ss.Volumes {
			check(fmt.Sprintf("primary.subsystem[%d].volume[%d].path", i, j), "primary", v.Path)
		}
	}
	check("secondary.journal", "secondary", c.Secondary.Journal)
	for i, v := range c.Secondary.Volumes {
		check(fmt.Sprintf("secondary.volume[%d].path", i), "secondary", v.Path)
	}
}

// anyPort reports whether a listen address asks for any free port, so two
// of them do not collide.
func anyPort(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	return err == nil && port == "0"
}

// isLoopbackAddr reports whether addr's host is localhost or a loopback IP.
func isLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
