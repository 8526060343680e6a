package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"

	"duplex/config"
	"duplex/control"
)

// pairOp is one operation of `duplex pair`: its flags (for finding the
// operation's name among flags that come before it) and how it runs.
type pairOp struct {
	name  string
	flags func() *cmdFlags
	run   runFunc
}

func pairOps() []pairOp {
	return []pairOp{
		{"add", func() *cmdFlags { return newPairAddFlags().cmdFlags }, runPairAdd},
		{"suspend", func() *cmdFlags { return newPairSuspendFlags().cmdFlags }, runPairSuspend},
		{"resume", func() *cmdFlags { return newPairResumeFlags().cmdFlags }, runPairResume},
		{"delete", func() *cmdFlags { return newPairDeleteFlags().cmdFlags }, runPairDelete},
		{"rate", func() *cmdFlags { return newPairRateFlags().cmdFlags }, runPairRate},
	}
}

func pairSynopses() []synopsis {
	var s []synopsis
	for _, op := range pairOps() {
		s = append(s, op.flags().syn)
	}
	return s
}

// runPair runs the operation that the first positional argument names; the
// operation's flags may come before it, as any command's flags may come
// before its arguments.
func runPair(ctx context.Context, args []string, stdout io.Writer) error {
	ops := pairOps()
	i := pairOpIndex(args, ops)
	if i < 0 || !slices.ContainsFunc(ops, func(op pairOp) bool { return op.name == args[i] }) {
		if err := opTakenAsValue(args, ops); err != nil {
			return err
		}
	}
	if i < 0 {
		for _, a := range args {
			if a == "-h" || a == "-help" || a == "--help" {
				pairUsage(stdout, ops)
				return nil
			}
		}
		return &usageError{cmd: "pair", err: errors.New("the operation is missing: add, suspend, resume, delete or rate (duplex pair -h shows them)")}
	}
	name := args[i]
	if name == "help" {
		pairUsage(stdout, ops)
		return nil
	}
	if len(name) > 1 && name[0] == '-' {
		// Only after "--" is an operation's place taken by a flag: no
		// operation's name begins with "-".
		return &usageError{cmd: "pair", err: fmt.Errorf("%q after \"--\" is an argument, not a flag, and no operation: \"--\" ends the flags, "+
			"so give them before it: duplex pair OPERATION [flags] [--] [VOLUME], OPERATION add, suspend, resume, delete or rate (duplex pair -h shows them)", name)}
	}
	rest := append(append([]string{}, args[:i]...), args[i+1:]...)
	for _, op := range ops {
		if op.name == name {
			return op.run(ctx, rest, stdout)
		}
	}
	return &usageError{cmd: "pair", err: fmt.Errorf("unknown operation %q: want add, suspend, resume, delete or rate", name)}
}

// opTakenAsValue refuses a flag that takes a value followed by an
// operation's name ("pair --config suspend vol1"): the operation was taken
// for the flag's value, and the error would speak of what follows it.
func opTakenAsValue(args []string, ops []pairOp) error {
	flags := map[string]*flag.Flag{}
	for _, op := range ops {
		op.flags().VisitAll(func(fl *flag.Flag) {
			if !isBoolFlag(fl) {
				flags[fl.Name] = fl
			}
		})
	}
	for j := 0; j+1 < len(args) && args[j] != "--"; j++ {
		fl := flags[strings.TrimPrefix(strings.TrimPrefix(args[j], "-"), "-")]
		if len(args[j]) < 2 || args[j][0] != '-' || fl == nil {
			continue
		}
		if slices.ContainsFunc(ops, func(op pairOp) bool { return op.name == args[j+1] }) {
			arg, _ := flag.UnquoteUsage(fl)
			return &usageError{cmd: "pair", err: fmt.Errorf("--%s needs a value: %s after it is the operation; give --%s %s",
				fl.Name, args[j+1], fl.Name, cmp.Or(arg, "VALUE"))}
		}
		j++ // its value
	}
	return nil
}

