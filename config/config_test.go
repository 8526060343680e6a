package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"duplex/internal/testpki"
)

func TestExample(t *testing.T) {
	c, err := Load("testdata/example.toml")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Session:          "payroll",
		Interval:         Duration(20 * time.Millisecond),
		ControlTokenFile: filepath.Join(dir, "token"),
		Primary: Primary{
			NBD:            "127.0.0.1:10809",
			Control:        "127.0.0.1:7401",
			Secondary:      "127.0.0.1:7402",
			SidefileLimit:  256 << 20,
			SuspendAfter:   Duration(60 * time.Second),
			PacingStart:    50,
			PacingMaxDelay: Duration(20 * time.Millisecond),
			BurstWait:      Duration(time.Second),
			Subsystems: []Subsystem{{
				ID: "ss1",
				Volumes: []Volume{{
					Name: "db-data",
					Path: filepath.Join(dir, "primary", "db-data.img"),
					Size: 1 << 30,
				}},
			}},
		},
		Secondary: Secondary{
			Listen:  "127.0.0.1:7402",
			Control: "127.0.0.1:7403",
			NBD:     "127.0.0.1:10810",
			Journal: filepath.Join(dir, "secondary", "journal"),
			Volumes: []SecondaryVolume{{Name: "db-data", Path: filepath.Join(dir, "secondary", "db-data.img")}},
		},
		Dir: dir,
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("example decoded to\n%#v\nwant\n%#v", c, want)
	}
	if err := c.CheckSecurity(); err != nil {
		t.Errorf("loopback example: %v", err)
	}
}

func TestAccessors(t *testing.T) {
	c := Demo(t.TempDir())
	if got, want := c.VolumeNames(), []string{"vol1", "vol2", "vol3", "vol4"}; !reflect.DeepEqual(got, want) {
		t.Errorf("VolumeNames = %v, want %v", got, want)
	}
	if got, want := c.SubsystemIDs(), []string{"ss1", "ss2"}; !reflect.DeepEqual(got, want) {
		t.Errorf("SubsystemIDs = %v, want %v", got, want)
	}
	v, ss, ok := c.PrimaryVolume("vol3")
	if !ok || ss != "ss2" || v.Name != "vol3" || v.Size != 256*MiB || v.Path != filepath.Join(c.Dir, "primary", "vol3.img") {
		t.Errorf("PrimaryVolume(vol3) = %+v, %q, %v", v, ss, ok)
	}
	if _, _, ok := c.PrimaryVolume("nope"); ok {
		t.Error("PrimaryVolume(nope) found something")
	}
	sv, ok := c.SecondaryVolume("vol2")
	if !ok || sv.Path != filepath.Join(c.Dir, "secondary", "vol2.img") {
		t.Errorf("SecondaryVolume(vol2) = %+v, %v", sv, ok)
	}
	if _, ok := c.SecondaryVolume("nope"); ok {
		t.Error("SecondaryVolume(nope) found something")
	}
	if got, want := c.TokenPath(), filepath.Join(c.Dir, "token"); got != want {
		t.Errorf("TokenPath = %q, want %q", got, want)
	}
	c.ControlTokenFile = ""
	if got := c.TokenPath(); got != "" {
		t.Errorf("TokenPath unset = %q, want empty", got)
	}
	c.ControlTokenFile = "rel/tok"
	if got, want := c.TokenPath(), filepath.Join(c.Dir, "rel", "tok"); got != want {
		t.Errorf("TokenPath of relative = %q, want %q", got, want)
	}
	if !c.HasPrimary() || !c.HasSecondary() {
		t.Error("demo should describe both sites")
	}
}

