package nbd

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Client is a minimal NBD client: fixed newstyle handshake with NBD_OPT_GO
// (falling back to NBD_OPT_EXPORT_NAME), simple replies, one request at a
// time. It exists so tests — here and in other packages — can drive an NBD
// server without external tools; it is not built for throughput.
//
// Methods are safe for concurrent use but are serialised. A reply carrying
// an NBD error is returned as an Errno and leaves the client usable; any
// other failure (I/O, malformed reply) breaks the connection and every later
// call returns the same error.
type Client struct {
	mu         sync.Mutex
	nc         net.Conn
	br         *bufio.Reader
	size       int64
	flags      uint16
	maxPayload uint32
	cookie     uint64
	err        error
}

// Dial connects to an NBD server at addr (host:port, TCP) and opens export
// name.
func Dial(addr, name string) (*Client, error) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c, err := NewClient(nc, name)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

// DialTLS is Dial over TLS: the client sends NBD_OPT_STARTTLS first and
// hangs up if the server declines. conf names the server (ServerName) and
// the CAs trusted to sign its certificate, and holds the client's own
// certificate when the server asks for one.
func DialTLS(addr, name string, conf *tls.Config) (*Client, error) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c, err := NewClientTLS(nc, name, conf)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

// NewClient runs the handshake on an established connection and opens
// export name. On error the caller still owns nc.
func NewClient(nc net.Conn, name string) (*Client, error) {
	return NewClientTLS(nc, name, nil)
}

// NewClientTLS is NewClient with TLS when conf is not nil. On error the
// caller still owns nc.
func NewClientTLS(nc net.Conn, name string, conf *tls.Config) (*Client, error) {
	c := &Client{nc: nc, br: bufio.NewReader(nc), maxPayload: DefaultMaxRequest}
	if err := c.handshake(name, conf); err != nil {
		return nil, fmt.Errorf("nbd: handshake with %s for export %q: %w", nc.RemoteAddr(), name, err)
	}
	return c, nil
}

// SetMaxPayload sets the largest request the client sends, in place of the
// maximum the server advertised: a client that ignores it, as some do.
func (c *Client) SetMaxPayload(n uint32) {
	c.mu.Lock()
	c.maxPayload = max(n, 1)
	c.mu.Unlock()
}

// Size is the export's size in bytes.
func (c *Client) Size() int64 { return c.size }

// Flags are the transmission flags the server sent (Flag* constants).
func (c *Client) Flags() uint16 { return c.flags }

// ReadOnly reports whether the server marked the export read-only.
func (c *Client) ReadOnly() bool { return c.flags&FlagReadOnly != 0 }

func (c *Client) handshake(name string, conf *tls.Config) error {
	var hello [18]byte
	if _, err := io.ReadFull(c.br, hello[:]); err != nil {
		return err
	}
	if binary.BigEndian.Uint64(hello[0:]) != nbdMagic || binary.BigEndian.Uint64(hello[8:]) != optMagic {
		return errors.New("not a newstyle NBD server")
	}
	sflags := binary.BigEndian.Uint16(hello[16:])
	if sflags&flagFixedNewstyle == 0 {
		return errors.New("server does not support fixed newstyle negotiation")
	}
	cflags := uint32(flagCFixedNewstyle)
	noZeroes := sflags&flagNoZeroes != 0
	if noZeroes {
		cflags |= flagCNoZeroes
	}
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], cflags)
	if _, err := c.nc.Write(b[:]); err != nil {
		return err
	}
	if conf != nil {
		if err := c.startTLS(conf); err != nil {
			return err
		}
	}

	// NBD_OPT_GO asking for the block size limits.
	data := make([]byte, 4, 4+len(name)+4)
	binary.BigEndian.PutUint32(data, uint32(len(name)))
	data = append(data, name...)
	data = binary.BigEndian.AppendUint16(data, 1)
	data = binary.BigEndian.AppendUint16(data, infoBlockSize)
	if err := c.sendOption(optGo, data); err != nil {
		return err
	}
	gotExport := false
	for {
		typ, payload, err := c.readOptReply(optGo)
		if err != nil {
			return err
		}
		switch {
		case typ == repInfo && len(payload) >= 2:
			switch binary.BigEndian.Uint16(payload) {
			case infoExport:
				if len(payload) != 12 {
					return errors.New("malformed NBD_INFO_EXPORT")
				}
				c.size = int64(binary.BigEndian.Uint64(payload[2:]))
				c.flags = binary.BigEndian.Uint16(payload[10:])
				gotExport = true
			case infoBlockSize:
				if len(payload) != 14 {
					return errors.New("malformed NBD_INFO_BLOCK_SIZE")
				}
				if m := binary.BigEndian.Uint32(payload[10:]); m > 0 {
					c.maxPayload = min(m, DefaultMaxRequest)
				}
			}
		case typ == repAck:
			if !gotExport {
				return errors.New("NBD_OPT_GO acknowledged without NBD_INFO_EXPORT")
			}
			return nil
		case typ == repErrUnsup:
			return c.exportName(name, noZeroes)
		case typ&repFlagError != 0:
			return fmt.Errorf("NBD_OPT_GO refused: reply %#x: %s", typ, payload)
		}
	}
}

