package config

import (
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
)

// Limits, and the default that depends on more than one key; the tags of
// Config hold the others.
const (
	DefaultSidefileLimit = 256 * MiB
	// DefaultHistoryBytes bounds [secondary] history when history_bytes
	// is left out.
	DefaultHistoryBytes = 1 * GiB
	// DefaultDrillBytes bounds a failover drill's scratch file when
	// drill_bytes is left out.
	DefaultDrillBytes = 8 * GiB
	// MaxSidefileTotal bounds the subsystems' sidefiles together. A
	// consistency group holds only updates still in the sidefiles (they are
	// released when the group is journaled), each costing there at least
	// its journal encoding, so this keeps every group within the largest
	// the secondary journals (secondary.MaxGroupBytes, 2 GiB), with room
	// for the group's own header.
	MaxSidefileTotal = 1984 * MiB
	// MinRateLimit is the smallest rate limit other than 0 (unlimited): a
	// bare "50" is bytes per second, rarely what was meant.
	MinRateLimit = 1 * KiB
)

// Config is one session: the top-level keys and both sites. The tags
// describe each key of the file (see schema.go).
type Config struct {
	Session          string   `toml:"session" kind:"name" required:"name the session, e.g. session = \"payroll\""`
	Interval         Duration `toml:"interval" default:"20ms" min:"1ms" max:"10s" doc:"time-interval group length"`
	ControlTokenFile string   `toml:"control_token_file" kind:"path" doc:"mutating control calls need this token"` // "" = no token

	Primary   Primary   `toml:"primary"`
	Secondary Secondary `toml:"secondary"`
	Coupling  Coupling  `toml:"coupling"`

	// Dir is the directory of the config file; relative paths resolve
	// against it. Load and Parse make it absolute.
	Dir string `toml:"-"`
}

// Primary is the [primary] section: the site users write to.
type Primary struct {
	NBD       string `toml:"nbd" kind:"listen" unique:"listener" required:"the NBD listen address, e.g. nbd = \"127.0.0.1:10809\"" doc:"NBD listen address; export name = volume name"`
	Control   string `toml:"control" kind:"listen" unique:"listener"` // optional
	Secondary string `toml:"secondary" kind:"dial" required:"where the secondary listens, e.g. secondary = \"127.0.0.1:7402\"" doc:"where the secondary listens"`
	// The site as the secondary of the reverse direction, once the other
	// was promoted and this one rejoins it (package failover).
	Listen  string `toml:"listen" kind:"listen" unique:"listener" group:"rejoin" doc:"where this site listens as the secondary after a rejoin"`
	Journal string `toml:"journal" kind:"path" unique:"file" group:"rejoin" doc:"its journal directory after a rejoin"`

	// SidefileLimit left out is SidefileLimitFor(the subsystems): 256MiB,
	// or less where that many sidefiles would not fit in MaxSidefileTotal.
	SidefileLimit  Size     `toml:"sidefile_limit" min:"1MiB" zero:"0 is too small: must be at least 1MiB"`
	SuspendAfter   Duration `toml:"suspend_after" default:"60s" min:"1ns" range:"%s: must be positive" doc:"link down this long with a full sidefile: suspend"`
	PacingStart    int      `toml:"pacing_start" default:"50" min:"1" max:"99" range:"%d: must be a percentage from 1 to 99" doc:"percent of the sidefile where write pacing begins"`
	PacingMaxDelay Duration `toml:"pacing_max_delay" default:"20ms" min:"0s" max:"1s" range:"%s: must be from 0s (no pacing) to 1s" doc:"delay per write when the sidefile is full"`
	// BurstWait bounds how long a burst's record sets wait in the
	// sidefile, so that the primary's CPU serves the burst's writes before
	// their sends (mover.Config.BurstWait); a steady stream of large
	// writes that weighs as a burst lags up to this long too. 0 ("off"):
	// never wait. Past 10s the lag a large-write stream may take, and the
	// writes the primary holds unsent, outgrow what the key is for: a
	// burst's sends put off while it lasts, not a slower link.
	BurstWait Duration `toml:"burst_wait" default:"1s" min:"0s" max:"10s" off:"yes" range:"%s: must be from 0s (\"off\": never wait) to 10s; a burst's record sets, and the lag of a steady stream of large writes, wait up to this long, and longer would hold that much unsent" doc:"a burst of large writes is sent after it, within this long (\"off\": at once)"`
	// BurstReserve is memory for the sidefiles' buffers of 1 MiB writes,
	// populated at start (in the background) and kept whatever the idle
	// time: a burst of up to this much takes no fresh pages, where without
	// it a session's first burst, and one after the memory of an idle burst
	// was given back, fault every page of its buffers in (about 350 µs of
	// the primary's CPU per MiB on the bench's machine). At most the
	// sidefiles' limits together: no more can be in use at once.
	BurstReserve Size `toml:"burst_reserve" doc:"memory populated at start and kept for the buffers of a burst of 1 MiB writes"`
	// 0 is unlimited; `duplex pair rate` changes them at run time.
	CopyRateLimit Size `toml:"copy_rate_limit" kind:"rate" doc:"bytes per second for initial copies and resyncs"`
	LinkRateLimit Size `toml:"link_rate_limit" kind:"rate" doc:"bytes per second for everything on the link"`
	// A secondary that does not take compressed record sets gets them
	// plain. Level 0 is zstd's default, 3.
	Compression      string `toml:"compression" kind:"enum" values:"none,zstd" doc:"record sets on the link"`
	CompressionLevel int    `toml:"compression_level" min:"0" max:"22" range:"%d is not a zstd level: 1 (fastest) to 22 (smallest), default 3" with:"compression=zstd" without:"%d, but compression is %q: set compression = \"zstd\", or leave the level out" doc:"zstd level, 1 (fastest) to 22 (smallest)"`

	ServerName string `toml:"tls_server_name" needs:"tls"` // name expected in the secondary's certificate; default the host of Secondary
	Security

	Subsystems []Subsystem `toml:"subsystem" required:"the primary needs at least one [[primary.subsystem]] with volumes"`
}

