package config

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"reflect"
	"slices"
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
	c.checkKeys(&p)
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
	return errors.Join(p...)
}

// checkKeys checks what the schema says of each key, in the sections the
// config describes: required keys are set; names, addresses, rates and
// enums are well formed; unique keys are.
func (c *Config) checkKeys(p *problems) {
	seen := map[[3]string]string{} // group, site ("" on one machine), value -> first key
	type listener struct{ site, path, addr string }
	var listeners []listener // seen so far: compared by what the kernel binds, not by text
	visit("", "", reflect.ValueOf(c).Elem(), schema, func(path, _ string, f *field, v reflect.Value) bool {
		switch {
		case f.kind == "table":
			return !v.IsZero()
		case f.kind == "tables" && v.Kind() == reflect.Slice && v.Len() == 0 && f.required != "":
			p.add(path, "none: %s", f.required)
		case f.kind == "tables":
			return true
		case v.IsZero():
			if f.required != "" {
				p.add(path, "missing: %s", f.required)
			}
			return true
		case f.kind == "name":
			if msg := nameProblem(v.String(), f.max); msg != "" {
				p.add(path, "%s", msg)
			}
		case f.kind == "listen" || f.kind == "dial":
			checkAddr(p, path, v.String(), f.kind == "listen")
		case f.kind == "rate" && v.Int() < 0:
			p.add(path, "%d must not be negative: 0 or leave it out for no limit", v.Int())
		case f.kind == "rate" && v.Int() < int64(MinRateLimit):
			p.add(path, "%s bytes per second is too small: 0 (no limit) or at least %s, e.g. \"50MiB\"", v.Interface(), MinRateLimit)
		case f.kind == "enum" && !slices.Contains(f.values, v.String()):
			p.add(path, "%q is not a %s this %s knows: \"%s\"", v.String(), f.name, siteOf(path), strings.Join(f.values, `" or "`))
		}
		if f.unique == "" || f.kind == "listen" && anyPort(v.String()) {
			return true
		}
		key := [3]string{f.unique, siteOf(path), v.String()}
		if c.sameMachine() {
			key[1] = ""
		}
		if f.kind == "path" {
			key[2] = c.Resolve(key[2])
		}
		if f.kind == "listen" {
			for _, l := range listeners {
				if l.site != key[1] || l.addr == v.String() || !listenersOverlap(l.addr, v.String()) {
					continue
				}
				also := ""
				if siteOf(l.path) != siteOf(path) {
					also = ", and both sites run on this machine"
				}
				p.add(path, "%q binds the port of %s (%q)%s: %s", v.String(), l.path, l.addr, also, uniqueWhy[f.unique])
				break
			}
			listeners = append(listeners, listener{key[1], path, v.String()})
		}
		other, dup := seen[key]
		switch {
		case !dup:
			seen[key] = path
		case f.kind == "name":
			p.add(path, "%q is also the %s of %s: %s", v.String(), f.name, strings.TrimSuffix(other, "."+f.name), uniqueWhy[f.unique])
		case siteOf(other) != siteOf(path):
			p.add(path, "%q is also %s, and both sites run on this machine: %s", v.String(), other, uniqueWhy[f.unique])
		default:
			p.add(path, "%q is also %s: %s", v.String(), other, uniqueWhy[f.unique])
		}
		return true
	})
}

