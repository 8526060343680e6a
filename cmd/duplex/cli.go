package main

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"duplex/config"
	"duplex/control"
	"duplex/tlsconf"
)

// synopsis is one usage line of a command: "duplex " + path + " " + args.
type synopsis struct {
	path string // "status", "pair add"
	args string // flags and arguments, required ones bare, optional ones in [...]
}

// usageError is a command called the wrong way: a flag it does not have, a
// bad flag value, a required flag missing, an argument too many or too
// few, a file or directory a flag names that is missing, unreadable or not
// what the flag takes (a --config that does not parse, or lacks what the
// command reads). main exits 2 for it, 1 for any other error: the
// operation's failure.
type usageError struct {
	cmd string // the command's path, "pair add"
	err error
}

func (e *usageError) Error() string {
	if e.cmd == "" {
		return e.err.Error()
	}
	return e.cmd + ": " + e.err.Error()
}

func (e *usageError) Unwrap() error { return e.err }

// usageErrorf returns a usageError not tied to one command.
func usageErrorf(format string, a ...any) error {
	return &usageError{err: fmt.Errorf(format, a...)}
}

// cmdFlags is a command's flag set with its usage text; parse reads flags
// and positional arguments in any order.
type cmdFlags struct {
	*flag.FlagSet
	syn   synopsis
	about string // what the command does, for -h
	// positive names the duration flags for which 0 means nothing sane
	// either: parse refuses it as it refuses a negative one.
	positive map[string]bool
	// negativeArg, if set, is the error of an argument that is a negative
	// number ("pair rate -5"), which the flag package takes for a flag:
	// said unknown, the error would not speak of the value meant.
	negativeArg func(arg string) error
}

func newFlags(syn synopsis, about string) *cmdFlags {
	fs := flag.NewFlagSet(syn.path, flag.ContinueOnError)
	// parse reports errors, and -h prints the usage to stdout: the flag
	// package itself prints nothing.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &cmdFlags{FlagSet: fs, syn: syn, about: about}
}

// usageErrorf returns a usage error of this command.
func (f *cmdFlags) usageErrorf(format string, a ...any) error {
	return &usageError{cmd: f.syn.path, err: fmt.Errorf(format, a...)}
}

// parse parses args, flags before, between or after the positional
// arguments, which it returns; "--" ends the flags. For -h it prints the
// usage to stdout and returns flag.ErrHelp, which main takes as success.
func (f *cmdFlags) parse(args []string, stdout io.Writer) ([]string, error) {
	if err := f.valuesGiven(args); err != nil {
		return nil, err
	}
	pos, err := parseArgs(f.FlagSet, args)
	if errors.Is(err, flag.ErrHelp) {
		f.printUsage(stdout)
		return nil, err
	}
	if m := notDefined.FindStringSubmatch(fmt.Sprint(err)); m != nil && f.negativeArg != nil && negativeNumber.MatchString("-"+m[1]) {
		return nil, f.negativeArg("-" + m[1])
	}
	if err != nil {
		return nil, &usageError{cmd: f.syn.path, err: fmt.Errorf("%w (duplex %s -h lists its flags)", f.valueError(unknownFlag(err, args)), f.syn.path)}
	}
	// An argument that names one of the command's flags can only have come
	// after "--", which ends the flags: taken for an argument, it would be
	// refused as a VOLUME or an argument too many, its value with it, and
	// the error would not say why. No argument of a command begins with
	// "-" (volume and session names begin with a letter or a digit).
	for _, a := range pos {
		name, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-"), "=")
		if len(a) > 1 && a[0] == '-' && name != "" && f.Lookup(name) != nil {
			return nil, f.usageErrorf("%q after \"--\" is an argument, not a flag: \"--\" ends the flags, so give them before it (duplex %s -h lists them)", a, f.syn.path)
		}
	}
	// No duration a command takes means anything below zero: refused here,
	// before a config is loaded or anything starts.
	f.Visit(func(fl *flag.Flag) {
		if g, ok := fl.Value.(flag.Getter); ok && err == nil {
			if d, ok := g.Get().(time.Duration); ok && d < 0 {
				err = f.usageErrorf("--%s %q: must not be negative", fl.Name, givenText(f.FlagSet, args, fl.Name))
			} else if ok && d == 0 && f.positive[fl.Name] {
				err = f.usageErrorf("--%s %q: must be positive", fl.Name, givenText(f.FlagSet, args, fl.Name))
			}
		}
	})
	if err != nil {
		return nil, err
	}
	return pos, nil
}

// negativeNumber matches an argument that is a negative number, with a
// unit or not ("-5", "-1.5", "-5MiB").
var negativeNumber = regexp.MustCompile(`^-[0-9.]`)

