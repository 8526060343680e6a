package nbd

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// goodClient keeps a well-behaved client writing and verifying its own
// region until stop closes, so a test can show that another connection's
// misbehaviour does not disturb it.
func goodClient(t *testing.T, addr string) (stop func()) {
	t.Helper()
	c, err := Dial(addr, "rw")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		buf, got := make([]byte, 4096), make([]byte, 4096)
		for i := 0; ; i++ {
			off := int64(512<<10 + (i%64)*4096)
			for j := range buf {
				buf[j] = byte(i + j)
			}
			if err := c.WriteAt(buf, off); err != nil {
				errc <- fmt.Errorf("write %d: %w", i, err)
				return
			}
			if err := c.ReadAt(got, off); err != nil {
				errc <- fmt.Errorf("read %d: %w", i, err)
				return
			}
			if !bytes.Equal(buf, got) {
				errc <- fmt.Errorf("round %d: read back different data", i)
				return
			}
			select {
			case <-done:
				errc <- c.Close()
				return
			default:
			}
		}
	}()
	return func() {
		t.Helper()
		close(done)
		if err := <-errc; err != nil {
			t.Errorf("well-behaved client: %v", err)
		}
	}
}

func TestMisbehavingClients(t *testing.T) {
	rw := newMemExport(1 << 20)
	ro := newMemExport(64 << 10)
	ro.ro = true
	addr := startServer(t, &Server{Exports: exportMap{"rw": rw, "ro": ro}})

	rng := rand.New(rand.NewPCG(1, 2))
	garbage := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}

	cases := []struct {
		name string
		bad  func(t *testing.T, r *rawClient)
	}{
		{"garbage handshake", func(t *testing.T, r *rawClient) {
			r.nc.Write(garbage(4096)) // may fail once the server hangs up
			r.read(18)                // the greeting, sent before we spoke
			r.expectClosed()
		}},
		{"garbage options", func(t *testing.T, r *rawClient) {
			r.hello(flagCFixedNewstyle)
			r.nc.Write(garbage(4096))
			r.expectClosed()
		}},
		{"unknown client flags", func(t *testing.T, r *rawClient) {
			r.hello(flagCFixedNewstyle | 1<<7)
			r.expectClosed()
		}},
		{"oversized option", func(t *testing.T, r *rawClient) {
			r.hello(flagCFixedNewstyle)
			b := binary.BigEndian.AppendUint64(nil, optMagic)
			b = binary.BigEndian.AppendUint32(b, optGo)
			b = binary.BigEndian.AppendUint32(b, 1<<30)
			r.write(b)
			r.expectClosed()
		}},
		{"unknown export via NBD_OPT_EXPORT_NAME", func(t *testing.T, r *rawClient) {
			r.hello(flagCFixedNewstyle)
			r.sendOpt(optExportName, []byte("nosuch"))
			r.expectClosed()
		}},
		{"NBD_OPT_ABORT", func(t *testing.T, r *rawClient) {
			r.hello(flagCFixedNewstyle)
			r.sendOpt(optAbort, nil)
			if typ, _ := r.optReply(optAbort); typ != repAck {
				t.Errorf("abort reply %#x", typ)
			}
			r.expectClosed()
		}},
		{"hang up during handshake", func(t *testing.T, r *rawClient) {
			r.hello(flagCFixedNewstyle)
			r.write(binary.BigEndian.AppendUint64(nil, optMagic))
			r.nc.Close()
		}},
		{"structured reply refused", func(t *testing.T, r *rawClient) {
			r.hello(flagCFixedNewstyle | flagCNoZeroes)
			r.sendOpt(optStructuredReply, nil)
			if typ, _ := r.optReply(optStructuredReply); typ != repErrUnsup {
				t.Fatalf("NBD_OPT_STRUCTURED_REPLY: reply %#x, want ERR_UNSUP", typ)
			}
			// Negotiation carries on and simple replies are used.
			r.sendOpt(optGo, infoData("rw"))
			if final, _ := r.infoReplies(optGo); final != repAck {
				t.Fatalf("GO after refused option: %#x", final)
			}
			r.request(0, CmdRead, 7, 0, 512, nil)
			r.expectReply(7, 0)
			r.read(512)
		}},
		{"bad request magic", func(t *testing.T, r *rawClient) {
			r.open("rw")
			b := make([]byte, requestHeaderLen)
			binary.BigEndian.PutUint32(b, 0x12345678)
			r.write(b)
			r.expectClosed()
		}},
		{"oversized WRITE", func(t *testing.T, r *rawClient) {
			r.open("rw")
			r.request(0, CmdWrite, 1, 0, 0xfffffff0, nil)
			r.expectClosed()
		}},
		{"out-of-range READ", func(t *testing.T, r *rawClient) {
			size, _ := r.open("rw")
			r.request(0, CmdRead, 1, size-512, 4096, nil)
			r.expectReply(1, EINVAL)
			r.request(0, CmdRead, 2, 1<<63, 4096, nil) // offset+length wraps
			r.expectReply(2, EINVAL)
			r.request(0, CmdRead, 3, 0, DefaultMaxRequest+1, nil)
			r.expectReply(3, EINVAL)
			// The connection keeps working.
			r.request(0, CmdRead, 4, size-512, 512, nil)
			r.expectReply(4, 0)
			r.read(512)
		}},
		{"WRITE to read-only export", func(t *testing.T, r *rawClient) {
			_, flags := r.open("ro")
			if flags&FlagReadOnly == 0 || flags&(FlagSendTrim|FlagSendWriteZeroes|FlagSendFUA) != 0 {
				t.Errorf("read-only export flags %#x", flags)
			}
			r.request(0, CmdWrite, 1, 0, 4096, make([]byte, 4096))
			r.expectReply(1, EPERM)
			r.request(0, CmdTrim, 2, 0, 4096, nil)
			r.expectReply(2, EPERM)
			r.request(CmdFlagNoHole, CmdWriteZeroes, 3, 0, 4096, nil)
			r.expectReply(3, EPERM)
			r.request(0, CmdRead, 4, 0, 4096, nil)
			r.expectReply(4, 0)
			r.read(4096)
			r.request(0, CmdFlush, 5, 0, 0, nil)
			r.expectReply(5, 0)
		}},
		{"requests after DISC", func(t *testing.T, r *rawClient) {
			r.open("rw")
			r.request(0, CmdDisc, 1, 0, 0, nil)
			r.request(0, CmdRead, 2, 0, 512, nil)
			r.expectClosed()
		}},
		{"unknown command and flags", func(t *testing.T, r *rawClient) {
			r.open("rw")
			r.request(0, 99, 1, 0, 512, nil)
			r.expectReply(1, EINVAL)
			r.request(0, CmdCache, 2, 0, 512, nil)
			r.expectReply(2, EINVAL)
			r.request(CmdFlagDF, CmdRead, 3, 0, 512, nil)
			r.expectReply(3, EINVAL)
			r.request(CmdFlagFastZero, CmdWriteZeroes, 4, 0, 512, nil)
			r.expectReply(4, EINVAL)
			r.request(CmdFlagNoHole, CmdWrite, 5, 0, 16, make([]byte, 16))
			r.expectReply(5, EINVAL) // payload consumed all the same
			r.request(0, CmdRead, 6, 0, 16, nil)
			r.expectReply(6, 0)
			r.read(16)
		}},
		{"hang up mid-payload", func(t *testing.T, r *rawClient) {
			r.open("rw")
			r.request(0, CmdWrite, 1, 0, 65536, make([]byte, 100))
			r.nc.Close()
		}},
		{"hang up with requests in flight", func(t *testing.T, r *rawClient) {
			r.open("rw")
			for i := range 100 {
				r.request(0, CmdRead, uint64(i), 0, 65536, nil)
			}
			r.nc.Close()
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			stop := goodClient(t, addr)
			tc.bad(t, rawDial(t, addr))
			stop()
		})
	}
	if got := ro.snapshot(0, 64<<10); !bytes.Equal(got, make([]byte, 64<<10)) {
		t.Error("read-only export was modified")
	}
}

