package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
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
	hasP, hasS := c.HasPrimary(), c.HasSecondary()
	if !hasP && !hasS {
		p.add("", "the config describes neither site: add a [primary] section, a [secondary] section, or both")
	}
	if n := Size(len(c.Primary.Subsystems)); n > 0 && c.Primary.SidefileLimit > MaxSidefileTotal/n {
		p.add("primary.sidefile_limit", "%s is too large for %d subsystems: together at most %s, the largest consistency group the secondary journals; "+
			"at most %s each (left out, it is that)", c.Primary.SidefileLimit, n, MaxSidefileTotal, SidefileLimitFor(int(n)))
	}
	if n := Size(len(c.Primary.Subsystems)); n > 0 && c.Primary.SidefileLimit > 0 && c.Primary.BurstReserve > n*c.Primary.SidefileLimit {
		p.add("primary.burst_reserve", "%s is more than the %d sidefiles hold together (%s): no more of it can be in use at once", c.Primary.BurstReserve, n, n*c.Primary.SidefileLimit)
	}
	if hasP {
		c.checkSite(&p, "primary")
	}
	if hasS {
		c.checkSite(&p, "secondary")
	}
	if hasP && hasS {
		c.validatePair(&p)
	}
	if hasP && hasS && c.sameMachine() && c.Primary.Journal != "" && c.Secondary.Journal != "" {
		// The same path is refused as any shared file is (checkKeys).
		if pj, sj := realPath(c.Resolve(c.Primary.Journal)), realPath(c.Resolve(c.Secondary.Journal)); pj != sj && filepath.Dir(pj) == filepath.Dir(sj) {
			p.add("primary.journal", "%q is in the directory of secondary.journal (%s), and both sites run on this machine: a site keeps its "+
				"secondary's state, its promotion and its lock beside its journal (state.json, promoted/, secondary.lock), which would be the "+
				"other site's; give each journal a directory of its own", c.Primary.Journal, filepath.Dir(sj))
		}
	}
	if c.Coupled() {
		c.validateCoupling(&p)
	}
	return errors.Join(p...)
}