// notDefined matches the flag package's error for a flag the command does
// not have, which names it with one dash, however it was typed.
var notDefined = regexp.MustCompile(`^flag provided but not defined: -(.+)$`)

// unknownFlag rewrites the flag package's error for a flag the command does
// not have to name it as args spell it ("--json2", or "-json2" if typed
// so), without a value given with "="; any other error is returned as it
// is.
func unknownFlag(err error, args []string) error {
	m := notDefined.FindStringSubmatch(err.Error())
	if m == nil {
		return err
	}
	typed := "--" + m[1]
	for _, a := range args {
		if a == "--" {
			break
		}
		a, _, _ = strings.Cut(a, "=")
		if a == "-"+m[1] || a == "--"+m[1] {
			typed = a
			break
		}
	}
	return fmt.Errorf("unknown flag %s", typed)
}

// badValue matches the flag package's errors for a value a flag cannot
// take: the value, quoted, the flag's name, and why.
var badValue = regexp.MustCompile(`^invalid (?:boolean )?value ("(?:[^"\\]|\\.)*") for (?:flag )?-([^:]+): (.*)$`)

// valueError rewrites the flag package's error for a value a flag cannot
// take ("invalid value "abc" for flag -timeout: parse error") to name the
// flag as the usage spells it and what it takes, in the flag's own words
// where it has them ("not a port number"); any other error is returned as
// it is.
func (f *cmdFlags) valueError(err error) error {
	m := badValue.FindStringSubmatch(err.Error())
	if m == nil {
		return err
	}
	value, uerr := strconv.Unquote(m[1])
	fl := f.Lookup(m[2])
	if uerr != nil || fl == nil {
		return err
	}
	switch {
	case isBoolFlag(fl):
		return fmt.Errorf("--%s %q: give true or false, or --%s alone for true", fl.Name, value, fl.Name)
	case isDuration(fl):
		return fmt.Errorf("--%s %q: give a duration such as 30s, 5m or 1h30m (units ns, us, ms, s, m, h; at most 2562047h)", fl.Name, value)
	}
	if why := m[3]; why != "parse error" && why != "value out of range" {
		return fmt.Errorf("--%s %q: %s", fl.Name, value, why)
	}
	return fmt.Errorf("--%s %q: not a value it takes", fl.Name, value)
}

// givenText returns the text flag name was given in args, the last one as
// the flag package takes it: an error names the value as it was given
// ("0", " 5"), not as it was parsed ("0s").
func givenText(fs *flag.FlagSet, args []string, name string) string {
	text := ""
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		n, v, inline := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-"), "=")
		fl := fs.Lookup(n)
		if len(a) < 2 || a[0] != '-' || fl == nil || isBoolFlag(fl) {
			continue
		}
		if !inline {
			if i+1 == len(args) {
				break
			}
			i++
			v = args[i]
		}
		if n == name {
			text = v
		}
	}
	return text
}

func isDuration(fl *flag.Flag) bool {
	g, ok := fl.Value.(flag.Getter)
	if !ok {
		return false
	}
	_, ok = g.Get().(time.Duration)
	return ok
}

// valuesGiven refuses a flag that takes a value followed by another of the
// command's flags: the flag package would take that flag for the value
// ("--addr --config F"), and the error would then speak of what follows
// (F an unexpected argument). A value that begins with "-" and names no
// flag ("--at -15m") is a value. It refuses too such a flag last on the
// line, with no value, and one given an empty value (a script's --dir
// "$DIR" with DIR unset), which would read as left out, and do what the
// command does without it (a demo in a new temporary directory, a pair
// operation at the config's primary rather than at --addr), or be refused
// as a value in the words of what a value is wrong for.
func (f *cmdFlags) valuesGiven(args []string) error {
	isFlag := func(a string) bool {
		name, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-"), "=")
		return len(a) > 1 && a[0] == '-' && name != "" && (f.Lookup(name) != nil || name == "h" || name == "help")
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return nil
		}
		name, value, inline := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-"), "=")
		fl := f.Lookup(name)
		if len(a) < 2 || a[0] != '-' || fl == nil || isBoolFlag(fl) {
			continue
		}
		arg, _ := flag.UnquoteUsage(fl)
		arg = cmp.Or(arg, "VALUE")
		switch {
		case inline && value == "", !inline && i+1 < len(args) && args[i+1] == "":
			return f.emptyValue(fl.Name, arg)
		case inline:
			continue
		case i+1 == len(args):
			return f.usageErrorf("--%s needs a value: give --%s %s", fl.Name, fl.Name, arg)
		case isFlag(args[i+1]):
			return f.usageErrorf("--%s needs a value: %s after it is a flag; give --%s %s", fl.Name, args[i+1], fl.Name, arg)
		}
		i++ // its value
	}
	return nil
}