func TestHandshakeExportName(t *testing.T) {
	m := newMemExport(1 << 20)
	copy(m.data, "hello")
	addr := startServer(t, &Server{Exports: exportMap{"only": m}})
	for _, noZeroes := range []bool{false, true} {
		t.Run(fmt.Sprintf("noZeroes=%v", noZeroes), func(t *testing.T) {
			r := rawDial(t, addr)
			cf := uint32(flagCFixedNewstyle)
			if noZeroes {
				cf |= flagCNoZeroes
			}
			if f := r.hello(cf); f != flagFixedNewstyle|flagNoZeroes {
				t.Errorf("handshake flags %#x", f)
			}
			r.sendOpt(optExportName, nil) // empty name: the only export
			b := r.read(10)
			if size := binary.BigEndian.Uint64(b); size != 1<<20 {
				t.Errorf("size %d", size)
			}
			want := uint16(FlagHasFlags | FlagSendFlush | FlagSendFUA | FlagSendTrim | FlagSendWriteZeroes | FlagCanMultiConn)
			if f := binary.BigEndian.Uint16(b[8:]); f != want {
				t.Errorf("transmission flags %#x, want %#x", f, want)
			}
			if !noZeroes {
				if z := r.read(124); !bytes.Equal(z, make([]byte, 124)) {
					t.Error("padding not zero")
				}
			}
			// The next bytes must be the reply, proving no padding
			// was sent under NO_ZEROES.
			r.request(0, CmdRead, 42, 0, 5, nil)
			r.expectReply(42, 0)
			if got := r.read(5); string(got) != "hello" {
				t.Errorf("read %q", got)
			}
		})
	}
}