func TestDemo(t *testing.T) {
	dir := t.TempDir()
	c := Demo(dir)
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := c.CheckSecurity(); err != nil {
		t.Fatal(err)
	}
	if c.Dir != dir || c.Session != "demo" || c.Interval != Duration(20*time.Millisecond) ||
		c.TokenPath() != filepath.Join(dir, "token") ||
		c.Primary.NBD != "127.0.0.1:10809" || c.Primary.Control != "127.0.0.1:7401" ||
		c.Primary.Secondary != "127.0.0.1:7402" || c.Primary.SidefileLimit != 256*MiB ||
		c.Primary.SuspendAfter != Duration(time.Minute) ||
		c.Secondary.Listen != "127.0.0.1:7402" || c.Secondary.Control != "127.0.0.1:7403" ||
		c.Secondary.NBD != "127.0.0.1:10810" || c.Secondary.Journal != filepath.Join(dir, "secondary", "journal") {
		t.Errorf("demo = %+v", c)
	}
	text, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`path = "primary/vol1.img"`, `path = "secondary/vol4.img"`, `journal = "secondary/journal"`,
		`control_token_file = "token"`, `size = "256MiB"`, `sidefile_limit = "256MiB"`, `suspend_after = "60s"`, `interval = "20ms"`} {
		if !strings.Contains(string(text), want) {
			t.Errorf("encoded demo lacks %s:\n%s", want, text)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	ex, err := Load("testdata/example.toml")
	if err != nil {
		t.Fatal(err)
	}
	tls := Demo(t.TempDir())
	tls.Primary.Secondary = "10.0.0.2:7402"
	tls.Secondary.Listen = ":7402"
	tls.Primary.TLSCert, tls.Primary.TLSKey, tls.Primary.TLSCA = filepath.Join(tls.Dir, "p.crt"), "/etc/duplex/p.key", filepath.Join(tls.Dir, "ca.crt")
	tls.Primary.ServerName = "secondary.example"
	tls.Primary.NBDTLSCert, tls.Primary.NBDTLSKey = filepath.Join(tls.Dir, "nbd.crt"), filepath.Join(tls.Dir, "nbd.key")
	tls.Primary.NBDTLSCA = "/etc/duplex/clients-ca.crt"
	tls.Secondary.NBDTLSCert, tls.Secondary.NBDTLSKey = filepath.Join(tls.Dir, "snbd.crt"), filepath.Join(tls.Dir, "snbd.key")
	tls.Secondary.NBDTLSCA = filepath.Join(tls.Dir, "clients-ca.crt")
	tls.Secondary.TLSCert, tls.Secondary.TLSKey, tls.Secondary.TLSCA = filepath.Join(tls.Dir, "s.crt"), filepath.Join(tls.Dir, "s.key"), filepath.Join(tls.Dir, "ca.crt")
	tls.Primary.Subsystems[0].Volumes[0].Size = 1536 * MiB
	tls.Primary.Subsystems[0].Volumes[1].Size = 4096 + 512
	tls.Primary.Subsystems[1].Volumes[0].Path = "/dev/mapper/db \"quoted\"\tname"
	tls.Interval = Duration(1500 * time.Microsecond)
	insecure := Demo(t.TempDir())
	insecure.Primary.Insecure, insecure.Secondary.Insecure = true, true
	insecure.Primary.Secondary = "192.0.2.1:7402"
	insecure.Secondary.Listen = "0.0.0.0:7402"

	primaryOnly := Demo(t.TempDir())
	primaryOnly.Secondary = Secondary{}
	secondaryOnly := Demo(t.TempDir())
	secondaryOnly.Primary = Primary{}

	for name, c := range map[string]*Config{
		"demo": Demo(t.TempDir()), "example": ex, "tls": tls, "insecure": insecure,
		"primary-only": primaryOnly, "secondary-only": secondaryOnly,
	} {
		t.Run(name, func(t *testing.T) {
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			back, text := reparse(t, c, c.Dir)
			if !reflect.DeepEqual(back, c) {
				t.Fatalf("round trip changed the config:\n%s\ngot  %#v\nwant %#v", text, back, c)
			}
		})
	}
}

func TestRelativePaths(t *testing.T) {
	text := `
session = "s"
control_token_file = "../shared/token"
[secondary]
listen = "127.0.0.1:7402"
journal = "/var/lib/duplex/journal"
tls_cert = "tls/s.crt"
tls_key = "./tls/../tls/s.key"
tls_ca = "ca.crt"
[[secondary.volume]]
name = "a"
path = "img/a.img"
`
	dir := t.TempDir()
	c, err := Parse([]byte(text), filepath.Join(dir, "site"))
	if err != nil {
		t.Fatal(err)
	}
	site := filepath.Join(dir, "site")
	for got, want := range map[string]string{
		c.Dir:                       site,
		c.ControlTokenFile:          filepath.Join(dir, "shared", "token"),
		c.TokenPath():               filepath.Join(dir, "shared", "token"),
		c.Secondary.Journal:         "/var/lib/duplex/journal",
		c.Secondary.TLSCert:         filepath.Join(site, "tls", "s.crt"),
		c.Secondary.TLSKey:          filepath.Join(site, "tls", "s.key"),
		c.Secondary.TLSCA:           filepath.Join(site, "ca.crt"),
		c.Secondary.Volumes[0].Path: filepath.Join(site, "img", "a.img"),
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
	out, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`path = "img/a.img"`, `tls_key = "tls/s.key"`, `journal = "/var/lib/duplex/journal"`,
		`control_token_file = "` + filepath.Join(dir, "shared", "token") + `"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("encoded config lacks %s:\n%s", want, out)
		}
	}

	// A relative dir is made absolute; Load resolves against the file's dir.
	wd, _ := os.Getwd()
	c, err = Parse([]byte(text), "testdata")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(wd, "testdata", "img", "a.img"); c.Secondary.Volumes[0].Path != want {
		t.Errorf("relative dir: path %q, want %q", c.Secondary.Volumes[0].Path, want)
	}
	file := filepath.Join(dir, "conf", "duplex.toml")
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err = Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "conf", "img", "a.img"); c.Secondary.Volumes[0].Path != want || c.Dir != filepath.Dir(file) {
		t.Errorf("Load: dir %q path %q, want %q", c.Dir, c.Secondary.Volumes[0].Path, want)
	}
}

const minimal = `
session = "s"
[primary]
nbd = "127.0.0.1:10809"
secondary = "127.0.0.1:7402"
[[primary.subsystem]]
id = "ss1"
[[primary.subsystem.volume]]
name = "v"
path = "v.img"
size = 4096
`

// minimalSecondary is a [secondary] section for minimal's volume.
const minimalSecondary = `[secondary]
listen = "127.0.0.1:7402"
journal = "s/journal"
  [[secondary.volume]]
  name = "v"
  path = "s/v.img"
`

// reparse encodes c and parses the text back in dir, as a config file
// written by Encode is read: it returns both.
func reparse(t testing.TB, c *Config, dir string) (back *Config, text []byte) {
	t.Helper()
	text, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err = Parse(text, dir)
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	return back, text
}

func TestDefaults(t *testing.T) {
	c, err := Parse([]byte(minimal), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if c.Interval != Duration(20*time.Millisecond) || c.Primary.SidefileLimit != 256*MiB ||
		c.Primary.SuspendAfter != Duration(60*time.Second) || c.Primary.Subsystems[0].Volumes[0].Size != 4096 {
		t.Errorf("defaults: %+v", c)
	}
	if c.HasSecondary() || c.ControlTokenFile != "" || c.TokenPath() != "" || c.Primary.Control != "" {
		t.Errorf("unset keys got values: %+v", c)
	}
	if got := c.VolumeNames(); !reflect.DeepEqual(got, []string{"v"}) {
		t.Errorf("VolumeNames = %v", got)
	}

	// Explicit values are kept, and an explicit zero is not replaced by the
	// default but refused.
	for _, tc := range []struct{ add, field, want string }{
		{`interval = "0s"`, "interval", "out of range"},
		{`interval = 20`, "interval", "no unit"},
	} {
		_, err := Parse([]byte(tc.add+"\n"+minimal), "")
		if err == nil || !strings.Contains(err.Error(), tc.field) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %s ... %s", tc.add, err, tc.field, tc.want)
		}
	}
	for _, tc := range []struct{ add, field, want string }{
		{`sidefile_limit = "0"`, "primary.sidefile_limit", "at least 1MiB"},
		{`suspend_after = "0s"`, "primary.suspend_after", "must be positive"},
	} {
		text := strings.Replace(minimal, "[primary]\n", "[primary]\n"+tc.add+"\n", 1)
		_, err := Parse([]byte(text), "")
		if err == nil || !strings.Contains(err.Error(), tc.field) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %s ... %s", tc.add, err, tc.field, tc.want)
		}
	}
	text := strings.Replace(minimal, "[primary]\n", "[primary]\nsidefile_limit = \"1GiB\"\nsuspend_after = \"5m\"\n", 1)
	c, err = Parse([]byte("interval = \"100ms\"\n"+text), "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Interval != Duration(100*time.Millisecond) || c.Primary.SidefileLimit != GiB || c.Primary.SuspendAfter != Duration(5*time.Minute) {
		t.Errorf("explicit values: %+v", c)
	}
}

func TestUnknownKeys(t *testing.T) {
	for _, tc := range []struct {
		text string
		want []string
	}{
		{"intervall = \"20ms\"\n" + minimal, []string{"intervall: unknown key", `did you mean "interval"`}},
		{strings.Replace(minimal, "size = 4096", "sise = 4096", 1), []string{"primary.subsystem[0].volume[0].sise: unknown key", `did you mean "size"`}},
		{"sidefile_limit = \"1GiB\"\n" + minimal, []string{"sidefile_limit: unknown key at the top level", "belongs in [primary]"}},
		{minimal + "[tertiary]\nlisten = \"x:1\"\nfoo = 1\n", []string{"tertiary: unknown key", "known keys there"}},
		{minimal + "[secondary]\nlisten = \"127.0.0.1:7402\"\njournal = \"j\"\n[[secondary.volume]]\nname = \"v\"\npath = \"w.img\"\nsize = \"1GiB\"\n",
			[]string{"secondary.volume[0].size: unknown key in [secondary.volume]; known keys there: name, path; \"size\" belongs in [primary.subsystem.volume]"}},
	} {
		_, err := Parse([]byte(tc.text), "")
		if err == nil {
			t.Errorf("no error for %s", tc.want[0])
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q lacks %q", err, w)
			}
		}
		if strings.Contains(err.Error(), "tertiary.") {
			t.Errorf("keys under an unknown table reported too: %v", err)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct{ from, to, want string }{
		{`size = 4096`, `size = "1.5GiB"`, `primary.subsystem[0].volume[0].size: size "1.5GiB": fractions are not accepted: write 1536MiB`},
		{`size = 4096`, `size = 1.5`, `primary.subsystem[0].volume[0].size: must be a size such as "256MiB" or a number of bytes, not a float`},
		{`size = 4096`, `size = -4096`, `primary.subsystem[0].volume[0].size: size "-4096": must not be negative`},
		{`name = "v"`, `name = 5`, `primary.subsystem[0].volume[0].name: must be a string (in double quotes), not an integer`},
		{`[primary]`, "[primary]\ninsecure = \"yes\"", `primary.insecure: must be true or false, not a string`},
		{`[primary]`, "[primary]\nsuspend_after = 60", `primary.suspend_after: 60 has no unit`},
		{`[primary]`, "[primary]\nsuspend_after = \"1 minute\"", `primary.suspend_after: duration "1 minute": not a duration`},
		{`session = "s"`, `session = {name = "s"}`, `session: must be a string (in double quotes), not a table`},
		{`[primary]`, `[[primary]]`, `primary: must be a table, not an array: write [primary] on a line of its own`},
		{`session = "s"`, "session = \"s\"\nsecondary = \"127.0.0.1:7402\"", `secondary: must be a table, not a string`},
		{`[[primary.subsystem]]`, `[primary.subsystem]`, `primary.subsystem: must be an array of tables, not a table: write [[primary.subsystem]] (double brackets)`},
		{`[[primary.subsystem.volume]]`, `[primary.subsystem.volume]`, `primary.subsystem[0].volume: must be an array of tables, not a table: write [[primary.subsystem.volume]]`},
		{minimal, "session = \"s\"\nbogus = 1\n[primary]\nsubsystem = [1, 2]\n", `primary.subsystem: must be an array of tables`},
		{minimal, "session = \"s\"\nbogus = 1\n[primary]\nsubsystem = [1, 2]\n", `bogus: unknown key`},
		{`session = "s"`, `Session = "s"`, `Session: unknown key at the top level (did you mean "session"?)`},
		{`nbd =`, `NBD =`, `primary.NBD: unknown key in [primary] (did you mean "nbd"?)`},
		{`[[primary.subsystem]]`, "[[primary.subsystem]]\nid = \"ss0\"\nvolume = [{name = \"a\", path = \"a\", size = 1000}]\n[[primary.subsystem]]", `primary.subsystem[0].volume[0].size: 1000 bytes is not a multiple of 512`},
		{`size = 4096`, `size = "-1"`, `must not be negative`},
		{`size = 4096`, `size = 0`, `primary.subsystem[0].volume[0].size: must be positive, e.g. size = "1GiB"; leave size out to take the block device's or existing image's size`},
		{`size = 4096`, `size = "0MiB"`, `primary.subsystem[0].volume[0].size: must be positive`},
		{`size = 4096`, `size = "99999999999TiB"`, `too large`},
		{`size = 4096`, `size = "4G"`, `unknown unit "G"`},
		{`session = "s"`, `session = 5`, `session`},
		{`session = "s"`, `session = "s`, `line 2`},
	} {
		_, err := Parse([]byte(strings.Replace(minimal, tc.from, tc.to, 1)), "")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.to, err, tc.want)
		}
	}

	// Every bad value is reported at once, each with its index.
	text, err := Demo("/d").Encode()
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(text), `size = "256MiB"`, `size = "1.5GiB"`, 1)
	bad = strings.Replace(bad, "name = \"vol4\"\n    path = \"primary/vol4.img\"\n    size = \"256MiB\"",
		"name = \"vol4\"\n    path = \"primary/vol4.img\"\n    size = \"256XB\"", 1)
	bad = strings.Replace(bad, `name = "vol3"`, `name = true`, 1)
	_, err = Parse([]byte(bad), "/d")
	for _, want := range []string{
		"primary.subsystem[0].volume[0].size: size \"1.5GiB\"",
		"primary.subsystem[1].volume[0].name: must be a string",
		"primary.subsystem[1].volume[1].size: size \"256XB\": unknown unit",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

// valid returns a config describing both sites that passes Validate.
func valid(t *testing.T) *Config {
	c := Demo(t.TempDir())
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(c *Config)
		field  string // expected at the start of a line
		want   string
	}{
		{"no session", func(c *Config) { c.Session = "" }, "session", "missing"},
		{"bad session", func(c *Config) { c.Session = "pay roll" }, "session", "not a valid name"},
		{"long session", func(c *Config) { c.Session = strings.Repeat("a", 65) }, "session", "1 to 64"},
		{"dot session", func(c *Config) { c.Session = ".." }, "session", "starting with a letter or digit"},
		{"interval low", func(c *Config) { c.Interval = Duration(500 * time.Microsecond) }, "interval", "between 1ms and 10s"},
		{"interval high", func(c *Config) { c.Interval = Duration(11 * time.Second) }, "interval", "between 1ms and 10s"},
		{"no site", func(c *Config) { c.Primary, c.Secondary = Primary{}, Secondary{} }, "the config describes neither site", ""},
		{"no nbd", func(c *Config) { c.Primary.NBD = "" }, "primary.nbd", "missing"},
		{"bad nbd", func(c *Config) { c.Primary.NBD = "10809" }, "primary.nbd", "not a host:port"},
		{"bad port", func(c *Config) { c.Primary.Control = "127.0.0.1:http" }, "primary.control", "must be a number"},
		{"big port", func(c *Config) { c.Secondary.NBD = "127.0.0.1:70000" }, "secondary.nbd", "must be a number"},
		{"same listener", func(c *Config) { c.Primary.Control = c.Primary.NBD }, "primary.control", "also primary.nbd"},
		{"no secondary addr", func(c *Config) { c.Primary.Secondary = "" }, "primary.secondary", "missing"},
		{"dial no host", func(c *Config) { c.Primary.Secondary = ":7402" }, "primary.secondary", "host is missing"},
		{"dial port 0", func(c *Config) { c.Primary.Secondary = "127.0.0.1:0" }, "primary.secondary", "from 1 to 65535"},
		{"sidefile small", func(c *Config) { c.Primary.SidefileLimit = 512 * KiB }, "primary.sidefile_limit", "at least 1MiB"},
		{"sidefiles over a group", func(c *Config) { c.Primary.SidefileLimit = MaxSidefileTotal/Size(len(c.Primary.Subsystems)) + 1 }, "primary.sidefile_limit", "too large for 2 subsystems"},
		{"reserve over the sidefiles", func(c *Config) { c.Primary.SidefileLimit = 8 * MiB; c.Primary.BurstReserve = 16*MiB + 1 }, "primary.burst_reserve", "more than the 2 sidefiles hold together (16MiB)"},
		{"suspend zero", func(c *Config) { c.Primary.SuspendAfter = 0 }, "primary.suspend_after", "positive"},
		{"no subsystems", func(c *Config) { c.Primary.Subsystems = nil }, "primary.subsystem", "at least one"},
		{"no volumes", func(c *Config) { c.Primary.Subsystems[1].Volumes = nil }, "primary.subsystem[1].volume", "at least one"},
		{"no ss id", func(c *Config) { c.Primary.Subsystems[0].ID = "" }, "primary.subsystem[0].id", "missing"},
		{"bad ss id", func(c *Config) { c.Primary.Subsystems[0].ID = "ss/1" }, "primary.subsystem[0].id", "not a valid name"},
		{"dup ss id", func(c *Config) { c.Primary.Subsystems[1].ID = "ss1" }, "primary.subsystem[1].id", "also the id of primary.subsystem[0]"},
		{"no vol name", func(c *Config) { c.Primary.Subsystems[0].Volumes[1].Name = "" }, "primary.subsystem[0].volume[1].name", "missing"},
		{"bad vol name", func(c *Config) { c.Primary.Subsystems[0].Volumes[1].Name = "a b" }, "primary.subsystem[0].volume[1].name", "not a valid name"},
		{"long vol name", func(c *Config) { c.Primary.Subsystems[0].Volumes[1].Name = strings.Repeat("v", 129) }, "primary.subsystem[0].volume[1].name", "1 to 128"},
		{"dup vol name", func(c *Config) { c.Primary.Subsystems[1].Volumes[0].Name = "vol1" },
			"primary.subsystem[1].volume[0].name", `"vol1" is also the name of primary.subsystem[0].volume[0]`},
		{"no vol path", func(c *Config) { c.Primary.Subsystems[0].Volumes[0].Path = "" }, "primary.subsystem[0].volume[0].path", "missing"},
		{"negative size", func(c *Config) { c.Primary.Subsystems[1].Volumes[0].Size = -4096 }, "primary.subsystem[1].volume[0].size", "must be positive"},
		{"odd size", func(c *Config) { c.Primary.Subsystems[1].Volumes[1].Size = 1000 }, "primary.subsystem[1].volume[1].size", "not a multiple of 512"},
		{"partial tls", func(c *Config) { c.Primary.TLSCert = "c.pem"; c.Primary.TLSCA = "ca.pem" }, "primary.tls_key", "missing"},
		{"partial tls secondary", func(c *Config) { c.Secondary.TLSKey = "k.pem" }, "secondary.tls_cert", "missing"},
		{"tls and insecure", func(c *Config) {
			c.Primary.TLSCert, c.Primary.TLSKey, c.Primary.TLSCA = "c", "k", "ca"
			c.Secondary.TLSCert, c.Secondary.TLSKey, c.Secondary.TLSCA = "c", "k", "ca"
			c.Primary.NBDTLSCert, c.Primary.NBDTLSKey, c.Primary.NBDTLSCA = "c", "k", "ca"
			c.Primary.ControlTLSCert, c.Primary.ControlTLSKey = "c", "k"
			c.ControlTokenFile = "token"
			c.Primary.Insecure = true
		}, "primary.insecure", "nothing left to allow"},
		{"tls and insecure secondary", func(c *Config) {
			c.Primary.TLSCert, c.Primary.TLSKey, c.Primary.TLSCA = "c", "k", "ca"
			c.Secondary.TLSCert, c.Secondary.TLSKey, c.Secondary.TLSCA = "c", "k", "ca"
			c.Secondary.NBD, c.Secondary.Control = "", ""
			c.Secondary.Insecure = true
		}, "secondary.insecure", "cannot be true"},
		{"control cert without key", func(c *Config) { c.Primary.ControlTLSCert = "c.pem" }, "primary.control_tls_key", "missing: HTTPS on the control address needs"},
		{"control key without cert", func(c *Config) { c.Secondary.ControlTLSKey = "k.pem" }, "secondary.control_tls_cert", "missing"},
		{"control ca without cert", func(c *Config) { c.Primary.ControlTLSCA = "ca.pem" }, "primary.control_tls_ca", "no effect without control_tls_cert"},
		{"control name without cert", func(c *Config) { c.Secondary.ControlTLSServerName = "b.example" }, "secondary.control_tls_server_name", "no effect"},
		{"control tls without control", func(c *Config) {
			c.Secondary.Control = ""
			c.Secondary.ControlTLSCert, c.Secondary.ControlTLSKey = "c", "k"
		}, "secondary.control_tls_cert", "no effect without secondary.control"},
		{"control tls on every interface", func(c *Config) {
			c.Primary.Control = "0.0.0.0:7401"
			c.Primary.ControlTLSCert, c.Primary.ControlTLSKey = "c", "k"
		}, "primary.control_tls_server_name", "listens on every interface"},
		{"control tls and insecure", func(c *Config) {
			c.Primary.TLSCert, c.Primary.TLSKey, c.Primary.TLSCA = "c", "k", "ca"
			c.Secondary.TLSCert, c.Secondary.TLSKey, c.Secondary.TLSCA = "c", "k", "ca"
			c.Secondary.NBD = ""
			c.Secondary.ControlTLSCert, c.Secondary.ControlTLSKey = "c", "k"
			c.Secondary.Insecure = true
		}, "secondary.insecure", "token and HTTPS"},
		{"partial nbd tls", func(c *Config) { c.Primary.NBDTLSCert = "c.pem" }, "primary.nbd_tls_key", "nbd_tls_cert, nbd_tls_key and nbd_tls_ca"},
		{"partial nbd tls secondary", func(c *Config) { c.Secondary.NBDTLSCA = "ca.pem" }, "secondary.nbd_tls_cert", "missing"},
		{"nbd tls without nbd", func(c *Config) {
			c.Secondary.NBD = ""
			c.Secondary.NBDTLSCert, c.Secondary.NBDTLSKey, c.Secondary.NBDTLSCA = "c", "k", "ca"
		}, "secondary.nbd_tls_cert", "no effect without secondary.nbd"},
		{"tls one end", func(c *Config) { c.Primary.TLSCert, c.Primary.TLSKey, c.Primary.TLSCA = "c", "k", "ca" }, "secondary.tls_cert", "both ends"},
		{"server name without tls", func(c *Config) { c.Primary.ServerName = "x" }, "primary.tls_server_name", "no effect"},
		{"no listen", func(c *Config) { c.Secondary.Listen = "" }, "secondary.listen", "missing"},
		{"bad listen", func(c *Config) { c.Secondary.Listen = "localhost" }, "secondary.listen", "not a host:port"},
		{"secondary same listener", func(c *Config) { c.Secondary.NBD = c.Secondary.Control }, "secondary.nbd", "also secondary.control"},
		{"cross-site listener", func(c *Config) { c.Secondary.NBD = c.Primary.NBD }, "secondary.nbd", "also primary.nbd, and both sites run on this machine"},
		{"no journal", func(c *Config) { c.Secondary.Journal = "" }, "secondary.journal", "missing"},
		{"no secondary volumes", func(c *Config) { c.Secondary.Volumes = nil }, "secondary.volume", "none"},
		{"no secondary vol name", func(c *Config) { c.Secondary.Volumes[2].Name = "" }, "secondary.volume[2].name", "missing"},
		{"bad secondary vol name", func(c *Config) { c.Secondary.Volumes[2].Name = "-x" }, "secondary.volume[2].name", "not a valid name"},
		{"dup secondary vol", func(c *Config) { c.Secondary.Volumes[3].Name = "vol1" }, "secondary.volume[3].name", "also the name of secondary.volume[0]"},
		{"missing secondary vol", func(c *Config) { c.Secondary.Volumes = c.Secondary.Volumes[:3] }, "secondary.volume", `no entry for primary volume "vol4"`},
		{"extra secondary vol", func(c *Config) {
			c.Secondary.Volumes = append(c.Secondary.Volumes, SecondaryVolume{Name: "vol5", Path: "/x/vol5.img"})
		}, "secondary.volume[4].name", `"vol5" is not a volume of the primary`},
		{"no secondary vol path", func(c *Config) { c.Secondary.Volumes[1].Path = "" }, "secondary.volume[1].path", "missing"},
		{"shared primary path", func(c *Config) {
			c.Primary.Subsystems[1].Volumes[1].Path = c.Primary.Subsystems[0].Volumes[0].Path
		}, "primary.subsystem[1].volume[1].path", "also primary.subsystem[0].volume[0].path"},
		{"shared path across sites", func(c *Config) { c.Secondary.Volumes[0].Path = c.Primary.Subsystems[0].Volumes[0].Path },
			"secondary.volume[0].path", "also primary.subsystem[0].volume[0].path"},
		{"journal shared across sites", func(c *Config) { c.Primary.Listen, c.Primary.Journal = "127.0.0.1:7404", c.Secondary.Journal },
			"secondary.journal", "also primary.journal, and both sites run on this machine"},
		{"journals in one directory", func(c *Config) {
			c.Primary.Listen, c.Primary.Journal = "127.0.0.1:7404", filepath.Join(filepath.Dir(c.Secondary.Journal), "journal2")
		}, "primary.journal", "in the directory of secondary.journal"},
		{"journal is a volume", func(c *Config) { c.Secondary.Journal = c.Secondary.Volumes[0].Path }, "secondary.volume[0].path", "also secondary.journal"},
		{"shared path via relative", func(c *Config) {
			c.Secondary.Volumes[1].Path = "secondary/../secondary/vol1.img"
		}, "secondary.volume[1].path", "also secondary.volume[0].path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := valid(t)
			tc.mutate(c)
			err := c.Validate()
			if err == nil {
				t.Fatal("Validate accepted it")
			}
			prefix := tc.field
			if tc.want != "" {
				prefix += ": "
			}
			found := false
			for _, line := range strings.Split(err.Error(), "\n") {
				if strings.HasPrefix(line, prefix) && strings.Contains(line, tc.want) {
					found = true
				}
			}
			if !found {
				t.Fatalf("error lacks a line %q...%q:\n%v", prefix, tc.want, err)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Errorf("error is not a *FieldError: %T", err)
			}
		})
	}
}