// checkKeys checks what the schema says of each key, in the sections the
// config describes: required keys are set; values are in range; names,
// addresses, rates and enums are well formed; unique keys are; groups of
// keys are set together.
func (c *Config) checkKeys(p *problems) {
	// site is "" on one machine, where key is a path's real one (realPath).
	type unique struct{ group, site, path, value, key string }
	var seen []unique
	visit("", "", reflect.ValueOf(c).Elem(), nil, schema, func(path, _ string, f *field, v reflect.Value, _ any) bool {
		if (f.zero == "" || !v.IsZero()) && (f.min.IsValid() && v.Int() < f.min.Int() || f.max.IsValid() && v.Int() > f.max.Int()) {
			p.add(path, "%s", f.rangeProblem(v))
		}
		if f.multiple != 0 && v.Int()%f.multiple != 0 {
			p.add(path, "%d bytes is not a multiple of %d (%s)", v.Int(), f.multiple, f.multipleOf)
		}
		switch {
		case f.kind == "table" && !v.IsZero() || f.kind == "tables" && v.Kind() == reflect.Struct:
			checkGroups(p, path, v, f.fields)
			return true
		case f.kind == "table":
			return false
		case f.kind == "tables" && v.Kind() == reflect.Slice && v.Len() == 0 && f.required != "":
			p.add(path, "none: %s", f.required)
		case v.IsZero():
			if f.required != "" {
				p.add(path, "missing: %s", f.required)
			}
			return true
		case f.kind == "name":
			if msg := nameProblem(v.String(), f.maxLen); msg != "" {
				p.add(path, "%s", msg)
			}
		case f.kind == "listen" || f.kind == "dial":
			checkAddr(p, path, v.String(), f.kind == "listen")
		case f.kind == "rate" && v.Int() < int64(MinRateLimit): // negative too: not from a file, which refuses it
			p.add(path, "%s bytes per second is too small: 0 (no limit) or at least %s, e.g. \"50MiB\"", v.Interface(), MinRateLimit)
		case f.kind == "enum" && !slices.Contains(f.values, v.String()):
			p.add(path, "%q is not a %s this %s knows: \"%s\"", v.String(), f.name, siteOf(path), strings.Join(f.values, `" or "`))
		}
		if _, port, _ := bindHosts(v.String()); f.unique == "" || f.kind == "listen" && port == "0" { // any free port: no collision
			return true
		}
		u := unique{group: f.unique, site: siteOf(path), path: path, value: v.String()}
		if c.sameMachine() {
			u.site = ""
		}
		if f.kind == "path" {
			u.value = c.Resolve(u.value)
			if u.site == "" {
				// Both sites' paths are this machine's: two that name one
				// file through a link are one file.
				u.key = realPath(u.value)
			}
		}
		// Listeners are compared by what the kernel binds, not by text.
		for _, e := range seen {
			if e.group != u.group || e.site != u.site || e.value != u.value && (e.key == "" || e.key != u.key) && (f.kind != "listen" || !listenersOverlap(e.value, u.value)) {
				continue
			}
			why, also := uniqueWhy[f.unique], ""
			if siteOf(e.path) != siteOf(path) {
				also = ", and both sites run on this machine"
			}
			switch {
			case e.value != u.value && f.kind == "path":
				p.add(path, "%q is also %s (%q, the same file through a link)%s: %s", u.value, e.path, e.value, also, why)
			case e.value != u.value:
				p.add(path, "%q binds the port of %s (%q)%s: %s", u.value, e.path, e.value, also, why)
			case f.kind == "name":
				p.add(path, "%q is also the %s of %s: %s", u.value, f.name, strings.TrimSuffix(e.path, "."+f.name), why)
			default:
				p.add(path, "%q is also %s%s: %s", u.value, e.path, also, why)
			}
			break
		}
		seen = append(seen, u)
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
	if len(s) <= max && validName.MatchString(s) {
		return ""
	}
	return fmt.Sprintf("%q is not a valid name: use 1 to %d letters, digits, '.', '_' or '-', starting with a letter or digit", s, max)
}

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

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

// rangeProblem says why v is out of f's range.
func (f *field) rangeProblem(v reflect.Value) string {
	switch {
	case f.outOfRange != "":
		return fmt.Sprintf(f.outOfRange, v.Interface())
	case !f.max.IsValid():
		return fmt.Sprintf("%v is too small: must be at least %v", v.Interface(), f.min.Interface())
	}
	return fmt.Sprintf("%v is out of range: must be between %v and %v", v.Interface(), f.min.Interface(), f.max.Interface())
}

// checkGroups checks the keys of one table, v at path, that go together
// (tags group, needs and with): a group all set or none, and set only with
// the key of the table it serves; a key that needs a group only with it; a
// key with another only where that one is set (to its value).
func checkGroups(p *problems, path string, v reflect.Value, fields []field) {
	set, members, count, value := map[string]bool{}, map[string][]string{}, map[string]int{}, map[string]reflect.Value{}
	for _, f := range fields {
		value[f.name], set[f.name] = v.FieldByIndex(f.index), !v.FieldByIndex(f.index).IsZero()
		if f.kind == "enum" && !set[f.name] {
			value[f.name] = reflect.ValueOf(f.values[0]) // what leaving it out means
		}
		if f.group != "" {
			members[f.group] = append(members[f.group], f.name)
			if set[f.name] {
				count[f.group]++
			}
		}
	}
	for _, f := range fields {
		g, names, n := groups[f.group], members[f.group], count[f.group]
		switch w := value[f.with]; {
		case f.with != "" && set[f.name] && (!set[f.with] || f.withValue != "" && w.String() != f.withValue):
			p.add(join(path, f.name), "%s", problemf(f.without, value[f.name].Interface(), w.Interface()))
		case f.needs != "" && set[f.name] && count[f.needs] == 0:
			p.add(join(path, f.name), "has no effect without %s", andList(members[f.needs]))
		case f.group == "" || n == 0:
		case n < len(names) && !set[f.name]:
			p.add(join(path, f.name), "missing: %s needs %s set together (or none of them)", g.what, andList(names))
		case n == len(names) && f.name == names[0] && g.serves != "" && !set[g.serves]:
			p.add(join(path, f.name), "has no effect without %s: set %s to %s, or remove %s_*", join(path, g.serves), g.serves, g.does, f.group)
		}
	}
}

// problemf is fmt.Sprintf of a problem that may name none of args.
func problemf(format string, args ...any) string {
	if !strings.Contains(format, "%") {
		return format
	}
	return fmt.Sprintf(format, args...)
}

// andList writes "a, b and c".
func andList(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// checkSite checks what the tags do not say of a site: clients of a control
// address over HTTPS need a name to check its certificate against
// (control's host, or control_tls_server_name when control listens on
// every interface), and insecure = true must have something to allow, were
// every address off loopback.
func (c *Config) checkSite(p *problems, site string) {
	s, control, _ := c.Site(site)
	if hosts, _, ok := bindHosts(control); s.ControlTLSCert != "" && s.ControlTLSKey != "" && s.ControlTLSServerName == "" && ok && hosts == nil {
		p.add(site+".control_tls_server_name", "missing: control %q listens on every interface, so it names no host for clients to check the certificate against: "+
			"set control_tls_server_name to a name the certificate holds, e.g. control_tls_server_name = \"%s.example\"", control, site)
	}
	var exposed problems
	if c.unprotected(&exposed, site, func(string) bool { return false }); s.Insecure && len(exposed) == 0 {
		p.add(site+".insecure", "cannot be true when the link has TLS (tls_cert, tls_key, tls_ca), NBD has TLS or is not served, "+
			"and the control address has a token and HTTPS or is not served: there is nothing left to allow, remove insecure")
	}
}

// validatePair checks what spans both sites: the secondary copies exactly
// the primary's volumes, and both ends agree on TLS.
func (c *Config) validatePair(p *problems) {
	for i, v := range c.Secondary.Volumes {
		if _, _, ok := c.PrimaryVolume(v.Name); v.Name != "" && !ok {
			p.add(fmt.Sprintf("secondary.volume[%d].name", i), "%q is not a volume of the primary", v.Name)
		}
	}
	for _, n := range c.VolumeNames() {
		if _, ok := c.SecondaryVolume(n); n != "" && !ok {
			p.add("secondary.volume", "no entry for primary volume %q: add a [[secondary.volume]] with name = %q", n, n)
		}
	}
	for _, end := range [][2]string{{"primary", "secondary"}, {"secondary", "primary"}} {
		if s, _, _ := c.Site(end[0]); s.linkTLS() {
			if o, _, _ := c.Site(end[1]); !o.linkTLS() {
				p.add(end[1]+".tls_cert", "missing while [%s] sets tls_cert, tls_key and tls_ca: both ends of the link use TLS, or neither", end[0])
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

// bindHosts splits a host:port address into the addresses its host binds,
// in a canonical form, and its port. localhost is 127.0.0.1 and ::1; a host
// left out or unspecified (0.0.0.0, ::) is every address: hosts nil. ok is
// false when addr is not host:port.
func bindHosts(addr string) (hosts []string, port string, ok bool) {
	host, port, err := net.SplitHostPort(addr)
	ip := net.ParseIP(host)
	switch {
	case err != nil:
		return nil, "", false
	case strings.EqualFold(host, "localhost"):
		return []string{"127.0.0.1", "::1"}, port, true
	case host == "" || ip != nil && ip.IsUnspecified():
		return nil, port, true
	case ip == nil:
		return []string{strings.ToLower(host)}, port, true
	}
	return []string{ip.String()}, port, true
}

// isLoopbackAddr reports whether addr's host is localhost or a loopback IP.
func isLoopbackAddr(addr string) bool {
	hosts, _, _ := bindHosts(addr)
	return len(hosts) > 0 && net.ParseIP(hosts[0]) != nil && net.ParseIP(hosts[0]).IsLoopback()
}

// listenersOverlap reports whether two listen addresses cannot both be
// bound: one port, and hosts that share an address.
func listenersOverlap(a, b string) bool {
	hostsA, portA, okA := bindHosts(a)
	hostsB, portB, okB := bindHosts(b)
	return okA && okB && portA == portB &&
		(hostsA == nil || hostsB == nil || slices.ContainsFunc(hostsA, func(h string) bool { return slices.Contains(hostsB, h) }))
}

// validateCoupling checks what the tags do not say of [coupling]: each etcd
// endpoint is a URL a client dials, and TLS settings go with https.
func (c *Config) validateCoupling(p *problems) {
	cp := &c.Coupling
	tlsSet := cp.TLSCA != "" || cp.TLSCert != ""
	seen := map[string]int{}
	for i, e := range cp.Etcd {
		at := fmt.Sprintf("coupling.etcd[%d]", i)
		u, err := url.Parse(e)
		if err != nil || u.Host == "" || u.Scheme != "http" && u.Scheme != "https" {
			p.add(at, "%q is not an etcd endpoint: write its client URL, e.g. \"http://127.0.0.1:2379\" or \"https://etcd1.example:2379\"", e)
			continue
		}
		if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
			p.add(at, "%q: an etcd endpoint is scheme://host:port, with no path", e)
		}
		checkAddr(p, at, u.Host, false)
		if j, dup := seen[u.Host]; dup {
			p.add(at, "%q is also coupling.etcd[%d]", e, j)
		}
		seen[u.Host] = i
		if tlsSet && u.Scheme == "http" {
			p.add(at, "%q is plain http, but [coupling] has TLS settings (tls_ca, tls_cert): write https://", e)
		}
	}
}

// realPath is path, absolute, as the file system resolves it, to tell
// whether two paths of this machine name one file: the symbolic links of
// the longest part of it that exists evaluated, and the rest, which does
// not exist yet, cleaned onto that.
func realPath(path string) string {
	if r, err := filepath.EvalSymlinks(path); err == nil {
		return r
	}
	rest := ""
	for p := filepath.Clean(path); ; {
		parent := filepath.Dir(p)
		rest = filepath.Join(filepath.Base(p), rest)
		if parent == p {
			return filepath.Clean(path)
		}
		if r, err := filepath.EvalSymlinks(parent); err == nil {
			return filepath.Join(r, rest)
		}
		p = parent
	}
}
