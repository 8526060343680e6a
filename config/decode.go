package config

import (
	"encoding"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// The TOML library decodes the file into plain maps, and decode then fills
// Config from them along the schema. A bad value is thus reported
// with its full field path ("primary.subsystem[1].volume[0].size")
// together with every other problem, rather than as the first error of the
// library, whose line number points at the last entry of an array of
// tables and whose messages name Go types.

// decode fills c from data, applying defaults to keys the file leaves out
// and resolving paths against c.Dir. It returns every problem, joined.
func decode(data []byte, c *Config) error {
	var m map[string]any
	_, err := toml.Decode(string(data), &m)
	if err != nil {
		return decodeError(err)
	}
	var p problems
	unknownKeys(&p, "", "", m)
	visit("", "", reflect.ValueOf(c).Elem(), m, schema, func(at, tbl string, f *field, fv reflect.Value, raw any) bool {
		switch sub, isTable := raw.(map[string]any); {
		case isTable && (f.kind == "table" || fv.Kind() == reflect.Struct): // a table, or an entry of an array of tables
			unknownKeys(&p, at, tbl, sub)
			return true
		case raw == nil:
			if f.def.IsValid() {
				fv.Set(f.def)
			}
		case f.kind == "table":
			p.add(at, "must be a table, not %s: write [%s] on a line of its own, then its keys", typeName(raw), tbl)
		case f.kind == "tables":
			list, ok := tables(raw)
			if ok {
				fv.Set(reflect.MakeSlice(fv.Type(), len(list), len(list)))
				return true
			}
			how := "must be an array of tables"
			if _, array := raw.([]any); !array {
				how += ", not " + typeName(raw)
			}
			p.add(at, "%s: write [[%s]] (double brackets) before each entry", how, tbl)
		case f.off && (raw == int64(0) || raw == "off"):
			fv.SetZero()
		default:
			if msg := decodeLeaf(fv, raw); msg != "" && f.off {
				p.add(at, "%s; or \"off\"", msg)
			} else if msg != "" {
				p.add(at, "%s", msg)
			} else if f.zero != "" && fv.IsZero() {
				p.add(at, "%s", f.zero)
			} else if f.kind == "path" {
				fv.SetString(c.Resolve(fv.String()))
			}
		}
		return false
	})
	return errors.Join(p...)
}

// tables returns the entries of an array of tables.
func tables(raw any) ([]map[string]any, bool) {
	switch v := raw.(type) {
	case []map[string]any:
		return v, true
	case []any:
		list := make([]map[string]any, len(v))
		for i, e := range v {
			m, ok := e.(map[string]any)
			if !ok {
				return nil, false
			}
			list[i] = m
		}
		return list, true
	}
	return nil, false
}

// decodeLeaf sets v, a settable value of one of the leaf types of Config,
// from raw as the TOML library parsed it, or says what is wrong with raw.
func decodeLeaf(v reflect.Value, raw any) string {
	switch dst := v.Addr().Interface().(type) {
	case *[]string:
		list, ok := raw.([]any)
		if !ok {
			return `must be an array of strings such as ["a", "b"], not ` + typeName(raw)
		}
		*dst = make([]string, len(list))
		for i, e := range list {
			if msg := decodeLeaf(reflect.ValueOf(*dst).Index(i), e); msg != "" {
				return fmt.Sprintf("entry %d %s", i, msg)
			}
		}
	case encoding.TextUnmarshaler: // Size, Duration
		n, isInt := raw.(int64)
		if _, isFloat := raw.(float64); isInt || isFloat {
			if _, isSize := dst.(*Size); !isSize {
				return fmt.Sprintf(`%v has no unit: write a duration in quotes, e.g. "20ms" or "60s"`, raw)
			}
		}
		if isInt {
			raw = strconv.FormatInt(n, 10) // a bare number of bytes
		}
		s, ok := raw.(string)
		if !ok {
			return leafWant[v.Type()] + typeName(raw)
		}
		if err := dst.UnmarshalText([]byte(s)); err != nil {
			return err.Error()
		}
	default: // string, bool, int
		r := reflect.ValueOf(raw)
		if r.Kind() != v.Kind() && (r.Kind() != reflect.Int64 || v.Kind() != reflect.Int) {
			return leafWant[v.Type()] + typeName(raw)
		}
		v.Set(r.Convert(v.Type()))
	}
	return ""
}

// leafWant says what a value of each leaf type must be.
var leafWant = map[reflect.Type]string{
	reflect.TypeFor[string]():   "must be a string (in double quotes), not ",
	reflect.TypeFor[bool]():     "must be true or false, not ",
	reflect.TypeFor[int]():      "must be a whole number, not ",
	reflect.TypeFor[Size]():     `must be a size such as "256MiB" or a number of bytes, not `,
	reflect.TypeFor[Duration](): `must be a duration such as "20ms" or "60s", not `,
}

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

// decodeError turns a TOML error into "line N: key: problem".
func decodeError(err error) error {
	var pe toml.ParseError
	if !errors.As(err, &pe) {
		return err
	}
	msg := pe.Message
	if pe.LastKey != "" {
		msg = pe.LastKey + ": " + msg
	}
	if pe.Position.Line > 0 {
		msg = fmt.Sprintf("line %d: %s", pe.Position.Line, msg)
	}
	return &wrapped{msg: msg, err: err}
}

type wrapped struct {
	msg string
	err error
}

func (w *wrapped) Error() string { return w.msg }
func (w *wrapped) Unwrap() error { return w.err }

// unknownKeys reports the keys of m, the file's table at path (table name
// table), that Config does not know, by exact name (the TOML library
// matches field names without regard to case, this package does not), with
// a hint at what was probably meant: the known key of the table closest to
// it, if close enough, or else the tables where it is known. The keys of an
// unknown table are not visited, so it is reported alone.
func unknownKeys(p *problems, path, table string, m map[string]any) {
	known := knownKeys[table]
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if slices.Contains(known, k) {
			continue
		}
		msg, mean, bestDist := "unknown key at the top level", "", 3
		if table != "" {
			msg = "unknown key in [" + table + "]"
		}
		for _, kk := range known {
			if d := editDistance(strings.ToLower(k), kk); d < bestDist {
				mean, bestDist = kk, d
			}
		}
		var elsewhere []string
		for t, ks := range knownKeys {
			switch {
			case t == table || !slices.Contains(ks, k):
			case t == "":
				elsewhere = append(elsewhere, "the top level")
			default:
				elsewhere = append(elsewhere, "["+t+"]")
			}
		}
		switch {
		case mean != "":
			msg += fmt.Sprintf(" (did you mean %q?)", mean)
		case len(known) > 0:
			msg += "; known keys there: " + strings.Join(known, ", ")
		}
		if mean == "" && elsewhere != nil {
			sort.Strings(elsewhere)
			msg += fmt.Sprintf("; %q belongs in %s", k, strings.Join(elsewhere, " or "))
		}
		p.add(join(path, k), "%s", msg)
	}
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
