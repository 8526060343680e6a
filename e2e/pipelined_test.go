package e2e

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"duplex/nbd"
	"duplex/transport"
	"duplex/workload"
)

// pipelinedTarget is a workload target that sends the writes of every
// workload client over one NBD connection per volume, as a kernel's or
// qemu's NBD client does: requests queued while one is being sent go out
// together, so that the server finds several buffered and serves many on
// its read loop, their replies sent together, beside others on its workers.
type pipelinedTarget struct {
	conns []*muxConn
}

type muxConn struct {
	nc      net.Conn
	mu      sync.Mutex
	out     []byte // requests queued, not yet sent
	sending bool
	next    uint64
	waiting map[uint64]chan uint32
	err     error
}

func dialPipelined(t *testing.T, addr string, names []string) *pipelinedTarget {
	t.Helper()
	x := &pipelinedTarget{}
	for _, name := range names {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		// The sequential client's handshake; the requests then go
		// straight on its connection.
		if _, err := nbd.NewClient(nc, name); err != nil {
			nc.Close()
			t.Fatal(err)
		}
		c := &muxConn{nc: nc, waiting: make(map[uint64]chan uint32)}
		go c.readReplies()
		x.conns = append(x.conns, c)
	}
	t.Cleanup(x.close)
	return x
}

func (x *pipelinedTarget) close() {
	for _, c := range x.conns {
		c.nc.Close()
	}
}

func (x *pipelinedTarget) WriteAt(ctx context.Context, vol int, p []byte, off int64) error {
	return x.conns[vol].write(p, off)
}

func (c *muxConn) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
	}
	for k, ch := range c.waiting {
		close(ch)
		delete(c.waiting, k)
	}
}

func (c *muxConn) readReplies() {
	var rep [16]byte
	for {
		if _, err := io.ReadFull(c.nc, rep[:]); err != nil {
			c.fail(err)
			return
		}
		if binary.BigEndian.Uint32(rep[:]) != 0x67446698 {
			c.fail(fmt.Errorf("reply % x: bad magic", rep))
			return
		}
		cookie := binary.BigEndian.Uint64(rep[8:])
		c.mu.Lock()
		ch, ok := c.waiting[cookie]
		delete(c.waiting, cookie)
		c.mu.Unlock()
		if !ok {
			c.fail(fmt.Errorf("reply to cookie %d, which is not in flight", cookie))
			return
		}
		ch <- binary.BigEndian.Uint32(rep[4:])
	}
}

func (c *muxConn) write(p []byte, off int64) error {
	ch := make(chan uint32, 1)
	c.mu.Lock()
	if c.err != nil {
		defer c.mu.Unlock()
		return c.err
	}
	c.next++
	c.waiting[c.next] = ch
	c.out = binary.BigEndian.AppendUint32(c.out, 0x25609513)
	c.out = binary.BigEndian.AppendUint16(c.out, 0)
	c.out = binary.BigEndian.AppendUint16(c.out, 1) // NBD_CMD_WRITE
	c.out = binary.BigEndian.AppendUint64(c.out, c.next)
	c.out = binary.BigEndian.AppendUint64(c.out, uint64(off))
	c.out = binary.BigEndian.AppendUint32(c.out, uint32(len(p)))
	c.out = append(c.out, p...)
	if !c.sending {
		// The first writer sends what every other queues meanwhile.
		c.sending = true
		for len(c.out) > 0 {
			b := c.out
			c.out = nil
			c.mu.Unlock()
			_, err := c.nc.Write(b)
			if err != nil {
				c.fail(err)
			}
			c.mu.Lock()
		}
		c.sending = false
	}
	c.mu.Unlock()
	errno, ok := <-ch
	switch {
	case !ok:
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.err
	case errno != 0:
		return fmt.Errorf("write [%d, +%d): NBD error %d", off, len(p), errno)
	}
	return nil
}

// TestSitesDependentWritesPipelinedOverNBD is the dependent-write test with
// the clients' writes pipelined over one NBD connection per volume, so that
// the primary's NBD server serves many of them on its read loop, replies
// held until its buffer is drained, and others on its workers (pacing, an
// activity-log region to mark, an overlapping write under way). A client
// sends a write only after its previous one was acknowledged, on whichever
// connection: the invariant is checked on the secondary after every applied
// group, first over a sound link, then while the link drops, duplicates,
// reorders, delays and corrupts frames and disconnects; both sites are
// byte-identical once the link heals and everything is shipped.
func TestSitesDependentWritesPipelinedOverNBD(t *testing.T) {
	t.Parallel()
	groups := 300
	if testing.Short() {
		groups = 150
	}
	lay := workload.Layout{Volumes: layout.Volumes, BlocksPerVolume: layout.BlocksPerVolume, Clients: 16}
	s, net, bad := dependentSites(t, lay)
	n0, _ := bad.snapshot()
	var names []string
	for v := range lay.Volumes {
		names = append(names, siteVolume(v))
	}
	target := dialPipelined(t, s.prim.NBDAddr(), names)

	w := startWorkload(t, lay, target, 11)
	waitGroups(t, bad, n0+groups, 30*time.Second, s.replicationState)
	// The link's faults hold the updates back: pacing, a full sidefile
	// and the mover's resends have the export say no to some writes the
	// read loop would serve, and promises go stale between Prompt and
	// the write.
	faults := transport.Faults{Drop: 0.02, Duplicate: 0.02, Reorder: 0.05, Corrupt: 0.02, Disconnect: 0.003, MaxDelay: time.Millisecond}
	net.SetFaults(faults)
	n1, _ := bad.snapshot()
	waitGroups(t, bad, n1+groups/2, 30*time.Second, s.replicationState)
	n := s.strikeSettleAndCompare(t, net, faults, bad, lay, w)
	t.Logf("%d groups checked, 0 violations; %d writes acknowledged", n, w.acked)
}