// Security holds the keys both sites have that protect what the site
// serves and dials (see CheckSecurity). The keys of a group are all set or
// none; a key that needs a group has no effect without it (schema.go).
type Security struct {
	// The link's mutual TLS: the primary's certificate is a client one,
	// the secondary's a server one; the CA signed the other site's.
	TLSCert string `toml:"tls_cert" kind:"path" group:"tls"`
	TLSKey  string `toml:"tls_key" kind:"path" group:"tls"`
	TLSCA   string `toml:"tls_ca" kind:"path" group:"tls"`
	// NBD over TLS (NBD_OPT_STARTTLS), required of every client once
	// set; the CA signed the clients' certificates.
	NBDTLSCert string `toml:"nbd_tls_cert" kind:"path" group:"nbd_tls"`
	NBDTLSKey  string `toml:"nbd_tls_key" kind:"path" group:"nbd_tls"`
	NBDTLSCA   string `toml:"nbd_tls_ca" kind:"path" group:"nbd_tls"`
	// The control address over HTTPS, plain HTTP refused once set; the
	// CA and name are what the command-line clients check (left out: the
	// system's roots, the host of control).
	ControlTLSCert       string `toml:"control_tls_cert" kind:"path" group:"control_tls"`
	ControlTLSKey        string `toml:"control_tls_key" kind:"path" group:"control_tls"`
	ControlTLSCA         string `toml:"control_tls_ca" kind:"path" needs:"control_tls"`
	ControlTLSServerName string `toml:"control_tls_server_name" needs:"control_tls"`
	// Insecure allows what this site would otherwise refuse off loopback:
	// a plaintext link, NBD without TLS, a control address without a token
	// and HTTPS.
	Insecure bool `toml:"insecure"`
}

// Subsystem is one [[primary.subsystem]]: volumes sharing a sidefile and a
// sequence-number space.
type Subsystem struct {
	ID      string   `toml:"id" kind:"name" unique:"subsystem" required:"give the subsystem an id, e.g. id = \"ss1\""`
	Volumes []Volume `toml:"volume" required:"the subsystem needs at least one [[primary.subsystem.volume]]"`
}