// pairOpIndex returns the index in args of the operation's name, the first
// argument that is not a flag or a flag's value, or -1 if there is none.
// Flags that take a value in any operation skip theirs, so "--config F add"
// finds add.
func pairOpIndex(args []string, ops []pairOp) int {
	takesValue := map[string]bool{}
	for _, op := range ops {
		fs := op.flags()
		fs.VisitAll(func(fl *flag.Flag) {
			if !isBoolFlag(fl) {
				takesValue[fl.Name] = true
			}
		})
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			if i+1 < len(args) {
				return i + 1
			}
			return -1
		case len(a) > 1 && a[0] == '-':
			name := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
			if !strings.Contains(name, "=") && takesValue[name] {
				i++
			}
		default:
			return i
		}
	}
	return -1
}

func pairUsage(w io.Writer, ops []pairOp) {
	fmt.Fprintln(w, "usage:")
	for _, op := range ops {
		syn := op.flags().syn
		fmt.Fprintf(w, "  duplex %-13s %s\n", syn.path, syn.args)
	}
	fmt.Fprintln(w, `
Pair operations run at the primary, through the control address and with the
token that the config names. After duplex promote they go to the promoted site
(the config's secondary) when it answers as primary and the config's primary
does not; --addr names the site outright. "duplex pair OPERATION -h" shows an
operation's flags.`)
}

// pairFlags are the flags of every pair operation.
type pairFlags struct {
	*cmdFlags
	config  *string
	timeout *time.Duration
	addr    *string
	ca      *string
}

func newPairFlags(syn synopsis, about string) pairFlags {
	f := newFlags(syn, about)
	// 0 would give up before anything could be asked.
	f.positiveDuration("timeout")
	return pairFlags{
		cmdFlags: f,
		config:   f.configFlag("the primary's control address and the control token"),
		timeout:  f.Duration("timeout", control.DefaultDrainTimeout, "how long the operation may take, `D` such as 30s or 5m"),
		addr: f.String("addr", "", "control `ADDR` of the site that takes the operation (host:port or its URL), "+
			"such as the promoted site's; default the session's primary now: the config's primary, or its secondary once promoted"),
		ca: f.String("ca", "", "with --addr: check the site's HTTPS certificate against the CA in `FILE` (PEM)"),
	}
}

// session loads the config and checks what every pair operation needs of it.
func (f pairFlags) session() (*config.Config, error) {
	cfg, err := f.loadConfig(*f.config)
	if err != nil {
		return nil, err
	}
	if *f.ca != "" && *f.addr == "" {
		return nil, f.usageErrorf("--ca goes with --addr: with --config alone, control_tls_ca names the CA")
	}
	if cfg.Primary.Control == "" && *f.addr == "" {
		return nil, f.configLacks(*f.config, "names no primary control address: give primary.control there, or --addr ADDR")
	}
	return cfg, nil
}

// token reads the control token that changes need.
func token(cfg *config.Config) (string, error) {
	tp := cfg.TokenPath()
	if tp == "" {
		return "", errors.New("the config names no control_token_file: the call needs the control token it holds")
	}
	return control.ReadToken(tp)
}

// volumeFlags are the flags of the operations on volumes: add, suspend,
// resume and delete.
type volumeFlags struct {
	pairFlags
	all *bool
}

func newVolumeFlags(syn synopsis, about string) volumeFlags {
	f := newPairFlags(syn, about)
	return volumeFlags{pairFlags: f, all: f.Bool("all", false, "every volume of the session")}
}

// volumeOp is what one operation on volumes asks of the primary.
type volumeOp struct {
	name string // add, suspend, resume, delete
	wire string // the operation as the control address takes it
	drain,
	wait bool
}

