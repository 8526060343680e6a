package control

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestAResetMidCallSaysTheSiteMayHaveStopped: a control address that reads
// a call and then resets the connection, the site stopping under it, is
// not said to be a link address: the error says the connection was reset
// mid-call and that the site may have stopped (nothing listens there
// afterwards) or started again (it answers HTTP afterwards). An address
// that resets every call keeps the link address's hint. Before: every reset
// said "a site's link address, the config's secondary.listen, resets what
// is not its own protocol".
func TestAResetMidCallSaysTheSiteMayHaveStopped(t *testing.T) {
	for _, tc := range []struct {
		name      string
		afterward string // "gone": the listener closed; "http": later calls answered
		want      []string
	}{
		{"stopped", "gone", []string{"reset the connection", "after the call was sent", "may have stopped", "nothing listens"}},
		{"started again", "http", []string{"reset the connection", "after the call was sent", "answers HTTP now", "started again"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := resetFirstCall(t, tc.afterward == "http")
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
			if strings.Contains(err.Error(), "secondary.listen") || strings.Contains(err.Error(), "link address") {
				t.Errorf("%v; want no link address's hint for a site that reset one call", err)
			}
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Drill(ctx, Endpoint{Addr: resetFirstCall(t, false)}, "t", DrillRequest{})
	if err == nil || !strings.Contains(err.Error(), "whether it took effect") {
		t.Errorf("a drill reset mid-call: %v; want it said that whether it took effect is not known", err)
	}
}

// resetFirstCall listens on a loopback address whose first connection is
// read to the end of its request's header and then reset, as a site killed
// mid-call resets what it had not read. After it the listener closes
// (answering is false), or answers every call with a status.
func resetFirstCall(t *testing.T, answering bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var n atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if n.Add(1) > 1 {
				go func() {
					defer c.Close()
					if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
						return
					}
					body := `{"role":"primary"}`
					c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " +
						strconv.Itoa(len(body)) + "\r\n\r\n" + body))
				}()
				continue
			}
			r := bufio.NewReader(c)
			for {
				l, err := r.ReadString('\n')
				if err != nil || l == "\r\n" {
					break
				}
			}
			if !answering {
				ln.Close()
			}
			// Unread bytes left (a body, or none: linger 0 resets anyway).
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	}()
	return ln.Addr().String()
}
