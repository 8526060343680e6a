package nbd

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fileExport is the file-backed Export the tool tests use: what the real
// exports do, minus replication.
type fileExport struct {
	f    *os.File
	size int64
	ro   bool
}

func newFileExport(t testing.TB, size int64, ro bool) *fileExport {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "disk.img"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &fileExport{f: f, size: size, ro: ro}
}

func (e *fileExport) Size() int64    { return e.size }
func (e *fileExport) ReadOnly() bool { return e.ro }

func (e *fileExport) ReadAt(p []byte, off int64) error {
	n, err := e.f.ReadAt(p, off)
	if errors.Is(err, io.EOF) && n == len(p) {
		err = nil
	}
	return err
}

func (e *fileExport) WriteAt(p []byte, off int64) error {
	if e.ro {
		return syscall.EPERM
	}
	_, err := e.f.WriteAt(p, off)
	return err
}

// punch deallocates a range; reads of it return zeroes afterwards, so it
// serves both Trim and WriteZeroes.
func (e *fileExport) punch(off, length int64) error {
	if e.ro {
		return syscall.EPERM
	}
	const punchHole, keepSize = 0x02, 0x01 // FALLOC_FL_*
	err := syscall.Fallocate(int(e.f.Fd()), punchHole|keepSize, off, length)
	if errors.Is(err, syscall.EOPNOTSUPP) {
		_, err = e.f.WriteAt(make([]byte, length), off)
	}
	return err
}

func (e *fileExport) WriteZeroes(off, length int64) error { return e.punch(off, length) }
func (e *fileExport) Trim(off, length int64) error        { return e.punch(off, length) }
func (e *fileExport) Flush() error                        { return e.f.Sync() }

// memExport keeps its data in memory and counts calls, for the protocol
// tests. hook, if set, runs at the start of every ReadAt; writeHook at the
// start of every WriteAt.
type memExport struct {
	mu      sync.Mutex
	data    []byte
	ro      bool
	flushes int
	err     error // returned by every write method when set
	hook    func()
	// writeHook gets the offset written.
	writeHook func(off int64)
}

func newMemExport(size int) *memExport { return &memExport{data: make([]byte, size)} }

func (m *memExport) Size() int64    { return int64(len(m.data)) }
func (m *memExport) ReadOnly() bool { return m.ro }

func (m *memExport) ReadAt(p []byte, off int64) error {
	if m.hook != nil {
		m.hook()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	copy(p, m.data[off:])
	return nil
}

func (m *memExport) WriteAt(p []byte, off int64) error {
	if m.writeHook != nil {
		m.writeHook(off)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return m.err
	}
	copy(m.data[off:], p)
	return nil
}

func (m *memExport) WriteZeroes(off, length int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return m.err
	}
	clear(m.data[off : off+length])
	return nil
}

func (m *memExport) Trim(off, length int64) error { return m.WriteZeroes(off, length) }

func (m *memExport) Flush() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.flushes++
	return nil
}

func (m *memExport) snapshot(off, n int) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.data[off : off+n])
}

func (m *memExport) flushCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.flushes
}

// exportMap is an Exports over a fixed set.
type exportMap map[string]Export

func (m exportMap) Lookup(name string) (Export, bool) {
	e, ok := m[name]
	return e, ok
}

func (m exportMap) Names() []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// startServer serves exports on 127.0.0.1:0 until the test ends.
func startServer(t testing.TB, srv *Server) string {
	t.Helper()
	if srv.Logger == nil {
		srv.Logger = testLogger(t)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; err != nil {
			t.Errorf("Serve returned %v after Close, want nil", err)
		}
	})
	return ln.Addr().String()
}

// testLogger logs to the test's output, so a failing test shows what the
// server saw. NBD_TEST_DEBUG=1 adds the Debug lines.
func testLogger(t testing.TB) *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("NBD_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: level}))
}

// rawClient speaks the protocol byte by byte, so tests can break it.
type rawClient struct {
	t  testing.TB
	nc net.Conn
	br *bufio.Reader
}

func rawDial(t testing.TB, addr string) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	return &rawClient{t: t, nc: nc, br: bufio.NewReader(nc)}
}