// doVolumeOp carries op out on the primary for the volumes that pos (one
// VOLUME) or --all name: one volume after another, or for suspend and
// resume with --all as one operation.
func doVolumeOp(ctx context.Context, f volumeFlags, pos []string, op volumeOp, stdout io.Writer) error {
	switch {
	case *f.all && len(pos) > 0:
		return f.usageErrorf("give VOLUME or --all, not both")
	case !*f.all && len(pos) == 0:
		return f.usageErrorf("VOLUME or --all is required")
	case len(pos) > 1:
		return f.usageErrorf("unexpected argument %q: one VOLUME, or --all", pos[1])
	}
	cfg, err := f.session()
	if err != nil {
		return err
	}
	if err := f.needToken(cfg, *f.config); err != nil {
		return err
	}
	tok, err := token(cfg)
	if err != nil {
		return err
	}
	vols := pos
	if *f.all {
		vols = cfg.VolumeNames()
	}
	for _, vol := range vols {
		if _, _, ok := cfg.PrimaryVolume(vol); !ok {
			return f.usageErrorf("no volume %q in session %q: its volumes are %s", vol, cfg.Session, strings.Join(cfg.VolumeNames(), ", "))
		}
	}
	// The operation never waits without bound; --wait then shows progress
	// until the operator stops it.
	opCtx, cancel := context.WithTimeout(ctx, *f.timeout+control.AnswerMargin)
	defer cancel()
	at, err := f.target(opCtx, cfg, stdout)
	if err != nil {
		return err
	}
	// The site checks the session itself when it takes the operation:
	// what answered the status may not be what takes it.
	at.Session = cfg.Session
	if *f.all {
		st, err := fetchPrimary(opCtx, at, cfg.Session)
		if err != nil {
			return err
		}
		vols = applicable(op.name, vols, st, stdout)
		if op.name == "suspend" || op.name == "resume" {
			// One operation at the primary: every pair changes at one point
			// of the common timer, not one after another while writes go on.
			if len(vols) == 0 {
				return nil
			}
			res, err := control.AllPairsOp(opCtx, at, tok, op.name, op.drain)
			if err != nil {
				return f.drainBound(err)
			}
			for _, vol := range res.Volumes {
				fmt.Fprintf(stdout, "%s: %s requested\n", vol, op.name)
			}
			if op.wait {
				return waitDuplex(ctx, at, res.Volumes, *f.timeout, stdout)
			}
			return nil
		}
	}
	for _, vol := range vols {
		res, err := control.PairOp(opCtx, at, tok, vol, op.wire, op.drain)
		if err != nil {
			return f.drainBound(err)
		}
		switch op.name {
		case "delete":
			if res.ConsistentAsOf != "" {
				fmt.Fprintf(stdout, "%s: no longer a pair; its secondary copy was last consistent as of %s\n", vol, res.ConsistentAsOf)
			} else {
				fmt.Fprintf(stdout, "%s: no longer a pair; its secondary copy was never consistent\n", vol)
			}
		default:
			fmt.Fprintf(stdout, "%s: %s requested\n", vol, op.name)
		}
	}
	if op.wait {
		return waitDuplex(ctx, at, vols, *f.timeout, stdout)
	}
	return nil
}

// drainRanOut matches the site's words for a suspend's drain whose bound
// ran out, with that bound.
var drainRanOut = regexp.MustCompile(regexp.QuoteMeta(control.ErrDrainTimeout.Error()) + ` after [0-9][0-9.a-zµ]*`)

// drainBound says, in err of a suspend whose drain ran out, the --timeout
// the operator gave. The site's words quote the drain's share of it: what
// was left once the status was asked, less the margin for the answer,
// which is no number the operator gave.
func (f pairFlags) drainBound(err error) error {
	msg := err.Error()
	if !drainRanOut.MatchString(msg) {
		return err
	}
	given := "--timeout " + f.timeout.String()
	if !f.given("timeout") {
		given = f.timeout.String() + ", the default --timeout"
	}
	return &contextError{msg: drainRanOut.ReplaceAllLiteralString(msg, "the drain did not end within "+given), err: err}
}

