package transport

import "fmt"

// Vectored is implemented by a Conn that sends a frame held in pieces in
// one vectored write (writev), without first joining them: a record set's
// megabytes of data go out from the updates that hold them, not from a copy.
type Vectored interface {
	// SendVec is Send of the frame that is the concatenation of bufs.
	SendVec(bufs [][]byte) error
}

// SendVec sends the frame that is the concatenation of bufs on c: in one
// vectored write where c is Vectored, else joined.
func SendVec(c Conn, bufs [][]byte) error {
	if v, ok := c.(Vectored); ok {
		return v.SendVec(bufs)
	}
	n := 0
	for _, b := range bufs {
		n += len(b)
	}
	f := make([]byte, 0, n)
	for _, b := range bufs {
		f = append(f, b...)
	}
	return c.Send(f)
}

// SendVec implements Vectored.
func (t *tcpConn) SendVec(bufs [][]byte) error { return t.send(bufs) }

// SendVec implements Vectored: the wait is for the whole frame.
func (c *limitedConn) SendVec(bufs [][]byte) error {
	total := 0
	for _, b := range bufs {
		total += len(b)
	}
	if err := c.lim.Wait(c.ctx, int64(total)); err != nil {
		return fmt.Errorf("send %d bytes to %s: %w", total, c.Peer(), ErrClosed)
	}
	c.sendBegins()
	return SendVec(c.Conn, bufs)
}