func TestValidateJoinsEverything(t *testing.T) {
	c := valid(t)
	c.Session = ""
	c.Primary.NBD = ""
	c.Secondary.Journal = ""
	err := c.Validate()
	for _, f := range []string{"session:", "primary.nbd:", "secondary.journal:"} {
		if err == nil || !strings.Contains(err.Error(), f) {
			t.Errorf("error lacks %s: %v", f, err)
		}
	}
	// Load names the file and lists each problem on its own line.
	dir := t.TempDir()
	text, _ := valid(t).Encode()
	bad := strings.Replace(string(text), `session = "demo"`, `session = ""`, 1)
	bad = strings.Replace(bad, `size = "256MiB"`, `size = "1000"`, 1)
	file := filepath.Join(dir, "duplex.toml")
	if err := os.WriteFile(file, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(file)
	if err == nil || !strings.HasPrefix(err.Error(), file+": 2 problems:\n  session: missing") ||
		!strings.Contains(err.Error(), "\n  primary.subsystem[0].volume[0].size: 1000 bytes is not a multiple of 512") {
		t.Errorf("Load error:\n%v", err)
	}
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Errorf("Load error does not unwrap to a *FieldError")
	}
	if _, err := Load(filepath.Join(dir, "missing.toml")); err == nil || !strings.Contains(err.Error(), "missing.toml") {
		t.Errorf("missing file: %v", err)
	}
}

