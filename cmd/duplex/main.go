// Command duplex is the single binary of Duplex: both site daemons, the demo,
// and the operator's commands.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// Exit codes of the contract.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"demo", "both sites in one process on loopback, with a dependent-write workload", runDemo},
		{"primary", "run the primary site (NBD exports + data mover)", runPrimary},
		{"secondary", "run the secondary site (receiver, journal, apply)", runSecondary},
		{"status", "query running sites", runStatus},
		{"pair", "add, suspend, resume or delete a pair, or change the rate limits (at the primary)", runPair},
		{"recover", "at the secondary after losing the primary: apply every journaled group", runRecover},
		{"version", "print the version", runVersion},
	}
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "help", "-h", "--help":
		usage(stdout)
		return exitOK
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "duplex: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, `Duplex: asynchronous remote data duplexing of block volumes; the secondary
copy of all volumes together is always crash-consistent.

Usage:
  duplex demo      [--dir DIR] [--no-workload]
  duplex primary   --config FILE
  duplex secondary --config FILE
  duplex status    [--config FILE | --addr ADDR] [--json]
  duplex pair      add|suspend|resume|delete VOLUME|--all [--config FILE] [--wait] [--drain] [--timeout D] [--inconsistent]
  duplex pair      rate [--config FILE] [--copy RATE] [--link RATE] [--timeout D]
  duplex recover   --config FILE [--force]
  duplex version

Commands:`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, `
Exit status: 0 success, 1 failure, 2 bad usage.
Run "duplex COMMAND -h" for a command's flags.`)
}

// newFlags returns a flag set that reports errors instead of exiting.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("duplex "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parse parses flags; it returns an exit code and false when the caller must
// stop (help asked, or bad usage).
func parse(fs *flag.FlagSet, args []string) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return exitUsage, false
	}
	return 0, true
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

func runVersion(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("version", stderr)
	if code, ok := parse(fs, args); !ok {
		return code
	}
	fmt.Fprintln(stdout, "duplex", version)
	return exitOK
}
