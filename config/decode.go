package config

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// The file is decoded in two steps: the TOML library fills these raw mirrors
// of the public types, whose leaves keep whatever value the file holds, and
// convert then turns every leaf into its typed field. A bad value is thus
// reported with its full field path ("primary.subsystem[1].volume[0].size")
// together with every other problem, rather than as the first error of the
// library, whose line number points at the last entry of an array of tables.

// rawValue holds one value of the file as the TOML library parsed it.
type rawValue struct {
	v   any
	set bool
}

// UnmarshalTOML implements toml.Unmarshaler.
func (r *rawValue) UnmarshalTOML(v any) error {
	r.v, r.set = v, true
	return nil
}

type rawConfig struct {
	Session          rawValue     `toml:"session"`
	Interval         rawValue     `toml:"interval"`
	ControlTokenFile rawValue     `toml:"control_token_file"`
	Primary          rawPrimary   `toml:"primary"`
	Secondary        rawSecondary `toml:"secondary"`
}

type rawPrimary struct {
	NBD           rawValue       `toml:"nbd"`
	Control       rawValue       `toml:"control"`
	Secondary     rawValue       `toml:"secondary"`
	SidefileLimit rawValue       `toml:"sidefile_limit"`
	SuspendAfter  rawValue       `toml:"suspend_after"`
	PacingStart   rawValue       `toml:"pacing_start"`
	PacingMax     rawValue       `toml:"pacing_max_delay"`
	CopyRate      rawValue       `toml:"copy_rate_limit"`
	LinkRate      rawValue       `toml:"link_rate_limit"`
	TLSCert       rawValue       `toml:"tls_cert"`
	TLSKey        rawValue       `toml:"tls_key"`
	TLSCA         rawValue       `toml:"tls_ca"`
	ServerName    rawValue       `toml:"tls_server_name"`
	NBDTLSCert    rawValue       `toml:"nbd_tls_cert"`
	NBDTLSKey     rawValue       `toml:"nbd_tls_key"`
	NBDTLSCA      rawValue       `toml:"nbd_tls_ca"`
	Insecure      rawValue       `toml:"insecure"`
	Subsystems    []rawSubsystem `toml:"subsystem"`
}

type rawSubsystem struct {
	ID      rawValue    `toml:"id"`
	Volumes []rawVolume `toml:"volume"`
}

type rawVolume struct {
	Name rawValue `toml:"name"`
	Path rawValue `toml:"path"`
	Size rawValue `toml:"size"`
}

type rawSecondary struct {
	Listen     rawValue             `toml:"listen"`
	Control    rawValue             `toml:"control"`
	NBD        rawValue             `toml:"nbd"`
	Journal    rawValue             `toml:"journal"`
	TLSCert    rawValue             `toml:"tls_cert"`
	TLSKey     rawValue             `toml:"tls_key"`
	TLSCA      rawValue             `toml:"tls_ca"`
	NBDTLSCert rawValue             `toml:"nbd_tls_cert"`
	NBDTLSKey  rawValue             `toml:"nbd_tls_key"`
	NBDTLSCA   rawValue             `toml:"nbd_tls_ca"`
	Insecure   rawValue             `toml:"insecure"`
	Volumes    []rawSecondaryVolume `toml:"volume"`
}

type rawSecondaryVolume struct {
	Name rawValue `toml:"name"`
	Path rawValue `toml:"path"`
}

