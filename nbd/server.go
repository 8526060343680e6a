// Package nbd is the primary site's front end: an NBD (Network Block
// Device) server through which users — qemu, libnbd tools, fio, the Linux
// kernel — issue the write I/O operations that the replication method
// timestamps and ships to the secondary site.
//
// The package knows nothing of replication. It speaks the protocol of
// doc/proto.md in the NBD reference implementation (fixed newstyle
// handshake, simple replies only) and hands every request to an Export; the
// caller's Export is where writes get ordered, journalled and replicated.
//
// Requests on one connection are served concurrently, so a client at queue
// depth 16 gets 16 requests in the Export at once; replies go back in
// completion order, matched by the client's cookie ("handle"). Every
// connection advertises NBD_FLAG_CAN_MULTI_CONN, which is honest only
// because Export.Flush covers writes completed on every connection.
//
// With Server.TLS set the server insists on TLS (the protocol's FORCEDTLS
// mode, as qemu-nbd --tls-creds and nbdkit --tls=require behave): before
// NBD_OPT_STARTTLS it answers every option but NBD_OPT_ABORT with
// NBD_REP_ERR_TLS_REQD, and hangs up on NBD_OPT_EXPORT_NAME, which cannot
// carry an error; after it, the negotiation starts over inside TLS. Which
// clients get in (client certificates, their CA) is the tls.Config's
// business, not this package's.
//
// The package also has a small sequential Client, used by tests here and in
// other packages to drive writes without external tools.
package nbd

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Server serves Exports over NBD. The zero value with Exports set is ready
// to use. Its fields must not change once Serve has been called.
type Server struct {
	Exports Exports
	// Logger receives connection open/close at Debug and protocol
	// violations at Warn. Nil discards.
	Logger *slog.Logger
	// MaxRequest is the maximum payload advertised in NBD_INFO_BLOCK_SIZE.
	// Requests up to MaxAccepted (64 MiB) are served even when it is
	// smaller, because some clients ignore it. Zero means
	// DefaultMaxRequest (32 MiB); values below 4096 are raised to 4096
	// because the protocol requires the maximum to be at least the
	// preferred block size.
	MaxRequest uint32
	// Description, if set, gives the human-readable text sent for
	// NBD_INFO_DESCRIPTION and in NBD_OPT_LIST replies.
	Description func(name string) string
	// TLS, if set, makes TLS mandatory: a client must send
	// NBD_OPT_STARTTLS before anything else, and complete a handshake
	// with this configuration (set ClientAuth and ClientCAs there to
	// require client certificates). Nil serves plaintext only and
	// declines NBD_OPT_STARTTLS.
	TLS *tls.Config
	// HandshakeTimeout bounds the whole negotiation, from the greeting to
	// the start of transmission (TLS included), so a client that connects
	// and then stalls — before it authenticates, when TLS is required —
	// holds a goroutine and its buffers for that long at most. Zero means
	// DefaultHandshakeTimeout, qemu-nbd's default.
	HandshakeTimeout time.Duration
	// MaxHandshakes caps the connections in their handshake at once: past
	// it a new connection is closed as soon as it is accepted, so clients
	// that connect faster than HandshakeTimeout drops them cannot exhaust
	// memory or file descriptors before authenticating. Connections in
	// transmission do not count. Zero means DefaultMaxHandshakes.
	MaxHandshakes int

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	handlers  sync.WaitGroup
	// handshaking counts the connections in their handshake;
	// lastRefusal rate-limits the warning about those refused.
	handshaking int
	lastRefusal time.Time
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// DefaultHandshakeTimeout is the HandshakeTimeout a zero Server uses.
const DefaultHandshakeTimeout = 10 * time.Second

// DefaultMaxHandshakes is the MaxHandshakes a zero Server uses: far more
// than the clients of a site connect at once.
const DefaultMaxHandshakes = 256

// enterHandshake takes a handshake slot; false means none is free, and the
// connection is to be closed.
func (s *Server) enterHandshake(remote net.Addr) bool {
	limit := s.MaxHandshakes
	if limit <= 0 {
		limit = DefaultMaxHandshakes
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.handshaking >= limit {
		if time.Since(s.lastRefusal) >= time.Second {
			s.lastRefusal = time.Now()
			s.logger().Warn("nbd: connection refused: too many connections in their handshake", "remote", remote.String(), "max_handshakes", limit)
		}
		return false
	}
	s.handshaking++
	return true
}

func (s *Server) leaveHandshake() {
	s.mu.Lock()
	s.handshaking--
	s.mu.Unlock()
}

func (s *Server) handshakeTimeout() time.Duration {
	if s.HandshakeTimeout > 0 {
		return s.HandshakeTimeout
	}
	return DefaultHandshakeTimeout
}

func (s *Server) maxRequest() uint32 {
	switch {
	case s.MaxRequest == 0:
		return DefaultMaxRequest
	case s.MaxRequest < prefBlock:
		return prefBlock
	}
	return s.MaxRequest
}

// Serve accepts connections on ln and serves each in its own goroutine. It
// returns nil once Close has been called (and closes ln itself), or the
// listener's error if accepting fails for another reason. Serve may be
// called on several listeners at once.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	if s.listeners == nil {
		s.listeners = make(map[net.Listener]struct{})
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
		ln.Close()
	}()

	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return nil
			}
			// Running out of file descriptors or a connection reset
			// before accept are transient: back off and keep serving
			// the connections we have rather than killing the server.
			if isTransientAcceptError(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.logger().Warn("nbd: accept", "err", err, "retry_in", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		if !s.track(nc) {
			nc.Close()
			return nil
		}
		go func() {
			defer s.handlers.Done()
			defer s.untrack(nc)
			s.serveConn(nc)
		}()
	}
}