func TestOneSite(t *testing.T) {
	c := valid(t)
	c.Secondary = Secondary{}
	if err := c.Validate(); err != nil {
		t.Errorf("primary only: %v", err)
	}
	c = valid(t)
	c.Primary = Primary{}
	if err := c.Validate(); err != nil {
		t.Errorf("secondary only: %v", err)
	}
	if got := c.VolumeNames(); !reflect.DeepEqual(got, []string{"vol1", "vol2", "vol3", "vol4"}) {
		t.Errorf("secondary-only VolumeNames = %v", got)
	}
	// On separate machines the same path on both sites is fine.
	c = valid(t)
	c.Primary.Secondary = "192.0.2.7:7402"
	c.Secondary.Listen = ":7402"
	c.Secondary.NBD = c.Primary.NBD
	for i := range c.Secondary.Volumes {
		v, _, _ := c.PrimaryVolume(c.Secondary.Volumes[i].Name)
		c.Secondary.Volumes[i].Path = v.Path
	}
	c.Primary.Listen, c.Primary.Journal = ":7404", c.Secondary.Journal
	if err := c.Validate(); err != nil {
		t.Errorf("separate machines sharing paths: %v", err)
	}
	// An empty [primary] header still asks for a primary.
	_, err := Parse([]byte("session = \"s\"\n[primary]\n"), "")
	if err == nil || !strings.Contains(err.Error(), "primary.nbd: missing") || !strings.Contains(err.Error(), "primary.subsystem: none") {
		t.Errorf("empty [primary]: %v", err)
	}
}

func TestSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Size
	}{
		{"4096", 4096}, {"0", 0}, {"64KiB", 64 << 10}, {"256MiB", 256 << 20}, {"1GiB", 1 << 30},
		{"2TiB", 2 << 40}, {"256 MiB", 256 << 20}, {" 1gib ", 1 << 30}, {"1GB", 1e9}, {"5MB", 5e6},
		{"3KB", 3000}, {"1TB", 1e12}, {"1536MiB", 1536 << 20}, {"8388607TiB", 8388607 << 40},
		{"9223372036854775807", 1<<63 - 1},
	} {
		got, err := ParseSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"", "empty"}, {"  ", "empty"}, {"-1", "must not be negative"}, {"-1GiB", "must not be negative"},
		{"1.5GiB", "fractions are not accepted: write 1536MiB"},
		{"0.5KiB", "write 512"}, {"1.1", "fractions are not accepted: write a whole number"},
		{"99999999999TiB", "too large"}, {"8388608TiB", "too large"}, {"9223372036854775808", "too large"},
		{"99999999999999999999999", "too large"},
		{"4G", `unknown unit "G"`}, {"4 k", "unknown unit"}, {"GiB", "no number"}, {"+5", "not a number"},
		{"1e9", "unknown unit"}, {"0x10", "unknown unit"}, {"1_000", "unknown unit"},
	} {
		got, err := ParseSize(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseSize(%q) = %d, %v; want error %q", tc.in, got, err, tc.want)
		}
	}
	for _, tc := range []struct {
		in   Size
		want string
	}{
		{0, "0"}, {1000, "1000"}, {4096, "4KiB"}, {256 << 20, "256MiB"}, {1536 << 20, "1536MiB"},
		{1 << 30, "1GiB"}, {3 << 40, "3TiB"}, {1e9, "1000000000"}, {4608, "4608"},
	} {
		b, err := tc.in.MarshalText()
		if err != nil || string(b) != tc.want {
			t.Errorf("MarshalText(%d) = %q, %v; want %q", int64(tc.in), b, err, tc.want)
		}
		var back Size
		if err := back.UnmarshalText(b); err != nil || back != tc.in {
			t.Errorf("UnmarshalText(%q) = %d, %v", b, int64(back), err)
		}
	}
	if _, err := Size(-1).MarshalText(); err == nil {
		t.Error("negative Size marshalled")
	}
}

func TestDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"20ms", 20 * time.Millisecond}, {"60s", time.Minute}, {"2m", 2 * time.Minute}, {"1h30m", 90 * time.Minute},
		{"1.5s", 1500 * time.Millisecond}, {"0s", 0},
	} {
		var d Duration
		if err := d.UnmarshalText([]byte(tc.in)); err != nil || time.Duration(d) != tc.want {
			t.Errorf("%q = %v, %v; want %v", tc.in, time.Duration(d), err, tc.want)
		}
	}
	for _, tc := range []struct{ in, want string }{{"20", "no unit"}, {"", "not a duration"}, {"soon", "not a duration"}} {
		var d Duration
		if err := d.UnmarshalText([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want %q", tc.in, err, tc.want)
		}
	}
	for _, tc := range []struct {
		in   time.Duration
		want string
	}{
		{0, "0s"}, {20 * time.Millisecond, "20ms"}, {time.Minute, "60s"}, {2 * time.Hour, "2h"},
		{1500 * time.Millisecond, "1500ms"}, {1500 * time.Microsecond, "1500us"}, {7, "7ns"}, {-20 * time.Millisecond, "-20ms"},
	} {
		b, _ := Duration(tc.in).MarshalText()
		if string(b) != tc.want {
			t.Errorf("MarshalText(%v) = %q, want %q", tc.in, b, tc.want)
		}
		var back Duration
		if err := back.UnmarshalText(b); err != nil || time.Duration(back) != tc.in {
			t.Errorf("UnmarshalText(%q) = %v, %v", b, time.Duration(back), err)
		}
	}
}

func TestCheckSecurity(t *testing.T) {
	loop := valid(t)
	if err := loop.CheckSecurity(); err != nil {
		t.Errorf("loopback: %v", err)
	}
	loop.Primary.Secondary, loop.Secondary.Listen = "localhost:7402", "[::1]:7402"
	if err := loop.CheckSecurity(); err != nil {
		t.Errorf("localhost/::1: %v", err)
	}

	remote := valid(t)
	remote.Primary.Secondary = "10.0.0.1:7402"
	remote.Secondary.Listen = "10.0.0.1:7402"
	err := remote.CheckSecurity()
	if err == nil {
		t.Fatal("plaintext link to 10.0.0.1 accepted")
	}
	for _, want := range []string{`primary.secondary: "10.0.0.1:7402" is not a loopback address`, `secondary.listen: "10.0.0.1:7402"`,
		"tls_cert, tls_key and tls_ca", "insecure = true"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	// Listening on all interfaces is not loopback either.
	remote.Secondary.Listen = ":7402"
	remote.Secondary.Insecure = true
	err = remote.CheckSecurity()
	if err == nil || strings.Contains(err.Error(), "secondary.listen") || !strings.Contains(err.Error(), "primary.secondary") {
		t.Errorf("insecure secondary only: %v", err)
	}
	remote.Primary.Insecure = true
	if err := remote.CheckSecurity(); err != nil {
		t.Errorf("insecure = true: %v", err)
	}
	// One site only: only its side is checked.
	sec := valid(t)
	sec.Primary = Primary{}
	sec.Secondary.Listen = "0.0.0.0:7402"
	if err := sec.CheckSecurity(); err == nil || !strings.Contains(err.Error(), "secondary.listen") {
		t.Errorf("secondary only on 0.0.0.0: %v", err)
	}

	dir := testpki.SitesDir(t)
	c, err := Parse([]byte(testpki.SitesConfig), dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CheckSecurity(); err != nil {
		t.Errorf("with TLS: %v", err)
	}

	// NBD and control off loopback, at each site.
	for _, tc := range []struct {
		name  string
		edit  func(c *Config)
		field string
		want  string
	}{
		{"primary nbd", func(c *Config) { c.Primary.NBD = "0.0.0.0:10809" }, "primary.nbd", "set nbd_tls_cert, nbd_tls_key and nbd_tls_ca in [primary]"},
		{"primary nbd all interfaces", func(c *Config) { c.Primary.NBD = ":10809" }, "primary.nbd", "not a loopback address"},
		{"secondary nbd", func(c *Config) { c.Secondary.NBD = "192.0.2.4:10810" }, "secondary.nbd", "in [secondary]"},
		{"primary listen", func(c *Config) { c.Primary.Listen, c.Primary.Journal = "192.0.2.4:7404", "a/journal" }, "primary.listen", "set tls_cert, tls_key and tls_ca in [primary]"},
		{"primary control", func(c *Config) { c.Primary.Control = "192.0.2.4:7401" }, "primary.control", "no control_token_file"},
		{"secondary control", func(c *Config) { c.Secondary.Control = "[::]:7403" }, "secondary.control", "insecure = true in [secondary]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := valid(t)
			c.ControlTokenFile = ""
			tc.edit(c)
			err := c.CheckSecurity()
			if err == nil || !strings.Contains(err.Error(), tc.field+": ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %s: ...%s...", err, tc.field, tc.want)
			}
			// Every refusal names the way out.
			if !strings.Contains(err.Error(), "insecure = true") {
				t.Errorf("the refusal does not mention insecure = true: %v", err)
			}
			c.Primary.Insecure, c.Secondary.Insecure = true, true
			if err := c.CheckSecurity(); err != nil {
				t.Errorf("insecure = true: %v", err)
			}
		})
	}
	// Control off loopback needs the token and HTTPS: each alone is refused.
	withToken := valid(t)
	withToken.ControlTokenFile = "token"
	withToken.Primary.Control, withToken.Secondary.Control = "0.0.0.0:7401", "0.0.0.0:7403"
	err = withToken.CheckSecurity()
	for _, site := range []string{"primary", "secondary"} {
		if err == nil || !strings.Contains(err.Error(), site+".control: ") ||
			!strings.Contains(err.Error(), "set control_tls_cert and control_tls_key in ["+site+"]") || strings.Contains(err.Error(), "no control_token_file") {
			t.Errorf("control off loopback with a token but no HTTPS: %v, want %s.control asking for control_tls_cert only", err, site)
		}
	}
	withHTTPS := valid(t)
	withHTTPS.ControlTokenFile = ""
	withHTTPS.Primary.Control = "192.0.2.4:7401"
	withHTTPS.Primary.ControlTLSCert, withHTTPS.Primary.ControlTLSKey = "c", "k"
	if err := withHTTPS.CheckSecurity(); err == nil || !strings.Contains(err.Error(), "no control_token_file") || strings.Contains(err.Error(), "control_tls_cert") {
		t.Errorf("control off loopback with HTTPS but no token: %v, want it to ask for the token only", err)
	}
	withHTTPS.ControlTokenFile = "token"
	if err := withHTTPS.CheckSecurity(); err != nil {
		t.Errorf("control off loopback with a token and HTTPS: %v", err)
	}
	withTLS := valid(t)
	withTLS.Primary.NBD, withTLS.Secondary.NBD = "0.0.0.0:10809", "0.0.0.0:10810"
	withTLS.Primary.NBDTLSCert, withTLS.Primary.NBDTLSKey, withTLS.Primary.NBDTLSCA = "c", "k", "ca"
	withTLS.Secondary.NBDTLSCert, withTLS.Secondary.NBDTLSKey, withTLS.Secondary.NBDTLSCA = "c", "k", "ca"
	if err := withTLS.CheckSecurity(); err != nil {
		t.Errorf("NBD off loopback with TLS: %v", err)
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"4096", "256MiB", "1.5GiB", "-1", "99999999999TiB", "1 gb", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseSize(s)
		if err != nil {
			return
		}
		if v < 0 {
			t.Fatalf("ParseSize(%q) = %d", s, int64(v))
		}
		b, err := v.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseSize(string(b))
		if err != nil || back != v {
			t.Fatalf("%q -> %d -> %q -> %d, %v", s, int64(v), b, int64(back), err)
		}
	})
}