// fetchPrimary is fetchRunning for a command that acts on the primary's
// view of the pairs: a secondary's status has the volumes too, as it last
// heard of them (with the link down, nothing of a suspension or a delete
// since), and another session's primary has pairs of its own.
func fetchPrimary(ctx context.Context, at control.Endpoint, session string) (control.Status, error) {
	st, err := fetchRunning(ctx, at)
	switch {
	case err != nil:
		return st, err
	case st.Session != "" && st.Session != session:
		return st, fmt.Errorf("the site at %s answers as the %s of session %q, not of session %q: "+
			"name the session's primary with --addr, or check the config's control addresses", at.Addr, st.Role, st.Session, session)
	case st.Role != "primary":
		return st, notThePrimary(at, st)
	case st.NoPairs != "":
		// Its rate limits and pair states would read as none.
		return st, fmt.Errorf("the primary at %s: %s", at.Addr, st.NoPairs)
	}
	return st, nil
}

// notThePrimary is the refusal of an operation at the site at at, whose
// status st says it runs as another role than the primary.
func notThePrimary(at control.Endpoint, st control.Status) error {
	return fmt.Errorf("the site at %s answers as the %s: pair operations run at the session's primary, "+
		"whose status says what each pair is; name its control address with --addr, or check the config's control addresses", at.Addr, st.Role)
}

// applicable returns the volumes of names that op applies to in the
// primary's status st, and says which it leaves as they are: with --all, one
// pair already resumed (the session resumes the pairs it suspended itself)
// or not a pair must not stop the operation on the others.
func applicable(op string, names []string, st control.Status, stdout io.Writer) []string {
	state := map[string]string{}
	for _, v := range st.Volumes {
		state[v.Name] = v.State
	}
	var out []string
	for _, name := range names {
		s, pair := state[name]
		switch {
		case op == "add" && pair:
			fmt.Fprintf(stdout, "%s: already a pair (%s), left as it is\n", name, s)
		case op != "add" && !pair:
			fmt.Fprintf(stdout, "%s: not a pair, left as it is\n", name)
		case op == "resume" && s != "suspended":
			fmt.Fprintf(stdout, "%s: not suspended (%s), left as it is\n", name, s)
		default:
			out = append(out, name)
		}
	}
	return out
}