func isTransientAcceptError(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ENOBUFS) ||
		errors.Is(err, syscall.ENOMEM)
}

// track registers a connection and its handler; false means the server is
// closed. The WaitGroup is bumped under the same lock Close takes, so Close
// can never miss a handler that is about to start.
func (s *Server) track(nc net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.conns == nil {
		s.conns = make(map[net.Conn]struct{})
	}
	s.conns[nc] = struct{}{}
	s.handlers.Add(1)
	return true
}

func (s *Server) untrack(nc net.Conn) {
	s.mu.Lock()
	delete(s.conns, nc)
	s.mu.Unlock()
}

// Close stops accepting, closes every connection (in-flight requests see
// their replies fail) and waits for all handlers. When it returns no Export
// method is running on behalf of this server, and none will be called.
func (s *Server) Close() error { return s.CloseWithin(context.Background()) }

// ErrRequestsUnderWay is returned, wrapped, by CloseWithin when a handler
// had not returned by the time its context ended.
var ErrRequestsUnderWay = errors.New("requests still under way")

// CloseWithin is Close waiting for the handlers only until ctx ends: a
// request held up by its export (a flush of a disk that stopped
// answering) may then still be running, and the error, wrapping
// ErrRequestsUnderWay, says so. No new request is read either way.
func (s *Server) CloseWithin(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	for ln := range s.listeners {
		ln.Close()
	}
	for nc := range s.conns {
		nc.Close()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.handlers.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("nbd: closing: %w", ErrRequestsUnderWay)
	}
}

// serveConn runs one connection from handshake to close. It never panics on
// anything the peer sends, and returns once the connection is closed and
// every request it started has finished.
func (s *Server) serveConn(nc net.Conn) {
	if !s.enterHandshake(nc.RemoteAddr()) {
		nc.Close()
		return
	}
	log := s.logger().With("remote", nc.RemoteAddr().String())
	log.Debug("nbd: connection open")
	c := &conn{
		s:      s,
		nc:     nc,
		log:    log,
		maxReq: s.maxRequest(),
	}
	if r, w, ok := rawSocket(nc); ok {
		c.br, c.out, c.rr = bufio.NewReaderSize(r, 64<<10), w, r
	} else {
		c.br, c.out = bufio.NewReaderSize(nc, 64<<10), netWriter{nc}
	}
	reason := c.serve()
	if c.exp != nil {
		closeExport(c.exp)
	}
	// After STARTTLS c.nc is the TLS connection, whose Close sends the
	// close_notify the protocol asks for before the TCP connection goes.
	c.nc.Close()
	nc.Close()
	log.Debug("nbd: connection closed", "reason", reason)
}