// Volume is one [[primary.subsystem.volume]].
type Volume struct {
	// Name is unique in the session, and the NBD export name.
	Name string `toml:"name" kind:"name" max:"128" unique:"volume" required:"give the volume a name, e.g. name = \"db-data\""`
	Path string `toml:"path" kind:"path" unique:"file" required:"the volume's image file or device"` // block device or image file
	// Size is a positive multiple of 512; 0 (absent): the device's or
	// existing image's size.
	Size Size `toml:"size" min:"0" multiple:"512 the sector size" range:"%s: must be positive, e.g. size = \"1GiB\"" zero:"must be positive, e.g. size = \"1GiB\"; leave size out to take the block device's or existing image's size"`
}

// Secondary is the [secondary] section: the site holding the consistent copy.
type Secondary struct {
	Listen  string `toml:"listen" kind:"listen" unique:"listener" required:"the address the primary connects to, e.g. listen = \"127.0.0.1:7402\""` // link
	Control string `toml:"control" kind:"listen" unique:"listener"`                                                                                 // optional
	NBD     string `toml:"nbd" kind:"listen" unique:"listener" doc:"consistent read-only exports of the copy"`                                      // optional
	// DrillNBD is where duplex drill start serves writable exports of the
	// volumes as of a point in time, their writes kept apart (a failover
	// drill while replication goes on).
	DrillNBD string `toml:"drill_nbd" kind:"listen" unique:"listener" doc:"writable exports of a failover drill (duplex drill start)"` // optional
	// DrillBytes bounds a drill's scratch file, beside the journal: the
	// drill's writes and the before images of what replication overwrites
	// while it runs. Left out with drill_nbd set, it is DefaultDrillBytes.
	// Their index in memory is bounded apart, as a read view's
	// (secondary.MaxViewBytes): a disk bound would not bound memory.
	DrillBytes Size   `toml:"drill_bytes" min:"1MiB" range:"%s: must be at least 1MiB, e.g. drill_bytes = \"100GiB\"" zero:"0 is too small: leave drill_bytes out for the default (8GiB)" with:"drill_nbd" without:"set without drill_nbd: it bounds the scratch file of the drills drill_nbd serves; set drill_nbd too, or leave drill_bytes out" doc:"bound on a failover drill's scratch file: its writes and the before images it needs (their index in memory is bounded as a read view's, 256MiB)"`
	Journal    string `toml:"journal" kind:"path" unique:"file" required:"where the journal lives, e.g. journal = \"secondary/journal\""`
	// History is how far back duplex recover --at reaches: the secondary
	// keeps the before images of what each group overwrites this long
	// (package history). Left out or 0, it keeps none.
	History Duration `toml:"history" min:"0s" max:"8760h" range:"%s: must be from 0s (no history) to 8760h, e.g. history = \"24h\"" doc:"how far back recover --at reaches (0: off)"`
	// HistoryBytes bounds the history's files: the oldest are dropped
	// first, which shortens the window. Left out with history set, it is
	// DefaultHistoryBytes; at least room for the history's active file and
	// one before it.
	HistoryBytes Size `toml:"history_bytes" min:"4MiB" range:"%s: must be at least 4MiB, e.g. history_bytes = \"20GiB\"" zero:"0 is too small: leave history_bytes out, or set history = \"0s\" to keep no history" with:"history" without:"set without history: it bounds the history that history = \"24h\" (for example) keeps; set history too, or leave history_bytes out" doc:"bound on the history's files"`
	Security

	Volumes []SecondaryVolume `toml:"volume" required:"the secondary needs a [[secondary.volume]] for each primary volume"`
}

// SecondaryVolume is one [[secondary.volume]]: where the copy of the primary
// volume of the same name lives (a block device or an image file). Its size
// is the primary volume's.
type SecondaryVolume struct {
	Name string `toml:"name" kind:"name" max:"128" unique:"copy" required:"the name of the primary volume this copies"`
	Path string `toml:"path" kind:"path" unique:"file" required:"the image file or device holding the copy"`
}

