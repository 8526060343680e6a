package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Defaults and limits.
const (
	DefaultInterval      = Duration(20 * time.Millisecond)
	MinInterval          = Duration(time.Millisecond)
	MaxInterval          = Duration(10 * time.Second)
	DefaultSidefileLimit = 256 * MiB
	MinSidefileLimit     = 1 * MiB
	// MaxSidefileTotal bounds the subsystems' sidefiles together. A
	// consistency group holds only updates still in the sidefiles (they are
	// released when the group is journaled), each costing there at least
	// its journal encoding, so this keeps every group within the largest
	// the secondary journals (secondary.MaxGroupBytes, 2 GiB), with room
	// for the group's own header.
	MaxSidefileTotal    = 1984 * MiB
	DefaultSuspendAfter = Duration(60 * time.Second)
	// DefaultPacingStart and DefaultPacingMaxDelay shape write pacing.
	DefaultPacingStart    = 50
	DefaultPacingMaxDelay = Duration(20 * time.Millisecond)
	// SectorSize: volume sizes are whole multiples of it.
	SectorSize = 512
	// MinRateLimit is the smallest rate limit other than 0 (unlimited): a
	// bare "50" is bytes per second, rarely what was meant.
	MinRateLimit = 1 * KiB
)

// Config is one session: the top-level keys and both sites.
type Config struct {
	Session          string   `toml:"session"`
	Interval         Duration `toml:"interval"`           // time-interval group length; default 20ms, 1ms..10s
	ControlTokenFile string   `toml:"control_token_file"` // relative to Dir; "" = no token

	Primary   Primary   `toml:"primary"`
	Secondary Secondary `toml:"secondary"`

	// Dir is the directory of the config file; relative paths resolve
	// against it. Load and Parse make it absolute.
	Dir string `toml:"-"`
}

// Primary is the [primary] section: the site users write to.
type Primary struct {
	NBD       string `toml:"nbd"`       // NBD listen address; export name = volume name
	Control   string `toml:"control"`   // control HTTP listen address (optional)
	Secondary string `toml:"secondary"` // where the secondary listens (dial address)

	SidefileLimit Size     `toml:"sidefile_limit"` // default 256MiB, at least 1MiB
	SuspendAfter  Duration `toml:"suspend_after"`  // link down this long with a full sidefile: suspend; default 60s
	// Write pacing: past PacingStart percent of the sidefile, each write is
	// delayed, up to PacingMaxDelay when it is full ("0s": no pacing).
	PacingStart    int      `toml:"pacing_start"`     // percent, 1..99; default 50
	PacingMaxDelay Duration `toml:"pacing_max_delay"` // default 20ms, at most 1s
	// Rate limits in bytes per second ("0" or absent: unlimited):
	// CopyRateLimit paces initial copies and resyncs, LinkRateLimit every
	// frame on the link. `duplex pair rate` changes them at run time.
	CopyRateLimit Size `toml:"copy_rate_limit"`
	LinkRateLimit Size `toml:"link_rate_limit"`

	TLSCert    string `toml:"tls_cert"`        // client certificate (PEM)
	TLSKey     string `toml:"tls_key"`         // its private key (PEM)
	TLSCA      string `toml:"tls_ca"`          // CA that signed the secondary's certificate (PEM)
	ServerName string `toml:"tls_server_name"` // name expected in the secondary's certificate; default the host of Secondary
	// NBD over TLS (NBD_OPT_STARTTLS, required of every client once set):
	// the server certificate clients check against the address they dial,
	// and the CA that must have signed each client's certificate.
	NBDTLSCert string `toml:"nbd_tls_cert"`
	NBDTLSKey  string `toml:"nbd_tls_key"`
	NBDTLSCA   string `toml:"nbd_tls_ca"`
	// Insecure allows what this site would otherwise refuse off loopback:
	// a plaintext link, NBD without TLS, a control address without a token.
	Insecure bool `toml:"insecure"`

	Subsystems []Subsystem `toml:"subsystem"`
}

// Subsystem is one [[primary.subsystem]]: volumes sharing a sidefile and a
// sequence-number space.
type Subsystem struct {
	ID      string   `toml:"id"`
	Volumes []Volume `toml:"volume"`
}

// Volume is one [[primary.subsystem.volume]].
type Volume struct {
	Name string `toml:"name"` // unique in the session; the NBD export name
	Path string `toml:"path"` // block device or image file
	Size Size   `toml:"size"` // positive multiple of 512; 0 (absent): the device's or existing image's size
}

// Secondary is the [secondary] section: the site holding the consistent copy.
type Secondary struct {
	Listen  string `toml:"listen"`  // link listen address
	Control string `toml:"control"` // control HTTP listen address (optional)
	NBD     string `toml:"nbd"`     // read-only NBD exports of the copy (optional)
	Journal string `toml:"journal"` // journal location

	TLSCert string `toml:"tls_cert"` // server certificate (PEM)
	TLSKey  string `toml:"tls_key"`  // its private key (PEM)
	TLSCA   string `toml:"tls_ca"`   // CA that signed the primary's client certificate (PEM)
	// NBD over TLS for the read-only exports, as in [primary].
	NBDTLSCert string `toml:"nbd_tls_cert"`
	NBDTLSKey  string `toml:"nbd_tls_key"`
	NBDTLSCA   string `toml:"nbd_tls_ca"`
	// Insecure allows what this site would otherwise refuse off loopback:
	// a plaintext link, NBD without TLS, a control address without a token.
	Insecure bool `toml:"insecure"`

	Volumes []SecondaryVolume `toml:"volume"`
}

