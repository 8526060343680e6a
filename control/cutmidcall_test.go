package control

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestACutMidCallSaysTheSiteMayHaveStopped: a control address that reads a
// call and then cuts its connection, as a site stopping or starting again
// under it does, is not said to be a link address, whether it resets the
// connection (a site killed before it read the call whole resets what it
// had not read) or closes it (killed while it serves a call read whole:
// nothing left unread, so no reset). The error says the connection was
// cut after the call was sent, and that the site may have stopped
// (nothing listens there afterwards) or started again (it answers HTTP
// afterwards). Of a call that changes state it says that whether it took
// effect is not known, also when the status asked once more, to tell the
// two apart, is taken and never answered until the caller's deadline; the
// call is sent once, never again. Before: every reset said "a site's link
// address, the config's secondary.listen, resets what is not its own
// protocol"; a close "status from ...: EOF", "drill: EOF"; a second look
// that ran out the deadline "drill: the control address ... did not
// answer in time".
func TestACutMidCallSaysTheSiteMayHaveStopped(t *testing.T) {
	for _, cut := range []struct {
		name  string
		reset bool
		said  string
	}{{"reset", true, "reset the connection"}, {"closed", false, "closed the connection"}} {
		t.Run(cut.name, func(t *testing.T) {
			for _, tc := range []struct {
				name  string
				after afterCut
				want  []string
			}{
				{"stopped", nothingListens, []string{"after the call was sent", "may have stopped", "nothing listens"}},
				{"started again", answersHTTP, []string{"after the call was sent", "answers HTTP now", "started again"}},
			} {
				addr, _ := cutFirstCall(t, cut.reset, tc.after)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := Fetch(ctx, Endpoint{Addr: addr})
				cancel()
				if err == nil {
					t.Errorf("%s: no error", tc.name)
					continue
				}
				for _, w := range append(tc.want, cut.said) {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("%s: %v; want it to say %q", tc.name, err, w)
					}
				}
				if strings.Contains(err.Error(), "secondary.listen") || strings.Contains(err.Error(), "link address") {
					t.Errorf("%s: %v; want no link address's hint for a site that cut one call", tc.name, err)
				}
			}
			for _, tc := range []struct {
				name     string
				after    afterCut
				deadline time.Duration
			}{{"stopped", nothingListens, 10 * time.Second}, {"started again and hung", answersNothing, 2 * time.Second}} {
				addr, posts := cutFirstCall(t, cut.reset, tc.after)
				ctx, cancel := context.WithTimeout(context.Background(), tc.deadline)
				_, err := Drill(ctx, Endpoint{Addr: addr}, "t", DrillRequest{})
				cancel()
				if err == nil || !strings.Contains(err.Error(), "after the call was sent") || !strings.Contains(err.Error(), "whether it took effect is not known") {
					t.Errorf("a drill cut mid-call, the site %s: %v; want the cut said, and that whether it took effect is not known", tc.name, err)
				}
				if n := posts.Load(); n != 1 {
					t.Errorf("a drill cut mid-call, the site %s: sent %d times, want once", tc.name, n)
				}
			}
		})
	}
}

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
