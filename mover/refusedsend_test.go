package mover

import (
	"context"
	"sync"
	"testing"
	"time"

	"duplex/transport"
)

// failedSendDialer dials net and tells, by closing failed, when a send on
// one of its connections first fails.
type failedSendDialer struct {
	net    *transport.MemNetwork
	failed chan struct{}
	once   sync.Once
}

func (d *failedSendDialer) Dial(ctx context.Context) (transport.Conn, error) {
	c, err := d.net.Dial(ctx)
	if err != nil {
		return nil, err
	}
	return failedSendConn{Conn: c, d: d}, nil
}

type failedSendConn struct {
	transport.Conn
	d *failedSendDialer
}

func (c failedSendConn) Send(f []byte) error {
	err := c.Conn.Send(f)
	if err != nil {
		c.d.once.Do(func() { close(c.d.failed) })
	}
	return err
}

// TestARefusalIsSeenWhenASendFailsBeforeItIsRead: a secondary refuses the
// session (a stop, a record set it will not take) by sending its reason
// and closing the connection. A primary sending meanwhile finds the
// connection closed in its send before its receive has read the reason
// (a busy machine schedules the receive late): the link must still count
// as refused, with the secondary's reason in the status and the log's
// error, and keep its backoff, not pass for a lost link that a prompt
// redial mends.
func TestARefusalIsSeenWhenASendFailsBeforeItIsRead(t *testing.T) {
	d := &failedSendDialer{net: transport.NewMemNetwork(1, transport.Faults{}), failed: make(chan struct{})}
	hook := func(at string) {
		if at == "frame" {
			// The receive reads the refusal only once a send has failed.
			select {
			case <-d.failed:
			case <-time.After(deadline):
			}
		}
	}
	p := startPrimary(t, options{subsystems: []string{"ss1"}, dialer: d, hook: hook})
	p.net = d.net
	l, _ := p.accept(t)
	l.welcome(transport.Position{Through: map[string]uint64{"ss1": 0}})
	waitFor(t, "the link", func() bool { return p.mover.Stats().Connected })
	const reason = "secondary stopped by the operator"
	if err := l.conn.Send(transport.EncodeRefuse(transport.Refusal{Reason: reason})); err != nil {
		t.Fatal(err)
	}
	l.conn.Close()
	p.write(t, "ss1", []byte("after the refusal"), 0)
	p.mover.Cut()
	end := time.Now().Add(deadline)
	for p.mover.Stats().Refusals == 0 {
		if time.Now().After(end) {
			st := p.mover.Stats()
			t.Fatalf("the secondary refused the session (%q) but the link counts it as lost, not refused (last error %q): the send's failure hid the refusal", reason, st.LastError)
		}
		time.Sleep(time.Millisecond)
	}
	if got := p.mover.Stats().LastRefusal; got == "" {
		t.Errorf("no reason recorded for the refusal")
	}
}