// conn is the state of one client connection.
type conn struct {
	s      *Server
	nc     net.Conn
	br     *bufio.Reader
	out    buffersWriter // replies, in transmission
	rr     *rawReader    // the socket under br, if raw
	log    *slog.Logger
	maxReq uint32

	noZeroes bool
	tlsDone  bool // NBD_OPT_STARTTLS succeeded: everything now goes through TLS

	// Set when transmission starts.
	name   string
	exp    Export
	keeper Keeper   // exp, if it keeps write payloads
	prompt Prompter // exp, if it says when a write would not wait, and out is a tryWriter
	tw     tryWriter
	size   uint64
	flags  uint16

	wmu     sync.Mutex // guards the reply writer's state below
	writing bool       // a sender is writing replies on nc
	pending []pendingReply
	batch   []pendingReply // the writer's, swapped with pending
	bufs    [][]byte       // reused by the writer (under writing)
	lim     limiter

	// The read loop hands requests to workers through queue; nworkers is
	// how many it started (only the read loop touches it).
	queue    chan request
	nworkers int
	workers  sync.WaitGroup
	// awaitNext's state (only the read loop touches it): when a request
	// last went through the poller, waits still to skip, and the skip
	// after the next wait in vain.
	viaPoller   time.Time
	pollSkip    int
	pollBackoff int
	// afterLarge: the request just read was a WRITE whose payload is at
	// least the reader's buffer (only the read loop touches it).
	afterLarge bool
	// inline: replies of the writes the read loop served itself, sent
	// together once its buffer is drained (only the read loop touches it).
	inline []pendingReply
	// serving is the token of the write the read loop serves itself while
	// it does, 0 otherwise; serves the last token given (only the read
	// loop touches it); watch, armed over each such write, hands the read
	// loop to a goroutine of its own when the write lasts (handOver),
	// which reports the read loop's end in readEnd.
	serving atomic.Uint64
	serves  uint64
	watch   *time.Timer
	readEnd chan readEnd
}

func (c *conn) serve() string {
	// The deadline covers reads and writes alike: a client that stops
	// reading its option replies stalls the handshake as surely as one
	// that stops sending.
	c.nc.SetDeadline(time.Now().Add(c.s.handshakeTimeout()))
	err := c.handshake()
	c.s.leaveHandshake()
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return c.warn(fmt.Errorf("handshake not finished within %s", c.s.handshakeTimeout())).Error()
		}
		return err.Error()
	}
	// After STARTTLS c.nc is the TLS connection, which passes the
	// deadline on to the socket. Transmission has no deadline: a client
	// may stay idle between requests as long as it likes.
	if err := c.nc.SetDeadline(time.Time{}); err != nil {
		return err.Error()
	}
	c.log = c.log.With("export", c.name)
	c.log.Debug("nbd: transmission", "size", c.size, "flags", c.flags)
	return c.transmit()
}

// errProtocol marks a violation by the client, logged at Warn.
type errProtocol struct{ msg string }

func (e *errProtocol) Error() string { return e.msg }

func protoErr(format string, args ...any) error {
	return &errProtocol{fmt.Sprintf(format, args...)}
}

// errDone ends the handshake without a transmission phase (NBD_OPT_ABORT).
var errDone = errors.New("client aborted negotiation")

// buffersWriter writes every byte of bufs, in order, or fails.
type buffersWriter interface {
	writeBuffers(bufs [][]byte) error
}

// A tryWriter is a buffersWriter that can also write without waiting for
// the peer to read. The read loop writes replies only so: a client may send
// its requests before it reads a reply, and waits for the read loop to take
// them meanwhile.
type tryWriter interface {
	buffersWriter
	// tryBuffers writes what of bufs the socket takes now, and says
	// whether that was all of it. If not, finish must be called next: it
	// writes the rest, waiting for room.
	tryBuffers(bufs [][]byte) (done bool, err error)
	finish() error
}

type netWriter struct{ nc net.Conn }

func (w netWriter) writeBuffers(bufs [][]byte) error {
	nb := net.Buffers(bufs)
	_, err := nb.WriteTo(w.nc)
	return err
}

func (c *conn) write(b []byte) error {
	_, err := c.nc.Write(b)
	return err
}

