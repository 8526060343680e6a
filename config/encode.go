package config

import (
	"encoding"
	"fmt"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"
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
	visit("", "", reflect.ValueOf(c).Elem(), schema, func(path, table string, f *field, v reflect.Value) bool {
		indent := strings.Repeat("  ", strings.Count(path, "["))
		switch {
		case f.kind == "table" && !v.IsZero():
			fmt.Fprintf(&b, "\n%s[%s]\n", indent, table)
		case f.kind == "tables" && v.Kind() == reflect.Struct:
			fmt.Fprintf(&b, "\n%s[[%s]]\n", indent, table)
		case f.kind == "table" || f.kind == "tables":
			return f.kind == "tables"
		case !v.IsZero() || f.def.IsValid():
			text, e := c.encodeLeaf(f, v)
			if e != nil && err == nil {
				err = fmt.Errorf("%s: %w", path, e)
			}
			line := indent + f.name + " = " + text
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

// encodeLeaf writes one value as TOML.
func (c *Config) encodeLeaf(f *field, v reflect.Value) (string, error) {
	switch x := v.Interface().(type) {
	case bool:
		return strconv.FormatBool(x), nil
	case int:
		return strconv.Itoa(x), nil
	case encoding.TextMarshaler: // Size, Duration
		b, err := x.MarshalText()
		if err != nil {
			return "", err
		}
		return quote(string(b))
	case []string:
		q := make([]string, len(x))
		for i, e := range x {
			var err error
			if q[i], err = quote(e); err != nil {
				return "", err
			}
		}
		return "[" + strings.Join(q, ", ") + "]", nil
	case string:
		if f.kind == "path" {
			x = c.rel(x)
		}
		return quote(x)
	}
	return "", fmt.Errorf("no encoding for %s", v.Type())
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