// decode fills c from data, applying defaults to keys the file leaves out.
// It returns every problem with the values, joined.
func decode(data []byte, c *Config) error {
	// First the shape: tables where tables belong, arrays of tables where
	// those do, and no unknown keys; the library's own messages for these
	// would name Go types.
	var generic map[string]any
	md, err := toml.NewDecoder(strings.NewReader(string(data))).Decode(&generic)
	if err != nil {
		return decodeError(err)
	}
	var shape problems
	checkShape(&shape, "", "", generic, reflect.TypeOf(Config{}))
	if err := errors.Join(unknownKeys(md.Keys(), nil), errors.Join(shape...)); err != nil {
		return flatten(err)
	}
	var raw rawConfig
	md, err = toml.NewDecoder(strings.NewReader(string(data))).Decode(&raw)
	if err != nil {
		return decodeError(err)
	}
	if err := unknownKeys(nil, md.Undecoded()); err != nil {
		return err
	}
	var p problems
	conv := converter{p: &p}
	c.Session = conv.str("session", raw.Session)
	c.Interval = conv.duration("interval", raw.Interval, DefaultInterval)
	c.ControlTokenFile = conv.str("control_token_file", raw.ControlTokenFile)

	if md.IsDefined("primary") {
		r, pr := &raw.Primary, &c.Primary
		pr.NBD = conv.str("primary.nbd", r.NBD)
		pr.Control = conv.str("primary.control", r.Control)
		pr.Secondary = conv.str("primary.secondary", r.Secondary)
		pr.SidefileLimit = conv.size("primary.sidefile_limit", r.SidefileLimit, DefaultSidefileLimit)
		pr.SuspendAfter = conv.duration("primary.suspend_after", r.SuspendAfter, DefaultSuspendAfter)
		pr.PacingStart = conv.integer("primary.pacing_start", r.PacingStart, DefaultPacingStart)
		pr.PacingMaxDelay = conv.duration("primary.pacing_max_delay", r.PacingMax, DefaultPacingMaxDelay)
		pr.CopyRateLimit = conv.size("primary.copy_rate_limit", r.CopyRate, 0)
		pr.LinkRateLimit = conv.size("primary.link_rate_limit", r.LinkRate, 0)
		pr.TLSCert = conv.str("primary.tls_cert", r.TLSCert)
		pr.TLSKey = conv.str("primary.tls_key", r.TLSKey)
		pr.TLSCA = conv.str("primary.tls_ca", r.TLSCA)
		pr.ServerName = conv.str("primary.tls_server_name", r.ServerName)
		pr.NBDTLSCert = conv.str("primary.nbd_tls_cert", r.NBDTLSCert)
		pr.NBDTLSKey = conv.str("primary.nbd_tls_key", r.NBDTLSKey)
		pr.NBDTLSCA = conv.str("primary.nbd_tls_ca", r.NBDTLSCA)
		pr.Insecure = conv.boolean("primary.insecure", r.Insecure)
		if r.Subsystems != nil {
			pr.Subsystems = make([]Subsystem, len(r.Subsystems))
		}
		for i, rs := range r.Subsystems {
			f := fmt.Sprintf("primary.subsystem[%d]", i)
			ss := &pr.Subsystems[i]
			ss.ID = conv.str(f+".id", rs.ID)
			if rs.Volumes != nil {
				ss.Volumes = make([]Volume, len(rs.Volumes))
			}
			for j, rv := range rs.Volumes {
				vf := fmt.Sprintf("%s.volume[%d]", f, j)
				before := len(p)
				ss.Volumes[j] = Volume{
					Name: conv.str(vf+".name", rv.Name),
					Path: conv.str(vf+".path", rv.Path),
					Size: conv.size(vf+".size", rv.Size, 0),
				}
				// Absent, the size is the device's; written, it is a size.
				if rv.Size.set && ss.Volumes[j].Size == 0 && len(p) == before {
					p.add(vf+".size", "must be positive, e.g. size = \"1GiB\"; leave size out to take the block device's or existing image's size")
				}
			}
		}
	}

	if md.IsDefined("secondary") {
		r, s := &raw.Secondary, &c.Secondary
		s.Listen = conv.str("secondary.listen", r.Listen)
		s.Control = conv.str("secondary.control", r.Control)
		s.NBD = conv.str("secondary.nbd", r.NBD)
		s.Journal = conv.str("secondary.journal", r.Journal)
		s.TLSCert = conv.str("secondary.tls_cert", r.TLSCert)
		s.TLSKey = conv.str("secondary.tls_key", r.TLSKey)
		s.TLSCA = conv.str("secondary.tls_ca", r.TLSCA)
		s.NBDTLSCert = conv.str("secondary.nbd_tls_cert", r.NBDTLSCert)
		s.NBDTLSKey = conv.str("secondary.nbd_tls_key", r.NBDTLSKey)
		s.NBDTLSCA = conv.str("secondary.nbd_tls_ca", r.NBDTLSCA)
		s.Insecure = conv.boolean("secondary.insecure", r.Insecure)
		if r.Volumes != nil {
			s.Volumes = make([]SecondaryVolume, len(r.Volumes))
		}
		for i, rv := range r.Volumes {
			f := fmt.Sprintf("secondary.volume[%d]", i)
			s.Volumes[i] = SecondaryVolume{
				Name: conv.str(f+".name", rv.Name),
				Path: conv.str(f+".path", rv.Path),
			}
		}
	}
	return errors.Join(p...)
}

