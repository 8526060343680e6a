package config

import (
	"fmt"
	"path/filepath"
	"strings"
	"unicode/utf8"
)

// Encode writes the config as TOML text that [Parse], given the same Dir,
// reads back to an equal Config. Paths inside Dir are written relative to
// it; sections and keys that are empty are left out.
func (c *Config) Encode() ([]byte, error) {
	e := &encoder{c: c}
	e.line("# Duplex session %q: one file describes both sites.", c.Session)
	e.line("# duplex primary reads [primary]; duplex secondary and duplex recover read [secondary].")
	e.str("session", c.Session, "")
	e.text("interval", c.Interval, "time-interval group length")
	e.path("control_token_file", c.ControlTokenFile, "mutating control calls need this token")

	if c.HasPrimary() {
		p := &c.Primary
		e.line("")
		e.line("[primary]")
		e.str("nbd", p.NBD, "NBD listen address; export name = volume name")
		e.str("control", p.Control, "")
		e.str("secondary", p.Secondary, "where the secondary listens")
		e.text("sidefile_limit", p.SidefileLimit, "")
		e.text("suspend_after", p.SuspendAfter, "link down this long with a full sidefile: suspend")
		e.line("pacing_start = %d  # percent of the sidefile where write pacing begins", p.PacingStart)
		e.text("pacing_max_delay", p.PacingMaxDelay, "delay per write when the sidefile is full")
		if p.CopyRateLimit > 0 {
			e.text("copy_rate_limit", p.CopyRateLimit, "bytes per second for initial copies and resyncs")
		}
		if p.LinkRateLimit > 0 {
			e.text("link_rate_limit", p.LinkRateLimit, "bytes per second for everything on the link")
		}
		e.path("tls_cert", p.TLSCert, "")
		e.path("tls_key", p.TLSKey, "")
		e.path("tls_ca", p.TLSCA, "")
		e.str("tls_server_name", p.ServerName, "")
		e.path("nbd_tls_cert", p.NBDTLSCert, "")
		e.path("nbd_tls_key", p.NBDTLSKey, "")
		e.path("nbd_tls_ca", p.NBDTLSCA, "")
		e.boolean("insecure", p.Insecure)
		for _, ss := range p.Subsystems {
			e.line("")
			e.line("  [[primary.subsystem]]")
			e.indent = "  "
			e.str("id", ss.ID, "")
			for _, v := range ss.Volumes {
				e.indent = "    "
				e.line("[[primary.subsystem.volume]]")
				e.str("name", v.Name, "")
				e.path("path", v.Path, "")
				if v.Size != 0 {
					e.text("size", v.Size, "")
				}
			}
			e.indent = ""
		}
	}

	if c.HasSecondary() {
		s := &c.Secondary
		e.line("")
		e.line("[secondary]")
		e.str("listen", s.Listen, "")
		e.str("control", s.Control, "")
		e.str("nbd", s.NBD, "consistent read-only exports of the copy")
		e.path("journal", s.Journal, "")
		e.path("tls_cert", s.TLSCert, "")
		e.path("tls_key", s.TLSKey, "")
		e.path("tls_ca", s.TLSCA, "")
		e.path("nbd_tls_cert", s.NBDTLSCert, "")
		e.path("nbd_tls_key", s.NBDTLSKey, "")
		e.path("nbd_tls_ca", s.NBDTLSCA, "")
		e.boolean("insecure", s.Insecure)
		for _, v := range s.Volumes {
			e.indent = "  "
			e.line("[[secondary.volume]]")
			e.str("name", v.Name, "")
			e.path("path", v.Path, "")
		}
		e.indent = ""
	}
	if e.err != nil {
		return nil, e.err
	}
	return []byte(e.b.String()), nil
}

type encoder struct {
	c      *Config
	b      strings.Builder
	indent string
	err    error
}

func (e *encoder) line(format string, args ...any) {
	if format == "" {
		e.b.WriteString("\n")
		return
	}
	e.b.WriteString(e.indent)
	fmt.Fprintf(&e.b, format, args...)
	e.b.WriteString("\n")
}

func (e *encoder) kv(key, value, comment string) {
	s := key + " = " + value
	if comment != "" {
		s = fmt.Sprintf("%-32s # %s", s, comment)
	}
	e.line("%s", s)
}

func (e *encoder) str(key, v, comment string) {
	if v == "" {
		return
	}
	q, err := quote(v)
	if err != nil && e.err == nil {
		e.err = fmt.Errorf("%s: %w", key, err)
	}
	e.kv(key, q, comment)
}

func (e *encoder) text(key string, v interface{ MarshalText() ([]byte, error) }, comment string) {
	b, err := v.MarshalText()
	if err != nil && e.err == nil {
		e.err = fmt.Errorf("%s: %w", key, err)
	}
	e.str(key, string(b), comment)
}

func (e *encoder) path(key, p, comment string) {
	e.str(key, e.rel(p), comment)
}

func (e *encoder) boolean(key string, v bool) {
	if v {
		e.kv(key, "true", "")
	}
}

// rel writes p relative to Dir when it lies inside it.
func (e *encoder) rel(p string) string {
	if p == "" || e.c.Dir == "" || !filepath.IsAbs(p) {
		return p
	}
	r, err := filepath.Rel(e.c.Dir, p)
	if err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) {
		return p
	}
	return filepath.ToSlash(r)
}

// quote writes s as a TOML basic string.
func quote(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("%q is not valid UTF-8", s)
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String(), nil
}