// waitDuplex shows the copy's progress until every volume is duplex. The
// wait ends once the copy has made no progress toward duplex for patience
// (--timeout) at a stretch, saying what it saw last: a link down, a
// secondary that refuses this primary for now (control.Status
// RefusalPasses) or stays broken, a pair suspended meanwhile. A refusal
// that lasts until an operator acts ends it at once.
func waitDuplex(ctx context.Context, at control.Endpoint, vols []string, patience time.Duration, stdout io.Writer) error {
	line := newStatusLine(stdout)
	defer line.end()
	start := time.Now()
	var first int64 = -1
	var (
		since       = time.Now() // of the last progress
		mark        waitMark     // the copy as it was then
		lastRefusal string       // the last passing refusal seen since
	)
	for n := 0; ; n++ {
		fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		// A primary that starts again meanwhile has no volumes in its
		// status yet: none would be found not duplex.
		st, err := fetchRunning(fctx, at)
		cancel()
		if ctx.Err() != nil {
			return errors.New("stopped waiting: the copy goes on at the primary, duplex status shows it")
		}
		if err != nil {
			return err
		}
		var size, copied, resynced int64
		done, refused := true, false
		var suspended []control.VolumeStatus
		for _, v := range st.Volumes {
			if !slices.Contains(vols, v.Name) {
				continue
			}
			if v.State == "suspended" {
				// Its copied bytes read as its size, its copy's progress
				// gone: no part of the bar.
				suspended = append(suspended, v)
				done = false
				continue
			}
			if st.Link != "connected" && pairRefused(v) {
				// Its copy shows progress, up to whole, read into the
				// sidefile for a secondary that takes none of it.
				if !st.RefusalPasses {
					line.end()
					return fmt.Errorf("%s: %s; its copy goes on once the secondary takes this primary (duplex status shows the refusal whole)", v.Name, v.Note)
				}
				refused = true
				lastRefusal = v.Name + ": " + v.Note
			}
			size += v.SizeBytes
			copied += v.CopiedBytes
			resynced += v.ResyncedBytes
			if v.State != "duplex" {
				done = false
			}
		}
		now := newWaitMark(st, vols)
		if n == 0 || now.progressed(mark) {
			since, mark = time.Now(), now
			if !refused {
				lastRefusal = ""
			}
		}
		if first < 0 {
			first = copied
		}
		var progress string
		if size > 0 || len(suspended) == 0 {
			progress = progressLine(copied, size, copied-first, time.Since(start)) + "  "
		}
		for _, v := range suspended {
			progress += suspendedText(v) + "  "
		}
		progress = strings.TrimSuffix(progress, "  ")
		if err := waitsForAnOperator(suspended, len(suspended) < len(vols)); err != nil {
			line.update(progress)
			line.end()
			return err
		}
		stalled := time.Since(since)
		switch {
		case refused:
			progress += fmt.Sprintf("  the secondary refuses this primary for now (%s without progress): waiting", stalled.Round(time.Second))
		case stalled >= 2*time.Second && st.Link != "connected":
			progress += fmt.Sprintf("  link %s (%s without progress): waiting", st.Link, stalled.Round(time.Second))
		}
		line.update(progress)
		if done && !refused {
			line.end()
			fmt.Fprintf(stdout, "duplex; %s copied\n", bytesIEC(resynced))
			return nil
		}
		if stalled >= patience {
			line.end()
			return fmt.Errorf("no progress toward duplex for %s (--timeout): %s; the copy goes on at the primary once it can, duplex status shows it",
				patience, lastSeen(st, vols, lastRefusal))
		}
		select {
		case <-ctx.Done():
		case <-time.After(line.every(250*time.Millisecond, time.Second)):
		}
	}
}

// suspendedText says what the pair v, suspended, waits for.
func suspendedText(v control.VolumeStatus) string {
	switch {
	case v.RejoinOwed:
		return v.Name + " suspended, awaiting the old primary's rejoin"
	case v.Auto:
		return fmt.Sprintf("%s suspended by the session (%s), resumes by itself", v.Name, v.Reason)
	case v.Reason != "":
		return fmt.Sprintf("%s suspended by the session (%s)", v.Name, v.Reason)
	}
	return v.Name + " suspended by hand"
}

// waitsForAnOperator is the end of a wait for duplex that one of the pairs
// suspended makes: one suspended by hand, or by the session for an
// operator to resume, or awaiting a rejoin, goes on only once an operator
// acts, and the wait would draw nothing for --timeout. others says some
// pairs waited for are not suspended.
func waitsForAnOperator(suspended []control.VolumeStatus, others bool) error {
	var parts []string
	for _, v := range suspended {
		switch {
		case v.Auto:
			continue
		case v.RejoinOwed:
			parts = append(parts, suspendedText(v)+": "+v.Note)
		default:
			parts = append(parts, fmt.Sprintf("%s: its copy goes on only once resumed: duplex pair resume %s", suspendedText(v), v.Name))
		}
	}
	if parts == nil {
		return nil
	}
	msg := strings.Join(parts, "; ")
	if others {
		msg += "; the others' copy goes on at the primary, duplex status shows it"
	}
	return errors.New(msg)
}

// waitMark is what a wait for duplex takes as its copy's progress, from one
// status of the primary.
type waitMark struct {
	duplex   int    // volumes waited for that are duplex
	moved    int64  // their bytes copied and resynced
	tail     bool   // every one not duplex has copied whole: its end awaits the secondary's acknowledgement
	acked    string // the primary's consistency and journaled times: what the secondary acknowledged
	reaching bool   // the link is up: what the copy reads reaches the secondary
}