// handshake runs fixed newstyle negotiation until the client picks an
// export (c.exp is then set) or the session ends (error).
func (c *conn) handshake() error {
	var hello [18]byte
	binary.BigEndian.PutUint64(hello[0:], nbdMagic)
	binary.BigEndian.PutUint64(hello[8:], optMagic)
	binary.BigEndian.PutUint16(hello[16:], flagFixedNewstyle|flagNoZeroes)
	if err := c.write(hello[:]); err != nil {
		return err
	}
	var cf [4]byte
	if _, err := io.ReadFull(c.br, cf[:]); err != nil {
		return err
	}
	clientFlags := binary.BigEndian.Uint32(cf[:])
	// The spec says the server MUST drop a client that sets flags it
	// does not know; a client without C_FIXED_NEWSTYLE is plain newstyle,
	// which only ever sends NBD_OPT_EXPORT_NAME and is served the same.
	if clientFlags&^(flagCFixedNewstyle|flagCNoZeroes) != 0 {
		return c.warn(protoErr("unknown client flags %#x", clientFlags))
	}
	// TLS can only be negotiated with fixed newstyle: a plain newstyle
	// client could never upgrade, so serving it would mean plaintext.
	if c.s.TLS != nil && clientFlags&flagCFixedNewstyle == 0 {
		return c.warn(protoErr("client without fixed newstyle negotiation cannot start TLS, which this server requires"))
	}
	c.noZeroes = clientFlags&flagCNoZeroes != 0

	var hdr [16]byte
	for {
		if _, err := io.ReadFull(c.br, hdr[:]); err != nil {
			return err
		}
		if m := binary.BigEndian.Uint64(hdr[0:]); m != optMagic {
			return c.warn(protoErr("bad option magic %#x", m))
		}
		opt := binary.BigEndian.Uint32(hdr[8:])
		n := binary.BigEndian.Uint32(hdr[12:])
		if n > maxOptionLen {
			// Reading it would let one client make us buffer
			// (or skip) gigabytes before we even know who it is.
			return c.warn(protoErr("option %d data length %d over limit %d", opt, n, maxOptionLen))
		}
		data := make([]byte, n)
		if _, err := io.ReadFull(c.br, data); err != nil {
			return err
		}
		done, err := c.option(opt, data)
		if err != nil || done {
			return err
		}
	}
}

func (c *conn) warn(err error) error {
	c.log.Warn("nbd: protocol error", "err", err)
	return err
}

// option handles one option; done reports that transmission starts.
func (c *conn) option(opt uint32, data []byte) (done bool, err error) {
	if c.s.TLS != nil && !c.tlsDone {
		switch opt {
		case optStartTLS:
			return false, c.startTLS(data)
		case optAbort:
		case optExportName:
			// It has no error reply, so the spec says to hang up.
			return false, c.warn(protoErr("NBD_OPT_EXPORT_NAME before NBD_OPT_STARTTLS: this server requires TLS"))
		default:
			return false, c.optReply(opt, repErrTLSReqd, []byte("TLS is required: send NBD_OPT_STARTTLS first"))
		}
	}
	switch opt {
	case optExportName:
		name := string(data)
		exp, canon, ok := c.lookup(name)
		if !ok {
			// NBD_OPT_EXPORT_NAME has no error reply: the spec
			// says to terminate the session.
			return false, c.warn(protoErr("NBD_OPT_EXPORT_NAME: unknown export %q", name))
		}
		pinned, err := pin(exp)
		if err != nil {
			return false, c.warn(fmt.Errorf("NBD_OPT_EXPORT_NAME %q: %w", name, err))
		}
		c.start(canon, pinned, exp)
		reply := make([]byte, 10, 10+124)
		binary.BigEndian.PutUint64(reply[0:], c.size)
		binary.BigEndian.PutUint16(reply[8:], c.flags)
		if !c.noZeroes {
			reply = reply[:10+124]
		}
		return true, c.write(reply)

	case optAbort:
		// The reply is best effort: many clients hang up without
		// reading it.
		_ = c.optReply(opt, repAck, nil)
		return false, errDone

	case optList:
		if len(data) != 0 {
			return false, c.optReply(opt, repErrInvalid, []byte("NBD_OPT_LIST takes no data"))
		}
		for _, name := range c.s.Exports.Names() {
			b := make([]byte, 4, 4+len(name))
			binary.BigEndian.PutUint32(b, uint32(len(name)))
			b = append(b, name...)
			b = append(b, c.description(name)...)
			if err := c.optReply(opt, repServer, b); err != nil {
				return false, err
			}
		}
		return false, c.optReply(opt, repAck, nil)

	case optInfo, optGo:
		return c.infoGo(opt, data)

	case optStartTLS:
		if c.tlsDone {
			return false, c.optReply(opt, repErrInvalid, []byte("TLS is already negotiated"))
		}
		// Without Server.TLS: NOTLS mode, which declines it below.
	}
	// NBD_OPT_STRUCTURED_REPLY, meta contexts, extended headers...: we
	// only do simple replies, and declining with ERR_UNSUP is how fixed
	// newstyle lets the client carry on.
	return false, c.optReply(opt, repErrUnsup, []byte("option not supported"))
}

