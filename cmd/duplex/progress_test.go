package main

import (
	"bytes"
	"fmt"
	"os"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestStatusLineRewritesOnlyATerminal: updates to a file are lines; on a
// terminal they rewrite one line, a shorter one covering a longer one.
func TestStatusLineRewritesOnlyATerminal(t *testing.T) {
	var b bytes.Buffer
	s := newStatusLine(&b)
	s.update("first line")
	s.update("second")
	s.end()
	if got, want := b.String(), "first line\nsecond\n"; got != want {
		t.Errorf("to a buffer: %q, want %q", got, want)
	}

	f, err := os.CreateTemp(t.TempDir(), "log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	if isTerminal(f) || isTerminal(null) {
		t.Errorf("a file or %s taken for a terminal", os.DevNull)
	}

	pty, tty := openPTY(t)
	if !isTerminal(tty) {
		t.Fatal("a pseudo-terminal is not taken for a terminal")
	}
	s = newStatusLine(tty)
	s.update("first line")
	s.update("second")
	s.end()
	// The terminal turns "\n" into "\r\n". It hands what was written to
	// the other side in pieces, as it gets to them.
	want := "\rfirst line\rsecond    \r\n"
	var got []byte
	read := make(chan error, 1)
	go func() {
		b := make([]byte, 256)
		for len(got) < len(want) {
			n, err := pty.Read(b)
			if err != nil {
				read <- err
				return
			}
			got = append(got, b[:n]...)
		}
		read <- nil
	}()
	select {
	case err := <-read:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the terminal did not pass on %q in 30s", want)
	}
	if string(got) != want {
		t.Errorf("to a terminal: %q, want %q", got, want)
	}
}

// openPTY opens a pseudo-terminal pair, or skips the test without one.
func openPTY(t *testing.T) (pty, tty *os.File) {
	t.Helper()
	pty, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { pty.Close() })
	unlock := 0
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, pty.Fd(), unix.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		t.Skipf("unlock pseudo-terminal: %v", e)
	}
	n, err := unix.IoctlGetInt(int(pty.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Skipf("pseudo-terminal number: %v", err)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("open pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { tty.Close() })
	return pty, tty
}