// FuzzParse: Parse never panics, and whatever it accepts Encode writes back
// to an equal Config.
func FuzzParse(f *testing.F) {
	ex, err := os.ReadFile("testdata/example.toml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ex)
	f.Add([]byte(minimal))
	f.Add([]byte(testpki.SitesConfig))
	demo, err := Demo("/demo").Encode()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(demo)
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "/site")
		if err != nil {
			return
		}
		text, err := c.Encode()
		if err != nil {
			t.Fatalf("Encode: %v", err)
		}
		back, err := Parse(text, "/site")
		if err != nil {
			t.Fatalf("re-parse: %v\n%s", err, text)
		}
		if !reflect.DeepEqual(back, c) {
			t.Fatalf("round trip changed the config:\n%s\ngot  %#v\nwant %#v", text, back, c)
		}
	})
}

func TestRateLimits(t *testing.T) {
	withPrimary := func(add string) string {
		return strings.Replace(minimal, "[primary]\n", "[primary]\n"+add+"\n", 1)
	}
	c, err := Parse([]byte(minimal), "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Primary.CopyRateLimit != 0 || c.Primary.LinkRateLimit != 0 {
		t.Fatalf("absent rate limits = %v, %v; want 0 (unlimited)", c.Primary.CopyRateLimit, c.Primary.LinkRateLimit)
	}
	c, err = Parse([]byte(withPrimary("copy_rate_limit = \"50MiB\"\nlink_rate_limit = 1000000")), "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Primary.CopyRateLimit != 50*MiB || c.Primary.LinkRateLimit != 1000000 {
		t.Fatalf("rate limits = %v, %v; want 50MiB, 1000000", c.Primary.CopyRateLimit, c.Primary.LinkRateLimit)
	}
	back, text := reparse(t, c, "")
	if back.Primary.CopyRateLimit != 50*MiB || back.Primary.LinkRateLimit != 1000000 {
		t.Fatalf("encoded and parsed back: %v, %v\n%s", back.Primary.CopyRateLimit, back.Primary.LinkRateLimit, text)
	}
	if _, err := Parse([]byte(withPrimary(`copy_rate_limit = "0"`)), ""); err != nil {
		t.Fatalf("0 (unlimited): %v", err)
	}
	for _, tc := range []struct{ add, field, want string }{
		{`copy_rate_limit = "-5MiB"`, "primary.copy_rate_limit", "must not be negative"},
		{`link_rate_limit = -1`, "primary.link_rate_limit", "must not be negative"},
		{`link_rate_limit = "fast"`, "primary.link_rate_limit", "unknown unit"},
		{`copy_rate_limit = "50 Mbps"`, "primary.copy_rate_limit", "unknown unit"},
		{`copy_rate_limit = "1.5MiB"`, "primary.copy_rate_limit", "fractions"},
		{`link_rate_limit = 50`, "primary.link_rate_limit", "too small"},
		{`link_rate_limit = true`, "primary.link_rate_limit", "must be a size"},
	} {
		_, err := Parse([]byte(withPrimary(tc.add)), "")
		if err == nil || !strings.Contains(err.Error(), tc.field) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %s ... %s", tc.add, err, tc.field, tc.want)
		}
	}
}

// A volume may leave its size out: it is then the size of its block device
// (or existing image), known only when the volume is opened. The config
// takes it, and writes it back without a size.
func TestVolumeSizeLeftOut(t *testing.T) {
	c, err := Parse([]byte(strings.Replace(minimal, "size = 4096\n", "", 1)), t.TempDir())
	if err != nil {
		t.Fatalf("a volume without a size is refused: %v", err)
	}
	if got := c.Primary.Subsystems[0].Volumes[0].Size; got != 0 {
		t.Fatalf("size %d, want 0 (the device's)", got)
	}
	text, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(text), "size =") {
		t.Errorf("encoded with a size:\n%s", text)
	}
	again, err := Parse(text, c.Dir)
	if err != nil {
		t.Fatalf("the encoded config does not parse: %v\n%s", err, text)
	}
	if got := again.Primary.Subsystems[0].Volumes[0].Size; got != 0 {
		t.Errorf("size %d after encoding, want 0", got)
	}
}