func TestOptions(t *testing.T) {
	a, b := newMemExport(1<<20), newMemExport(2<<20)
	srv := &Server{
		Exports:     exportMap{"a": a, "b": b},
		MaxRequest:  1 << 20,
		Description: func(name string) string { return "volume " + name },
	}
	addr := startServer(t, srv)
	r := rawDial(t, addr)
	r.hello(flagCFixedNewstyle | flagCNoZeroes)

	// NBD_OPT_LIST names every export, with its description.
	r.sendOpt(optList, nil)
	var listed []string
	for {
		typ, data := r.optReply(optList)
		if typ == repAck {
			break
		}
		if typ != repServer || len(data) < 4 {
			t.Fatalf("list reply %#x % x", typ, data)
		}
		n := binary.BigEndian.Uint32(data)
		listed = append(listed, string(data[4:4+n])+"|"+string(data[4+n:]))
	}
	if fmt.Sprint(listed) != "[a|volume a b|volume b]" {
		t.Errorf("list %q", listed)
	}
	r.sendOpt(optList, []byte("x"))
	if typ, _ := r.optReply(optList); typ != repErrInvalid {
		t.Errorf("list with data: %#x", typ)
	}

	// NBD_OPT_INFO with every info request.
	r.sendOpt(optInfo, infoData("b", infoName, infoDescription, infoBlockSize))
	final, infos := r.infoReplies(optInfo)
	if final != repAck {
		t.Fatalf("info: %#x", final)
	}
	if e := infos[infoExport]; binary.BigEndian.Uint64(e) != 2<<20 {
		t.Errorf("INFO_EXPORT % x", e)
	}
	if string(infos[infoName]) != "b" || string(infos[infoDescription]) != "volume b" {
		t.Errorf("name %q description %q", infos[infoName], infos[infoDescription])
	}
	bs := infos[infoBlockSize]
	if len(bs) != 12 || binary.BigEndian.Uint32(bs) != 1 || binary.BigEndian.Uint32(bs[4:]) != 4096 ||
		binary.BigEndian.Uint32(bs[8:]) != 1<<20 {
		t.Errorf("INFO_BLOCK_SIZE % x", bs)
	}

	// Unknown and ambiguous names, malformed data, unknown options.
	for _, name := range []string{"nosuch", ""} {
		r.sendOpt(optInfo, infoData(name))
		if final, _ := r.infoReplies(optInfo); final != repErrUnknown {
			t.Errorf("info %q: %#x, want ERR_UNKNOWN", name, final)
		}
	}
	for _, data := range [][]byte{nil, {0, 0, 0, 9, 'a', 0, 0}, append(infoData("a"), 0)} {
		r.sendOpt(optGo, data)
		if final, _ := r.infoReplies(optGo); final != repErrInvalid {
			t.Errorf("go % x: %#x, want ERR_INVALID", data, final)
		}
	}
	for _, opt := range []uint32{optStartTLS, optStructuredReply, 9, 10, 11, 0xdead} {
		r.sendOpt(opt, []byte("whatever"))
		if typ, _ := r.optReply(opt); typ != repErrUnsup {
			t.Errorf("option %d: %#x, want ERR_UNSUP", opt, typ)
		}
	}

	// Finally GO works after all that.
	r.sendOpt(optGo, infoData("a"))
	if final, _ := r.infoReplies(optGo); final != repAck {
		t.Fatalf("go: %#x", final)
	}
	r.request(0, CmdFlush, 1, 0, 0, nil)
	r.expectReply(1, 0)
}