// startTLS answers NBD_OPT_STARTTLS and upgrades the connection. Once the
// ACK is sent there is no way back to plaintext: a failed handshake ends
// the session.
func (c *conn) startTLS(data []byte) error {
	if len(data) != 0 {
		return c.optReply(optStartTLS, repErrInvalid, []byte("NBD_OPT_STARTTLS takes no data"))
	}
	if err := c.optReply(optStartTLS, repAck, nil); err != nil {
		return err
	}
	// The reader may already hold bytes the client sent after the option
	// (the start of its ClientHello): the TLS layer reads through it.
	// The handshake's deadline, set on the socket, bounds the TLS
	// handshake too.
	tc := tls.Server(bufferedConn{Conn: c.nc, r: c.br}, c.s.TLS)
	if err := tc.Handshake(); err != nil {
		// A refused client certificate lands here: worth a warning, as
		// it is either an attack or a client set up wrongly.
		return c.warn(fmt.Errorf("TLS handshake: %w", err))
	}
	c.nc, c.tlsDone = tc, true
	c.br, c.out, c.rr = bufio.NewReaderSize(tc, 64<<10), netWriter{tc}, nil
	if peer := tc.ConnectionState().PeerCertificates; len(peer) > 0 {
		c.log = c.log.With("client_cert", peer[0].Subject.String())
	}
	c.log.Debug("nbd: TLS established", "version", tls.VersionName(tc.ConnectionState().Version))
	return nil
}

// bufferedConn reads through the handshake's buffered reader, so no byte
// already read off the socket is lost when TLS takes over.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// infoGo handles NBD_OPT_INFO and NBD_OPT_GO, which share their format:
// 32-bit name length, name, 16-bit count, count 16-bit info requests.
func (c *conn) infoGo(opt uint32, data []byte) (bool, error) {
	if len(data) < 6 {
		return false, c.optReply(opt, repErrInvalid, []byte("option data too short"))
	}
	nameLen := binary.BigEndian.Uint32(data)
	if uint64(nameLen) > uint64(len(data)-6) {
		return false, c.optReply(opt, repErrInvalid, []byte("name length beyond option data"))
	}
	name := string(data[4 : 4+nameLen])
	rest := data[4+nameLen:]
	nreq := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if len(rest) != 2*nreq {
		return false, c.optReply(opt, repErrInvalid, []byte("info request count does not match option length"))
	}
	var wantName, wantDesc bool
	for i := 0; i < nreq; i++ {
		switch binary.BigEndian.Uint16(rest[2*i:]) {
		case infoName:
			wantName = true
		case infoDescription:
			wantDesc = true
		}
	}
	exp, canon, ok := c.lookup(name)
	if !ok {
		return false, c.optReply(opt, repErrUnknown, []byte("unknown export: "+name))
	}
	size, flags := exportInfo(exp)

	info := make([]byte, 12)
	binary.BigEndian.PutUint16(info[0:], infoExport)
	binary.BigEndian.PutUint64(info[2:], size)
	binary.BigEndian.PutUint16(info[10:], flags)
	if err := c.optReply(opt, repInfo, info); err != nil {
		return false, err
	}
	if wantName {
		b := make([]byte, 2, 2+len(canon))
		binary.BigEndian.PutUint16(b, infoName)
		if err := c.optReply(opt, repInfo, append(b, canon...)); err != nil {
			return false, err
		}
	}
	if wantDesc {
		if d := c.description(canon); d != "" {
			b := make([]byte, 2, 2+len(d))
			binary.BigEndian.PutUint16(b, infoDescription)
			if err := c.optReply(opt, repInfo, append(b, d...)); err != nil {
				return false, err
			}
		}
	}
	// Sent even when not asked: the spec allows any number of INFO
	// replies, and a client that did not ask still benefits from knowing
	// the maximum payload when MaxRequest is below the 32 MiB default.
	bs := make([]byte, 14)
	binary.BigEndian.PutUint16(bs[0:], infoBlockSize)
	binary.BigEndian.PutUint32(bs[2:], minBlock)
	binary.BigEndian.PutUint32(bs[6:], prefBlock)
	binary.BigEndian.PutUint32(bs[10:], c.maxReq)
	if err := c.optReply(opt, repInfo, bs); err != nil {
		return false, err
	}
	if opt != optGo {
		return false, c.optReply(opt, repAck, nil)
	}
	pinned, err := pin(exp)
	if err != nil {
		return false, c.optReply(opt, repErrUnknown, []byte(err.Error()))
	}
	if err := c.optReply(opt, repAck, nil); err != nil {
		closeExport(pinned)
		return false, err
	}
	c.start(canon, pinned, exp)
	return true, nil
}