// emptyValue is the error of flag name, which takes arg, given empty.
func (f *cmdFlags) emptyValue(name, arg string) error {
	if f.optional(name) {
		return f.usageErrorf("--%s: empty: give --%s %s, or leave it out", name, name, arg)
	}
	return f.usageErrorf("--%s: empty: give --%s %s", name, name, arg)
}

// optional reports whether the usage line shows flag name in brackets, or
// as one of alternatives in parentheses: one that may be left out.
func (f *cmdFlags) optional(name string) bool {
	depth := 0
	for i, r := range f.syn.args {
		switch r {
		case '[', '(':
			depth++
		case ']', ')':
			depth--
		case '-':
			rest := f.syn.args[i:]
			if strings.HasPrefix(rest, "--"+name) && (len(rest) == len(name)+2 || !isFlagNameByte(rest[len(name)+2])) && (i == 0 || f.syn.args[i-1] != '-') {
				return depth > 0
			}
		}
	}
	return true
}

func isFlagNameByte(b byte) bool {
	return b == '-' || b >= 'a' && b <= 'z' || b >= '0' && b <= '9'
}

// given reports whether the command line set the flag name.
func (f *cmdFlags) given(name string) bool {
	set := false
	f.Visit(func(fl *flag.Flag) { set = set || fl.Name == name })
	return set
}

// positiveDuration has parse refuse 0 for the duration flag name, as it
// refuses a negative one: 0 means nothing sane for it either.
func (f *cmdFlags) positiveDuration(name string) {
	if f.positive == nil {
		f.positive = map[string]bool{}
	}
	f.positive[name] = true
}

// parseNoArgs is parse for a command that takes flags only.
func (f *cmdFlags) parseNoArgs(args []string, stdout io.Writer) error {
	pos, err := f.parse(args, stdout)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return f.usageErrorf("unexpected argument %q", pos[0])
	}
	return nil
}

// parseArgs interleaves fs.Parse, which stops at the first argument that is
// not a flag, with taking that argument as a positional one, so that flags
// may follow arguments: "pair add vol1 --wait" and "pair add --wait vol1"
// are one command. After "--" every argument is positional.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	pos := []string{}
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if endedByTerminator(fs, args[:len(args)-len(rest)]) {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// endedByTerminator reports whether fs.Parse, having consumed parsed,
// stopped at a "--" that ends the flags, rather than at an argument; a "--"
// that is the value of a flag (--config --) ends nothing.
func endedByTerminator(fs *flag.FlagSet, parsed []string) bool {
	for i := 0; i < len(parsed); i++ {
		a := parsed[i]
		if a == "--" {
			return true
		}
		name := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if strings.Contains(name, "=") {
			continue
		}
		if fl := fs.Lookup(name); fl != nil && !isBoolFlag(fl) {
			i++ // its value
		}
	}
	return false
}

func isBoolFlag(fl *flag.Flag) bool {
	b, ok := fl.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// printUsage prints the command's usage line, what it does, and its flags,
// spelled as the usage line spells them (--name).
func (f *cmdFlags) printUsage(w io.Writer) {
	fmt.Fprintln(w, strings.TrimSpace("usage: duplex "+f.syn.path+" "+f.syn.args))
	if f.about != "" {
		fmt.Fprintf(w, "\n%s\n", wrap(f.about, "", 78))
	}
	first := true
	f.VisitAll(func(fl *flag.Flag) {
		if first {
			fmt.Fprintln(w, "\nflags:")
			first = false
		}
		arg, text := flag.UnquoteUsage(fl)
		line := "  --" + fl.Name
		if arg != "" {
			line += " " + arg
		}
		switch fl.DefValue {
		case "", "false", "0", "0s":
		default:
			text += fmt.Sprintf(" (default %s)", fl.DefValue)
		}
		fmt.Fprintf(w, "%s\n%s\n", line, wrap(text, "      ", 78))
	})
}

// configFlag defines --config; what says what the command reads in the
// session config.
func (f *cmdFlags) configFlag(what string) *string {
	return f.String("config", "", "the session config `FILE` (TOML), for "+what)
}

// logLevelFlag defines --log-level with the command's default.
func (f *cmdFlags) logLevelFlag(def string) *string {
	return f.String("log-level", def, "the least severe `LEVEL` logged to stderr: debug, info, warn or error")
}

// loadConfig loads the --config file of a command that requires one. A
// file missing, unreadable or not a valid config is the command's input
// mistaken, as a bad flag value is: a usage error, before anything is
// done. What the config names (volumes, the token, certificates) is found
// wanting by the operation, and fails it.
func (f *cmdFlags) loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return nil, f.usageErrorf("--config FILE is required")
	}
	cfg, err := config.Load(path)
	var pathErr *fs.PathError
	switch {
	case errors.As(err, &pathErr):
		// config.Load's "config: " would name the flag less plainly.
		return nil, f.usageErrorf("--config: %w", pathErr)
	case err != nil:
		return nil, f.usageErrorf("--config: %w", err)
	}
	return cfg, nil
}