func TestEmptyNameSingleExport(t *testing.T) {
	addr := startServer(t, &Server{Exports: exportMap{"vol0": newMemExport(4096)}})
	r := rawDial(t, addr)
	r.hello(flagCFixedNewstyle)
	r.sendOpt(optGo, infoData("", infoName))
	final, infos := r.infoReplies(optGo)
	if final != repAck || string(infos[infoName]) != "vol0" {
		t.Fatalf("GO \"\": %#x name %q", final, infos[infoName])
	}
}

func TestCommands(t *testing.T) {
	m := newMemExport(1 << 20)
	addr := startServer(t, &Server{Exports: exportMap{"rw": m}})
	c, err := Dial(addr, "rw")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Size() != 1<<20 || c.ReadOnly() || c.Flags()&FlagCanMultiConn == 0 {
		t.Fatalf("size %d flags %#x", c.Size(), c.Flags())
	}

	data := bytes.Repeat([]byte{0x5a}, 8192)
	if err := c.WriteAt(data, 4096); err != nil {
		t.Fatal(err)
	}
	if got := m.snapshot(4096, 8192); !bytes.Equal(got, data) {
		t.Fatal("write did not reach the export")
	}
	if err := c.Trim(4096, 1024); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteZeroes(8192, 4096); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 8192)
	if err := c.ReadAt(got, 4096); err != nil {
		t.Fatal(err)
	}
	want := slicesConcat(make([]byte, 1024), data[:3072], make([]byte, 4096))
	if !bytes.Equal(got, want) {
		t.Fatal("read after trim/zero differs")
	}

	// FUA and FLUSH reach Export.Flush.
	f0 := m.flushCount()
	if err := c.WriteAtFUA(data[:512], 0); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := m.flushCount() - f0; n != 2 {
		t.Errorf("%d flushes for one FUA write and one FLUSH, want 2", n)
	}

	// Range errors: ENOSPC for writes (as the spec asks), EINVAL else.
	end := c.Size()
	for _, tc := range []struct {
		name string
		err  error
		want Errno
	}{
		{"write past end", c.WriteAt(data[:1024], end-512), ENOSPC},
		{"zeroes past end", c.WriteZeroes(end, 1), ENOSPC},
		{"trim past end", c.Trim(end-1, 2), EINVAL},
		{"read past end", c.ReadAt(got[:2], end-1), EINVAL},
	} {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, tc.err, tc.want)
		}
	}

	// Export errors are mapped onto the protocol's few values.
	for _, tc := range []struct {
		err  error
		want Errno
	}{
		{syscall.ENOSPC, ENOSPC},
		{fmt.Errorf("journal full: %w", syscall.EDQUOT), ENOSPC},
		{syscall.EFBIG, ENOSPC},
		{errors.New("disk on fire"), EIO},
		{syscall.EBADF, EIO},
		{EPERM, EPERM},
	} {
		m.mu.Lock()
		m.err = tc.err
		m.mu.Unlock()
		err := c.WriteAt(data[:512], 0)
		if err != tc.want {
			t.Errorf("export error %v: client got %v, want %v", tc.err, err, tc.want)
		}
		if !errors.Is(err, syscall.Errno(tc.want)) {
			t.Errorf("errors.Is(%v, syscall.Errno(%d)) false", err, tc.want)
		}
	}
	m.mu.Lock()
	m.err = nil
	m.mu.Unlock()
	// Errors leave the connection usable.
	if err := c.WriteAt(data[:512], 0); err != nil {
		t.Fatal(err)
	}
	// Zero-length requests are harmless.
	if err := c.ReadAt(nil, 0); err != nil {
		t.Fatal(err)
	}
}