// SecondaryVolume is one [[secondary.volume]]: where the copy of the primary
// volume of the same name lives (a block device or an image file). Its size
// is the primary volume's.
type SecondaryVolume struct {
	Name string `toml:"name"`
	Path string `toml:"path"`
}

// Load reads the config file at path, decodes it strictly, applies defaults,
// resolves relative paths against the file's directory and validates it.
// Errors name the file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	c, err := Parse(data, dir)
	if err != nil {
		return nil, &fileError{path: path, err: err}
	}
	return c, nil
}

// fileError prefixes every problem with the file name, one per line.
type fileError struct {
	path string
	err  error
}

func (e *fileError) Error() string {
	var list []error
	if j, ok := e.err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	}
	if len(list) <= 1 {
		return e.path + ": " + e.err.Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d problems:", e.path, len(list))
	for _, err := range list {
		b.WriteString("\n  ")
		b.WriteString(strings.ReplaceAll(err.Error(), "\n", "\n    "))
	}
	return b.String()
}

func (e *fileError) Unwrap() error { return e.err }

// Parse decodes a config from data strictly, applies defaults, resolves
// relative paths against dir (the directory the file would live in; "" leaves
// them relative to the working directory) and validates the result.
func Parse(data []byte, dir string) (*Config, error) {
	if dir != "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return nil, err
		}
		dir = abs
	}
	c := &Config{Dir: dir}
	if err := decode(data, c); err != nil {
		return nil, err
	}
	c.resolvePaths()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
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

// knownKeys maps each table path ("", "primary", "primary.subsystem", ...)
// to the keys it may hold, from the toml tags of Config.
var knownKeys = tomlKeys(reflect.TypeOf(Config{}))

func tomlKeys(root reflect.Type) map[string][]string {
	m := map[string][]string{}
	var walk func(prefix string, t reflect.Type)
	walk = func(prefix string, t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if name == "" || name == "-" {
				continue
			}
			m[prefix] = append(m[prefix], name)
			ft := f.Type
			if ft.Kind() == reflect.Slice {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				walk(strings.TrimPrefix(prefix+"."+name, "."), ft)
			}
		}
	}
	walk("", root)
	for k := range m {
		sort.Strings(m[k])
	}
	return m
}

// unknownKeys reports keys the file holds that Config does not know, by
// exact name (the TOML library matches field names without regard to case,
// this package does not), outermost only, with a hint at what was probably
// meant. undecoded, the keys the library did not use, are checked as well.
func unknownKeys(keys, undecoded []toml.Key) error {
	var errs []error
	reported := map[string]bool{}
	report := func(k toml.Key) {
		for i := 1; i <= len(k); i++ {
			if reported[k[:i].String()] {
				return
			}
		}
		name := k.String()
		reported[name] = true
		parent := strings.Join(k[:len(k)-1], ".")
		last := k[len(k)-1]
		where := "at the top level"
		if parent != "" {
			where = "in [" + parent + "]"
		}
		msg := fmt.Sprintf("%s: unknown key %s", name, where)
		mean, elsewhere := keyHint(parent, last)
		switch {
		case mean != "":
			msg += fmt.Sprintf(" (did you mean %q?)", mean)
		case len(knownKeys[parent]) > 0:
			msg += "; known keys there: " + strings.Join(knownKeys[parent], ", ")
		}
		if mean == "" && elsewhere != "" {
			msg += fmt.Sprintf("; %q belongs in %s", last, elsewhere)
		}
		errs = append(errs, errors.New(msg))
	}
	for _, k := range keys {
		for i := range k {
			known, table := knownKeys[strings.Join(k[:i], ".")]
			if !table {
				break // below a value: convert reports its type
			}
			if !slices.Contains(known, k[i]) {
				report(k[:i+1])
				break
			}
		}
	}
	for _, k := range undecoded {
		report(k)
	}
	return errors.Join(errs...)
}