// siteOf returns the section a key path is in ("primary", "secondary").
func siteOf(path string) string {
	site, _, _ := strings.Cut(path, ".")
	return site
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

// checkControlTLS checks a site's control_tls_* keys: the certificate and
// its key together, and the client side (control_tls_ca,
// control_tls_server_name) only with them. Clients need a name to check the
// certificate against: control's host, or control_tls_server_name when
// control listens on every interface.
func checkControlTLS(p *problems, site, control, cert, key, ca, name string) {
	switch {
	case cert != "" && key == "":
		p.add(site+".control_tls_key", "missing: HTTPS on the control address needs control_tls_cert and control_tls_key both set (or neither)")
	case cert == "" && key != "":
		p.add(site+".control_tls_cert", "missing: HTTPS on the control address needs control_tls_cert and control_tls_key both set (or neither)")
	case cert == "":
		for _, f := range []struct{ name, v string }{{"control_tls_ca", ca}, {"control_tls_server_name", name}} {
			if f.v != "" {
				p.add(site+"."+f.name, "has no effect without control_tls_cert and control_tls_key")
			}
		}
	case control == "":
		p.add(site+".control_tls_cert", "has no effect without %s.control: set control to serve the control address, or remove control_tls_*", site)
	case name == "" && unspecifiedHost(control):
		p.add(site+".control_tls_server_name", "missing: control %q listens on every interface, so it names no host for clients to check the certificate against: "+
			"set control_tls_server_name to a name the certificate holds, e.g. control_tls_server_name = \"%s.example\"", control, site)
	}
}

// unspecifiedHost reports whether a listen address has no host, or
// 0.0.0.0 or :: (every interface).
func unspecifiedHost(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return host == "" || ip != nil && ip.IsUnspecified()
}

// checkInsecure refuses insecure = true where it can have no effect: the
// link has TLS, NBD (if served) has TLS and the control address (if any)
// has a token and HTTPS, so nothing is left for it to allow.
func (c *Config) checkInsecure(p *problems, site string, insecure, linkTLS, nbdTLS, controlTLS bool, nbd, control string) {
	if !insecure || !linkTLS || (nbd != "" && !nbdTLS) || (control != "" && (c.ControlTokenFile == "" || !controlTLS)) {
		return
	}
	p.add(site+".insecure", "cannot be true when the link has TLS (tls_cert, tls_key, tls_ca), NBD has TLS or is not served, "+
		"and the control address has a token and HTTPS or is not served: there is nothing left to allow, remove insecure")
}

func (c *Config) validatePrimary(p *problems) {
	pr := &c.Primary
	if pr.SidefileLimit < MinSidefileLimit {
		p.add("primary.sidefile_limit", "%s is too small: must be at least %s", pr.SidefileLimit, MinSidefileLimit)
	} else if n := Size(len(pr.Subsystems)); n > 0 && pr.SidefileLimit > MaxSidefileTotal/n {
		p.add("primary.sidefile_limit", "%s is too large for %d subsystems: together at most %s, the largest consistency group the secondary journals; "+
			"at most %s each (left out, it is that)", pr.SidefileLimit, n, MaxSidefileTotal, SidefileLimitFor(int(n)))
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
	if l := pr.CompressionLevel; l != 0 && (l < MinCompressionLevel || l > MaxCompressionLevel) {
		p.add("primary.compression_level", "%d is not a zstd level: %d (fastest) to %d (smallest), default %d",
			l, MinCompressionLevel, MaxCompressionLevel, DefaultCompressionLevel)
	} else if l != 0 && pr.Compression != "zstd" {
		p.add("primary.compression_level", "%d, but compression is %q: set compression = \"zstd\", or leave the level out", l, cmp.Or(pr.Compression, "none"))
	}
	checkTLS(p, "primary", "", pr.TLSCert, pr.TLSKey, pr.TLSCA)
	checkTLS(p, "primary", "nbd_", pr.NBDTLSCert, pr.NBDTLSKey, pr.NBDTLSCA)
	checkControlTLS(p, "primary", pr.Control, pr.ControlTLSCert, pr.ControlTLSKey, pr.ControlTLSCA, pr.ControlTLSServerName)
	c.checkInsecure(p, "primary", pr.Insecure, c.primaryHasTLS(), c.primaryHasNBDTLS(), pr.ControlTLSCert != "", pr.NBD, pr.Control)
	switch {
	case pr.Listen != "" && pr.Journal == "":
		p.add("primary.journal", "missing: listen is set, and as the secondary of a rejoin this site needs a journal directory too, e.g. journal = \"primary/journal\"")
	case pr.Listen == "" && pr.Journal != "":
		p.add("primary.listen", "missing: journal is set, and as the secondary of a rejoin this site needs an address to take the link on too, e.g. listen = \"127.0.0.1:7404\"")
	}
	if pr.ServerName != "" && !c.primaryHasTLS() {
		p.add("primary.tls_server_name", "has no effect without tls_cert, tls_key and tls_ca")
	}

	for i, ss := range pr.Subsystems {
		for j, v := range ss.Volumes {
			vf := fmt.Sprintf("primary.subsystem[%d].volume[%d]", i, j)
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
	checkTLS(p, "secondary", "", s.TLSCert, s.TLSKey, s.TLSCA)
	checkTLS(p, "secondary", "nbd_", s.NBDTLSCert, s.NBDTLSKey, s.NBDTLSCA)
	if s.NBD == "" && (s.NBDTLSCert != "" || s.NBDTLSKey != "" || s.NBDTLSCA != "") {
		p.add("secondary.nbd_tls_cert", "has no effect without secondary.nbd: set nbd to serve the read-only exports, or remove nbd_tls_*")
	}
	checkControlTLS(p, "secondary", s.Control, s.ControlTLSCert, s.ControlTLSKey, s.ControlTLSCA, s.ControlTLSServerName)
	c.checkInsecure(p, "secondary", s.Insecure, c.secondaryHasTLS(), c.secondaryHasNBDTLS(), s.ControlTLSCert != "", s.NBD, s.Control)
}

// validatePair checks what spans both sites: the secondary copies exactly
// the primary's volumes, and both ends agree on TLS.
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
}

// sameMachine reports whether both sites are described and the link stays on
// loopback, so that both run on one machine.
func (c *Config) sameMachine() bool {
	return c.HasPrimary() && c.HasSecondary() &&
		(isLoopbackAddr(c.Primary.Secondary) || isLoopbackAddr(c.Secondary.Listen))
}

// anyPort reports whether a listen address asks for any free port, so two
// of them do not collide.
func anyPort(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	return err == nil && port == "0"
}

// listenersOverlap reports whether two listen addresses (host:port) cannot
// both be bound: one port, and hosts that share an address, where a host
// left out or unspecified (0.0.0.0, ::) is every address and localhost is
// 127.0.0.1 and ::1.
func listenersOverlap(a, b string) bool {
	ha, pa, errA := net.SplitHostPort(a)
	hb, pb, errB := net.SplitHostPort(b)
	if errA != nil || errB != nil || pa != pb {
		return false
	}
	hostsA, hostsB := bindHosts(ha), bindHosts(hb)
	if hostsA == nil || hostsB == nil {
		return true
	}
	for _, h := range hostsA {
		if slices.Contains(hostsB, h) {
			return true
		}
	}
	return false
}

// bindHosts returns the addresses a listen host binds, in a canonical form;
// nil for every address.
func bindHosts(host string) []string {
	if strings.EqualFold(host, "localhost") {
		return []string{"127.0.0.1", "::1"}
	}
	if host == "" {
		return nil
	}
	ip := net.ParseIP(host)
	switch {
	case ip == nil:
		return []string{strings.ToLower(host)}
	case ip.IsUnspecified():
		return nil
	}
	return []string{ip.String()}
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