func slicesConcat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// A MaxRequest below the 32 MiB default is what the server advertises; it
// still serves requests over it up to MaxAccepted, for clients that ignore
// the advertised maximum. A WRITE beyond that closes the connection.
func TestMaxRequest(t *testing.T) {
	m := newMemExport(1 << 20)
	addr := startServer(t, &Server{Exports: exportMap{"rw": m}, MaxRequest: 4096})
	r := rawDial(t, addr)
	r.open("rw")
	r.request(0, CmdWrite, 1, 0, 8192, bytes.Repeat([]byte{1}, 8192))
	r.expectReply(1, 0)
	r.request(0, CmdRead, 2, 0, 8192, nil)
	r.expectReply(2, 0)
	if got := r.read(8192); !bytes.Equal(got, bytes.Repeat([]byte{1}, 8192)) {
		t.Error("a READ over the advertised maximum returned other data")
	}
	r.request(0, CmdWrite, 3, 0, 4096, bytes.Repeat([]byte{3}, 4096))
	r.expectReply(3, 0)
	r.request(0, CmdWrite, 4, 0, MaxAccepted+1, nil)
	r.expectClosed()
	if got := m.snapshot(0, 8192); !bytes.Equal(got, slicesConcat(bytes.Repeat([]byte{3}, 4096), bytes.Repeat([]byte{1}, 4096))) {
		t.Error("the export does not hold the writes")
	}

	// The client learns the limit from NBD_INFO_BLOCK_SIZE and splits.
	c, err := Dial(addr, "rw")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	big := bytes.Repeat([]byte{9}, 100000)
	if err := c.WriteAt(big, 1000); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(big))
	if err := c.ReadAt(got, 1000); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("split read/write: %v", err)
	}
}

// TestConcurrentRequests shows that requests on one connection really run
// in parallel, and that replies are matched by cookie.
func TestConcurrentRequests(t *testing.T) {
	const parallel = 16
	m := newMemExport(4 << 20)
	var (
		mu       sync.Mutex
		arrived  int
		all      = make(chan struct{})
		timedOut atomic.Bool
	)
	// Generous: a serial server never gets there at all, and a loaded
	// machine can take seconds to schedule sixteen goroutines.
	giveUp, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The first `parallel` reads wait until all of them are inside the
	// export at once. A server that served one request at a time would
	// never get there.
	m.hook = func() {
		mu.Lock()
		arrived++
		if arrived == parallel {
			close(all)
		}
		mu.Unlock()
		select {
		case <-all:
		case <-giveUp.Done():
			timedOut.Store(true)
		}
	}
	for i := range m.data {
		m.data[i] = byte(i / 4096)
	}
	addr := startServer(t, &Server{Exports: exportMap{"rw": m}})
	r := rawDial(t, addr)
	r.open("rw")

	// Requests go out from another goroutine while this one reads
	// replies, as a real client's would; otherwise both sides could
	// block on full socket buffers.
	send := func(n int, req func(i int) []byte) {
		go func() {
			for i := range n {
				if _, err := r.nc.Write(req(i)); err != nil {
					t.Errorf("send request %d: %v", i, err)
					return
				}
			}
		}()
	}
	send(parallel, func(i int) []byte { return requestBytes(0, CmdRead, uint64(1000+i), uint64(i)*4096, 4096, nil) })
	seen := map[uint64]bool{}
	for range parallel {
		e, cookie := r.reply()
		i := int(cookie) - 1000
		if e != 0 || i < 0 || i >= parallel || seen[cookie] {
			t.Fatalf("reply error %d cookie %d", e, cookie)
		}
		seen[cookie] = true
		if got := r.read(4096); !bytes.Equal(got, bytes.Repeat([]byte{byte(i)}, 4096)) {
			t.Fatalf("cookie %d: wrong data", cookie)
		}
	}
	if timedOut.Load() {
		t.Fatal("reads were not served concurrently")
	}

	// Many writes in flight, then many reads, all pipelined; writes
	// complete (are replied to) before the reads that check them are sent.
	const n = 500
	send(n, func(i int) []byte {
		return requestBytes(0, CmdWrite, uint64(i)<<8|1, uint64(i)*4096, 4096, bytes.Repeat([]byte{byte(i * 7)}, 4096))
	})
	seen = map[uint64]bool{}
	for range n {
		e, cookie := r.reply()
		if e != 0 || cookie&0xff != 1 || seen[cookie] {
			t.Fatalf("write reply error %d cookie %#x", e, cookie)
		}
		seen[cookie] = true
	}
	send(n, func(i int) []byte { return requestBytes(0, CmdRead, uint64(i)<<8|2, uint64(i)*4096, 4096, nil) })
	seen = map[uint64]bool{}
	for range n {
		e, cookie := r.reply()
		if e != 0 || cookie&0xff != 2 || seen[cookie] {
			t.Fatalf("read reply error %d cookie %#x", e, cookie)
		}
		seen[cookie] = true
		i := int(cookie >> 8)
		if got := r.read(4096); !bytes.Equal(got, bytes.Repeat([]byte{byte(i * 7)}, 4096)) {
			t.Fatalf("read %d: wrong data", i)
		}
	}
}