// TestExamples: every example config loads, and passes the security check
// as it stands (the secure one off loopback, with every key set).
func TestExamples(t *testing.T) {
	paths, err := filepath.Glob("../examples/*.toml")
	if err != nil || len(paths) < 2 {
		t.Fatalf("examples: %v %v", paths, err)
	}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			c, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.CheckSecurity(); err != nil {
				t.Fatal(err)
			}
			if filepath.Base(path) == "secure.toml" {
				for _, a := range []string{c.Primary.NBD, c.Primary.Control, c.Primary.Secondary, c.Secondary.NBD, c.Secondary.Control, c.Secondary.Listen} {
					if isLoopbackAddr(a) {
						t.Errorf("%s is loopback: the example shows nothing off loopback", a)
					}
				}
				if c.Primary.Insecure || c.Secondary.Insecure {
					t.Error("the secure example sets insecure")
				}
			}
		})
	}
}

var update = flag.Bool("update", false, "rewrite testdata/demo.toml from Demo")

// TestDemoGolden: the demo's session encodes to testdata/demo.toml exactly,
// and that file decodes back to the demo's Config.
func TestDemoGolden(t *testing.T) {
	demo := Demo("/demo")
	text, err := demo.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile("testdata/demo.toml", text, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	golden, err := os.ReadFile("testdata/demo.toml")
	if err != nil {
		t.Fatal(err)
	}
	if string(text) != string(golden) {
		t.Errorf("Demo encodes to\n%s\nwant (testdata/demo.toml; go test -update rewrites it)\n%s", text, golden)
	}
	back, err := Parse(golden, "/demo")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, demo) {
		t.Errorf("testdata/demo.toml decodes to\n%#v\nwant\n%#v", back, demo)
	}
}

// TestTagDefaults: the defaults in Config's tags are the documented ones.
func TestTagDefaults(t *testing.T) {
	c, err := Parse([]byte(minimal), "")
	if err != nil {
		t.Fatal(err)
	}
	p := c.Primary
	if c.Interval != Duration(20*time.Millisecond) || p.SidefileLimit != 256*MiB || p.SuspendAfter != Duration(60*time.Second) ||
		p.PacingStart != 50 || p.PacingMaxDelay != Duration(20*time.Millisecond) {
		t.Errorf("defaults from the tags: interval %v, sidefile_limit %v, suspend_after %v, pacing_start %d, pacing_max_delay %v",
			c.Interval, p.SidefileLimit, p.SuspendAfter, p.PacingStart, p.PacingMaxDelay)
	}
}

func TestCompression(t *testing.T) {
	withPrimary := func(add string) string {
		return strings.Replace(minimal, "[primary]\n", "[primary]\n"+add+"\n", 1)
	}
	c, err := Parse([]byte(minimal), "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Primary.Compression != "" || c.Primary.CompressionLevel != 0 {
		t.Fatalf("absent compression = %q, level %d; want none", c.Primary.Compression, c.Primary.CompressionLevel)
	}
	for _, add := range []string{`compression = "none"`, `compression = "zstd"`} {
		if _, err := Parse([]byte(withPrimary(add)), ""); err != nil {
			t.Fatalf("%s: %v", add, err)
		}
	}
	c, err = Parse([]byte(withPrimary("compression = \"zstd\"\ncompression_level = 7")), "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Primary.Compression != "zstd" || c.Primary.CompressionLevel != 7 {
		t.Fatalf("compression = %q, level %d; want zstd, 7", c.Primary.Compression, c.Primary.CompressionLevel)
	}
	back, text := reparse(t, c, "")
	if back.Primary.Compression != "zstd" || back.Primary.CompressionLevel != 7 {
		t.Fatalf("encoded and parsed back: %q, %d\n%s", back.Primary.Compression, back.Primary.CompressionLevel, text)
	}
	for _, tc := range []struct{ add, field, want string }{
		{`compression = "lz4"`, "primary.compression", `"lz4" is not a compression this primary knows: "none" or "zstd"`},
		{`compression = "ZSTD"`, "primary.compression", `"none" or "zstd"`},
		{`compression = true`, "primary.compression", "must be a string"},
		{"compression = \"zstd\"\ncompression_level = 23", "primary.compression_level", "23 is not a zstd level: 1 (fastest) to 22"},
		{"compression = \"zstd\"\ncompression_level = -1", "primary.compression_level", "not a zstd level"},
		{"compression = \"zstd\"\ncompression_level = \"3\"", "primary.compression_level", "must be a whole number"},
		{`compression_level = 3`, "primary.compression_level", `compression is "none": set compression = "zstd"`},
		{`compresion = "zstd"`, "primary.compresion", `did you mean "compression"`},
	} {
		_, err := Parse([]byte(withPrimary(tc.add)), "")
		if err == nil || !strings.Contains(err.Error(), tc.field+":") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %s: ... %s", tc.add, err, tc.field, tc.want)
		}
	}
}

// TestPrimaryRejoinKeys: [primary] listen and journal, the old primary's
// places as the secondary of a rejoin, come both or neither, and parse with
// the journal resolved against the config's directory.
func TestPrimaryRejoinKeys(t *testing.T) {
	base := `session = "s"
[primary]
nbd = "127.0.0.1:10809"
secondary = "127.0.0.1:7402"
%s
  [[primary.subsystem]]
  id = "ss1"
    [[primary.subsystem.volume]]
    name = "v"
    path = "p/v.img"
    size = "1MiB"
` + minimalSecondary
	for _, tc := range []struct {
		name, keys, wantErr string
	}{
		{"both", "listen = \"127.0.0.1:7404\"\njournal = \"p/journal\"", ""},
		{"neither", "", ""},
		{"listen only", "listen = \"127.0.0.1:7404\"", "primary.journal: missing"},
		{"journal only", "journal = \"p/journal\"", "primary.listen: missing"},
		{"listen taken by the secondary", "listen = \"127.0.0.1:7402\"\njournal = \"p/journal\"", "primary.listen"},
		{"journal shared", "listen = \"127.0.0.1:7404\"\njournal = \"s/journal\"", "journal"},
		{"bad address", "listen = \"nowhere\"\njournal = \"p/journal\"", "primary.listen: \"nowhere\" is not a host:port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(strings.Replace(base, "%s", tc.keys, 1)), "/cfg")
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if tc.keys != "" && c.Primary.Journal != "/cfg/p/journal" {
					t.Errorf("journal %q, want it resolved to /cfg/p/journal", c.Primary.Journal)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("got %v, want %q", err, tc.wantErr)
			}
		})
	}
}