func (r *rawClient) write(b []byte) {
	r.t.Helper()
	if _, err := r.nc.Write(b); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

func (r *rawClient) read(n int) []byte {
	r.t.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(r.br, b); err != nil {
		r.t.Fatalf("read %d bytes: %v", n, err)
	}
	return b
}

// hello reads the server greeting and answers with client flags.
func (r *rawClient) hello(clientFlags uint32) uint16 {
	r.t.Helper()
	b := r.read(18)
	if binary.BigEndian.Uint64(b) != nbdMagic || binary.BigEndian.Uint64(b[8:]) != optMagic {
		r.t.Fatalf("bad greeting % x", b)
	}
	r.write(binary.BigEndian.AppendUint32(nil, clientFlags))
	return binary.BigEndian.Uint16(b[16:])
}

func (r *rawClient) sendOpt(opt uint32, data []byte) {
	r.t.Helper()
	b := binary.BigEndian.AppendUint64(nil, optMagic)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	r.write(append(b, data...))
}

func (r *rawClient) optReply(wantOpt uint32) (typ uint32, data []byte) {
	r.t.Helper()
	h := r.read(20)
	if m := binary.BigEndian.Uint64(h); m != optReplyMagic {
		r.t.Fatalf("option reply magic %#x", m)
	}
	if o := binary.BigEndian.Uint32(h[8:]); o != wantOpt {
		r.t.Fatalf("reply to option %d, want %d", o, wantOpt)
	}
	return binary.BigEndian.Uint32(h[12:]), r.read(int(binary.BigEndian.Uint32(h[16:])))
}

func infoData(name string, infos ...uint16) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(infos)))
	for _, i := range infos {
		b = binary.BigEndian.AppendUint16(b, i)
	}
	return b
}

// infoReplies collects the NBD_REP_INFO items of an INFO/GO until the
// final reply, which it returns.
func (r *rawClient) infoReplies(opt uint32) (final uint32, infos map[uint16][]byte) {
	r.t.Helper()
	infos = map[uint16][]byte{}
	for {
		typ, data := r.optReply(opt)
		if typ != repInfo {
			return typ, infos
		}
		if len(data) < 2 {
			r.t.Fatalf("short NBD_REP_INFO")
		}
		infos[binary.BigEndian.Uint16(data)] = data[2:]
	}
}

// open does the whole handshake with NBD_OPT_GO.
func (r *rawClient) open(name string) (size uint64, flags uint16) {
	r.t.Helper()
	r.hello(flagCFixedNewstyle | flagCNoZeroes)
	r.sendOpt(optGo, infoData(name))
	final, infos := r.infoReplies(optGo)
	if final != repAck {
		r.t.Fatalf("NBD_OPT_GO %q: reply %#x", name, final)
	}
	e := infos[infoExport]
	if len(e) != 10 {
		r.t.Fatalf("NBD_INFO_EXPORT missing or malformed: % x", e)
	}
	return binary.BigEndian.Uint64(e), binary.BigEndian.Uint16(e[8:])
}

func requestBytes(flags, typ uint16, cookie, off uint64, length uint32, payload []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, requestMagic)
	b = binary.BigEndian.AppendUint16(b, flags)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint64(b, cookie)
	b = binary.BigEndian.AppendUint64(b, off)
	b = binary.BigEndian.AppendUint32(b, length)
	return append(b, payload...)
}

func (r *rawClient) request(flags, typ uint16, cookie, off uint64, length uint32, payload []byte) {
	r.t.Helper()
	r.write(requestBytes(flags, typ, cookie, off, length, payload))
}

func (r *rawClient) reply() (errno Errno, cookie uint64) {
	r.t.Helper()
	h := r.read(16)
	if m := binary.BigEndian.Uint32(h); m != replyMagic {
		r.t.Fatalf("reply magic %#x", m)
	}
	return Errno(binary.BigEndian.Uint32(h[4:])), binary.BigEndian.Uint64(h[8:])
}

// expectReply reads one simple reply and checks its cookie and error.
func (r *rawClient) expectReply(cookie uint64, want Errno) {
	r.t.Helper()
	e, c := r.reply()
	if c != cookie || e != want {
		r.t.Fatalf("reply (cookie %d, error %d), want (cookie %d, error %d)", c, e, cookie, want)
	}
}

// expectClosed checks that the server hangs up without sending anything
// more (a reset counts as hanging up).
func (r *rawClient) expectClosed() {
	r.t.Helper()
	r.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(io.Discard, r.br)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		r.t.Fatalf("server did not close the connection")
	}
	if n != 0 {
		r.t.Fatalf("server sent %d unexpected bytes before closing", n)
	}
}
