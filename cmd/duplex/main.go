// Command duplex is the single binary of Duplex: both site daemons, the demo,
// and the operator's commands.
//
// Every command is a function of one shape, run(ctx, args, stdout) error, in
// a file of its own; main prints the error it returns, once, as
// "duplex: <error>" on stderr, and exits 2 for a usageError (a bad flag, a
// missing required flag, an unexpected argument, a file a flag names that
// will not do), 1 for any other. Flags
// may come before or after a command's positional arguments (parseArgs).
// Logs go to stderr; what a command reports goes to stdout.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"duplex/internal/schedpolicy"
	"duplex/internal/sysmon"
)

// Exit codes of the contract.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// runFunc is a command: it reads its flags and arguments from args and
// reports to stdout. SIGINT and SIGTERM cancel ctx: a command that waits
// then gives up with an error; a daemon shuts down cleanly and returns nil.
type runFunc func(ctx context.Context, args []string, stdout io.Writer) error

type command struct {
	name     string
	synopses []synopsis
	summary  string
	run      runFunc
	// daemon keeps catching SIGINT and SIGTERM until the command returns:
	// a second signal does not cut a daemon's clean shutdown (the
	// primary's drain) short. Any other command gets the default action
	// back at the first signal, so a second Ctrl-C ends it at once.
	daemon bool
}

func commands() []command {
	return []command{
		{"demo", []synopsis{demoSynopsis}, "both sites in one process on loopback, with a dependent-write workload", runDemo, false},
		{"primary", []synopsis{primarySynopsis}, "run the primary site (NBD exports + data mover)", runPrimary, true},
		{"secondary", []synopsis{secondarySynopsis}, "run the secondary site (receiver, journal, apply)", runSecondary, true},
		{"status", []synopsis{statusSynopsis}, "query running sites", runStatus, false},
		{"pair", pairSynopses(), "add, suspend, resume or delete a pair, or change the rate limits (at the primary)", runPair, false},
		{"recover", []synopsis{recoverSynopsis}, "at the secondary after losing the primary: apply every journaled group", runRecover, false},
		{"promote", []synopsis{promoteSynopsis}, "at the secondary after losing the primary: recover, then serve its volumes read-write", runPromote, true},
		{"switchover", []synopsis{switchoverSynopsis}, "at the primary: hand the session to the running secondary without losing a write (planned)", runSwitchover, false},
		{"rejoin", []synopsis{rejoinSynopsis}, "at the old primary, stopped: what rejoining the promoted site would copy (the copy is not built yet)", runRejoin, false},
		{"drill", []synopsis{drillSynopsis}, "at the running secondary: writable exports of a past state for a failover drill, replication going on", runDrill, false},
		{"couple", []synopsis{coupleSynopsis}, "add a session to its coupled group, remove one, or list the group and its master time", runCouple, false},
		{"etcd", []synopsis{etcdSynopsis}, "a single-node etcd for coupled sessions on one machine (demos, tests)", runEtcd, true},
		{"version", []synopsis{versionSynopsis}, "print the version", runVersion, false},
	}
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if c, ok := lookup(os.Args[1:]); ok && c.daemon {
		sysmon.KeepAwake()
		daemonPolicy(c)
	}
	os.Exit(runMain(os.Args[1:], os.Stdout, os.Stderr))
}

// daemonPolicy sets the scheduling policy of daemon c's threads: the
// primary's only (package schedpolicy). It runs before the command has a
// logger, so what it did is kept for the command to log.
func daemonPolicy(c command) {
	if c.name == "primary" {
		batched, batchErr = schedpolicy.Batch()
	}
}

// batched is how many of its threads daemonPolicy switched to the batch
// policy; batchErr why it did not switch them all. That error leaves the
// threads under the default policy: correct, if costlier per request.
var (
	batched  int
	batchErr error
)

// runMain runs the command args name with a context that SIGINT and SIGTERM
// cancel.
func runMain(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if c, ok := lookup(args); !ok || !c.daemon {
		context.AfterFunc(ctx, stop)
	}
	return run(ctx, args, stdout, stderr)
}

func lookup(args []string) (command, bool) {
	if len(args) > 0 {
		for _, c := range commands() {
			if c.name == args[0] {
				return c, true
			}
		}
	}
	return command{}, false
}

// run runs the command args names and returns its exit status, having
// printed its error, if any, as the one line "duplex: <error>" on stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		if args[0] != "help" || len(args) == 1 {
			usage(stdout)
			return exitOK
		}
		// duplex help pair add: what duplex pair add -h prints.
		if _, ok := lookup(args[1:]); !ok {
			return exitStatus(stderr, usageErrorf("help: unknown command %q: duplex help lists them", args[1]))
		}
		args = append(slices.Clip(args[1:]), "-h")
	}
	c, ok := lookup(args)
	if !ok && len(args[0]) > 1 && args[0][0] == '-' {
		return exitStatus(stderr, flagFirst(args))
	}
	if !ok {
		return exitStatus(stderr, usageErrorf("unknown command %q: duplex help lists them", args[0]))
	}
	return exitStatus(stderr, c.run(ctx, args[1:], stdout))
}

// flagFirst is the error of args that begin with a flag: the command
// comes first. Where args name a command after the flag, it says the
// command line in that order. duplex has no flags of its own, so a "--"
// before the command ends none: said so, and left out of the line, where
// it would end the command's flags.
func flagFirst(args []string) error {
	what := fmt.Sprintf("%q before the command: the command comes first, then its flags", args[0])
	if slices.Contains(args, "--") && !slices.ContainsFunc(args[:slices.Index(args, "--")], isCommand) {
		what = `"--" before the command: "--" ends a command's flags, after the command's name; duplex has none of its own`
	}
	for i, a := range args {
		if c, ok := lookup(args[i:]); ok && a != "--" {
			line := []string{"duplex", c.name}
			for _, f := range args[:i] {
				if f != "--" {
					line = append(line, f)
				}
			}
			line = append(line, args[i+1:]...)
			return usageErrorf("%s: %s", what, strings.Join(line, " "))
		}
	}
	return usageErrorf("%s (duplex help lists the commands)", what)
}

func isCommand(a string) bool {
	_, ok := lookup([]string{a})
	return ok
}

// exitStatus prints err and returns the exit status it calls for.
func exitStatus(stderr io.Writer, err error) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	}
	// One line, also for errors joined from several (a config's problems),
	// so that a script or a log keeps the whole error together.
	var msg strings.Builder
	for i, l := range strings.Split(strings.TrimSpace(err.Error()), "\n") {
		if i > 0 {
			if strings.HasSuffix(msg.String(), ":") {
				msg.WriteString(" ")
			} else {
				msg.WriteString("; ")
			}
		}
		msg.WriteString(strings.TrimSpace(l))
	}
	fmt.Fprintln(stderr, "duplex:", msg.String())
	var ue *usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitFailure
}

func usage(w io.Writer) {
	fmt.Fprintln(w, `Duplex: asynchronous remote data duplexing of block volumes; the secondary
copy of all volumes together is always crash-consistent.

Usage:`)
	for _, c := range commands() {
		for _, s := range c.synopses {
			fmt.Fprintln(w, strings.TrimRight(fmt.Sprintf("  duplex %-13s %s", s.path, s.args), " "))
		}
	}
	fmt.Fprintln(w, "\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, `
Flags may come before or after a command's arguments; "--" ends the flags.
Exit status: 0 success, 1 the operation failed, 2 bad usage or input (a flag,
an argument, or a file a flag names, such as a --config missing or invalid).
Run "duplex COMMAND -h" for a command's flags.`)
}