func newWaitMark(st control.Status, vols []string) waitMark {
	// The consistency time alone stands while a resync holds the
	// secondary's groups unapplied; the journaled time is set only then.
	m := waitMark{tail: true, acked: st.ConsistencyTime + " " + st.JournaledTime, reaching: st.Link == "connected"}
	for _, v := range st.Volumes {
		if !slices.Contains(vols, v.Name) {
			continue
		}
		if v.State == "duplex" {
			m.duplex++
		} else if v.State != "pending" || v.CopiedBytes < v.SizeBytes {
			m.tail = false
		}
		if v.State == "pending" {
			// Only a copy under way moves: a suspended pair reads copied
			// whole (its copy's progress is gone, a resume copies what
			// changed), and a suspension is no step toward duplex.
			m.moved += v.CopiedBytes + v.ResyncedBytes
		}
	}
	return m
}

// progressed says whether the copy went on toward duplex from was to m: a
// volume became duplex, or the secondary acknowledged more while the copy
// moved on or awaited only that. Bytes read while the link is down reach
// the sidefile, not the secondary; a link up that acknowledges the groups of
// other volumes moves nothing of a copy that stands (its read hung, the pair
// suspended meanwhile).
func (m waitMark) progressed(was waitMark) bool {
	if m.duplex > was.duplex {
		return true
	}
	return m.reaching && m.acked != was.acked && (m.moved > was.moved || m.tail)
}

// lastSeen says what a wait for duplex that made no progress saw last: the
// link and its last error, the volumes not duplex, and the passing refusal
// seen since the last progress, if the status no longer says it.
func lastSeen(st control.Status, vols []string, refusal string) string {
	var parts []string
	link := "link " + st.Link
	if st.LastError != "" {
		link += ", its last error"
		if st.LastErrorAt != "" {
			link += " at " + st.LastErrorAt
		}
		link += ": " + st.LastError
	}
	parts = append(parts, link)
	said := false
	for _, v := range st.Volumes {
		if !slices.Contains(vols, v.Name) || v.State == "duplex" {
			continue
		}
		s := v.Name + " " + v.State
		if v.State == "pending" {
			// A suspended pair reads copied whole: nothing to say.
			s += fmt.Sprintf(", %s of %s copied", bytesIEC(v.CopiedBytes), bytesIEC(v.SizeBytes))
		}
		if v.Reason != "" {
			s += ", suspended for: " + v.Reason
		}
		if v.Note != "" {
			s += ": " + v.Note
			said = said || strings.HasPrefix(v.Note, control.RefusedNote)
		}
		parts = append(parts, s)
	}
	if refusal != "" && !said {
		parts = append(parts, "before that, "+refusal+" (the secondary said it takes this primary again by itself)")
	}
	return strings.Join(parts, "; ")
}

func progressLine(done, total, moved int64, elapsed time.Duration) string {
	const width = 30
	frac := 1.0
	if total > 0 {
		frac = float64(done) / float64(total)
	}
	n := int(frac * width)
	bar := strings.Repeat("=", n) + strings.Repeat(" ", width-n)
	rate := float64(moved) / max(elapsed.Seconds(), 0.001)
	eta := "--"
	if rate > 0 && done < total {
		eta = time.Duration(float64(total-done) / rate * float64(time.Second)).Round(time.Second).String()
	}
	return fmt.Sprintf("[%s] %5.1f%%  %s/%s  %s/s  ETA %s", bar, 100*frac, bytesIEC(done), bytesIEC(total), bytesIEC(int64(rate)), eta)
}

// pairRefused says whether the secondary refuses the primary whose pair v
// is, by its typed field; a primary from before the field says so only by
// its note's first words, which are read then alone.
func pairRefused(v control.VolumeStatus) bool {
	if v.Refused != nil {
		return *v.Refused
	}
	return strings.HasPrefix(v.Note, control.RefusedNote)
}
