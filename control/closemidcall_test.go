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

// TestACloseMidCallSaysTheSiteMayHaveStopped: a site killed while it
// serves a call, the call read whole, closes the connection without an
// answer (no reset: nothing is left unread). The error says so, and of a
// call that changes state that whether it took effect is not known; the
// call is sent once, never again. Before: "status from ...: EOF", "drill:
// EOF".
func TestACloseMidCallSaysTheSiteMayHaveStopped(t *testing.T) {
	for _, tc := range []struct {
		name      string
		answering bool // later calls answered, else nothing listens
		want      []string
	}{
		{"stopped", false, []string{"closed the connection", "after the call was sent", "may have stopped", "nothing listens"}},
		{"started again", true, []string{"closed the connection", "after the call was sent", "answers HTTP now", "started again"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := closeFirstCall(t, tc.answering)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := Fetch(ctx, Endpoint{Addr: addr})
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%v; want it to say %q", err, w)
				}
			}
		})
	}
	addr, posts := closeFirstCall(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Drill(ctx, Endpoint{Addr: addr}, "t", DrillRequest{})
	if err == nil || !strings.Contains(err.Error(), "whether it took effect is not known") {
		t.Errorf("a drill whose connection was closed mid-call: %v; want it said that whether it took effect is not known", err)
	}
	if n := posts.Load(); n != 1 {
		t.Errorf("the drill was sent %d times, want once", n)
	}
}

// closeFirstCall listens on a loopback address whose first connection is
// read to the end of its request and then closed, as a site killed while
// it serves a call closes it. After it the listener closes (answering is
// false), or answers every call with a status. It returns the address and
// the count of POSTs read.
func closeFirstCall(t *testing.T, answering bool) (string, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var n, posts atomic.Int32
	read := func(c net.Conn) bool {
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return false
		}
		io.Copy(io.Discard, req.Body)
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
					if !read(c) {
						return
					}
					body := `{"role":"primary"}`
					c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " +
						strconv.Itoa(len(body)) + "\r\n\r\n" + body))
				}()
				continue
			}
			read(c)
			if !answering {
				ln.Close()
			}
			c.Close()
		}
	}()
	return ln.Addr().String(), &posts
}
