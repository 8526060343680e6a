package config

import (
	"cmp"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"unicode/utf8"

	"github.com/BurntSushi/toml"
)

// Encode writes the config as TOML text that [Parse], given the same Dir,
// reads back to an equal Config. Paths inside Dir are written relative to
// it; sections that are empty, and keys that are empty and default to
// empty, are left out. Entries of arrays of tables are indented by their
// depth.
func (c *Config) Encode() ([]byte, error) {
	var b strings.Builder
	var err error
	fmt.Fprintf(&b, "# Duplex session %q: one file describes both sites.\n", c.Session)
	b.WriteString("# duplex primary reads [primary]; duplex secondary and duplex recover read [secondary].\n")
	visit("", "", reflect.ValueOf(c).Elem(), nil, schema, func(path, table string, f *field, v reflect.Value, _ any) bool {
		indent := strings.Repeat("  ", strings.Count(path, "["))
		switch {
		case f.kind == "table" && !v.IsZero():
			fmt.Fprintf(&b, "\n%s[%s]\n", indent, table)
		case f.kind == "tables" && v.Kind() == reflect.Struct:
			fmt.Fprintf(&b, "\n%s[[%s]]\n", indent, table)
		case f.kind == "table" || f.kind == "tables":
			return f.kind == "tables"
		case !v.IsZero() || f.def.IsValid():
			value := v.Interface()
			if f.kind == "path" {
				value = c.rel(v.String())
			}
			// The TOML library writes one value the way it writes a
			// key of a table: quoted and escaped, Size and Duration
			// through their MarshalText.
			text, e := toml.Marshal(map[string]any{f.name: value})
			if e != nil || !utf8.Valid(text) {
				err = cmp.Or(err, fmt.Errorf("%s: %w", path, cmp.Or(e, errors.New("not valid UTF-8"))))
			}
			line := indent + strings.TrimSuffix(string(text), "\n")
			if f.doc != "" {
				line = fmt.Sprintf("%-32s # %s", line, f.doc)
			}
			b.WriteString(line + "\n")
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	return []byte(b.String()), nil
}

// rel writes p relative to Dir when it lies inside it.
func (c *Config) rel(p string) string {
	if p == "" || c.Dir == "" || !filepath.IsAbs(p) {
		return p
	}
	r, err := filepath.Rel(c.Dir, p)
	if err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) {
		return p
	}
	return filepath.ToSlash(r)
}
