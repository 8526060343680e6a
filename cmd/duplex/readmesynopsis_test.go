package main

import (
	"os"
	"strings"
	"testing"
)

// TestReadmeSaysTheUsageLinesOfDuplexHelp: README's "The command line"
// block lists the usage lines that duplex help prints, each command's,
// in its order: the one can change only with the other. Before, it
// lacked secondary's --disk-retry-max and promote's --drain-timeout, and
// listed rejoin before switchover.
func TestReadmeSaysTheUsageLinesOfDuplexHelp(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(b), "## The command line\n\n```\n")
	block, _, ok2 := strings.Cut(after, "```")
	if !ok || !ok2 {
		t.Fatal(`README has no "## The command line" section opening with a code block`)
	}
	_, help, _ := runCmd("help")
	var want []string
	for _, l := range strings.Split(help, "\n") {
		if strings.HasPrefix(l, "  duplex ") {
			want = append(want, strings.Join(strings.Fields(l), " "))
		}
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(block), "\n") {
		got = append(got, strings.Join(strings.Fields(l), " "))
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("README's command line block:\n%s\n\nduplex help's usage lines:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