type converter struct{ p *problems }

func typeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case map[string]any:
		return "a table"
	case []any, []map[string]any:
		return "an array"
	default:
		return "a date or time"
	}
}

func (cv converter) str(field string, r rawValue) string {
	if !r.set {
		return ""
	}
	s, ok := r.v.(string)
	if !ok {
		cv.p.add(field, "must be a string (in double quotes), not %s", typeName(r.v))
	}
	return s
}

func (cv converter) integer(field string, r rawValue, def int) int {
	if !r.set {
		return def
	}
	v, ok := r.v.(int64)
	if !ok {
		cv.p.add(field, "must be a whole number, not %s", typeName(r.v))
	}
	return int(v)
}

func (cv converter) boolean(field string, r rawValue) bool {
	if !r.set {
		return false
	}
	b, ok := r.v.(bool)
	if !ok {
		cv.p.add(field, "must be true or false, not %s", typeName(r.v))
	}
	return b
}

func (cv converter) size(field string, r rawValue, def Size) Size {
	if !r.set {
		return def
	}
	var text string
	switch v := r.v.(type) {
	case string:
		text = v
	case int64:
		text = strconv.FormatInt(v, 10)
	default:
		cv.p.add(field, "must be a size such as \"256MiB\" or a number of bytes, not %s", typeName(r.v))
		return 0
	}
	s, err := ParseSize(text)
	if err != nil {
		cv.p.add(field, "%v", err)
	}
	return s
}

func (cv converter) duration(field string, r rawValue, def Duration) Duration {
	if !r.set {
		return def
	}
	var d Duration
	switch v := r.v.(type) {
	case string:
		if err := d.UnmarshalText([]byte(v)); err != nil {
			cv.p.add(field, "%v", err)
		}
	case int64, float64:
		cv.p.add(field, "%v has no unit: write a duration in quotes, e.g. \"20ms\" or \"60s\"", v)
	default:
		cv.p.add(field, "must be a duration such as \"20ms\" or \"60s\", not %s", typeName(r.v))
	}
	return d
}

// checkShape checks that m, the table at field path (table name), holds
// tables and arrays of tables where t, a struct type of Config, has them.
func checkShape(p *problems, path, table string, m map[string]any, t reflect.Type) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		v, ok := m[name]
		if name == "" || name == "-" || !ok {
			continue
		}
		field, tbl := name, name
		if path != "" {
			field, tbl = path+"."+name, table+"."+name
		}
		switch {
		case f.Type.Kind() == reflect.Struct:
			sub, ok := v.(map[string]any)
			if !ok {
				p.add(field, "must be a table, not %s: write [%s] on a line of its own, then its keys", typeName(v), tbl)
				continue
			}
			checkShape(p, field, tbl, sub, f.Type)
		case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
			var list []map[string]any
			switch v := v.(type) {
			case []map[string]any:
				list = v
			case []any:
				for _, e := range v {
					if em, ok := e.(map[string]any); ok {
						list = append(list, em)
					} else {
						list = nil
						break
					}
				}
				if list == nil && len(v) > 0 {
					p.add(field, "must be an array of tables: write [[%s]] (double brackets) before each entry", tbl)
					continue
				}
			default:
				p.add(field, "must be an array of tables, not %s: write [[%s]] (double brackets) before each entry", typeName(v), tbl)
				continue
			}
			for j, e := range list {
				checkShape(p, fmt.Sprintf("%s[%d]", field, j), tbl, e, f.Type.Elem())
			}
		}
	}
}

// flatten turns nested joined errors into one flat join, so that each
// problem is one entry (and one line).
func flatten(err error) error {
	var out []error
	var walk func(error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		out = append(out, err)
	}
	walk(err)
	return errors.Join(out...)
}