// configLacks is the usage error of a --config file, path, that lacks what
// the command reads: the wrong file given, as one missing is.
func (f *cmdFlags) configLacks(path, format string, a ...any) error {
	return f.usageErrorf("--config %s: %s", path, fmt.Sprintf(format, a...))
}

// needToken refuses a --config file, path, whose config cfg names no
// control token file, before anything is sent.
func (f *cmdFlags) needToken(cfg *config.Config, path string) error {
	if cfg.TokenPath() == "" {
		return f.configLacks(path, "names no control_token_file: duplex %s sends the control token it holds", f.syn.path)
	}
	return nil
}

// mkdirAll makes dirFlag's directory: os.MkdirAll, but where a test has
// a disk fail as no disk here would on demand (EMLINK, ESTALE).
var mkdirAll = os.MkdirAll

// dirFlag checks the directory that the flag name gives, path, which the
// command creates if missing: a file there, or one where a directory above
// it would go, a directory it may not create, or a name the file system
// takes for none, is a usage error, before anything is done. Any other
// failure is the disk's (full, read-only, an I/O error, a directory with
// as many subdirectories as it holds, a stale NFS handle): the operation
// failing, the path given was right.
func (f *cmdFlags) dirFlag(name, path string, perm os.FileMode) error {
	err := mkdirAll(path, perm)
	if err == nil {
		return nil
	}
	// The error names the directory it could not make, which may be one
	// above the path given.
	what := "--" + name
	if pe := (*fs.PathError)(nil); !errors.As(err, &pe) || pe.Path != path {
		what += " " + path
	}
	for _, given := range []error{syscall.ENOTDIR, syscall.EEXIST, syscall.EACCES, syscall.EPERM, syscall.ENAMETOOLONG, syscall.ELOOP, syscall.EINVAL} {
		if errors.Is(err, given) {
			return f.usageErrorf("%s: %w", what, err)
		}
	}
	// Named as a usage error is, by its command: "duplex: --dir: ..."
	// would leave which command failed to the reader.
	return fmt.Errorf("%s: %s: %w", f.syn.path, what, err)
}

// logger returns the command's logger, to stderr, at level (a --log-level
// value).
func (f *cmdFlags) logger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return nil, f.usageErrorf("--log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

// parseSite parses the flags of a command that runs or opens the site of
// role ("primary" or "secondary"; it takes no arguments), loads its
// --config, which must describe that site, and makes its logger at
// --log-level.
func (f *cmdFlags) parseSite(args []string, stdout io.Writer, role string, path, level *string) (*config.Config, *slog.Logger, error) {
	if err := f.parseNoArgs(args, stdout); err != nil {
		return nil, nil, err
	}
	cfg, err := f.loadConfig(*path)
	if err != nil {
		return nil, nil, err
	}
	if role == "primary" && !cfg.HasPrimary() || role == "secondary" && !cfg.HasSecondary() {
		return nil, nil, f.configLacks(*path, "has no [%s] section: duplex %s runs the %s site it describes", role, f.syn.path, role)
	}
	log, err := f.logger(*level)
	if err != nil {
		return nil, nil, err
	}
	return cfg, log, nil
}

// wrap breaks text into lines of at most width, each after indent.
func wrap(text, indent string, width int) string {
	var b strings.Builder
	n := 0
	for _, word := range strings.Fields(text) {
		switch {
		case n == 0:
			b.WriteString(indent)
			n = len(indent)
		case n+1+len(word) > width:
			b.WriteString("\n" + indent)
			n = len(indent)
		default:
			b.WriteByte(' ')
			n++
		}
		b.WriteString(word)
		n += len(word)
	}
	return b.String()
}

// controlOf returns the control address of the config's site role
// ("primary" or "secondary") as a client reaches it: over HTTPS, checking
// the site's certificate against control_tls_ca, when the site serves it.
func controlOf(cfg *config.Config, role string) (control.Endpoint, error) {
	addr := cfg.Primary.Control
	if role == "secondary" {
		addr = cfg.Secondary.Control
	}
	tlsConf, err := tlsconf.ControlClient(cfg, role)
	if err != nil {
		return control.Endpoint{}, err
	}
	return control.Endpoint{Addr: addr, TLS: tlsConf}, nil
}
