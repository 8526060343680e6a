package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// statusLine prints a line that updates: on a terminal one line rewritten
// in place ("\r"), elsewhere (a log file, a pipe) one line per update, so
// the file reads as a history instead of one line of carriage returns.
type statusLine struct {
	w    io.Writer
	tty  bool
	last int // length of the line on the terminal, 0 if none is open
}

func newStatusLine(w io.Writer) *statusLine {
	return &statusLine{w: w, tty: isTerminal(w)}
}

func (s *statusLine) update(line string) {
	if !s.tty {
		fmt.Fprintln(s.w, line)
		return
	}
	// Spaces cover what a longer line before left.
	pad := max(s.last-len(line), 0)
	fmt.Fprint(s.w, "\r"+line+strings.Repeat(" ", pad))
	s.last = len(line)
}

// end ends the line being rewritten, if any, so that what follows starts
// on a line of its own.
func (s *statusLine) end() {
	if s.tty && s.last > 0 {
		fmt.Fprintln(s.w)
	}
	s.last = 0
}

// every returns how often to update: tty on a terminal, file elsewhere,
// where every update is a line of its own.
func (s *statusLine) every(tty, file time.Duration) time.Duration {
	if s.tty {
		return tty
	}
	return file
}

// isTerminal reports whether w is a terminal (a character device that
// answers the terminal ioctl; /dev/null is a character device too).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