// Coupling is the [coupling] section: the session is a member of a coupled
// group, whose secondaries apply no update stamped after the group's master
// consistency time (package coupling). Left out, the session stands alone.
type Coupling struct {
	Group string   `toml:"group" kind:"name" required:"name the coupled group, e.g. group = \"payments\"" doc:"sessions of one group recover to one time"`
	Etcd  []string `toml:"etcd" required:"the etcd endpoints, e.g. etcd = [\"http://127.0.0.1:2379\"]" doc:"etcd endpoints holding the group"`
	// Once a member's lease expires status names it as gone, and the
	// master time holds until it is removed (duplex couple remove).
	Lease   Duration `toml:"lease" default:"10s" min:"2s" max:"1h" range:"%s: must be from 2s to 1h" doc:"a silent member's time outlives it this long"`
	Publish Duration `toml:"publish" default:"20ms" min:"1ms" max:"10s" range:"%s: must be from 1ms to 10s" doc:"how often each member publishes and reads times"`
	// ClockUncertainty bounds how far apart the clocks of the group's
	// primary hosts may read (NTP: a few ms; PTP: tens of µs). Each
	// primary holds every write's acknowledgement that long past its stamp
	// (coupling.CommitWait), so that a write issued afterwards on another
	// host is stamped later. 0: every primary of the group runs on one
	// host, whose clock they share.
	ClockUncertainty Duration `toml:"clock_uncertainty" default:"1ms" min:"0s" max:"1s" range:"%s: must be from 0s (one host) to 1s" doc:"how far apart the primaries' clocks may read"`
	// As etcdctl's --cacert (left out: the system's roots), --cert and
	// --key (where the servers ask for a client certificate).
	TLSCA        string `toml:"tls_ca" kind:"path" doc:"CA of the etcd servers' certificates"`
	TLSCert      string `toml:"tls_cert" kind:"path" group:"etcd_client_cert"`
	TLSKey       string `toml:"tls_key" kind:"path" group:"etcd_client_cert"`
	Username     string `toml:"username" group:"etcd_auth"`
	PasswordFile string `toml:"password_file" kind:"path" group:"etcd_auth"`
}

// Coupled reports whether the session is a member of a coupled group.
func (c *Config) Coupled() bool { return c.Coupling.Group != "" || len(c.Coupling.Etcd) > 0 }

// Load reads the config file at path, decodes it strictly, applies defaults,
// resolves relative paths against the file's directory and validates it.
// Errors name the file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(data, filepath.Dir(path))
	if err != nil {
		return nil, fileError(path, err)
	}
	return c, nil
}

// fileError prefixes every problem in err with the file name, one per
// line.
func fileError(path string, err error) error {
	var list []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	}
	if len(list) <= 1 {
		return &wrapped{msg: path + ": " + err.Error(), err: err}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d problems:", path, len(list))
	for _, e := range list {
		b.WriteString("\n  ")
		b.WriteString(strings.ReplaceAll(e.Error(), "\n", "\n    "))
	}
	return &wrapped{msg: b.String(), err: err}
}

// SidefileLimitFor is the default sidefile_limit of n subsystems: the
// largest whole MiB, DefaultSidefileLimit at most, whose n sidefiles fit in
// MaxSidefileTotal.
func SidefileLimitFor(n int) Size {
	if n <= 0 {
		return DefaultSidefileLimit
	}
	return min(DefaultSidefileLimit, MaxSidefileTotal/Size(n)/MiB*MiB)
}

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
	if c.Secondary.HistoryBytes == 0 && c.Secondary.History > 0 {
		c.Secondary.HistoryBytes = DefaultHistoryBytes
	}
	if c.Secondary.DrillBytes == 0 && c.Secondary.DrillNBD != "" {
		c.Secondary.DrillBytes = DefaultDrillBytes
	}
	if c.Primary.SidefileLimit == 0 && c.HasPrimary() {
		// Left out (a 0 written is refused in decode) of a [primary]
		// the file has: the default depends on how many subsystems
		// share the bound.
		c.Primary.SidefileLimit = SidefileLimitFor(len(c.Primary.Subsystems))
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
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
	c, err := Parse(demoSession, dir)
	if err != nil {
		panic("config: the demo session: " + err.Error()) // embedded: a test catches it
	}
	return c
}

// demoSession is Demo's session, its paths relative to its directory.
//
//go:embed demo.toml
var demoSession []byte