// startTLS upgrades the connection with NBD_OPT_STARTTLS, sent before any
// other option so that the whole negotiation is protected.
func (c *Client) startTLS(conf *tls.Config) error {
	if err := c.sendOption(optStartTLS, nil); err != nil {
		return err
	}
	typ, payload, err := c.readOptReply(optStartTLS)
	if err != nil {
		return err
	}
	if typ != repAck {
		return fmt.Errorf("server declined NBD_OPT_STARTTLS: reply %#x: %s", typ, payload)
	}
	if c.br.Buffered() != 0 {
		return errors.New("server sent data after acknowledging NBD_OPT_STARTTLS")
	}
	tc := tls.Client(c.nc, conf)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	c.nc, c.br = tc, bufio.NewReader(tc)
	return nil
}

// exportName is the fallback for servers without NBD_OPT_GO.
func (c *Client) exportName(name string, noZeroes bool) error {
	if err := c.sendOption(optExportName, []byte(name)); err != nil {
		return err
	}
	n := 10
	if !noZeroes {
		n += 124
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(c.br, b); err != nil {
		return fmt.Errorf("NBD_OPT_EXPORT_NAME: %w (unknown export?)", err)
	}
	c.size = int64(binary.BigEndian.Uint64(b))
	c.flags = binary.BigEndian.Uint16(b[8:])
	return nil
}

func (c *Client) sendOption(opt uint32, data []byte) error {
	b := make([]byte, 16, 16+len(data))
	binary.BigEndian.PutUint64(b[0:], optMagic)
	binary.BigEndian.PutUint32(b[8:], opt)
	binary.BigEndian.PutUint32(b[12:], uint32(len(data)))
	_, err := c.nc.Write(append(b, data...))
	return err
}

func (c *Client) readOptReply(opt uint32) (uint32, []byte, error) {
	var h [20]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return 0, nil, err
	}
	if binary.BigEndian.Uint64(h[0:]) != optReplyMagic || binary.BigEndian.Uint32(h[8:]) != opt {
		return 0, nil, errors.New("malformed option reply")
	}
	n := binary.BigEndian.Uint32(h[16:])
	if n > maxOptionLen {
		return 0, nil, errors.New("option reply too long")
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(c.br, p); err != nil {
		return 0, nil, err
	}
	return binary.BigEndian.Uint32(h[12:]), p, nil
}

// do sends one request and waits for its reply. For a READ, the reply data
// goes into rbuf.
func (c *Client) do(typ, flags uint16, off uint64, length uint32, wbuf, rbuf []byte) error {
	if c.err != nil {
		return c.err
	}
	c.cookie++
	var h [requestHeaderLen]byte
	binary.BigEndian.PutUint32(h[0:], requestMagic)
	binary.BigEndian.PutUint16(h[4:], flags)
	binary.BigEndian.PutUint16(h[6:], typ)
	binary.BigEndian.PutUint64(h[8:], c.cookie)
	binary.BigEndian.PutUint64(h[16:], off)
	binary.BigEndian.PutUint32(h[24:], length)
	bufs := net.Buffers{h[:]}
	if len(wbuf) > 0 {
		bufs = append(bufs, wbuf)
	}
	if _, err := bufs.WriteTo(c.nc); err != nil {
		return c.fail(err)
	}
	var r [replyHeaderLen]byte
	if _, err := io.ReadFull(c.br, r[:]); err != nil {
		return c.fail(err)
	}
	if binary.BigEndian.Uint32(r[0:]) != replyMagic {
		return c.fail(errors.New("nbd: bad reply magic"))
	}
	if binary.BigEndian.Uint64(r[8:]) != c.cookie {
		return c.fail(errors.New("nbd: reply for unexpected cookie"))
	}
	if e := Errno(binary.BigEndian.Uint32(r[4:])); e != 0 {
		return e // no payload follows an error
	}
	if len(rbuf) > 0 {
		if _, err := io.ReadFull(c.br, rbuf); err != nil {
			return c.fail(err)
		}
	}
	return nil
}

func (c *Client) fail(err error) error {
	c.err = err
	c.nc.Close()
	return err
}

// ReadAt reads len(p) bytes at off, in requests of at most the server's
// maximum payload.
func (c *Client) ReadAt(p []byte, off int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(p) > 0 {
		n := min(len(p), int(c.maxPayload))
		if err := c.do(CmdRead, 0, uint64(off), uint32(n), nil, p[:n]); err != nil {
			return err
		}
		p, off = p[n:], off+int64(n)
	}
	return nil
}

// WriteAt writes p at off, in requests of at most the server's maximum
// payload. The reply only says the server has the data; call Flush (or use
// WriteAtFUA) for durability.
func (c *Client) WriteAt(p []byte, off int64) error {
	return c.write(p, off, 0)
}

// WriteAtFUA is WriteAt with NBD_CMD_FLAG_FUA: durable when it returns.
func (c *Client) WriteAtFUA(p []byte, off int64) error {
	return c.write(p, off, CmdFlagFUA)
}

func (c *Client) write(p []byte, off int64, flags uint16) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(p) > 0 {
		n := min(len(p), int(c.maxPayload))
		if err := c.do(CmdWrite, flags, uint64(off), uint32(n), p[:n], nil); err != nil {
			return err
		}
		p, off = p[n:], off+int64(n)
	}
	return nil
}

