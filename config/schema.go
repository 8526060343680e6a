package config

import (
	"cmp"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Each key of the file is described once, by the tags of its field in
// Config and the types below it (an embedded struct's keys are its
// table's); decoding, defaults, path resolution, encoding, the hints for
// unknown keys and the checks the tags imply (Config.checkKeys) all read
// that description:
//
//	toml:"name"        the key in the file
//	kind:"path"        what the value is, where its Go type does not say:
//	                   path (resolved against Dir), name (session, subsystem
//	                   and volume names), listen or dial (host:port
//	                   addresses), enum, rate (a Size in bytes per second);
//	                   otherwise string, bool, int, size, duration, list
//	                   (an array of strings), table or tables (an array of
//	                   tables), from the Go type
//	default:"20ms"     its value when the key is left out, written as in the
//	                   file (left out: the zero value)
//	required:"hint"    the key must be set when its table is; the problem is
//	                   "missing: hint" ("none: hint" for an array of tables)
//	zero:"problem"     a zero written in the file is refused with problem
//	min:"1ms" max:"1s" the range of a number, size or duration, written as
//	                   in the file; for a name, max is its longest (64)
//	range:"%s: ..."    the problem of a value out of range, %s the value
//	                   (left out: "V is too small: must be at least MIN" or
//	                   "V is out of range: must be between MIN and MAX");
//	                   a key with a zero tag is left out when zero, and
//	                   then not checked
//	multiple:"512 why" a size must be a multiple of the number, for why
//	with:"k=v"         the key may be set only where key k of its table is
//	                   (to v); without:"..." is the problem otherwise, its
//	                   %-verbs the values of both keys
//	unique:"group"     no two keys of the group (see uniqueWhy) hold the same
//	                   value (a path resolved first) in a site, nor in both
//	                   sites when they run on this machine (sameMachine)
//	group:"tls"        the keys of a group (see groups) in one table are
//	                   all set or none
//	needs:"tls"        the key has no effect unless its group is set
//	values:"a,b"       the values an enum takes, the first also when left out
//	off:"yes"          a duration that may also be written "off" (or a bare
//	                   0) for 0, which turns off what it times
//	doc:"comment"      written beside the key by Encode
//
// The other checks (the sidefile limit against the number of subsystems,
// what insecure may allow, the two sites' volumes and TLS, the etcd
// endpoints) are written out in validate.go.

// uniqueWhy says, for each group of unique keys, why they are.
var uniqueWhy = map[string]string{
	"listener":  "each listener needs its own address",
	"file":      "every volume and the journal need a path of their own",
	"subsystem": "subsystem ids must be unique",
	"volume":    "volume names must be unique in the session",
	"copy":      "volume names must be unique",
}

// groups says, for each group of keys set together, what needs them all,
// and the key of their table that they serve ("" none), with what it does.
var groups = map[string]struct{ what, serves, does string }{
	"tls":              {"TLS", "", ""},
	"nbd_tls":          {"TLS", "nbd", "serve the read-only exports"},
	"control_tls":      {"HTTPS on the control address", "control", "serve the control address"},
	"rejoin":           {"this site as the secondary of a rejoin", "", ""},
	"etcd_client_cert": {"a client certificate for etcd", "", ""},
	"etcd_auth":        {"etcd authentication", "", ""},
}

// field describes one key.
type field struct {
	name, kind, required, zero, unique, doc string
	outOfRange, group, needs, without       string // the tags range, group, needs and without
	with, withValue, multipleOf             string // with:"with=withValue", multiple:"N multipleOf"
	multiple                                int64
	index                                   []int         // of the Go struct field, through embedded ones
	def, min, max                           reflect.Value // invalid: none
	values                                  []string
	maxLen                                  int     // of a name
	off                                     bool    // the tag off: "off" is 0
	fields                                  []field // of a table, or of each entry of an array of tables
}

// schema describes Config; knownKeys maps each table ("", "primary",
// "primary.subsystem", ...) to the keys it may hold, sorted.
var knownKeys = map[string][]string{}
var schema = describe(reflect.TypeFor[Config](), "")

func describe(t reflect.Type, table string) []field {
	var fs []field
	for i := range t.NumField() {
		sf := t.Field(i)
		tag := sf.Tag.Get
		if sf.Anonymous {
			for _, f := range describe(sf.Type, table) {
				f.index = append([]int{i}, f.index...)
				fs = append(fs, f)
			}
			continue
		}
		if tag("toml") == "" || tag("toml") == "-" {
			continue
		}
		f := field{name: tag("toml"), kind: tag("kind"), required: tag("required"), zero: tag("zero"), outOfRange: tag("range"),
			unique: tag("unique"), group: tag("group"), needs: tag("needs"), doc: tag("doc"), index: []int{i}, maxLen: 64}
		if f.kind == "" {
			f.kind = kindOf(sf.Type)
		}
		if g := cmp.Or(f.group, f.needs); f.unique != "" && uniqueWhy[f.unique] == "" || g != "" && groups[g].what == "" {
			panic("config: no uniqueWhy or groups entry for the group of " + f.name)
		}
		if v := tag("values"); v != "" {
			f.values = strings.Split(v, ",")
		}
		f.with, f.withValue, _ = strings.Cut(tag("with"), "=")
		f.without = tag("without")
		if f.off = tag("off") != ""; f.off && f.kind != "duration" {
			panic("config: " + f.name + " is off, not a duration")
		}
		if m, why, ok := strings.Cut(tag("multiple"), " "); ok {
			f.multiple, _ = strconv.ParseInt(m, 10, 64)
			f.multipleOf = why
		}
		if f.kind == "name" {
			if m := tag("max"); m != "" {
				f.maxLen, _ = strconv.Atoi(m)
			}
		} else {
			f.min, f.max = tagValue(sf, "min"), tagValue(sf, "max")
		}
		f.def = tagValue(sf, "default")
		knownKeys[table] = append(knownKeys[table], f.name)
		switch f.kind {
		case "table":
			f.fields = describe(sf.Type, join(table, f.name))
		case "tables":
			f.fields = describe(sf.Type.Elem(), join(table, f.name))
		}
		fs = append(fs, f)
	}
	sort.Strings(knownKeys[table])
	for _, f := range fs {
		if f.with != "" && !slices.Contains(knownKeys[table], f.with) {
			panic("config: " + f.name + " is with " + f.with + ", not a key of its table")
		}
	}
	return fs
}

// tagValue decodes the tag key of sf, written as in the file, to a value of
// the field's type; invalid when the tag is absent.
func tagValue(sf reflect.StructField, key string) reflect.Value {
	s, ok := sf.Tag.Lookup(key)
	if !ok {
		return reflect.Value{}
	}
	v := reflect.New(sf.Type).Elem()
	var raw any = s
	if sf.Type.Kind() == reflect.Int {
		raw, _ = strconv.ParseInt(s, 10, 64)
	}
	if msg := decodeLeaf(v, raw); msg != "" {
		panic(fmt.Sprintf("config: the %s of %s: %s", key, sf.Name, msg))
	}
	return v
}

// kindOf is the kind of a field of type t that has no kind tag: a
// Size's or Duration's is its type's name, as a string's, bool's and int's.
func kindOf(t reflect.Type) string {
	switch {
	case t.Kind() == reflect.Struct:
		return "table"
	case t.Kind() != reflect.Slice:
		return strings.ToLower(t.Name()) // string, bool, int, size, duration
	case t.Elem().Kind() == reflect.String:
		return "list"
	}
	return "tables"
}

// join appends a key to a dotted path.
func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// visit calls fn for each key of v, a struct that fields describe, at path
// (its table's name, indexes left out, is table), in file order, with raw,
// what m, the file's table of v, holds for the key (nil: left out, or not
// decoding). For a table, fn says whether to visit its keys; an array of
// tables is passed to fn whole, then entry by entry (each a struct, its
// path indexed: "primary.subsystem[1]"), when fn returns true for it.
func visit(path, table string, v reflect.Value, m map[string]any, fields []field, fn func(path, table string, f *field, v reflect.Value, raw any) bool) {
	for i := range fields {
		f := &fields[i]
		at, tbl, fv, raw := join(path, f.name), join(table, f.name), v.FieldByIndex(f.index), m[f.name]
		if !fn(at, tbl, f, fv, raw) {
			continue
		}
		switch f.kind {
		case "table":
			sub, _ := raw.(map[string]any)
			visit(at, tbl, fv, sub, f.fields, fn)
		case "tables":
			list, _ := tables(raw)
			for j := range fv.Len() {
				var entry map[string]any
				if list != nil {
					entry = list[j]
				}
				if at, e := fmt.Sprintf("%s[%d]", at, j), fv.Index(j); fn(at, tbl, f, e, entry) {
					visit(at, tbl, e, entry, f.fields, fn)
				}
			}
		}
	}
}
