package testenv

import (
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// SlowToConnect returns a loopback listener that takes no connection until
// open is called, as an address behind a lossy path whose SYNs are lost:
// its accept queue, of one, is kept full, and Linux drops a SYN to a
// listener whose queue is full. A dial made before open connects at the
// first retransmission of its SYN after it (1 s, 3 s, 7 s after the dial),
// and is then accepted as by any listener. The test closes the listener.
func SlowToConnect(t testing.TB) (ln net.Listener, open func()) {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		syscall.Close(fd)
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "slow-to-connect")
	ln, err = net.FileListener(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var fillers []net.Conn
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 300*time.Millisecond)
		if err != nil {
			break // the queue is full: this SYN was dropped
		}
		fillers = append(fillers, c)
		if i == 8 {
			for _, c := range fillers {
				c.Close()
			}
			t.Skipf("%s takes connections past its accept queue: no address slow to connect here", ln.Addr())
		}
	}
	// The fillers are taken off the queue: the next SYN finds room. Each is
	// accepted, so that none is left for the listener's own Accept.
	return ln, func() {
		for _, c := range fillers {
			c.Close()
			if a, err := ln.Accept(); err == nil {
				a.Close()
			}
		}
	}
}