// lookup resolves a name; the empty name means the only export, if there
// is exactly one. canon is the export's real name.
func (c *conn) lookup(name string) (exp Export, canon string, ok bool) {
	if name == "" {
		names := c.s.Exports.Names()
		if len(names) != 1 {
			return nil, "", false
		}
		name = names[0]
	}
	exp, ok = c.s.Exports.Lookup(name)
	if !ok || exp == nil {
		return nil, "", false
	}
	return exp, name, true
}

func (c *conn) description(name string) string {
	if c.s.Description == nil {
		return ""
	}
	return c.s.Description(name)
}

// exportInfo returns the size and transmission flags advertised for exp.
func exportInfo(exp Export) (uint64, uint16) {
	size := exp.Size()
	if size < 0 {
		size = 0
	}
	flags := uint16(FlagHasFlags | FlagSendFlush)
	// A Pinner's connections each read an export of their own: a client
	// told they are interchangeable would read a mix of them.
	if _, pinned := exp.(Pinner); !pinned {
		flags |= FlagCanMultiConn
	}
	if exp.ReadOnly() {
		flags |= FlagReadOnly
	} else {
		flags |= FlagSendFUA | FlagSendTrim | FlagSendWriteZeroes
	}
	return uint64(size), flags
}

// start enters transmission with exp, what the export named (named)
// gave this connection: the size and flags are the named export's, as
// NBD_OPT_INFO advertised them.
func (c *conn) start(name string, exp, named Export) {
	c.name, c.exp = name, exp
	c.keeper, _ = exp.(Keeper)
	// Over a connection whose replies cannot be written without waiting
	// (TLS, net.Pipe) the read loop serves no write itself.
	if tw, ok := c.out.(tryWriter); ok {
		c.tw = tw
		c.prompt, _ = exp.(Prompter)
	}
	c.size, c.flags = exportInfo(named)
}

func (c *conn) optReply(opt, typ uint32, data []byte) error {
	b := make([]byte, 20+len(data))
	binary.BigEndian.PutUint64(b[0:], optReplyMagic)
	binary.BigEndian.PutUint32(b[8:], opt)
	binary.BigEndian.PutUint32(b[12:], typ)
	binary.BigEndian.PutUint32(b[16:], uint32(len(data)))
	copy(b[20:], data)
	return c.write(b)
}

// pin gives a connection entering transmission an export of its own, if
// exp is a Pinner.
func pin(exp Export) (Export, error) {
	if p, ok := exp.(Pinner); ok {
		return p.Pin()
	}
	return exp, nil
}

// closeExport closes an export a Pinner gave a connection that ended.
func closeExport(exp Export) {
	if c, ok := exp.(io.Closer); ok {
		c.Close()
	}
}
