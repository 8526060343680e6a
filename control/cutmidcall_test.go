package control

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
)

// afterCut is what answers at a rig's address once its first call was cut.
type afterCut int

const (
	nothingListens afterCut = iota // the listener closed: the site stopped
	answersHTTP                    // every later call gets a status: the site started again
	answersNothing                 // every later call is read, never answered: started again, and hung
)

// cutFirstCall listens on a loopback address whose first connection is
// read and then cut, as a site killed mid-call cuts it: reset (reset),
// the request's body left unread (a site reset what it had not read), or
// closed, the request read whole (nothing left unread to reset it). After
// it, what after says answers there. It returns the address and the count
// of POSTs read.
func cutFirstCall(t *testing.T, reset bool, after afterCut) (string, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var n, posts atomic.Int32
	read := func(c net.Conn, whole bool) bool {
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return false
		}
		if whole {
			io.Copy(io.Discard, req.Body)
		}
		if req.Method == http.MethodPost {
			posts.Add(1)
		}
		return true
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if n.Add(1) > 1 {
				go func() {
					defer c.Close()
					if !read(c, true) {
						return
					}
					if after == answersNothing {
						io.Copy(io.Discard, c) // until the caller gives up
						return
					}
					body := `{"role":"primary"}`
					c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " +
						strconv.Itoa(len(body)) + "\r\n\r\n" + body))
				}()
				continue
			}
			read(c, !reset)
			if after == nothingListens {
				ln.Close()
			}
			if reset {
				// Unread bytes left (a body, or none: linger 0 resets anyway).
				c.(*net.TCPConn).SetLinger(0)
			}
			c.Close()
		}
	}()
	return ln.Addr().String(), &posts
}