// keyHint returns the known key of parent closest to last (if close
// enough), and the tables where last is a known key.
func keyHint(parent, last string) (mean, elsewhere string) {
	bestDist := 3
	for _, k := range knownKeys[parent] {
		if d := editDistance(strings.ToLower(last), k); d < bestDist {
			mean, bestDist = k, d
		}
	}
	var tables []string
	for p, ks := range knownKeys {
		if p == parent {
			continue
		}
		for _, k := range ks {
			if k == last {
				if p == "" {
					tables = append(tables, "the top level")
				} else {
					tables = append(tables, "["+p+"]")
				}
			}
		}
	}
	sort.Strings(tables)
	return mean, strings.Join(tables, " or ")
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

// pathFields lists pointers to every path in c.
func (c *Config) pathFields() []*string {
	p := []*string{&c.ControlTokenFile,
		&c.Primary.TLSCert, &c.Primary.TLSKey, &c.Primary.TLSCA,
		&c.Primary.NBDTLSCert, &c.Primary.NBDTLSKey, &c.Primary.NBDTLSCA,
		&c.Secondary.Journal, &c.Secondary.TLSCert, &c.Secondary.TLSKey, &c.Secondary.TLSCA,
		&c.Secondary.NBDTLSCert, &c.Secondary.NBDTLSKey, &c.Secondary.NBDTLSCA}
	for i := range c.Primary.Subsystems {
		for j := range c.Primary.Subsystems[i].Volumes {
			p = append(p, &c.Primary.Subsystems[i].Volumes[j].Path)
		}
	}
	for i := range c.Secondary.Volumes {
		p = append(p, &c.Secondary.Volumes[i].Path)
	}
	return p
}

func (c *Config) resolvePaths() {
	for _, p := range c.pathFields() {
		*p = c.Resolve(*p)
	}
}

// Resolve returns path resolved against Dir: unchanged when empty or
// absolute, joined to Dir otherwise, and cleaned.
func (c *Config) Resolve(path string) string {
	if path == "" {
		return ""
	}
	if filepath.IsAbs(path) || c.Dir == "" {
		return filepath.Clean(path)
	}
	return filepath.Join(c.Dir, path)
}

// HasPrimary reports whether the config describes the primary site.
func (c *Config) HasPrimary() bool { return !reflect.ValueOf(c.Primary).IsZero() }

// HasSecondary reports whether the config describes the secondary site.
func (c *Config) HasSecondary() bool { return !reflect.ValueOf(c.Secondary).IsZero() }

// PrimaryVolume returns the primary volume called name and the id of its
// subsystem.
func (c *Config) PrimaryVolume(name string) (Volume, string, bool) {
	for _, ss := range c.Primary.Subsystems {
		for _, v := range ss.Volumes {
			if v.Name == name {
				return v, ss.ID, true
			}
		}
	}
	return Volume{}, "", false
}

// SecondaryVolume returns the secondary volume called name.
func (c *Config) SecondaryVolume(name string) (SecondaryVolume, bool) {
	for _, v := range c.Secondary.Volumes {
		if v.Name == name {
			return v, true
		}
	}
	return SecondaryVolume{}, false
}

// VolumeNames returns the names of the session's volumes in the primary's
// order (subsystem by subsystem), or in the secondary's order when the config
// has no primary volumes.
func (c *Config) VolumeNames() []string {
	var names []string
	for _, ss := range c.Primary.Subsystems {
		for _, v := range ss.Volumes {
			names = append(names, v.Name)
		}
	}
	if names == nil {
		for _, v := range c.Secondary.Volumes {
			names = append(names, v.Name)
		}
	}
	return names
}

// SubsystemIDs returns the primary's subsystem ids in order.
func (c *Config) SubsystemIDs() []string {
	var ids []string
	for _, ss := range c.Primary.Subsystems {
		ids = append(ids, ss.ID)
	}
	return ids
}

// TokenPath returns the resolved path of the control token file, or "" when
// control_token_file is unset.
func (c *Config) TokenPath() string { return c.Resolve(c.ControlTokenFile) }

// Demo returns the embedded default session that duplex demo runs, with its
// files under dir (made absolute): two subsystems of two 256 MiB volumes
// each, both sites on loopback.
func Demo(dir string) *Config {
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	c := &Config{
		Session:          "demo",
		Interval:         DefaultInterval,
		ControlTokenFile: filepath.Join(dir, "token"),
		Primary: Primary{
			NBD:            "127.0.0.1:10809",
			Control:        "127.0.0.1:7401",
			Secondary:      "127.0.0.1:7402",
			SidefileLimit:  DefaultSidefileLimit,
			SuspendAfter:   DefaultSuspendAfter,
			PacingStart:    DefaultPacingStart,
			PacingMaxDelay: DefaultPacingMaxDelay,
		},
		Secondary: Secondary{
			Listen:  "127.0.0.1:7402",
			Control: "127.0.0.1:7403",
			NBD:     "127.0.0.1:10810",
			Journal: filepath.Join(dir, "secondary", "journal"),
		},
		Dir: dir,
	}
	n := 0
	for _, id := range []string{"ss1", "ss2"} {
		ss := Subsystem{ID: id}
		for range 2 {
			n++
			name := fmt.Sprintf("vol%d", n)
			ss.Volumes = append(ss.Volumes, Volume{
				Name: name,
				Path: filepath.Join(dir, "primary", name+".img"),
				Size: 256 * MiB,
			})
			c.Secondary.Volumes = append(c.Secondary.Volumes, SecondaryVolume{
				Name: name,
				Path: filepath.Join(dir, "secondary", name+".img"),
			})
		}
		c.Primary.Subsystems = append(c.Primary.Subsystems, ss)
	}
	return c
}