// Flush asks the server to make completed writes durable.
func (c *Client) Flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.do(CmdFlush, 0, 0, 0, nil, nil)
}

// Trim discards length bytes at off.
func (c *Client) Trim(off, length int64) error {
	return c.ranged(CmdTrim, off, length)
}

// WriteZeroes makes length bytes at off read back as zeroes.
func (c *Client) WriteZeroes(off, length int64) error {
	return c.ranged(CmdWriteZeroes, off, length)
}

// ranged sends a payload-less command, split so each length fits the
// protocol's 32-bit field (1 GiB pieces keep them aligned).
func (c *Client) ranged(typ uint16, off, length int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if off < 0 || length < 0 {
		return EINVAL
	}
	for length > 0 {
		n := min(length, 1<<30)
		if err := c.do(typ, 0, uint64(off), uint32(n), nil, nil); err != nil {
			return err
		}
		off, length = off+n, length-n
	}
	return nil
}

// Close sends NBD_CMD_DISC (the protocol's clean disconnect) and closes the
// connection.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		// Already closed, or broken (fail closed the connection).
		c.err = net.ErrClosed
		return nil
	}
	var h [requestHeaderLen]byte
	binary.BigEndian.PutUint32(h[0:], requestMagic)
	binary.BigEndian.PutUint16(h[6:], CmdDisc)
	c.cookie++
	binary.BigEndian.PutUint64(h[8:], c.cookie)
	_, werr := c.nc.Write(h[:])
	cerr := c.nc.Close()
	c.err = net.ErrClosed
	if werr != nil {
		return werr
	}
	return cerr
}