// blockingExport parks reads until released, to test shutdown.
type blockingExport struct {
	*memExport
	entered chan struct{}
	release chan struct{}
}

func (b *blockingExport) ReadAt(p []byte, off int64) error {
	b.entered <- struct{}{}
	<-b.release
	return b.memExport.ReadAt(p, off)
}

func TestServerClose(t *testing.T) {
	be := &blockingExport{newMemExport(4096), make(chan struct{}, 1), make(chan struct{})}
	srv := &Server{Exports: exportMap{"rw": be}, Logger: testLogger(t)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	r := rawDial(t, ln.Addr().String())
	r.open("rw")
	r.request(0, CmdRead, 1, 0, 512, nil)
	<-be.entered

	closed := make(chan struct{})
	go func() { srv.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned while an Export call was still running")
	case <-time.After(100 * time.Millisecond):
	}
	close(be.release)
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
	r.expectClosed()
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("listener still accepting after Close")
	}
	// Serve after Close returns at once.
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(ln2); err != nil {
		t.Errorf("Serve after Close: %v", err)
	}
}

func TestClientErrors(t *testing.T) {
	addr := startServer(t, &Server{Exports: exportMap{"a": newMemExport(4096), "b": newMemExport(4096)}})
	if _, err := Dial(addr, "nosuch"); err == nil {
		t.Error("Dial of unknown export succeeded")
	}
	if _, err := Dial(addr, ""); err == nil {
		t.Error("Dial of empty name with two exports succeeded")
	}
	c, err := Dial(addr, "a")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err == nil {
		t.Error("Flush after Close succeeded")
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// The client falls back to NBD_OPT_EXPORT_NAME for servers without
// NBD_OPT_GO; this fake server is one.
func TestClientExportNameFallback(t *testing.T) {
	cnc, snc := net.Pipe()
	defer cnc.Close()
	errc := make(chan error, 1)
	go func() {
		defer snc.Close()
		hello := binary.BigEndian.AppendUint64(nil, nbdMagic)
		hello = binary.BigEndian.AppendUint64(hello, optMagic)
		hello = binary.BigEndian.AppendUint16(hello, flagFixedNewstyle) // no NO_ZEROES
		if _, err := snc.Write(hello); err != nil {
			errc <- err
			return
		}
		buf := make([]byte, 4+16)
		if _, err := io.ReadFull(snc, buf); err != nil {
			errc <- err
			return
		}
		if binary.BigEndian.Uint32(buf) != flagCFixedNewstyle {
			errc <- fmt.Errorf("client flags %#x", binary.BigEndian.Uint32(buf))
			return
		}
		opt, n := binary.BigEndian.Uint32(buf[12:]), binary.BigEndian.Uint32(buf[16:])
		if _, err := io.ReadFull(snc, make([]byte, n)); err != nil || opt != optGo {
			errc <- fmt.Errorf("first option %d: %v", opt, err)
			return
		}
		rep := binary.BigEndian.AppendUint64(nil, optReplyMagic)
		rep = binary.BigEndian.AppendUint32(rep, optGo)
		rep = binary.BigEndian.AppendUint32(rep, repErrUnsup)
		rep = binary.BigEndian.AppendUint32(rep, 0)
		snc.Write(rep)
		if _, err := io.ReadFull(snc, buf[:16]); err != nil {
			errc <- err
			return
		}
		opt, n = binary.BigEndian.Uint32(buf[8:]), binary.BigEndian.Uint32(buf[12:])
		name := make([]byte, n)
		if _, err := io.ReadFull(snc, name); err != nil || opt != optExportName || string(name) != "old" {
			errc <- fmt.Errorf("second option %d %q: %v", opt, name, err)
			return
		}
		reply := binary.BigEndian.AppendUint64(nil, 12345)
		reply = binary.BigEndian.AppendUint16(reply, FlagHasFlags|FlagReadOnly)
		_, err := snc.Write(append(reply, make([]byte, 124)...))
		errc <- err
	}()
	c, err := NewClient(cnc, "old")
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if c.Size() != 12345 || !c.ReadOnly() {
		t.Errorf("size %d flags %#x", c.Size(), c.Flags())
	}
}
