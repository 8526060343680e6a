package transport

import (
	"context"
	"errors"
	"testing"
	"time"

	"duplex/ratelimit"
)

// Closing a connection ends a Send that waits for the link's rate.
func TestLimitedSendEndsAtClose(t *testing.T) {
	n := NewMemNetwork(1, Faults{})
	ln := n
	d := &LimitedDialer{Dialer: n, Limit: ratelimit.New(1024)}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() {
		if c, err := ln.Accept(ctx); err == nil {
			for {
				if _, err := c.Recv(); err != nil {
					return
				}
			}
		}
	}()
	c, err := d.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Send(make([]byte, 1<<20)) }()
	time.Sleep(50 * time.Millisecond)
	c.Close()
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("send ended with %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a Send of 1 MiB at 1 KiB/s went on 10s after Close")
	}
}
