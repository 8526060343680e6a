package nbd

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// promptExport is a memExport that is also a Prompter: prompt decides, per
// write offset, whether it promises the write will not wait.
type promptExport struct {
	*memExport
	prompted atomic.Int32
	prompt   func() bool
}

func (p *promptExport) Prompt(int64, int) bool {
	if p.prompt != nil && !p.prompt() {
		return false
	}
	p.prompted.Add(1)
	return true
}

func (p *promptExport) WriteNow(b []byte, off int64) (bool, error) { return false, p.WriteAt(b, off) }

// openPrompt serves m as the export "rw" and returns a raw connection
// that opened it.
func openPrompt(t *testing.T, m Export) *rawClient {
	t.Helper()
	r := rawDial(t, startServer(t, &Server{Exports: exportMap{"rw": m}}))
	r.open("rw")
	return r
}

// heldFirst is a promptExport of size bytes that does not promise its
// first write and holds the one at offset 0 until release (called at the
// test's end too); held is closed once it holds it.
func heldFirst(t *testing.T, size int) (m *promptExport, held <-chan struct{}, release func()) {
	m = &promptExport{memExport: newMemExport(size)}
	var first atomic.Bool
	first.Store(true)
	m.prompt = func() bool { return !first.Swap(false) }
	holding, released := make(chan struct{}), make(chan struct{})
	var holds, releases sync.Once
	release = func() { releases.Do(func() { close(released) }) }
	t.Cleanup(release)
	m.writeHook = func(off int64) {
		if off == 0 {
			holds.Do(func() { close(holding) })
			<-released
		}
	}
	return m, holding, release
}

func writes(from, n int, fill func(i int) byte) []byte {
	var b []byte
	for i := from; i < from+n; i++ {
		b = append(b, requestBytes(0, CmdWrite, uint64(i), uint64(i)*4096, 4096, bytes.Repeat([]byte{fill(i)}, 4096))...)
	}
	return b
}

// TestBufferedWritesAreRepliedTogetherInOrder: writes that arrive together
// are served by the read loop and replied in one batch once it has read
// them all: every reply after every write of the batch is in the Export,
// in the order the client sent them.
func TestBufferedWritesAreRepliedTogetherInOrder(t *testing.T) {
	const n = 8
	m := &promptExport{memExport: newMemExport(1 << 20)}
	var done atomic.Int32
	m.writeHook = func(int64) { done.Add(1) }
	addr := startServer(t, &Server{Exports: exportMap{"rw": m}})
	r := rawDial(t, addr)
	r.open("rw")
	r.write(writes(0, n, func(i int) byte { return byte(i + 1) }))
	for i := range n {
		r.expectReply(uint64(i), 0)
		if i == 0 && done.Load() != n {
			t.Fatalf("the first reply came with %d of the %d writes in the Export", done.Load(), n)
		}
	}
	if got := m.prompted.Load(); got != n {
		t.Fatalf("%d writes served by the read loop, want %d", got, n)
	}
	for i := range n {
		if !bytes.Equal(m.snapshot(i*4096, 4096), bytes.Repeat([]byte{byte(i + 1)}, 4096)) {
			t.Fatalf("write %d: wrong data", i)
		}
	}
}

// TestABatchRepliesEachWritesOwnError: a write the Export fails, and one
// the server refuses, get their own error replies in a batch; the others
// succeed.
func TestABatchRepliesEachWritesOwnError(t *testing.T) {
	m := &failingAt{promptExport{memExport: newMemExport(1 << 20)}, 2 * 4096}
	addr := startServer(t, &Server{Exports: exportMap{"rw": m}})
	r := rawDial(t, addr)
	r.open("rw")
	b := writes(0, 4, func(i int) byte { return byte(i + 1) })
	b = append(b, requestBytes(0, CmdWrite, 4, 1<<20, 4096, make([]byte, 4096))...) // past the end
	b = append(b, writes(5, 2, func(i int) byte { return byte(i + 1) })...)
	r.write(b)
	want := map[uint64]Errno{0: 0, 1: 0, 2: EIO, 3: 0, 4: ENOSPC, 5: 0, 6: 0}
	for i := range 7 {
		r.expectReply(uint64(i), want[uint64(i)])
	}
}

// failingAt fails the writes at one offset.
type failingAt struct {
	promptExport
	off int64
}

func (f *failingAt) WriteAt(p []byte, off int64) error {
	if off == f.off {
		return errors.New("the disk failed")
	}
	return f.promptExport.WriteAt(p, off)
}

func (f *failingAt) WriteNow(p []byte, off int64) (bool, error) { return false, f.WriteAt(p, off) }

// TestAHeldWriteDoesNotHoldUpABatch: a write the Export does not promise
// goes to a worker, and while the Export holds it, the writes sent after
// it are served and replied.
func TestAHeldWriteDoesNotHoldUpABatch(t *testing.T) {
	m, _, release := heldFirst(t, 1<<20)
	r := openPrompt(t, m)
	r.write(writes(0, 8, func(i int) byte { return byte(i + 1) }))
	for i := 1; i < 8; i++ {
		r.expectReply(uint64(i), 0)
	}
	release()
	r.expectReply(0, 0)
}

// TestMoreBufferedWritesThanPlaces: a batch never waits for the places in
// flight its own replies hold: with more writes buffered than requests may
// be in flight, every one is replied.
func TestMoreBufferedWritesThanPlaces(t *testing.T) {
	const n = 3 * maxInflight
	m := &promptExport{memExport: newMemExport(1 << 20)}
	addr := startServer(t, &Server{Exports: exportMap{"rw": m}})
	r := rawDial(t, addr)
	r.open("rw")
	go r.nc.Write(writes(0, n, func(i int) byte { return byte(i) }))
	r.nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	r.repliedOK(n)
}

// repliedOK reads n replies, of n distinct requests, none an error.
func (r *rawClient) repliedOK(n int) {
	r.t.Helper()
	seen := map[uint64]bool{}
	for range n {
		e, c := r.reply()
		if e != 0 || seen[c] {
			r.t.Fatalf("reply error %d cookie %d", e, c)
		}
		seen[c] = true
	}
}

// rangeCheckingPrompter is a Prompter that fails the test when asked about
// a write the server must refuse: a Prompter looks the range up in its own
// state, which need not cover what is past the export's end.
type rangeCheckingPrompter struct {
	*memExport
	t *testing.T
}

func (p *rangeCheckingPrompter) Prompt(off int64, n int) bool {
	if off < 0 || n < 0 || off > p.Size()-int64(n) {
		p.t.Errorf("Prompt asked about [%d, +%d) of a %d-byte export", off, n, p.Size())
		return false
	}
	return true
}

func (p *rangeCheckingPrompter) WriteNow(b []byte, off int64) (bool, error) {
	return false, p.WriteAt(b, off)
}

// TestAWriteOutOfRangeInABatchIsRefusedUnasked: a buffered write past the
// export's end, or at an offset of 2^63 or more (negative as an int64), is
// refused with ENOSPC as a worker refuses it, without asking the Prompter,
// and the writes around it are served.
func TestAWriteOutOfRangeInABatchIsRefusedUnasked(t *testing.T) {
	m := &rangeCheckingPrompter{memExport: newMemExport(1 << 20), t: t}
	addr := startServer(t, &Server{Exports: exportMap{"rw": m}})
	r := rawDial(t, addr)
	r.open("rw")
	b := writes(0, 2, func(i int) byte { return byte(i + 1) })
	for i, off := range []uint64{1 << 63, 1<<64 - 4096, 1 << 20, 1<<20 - 2048} {
		b = append(b, requestBytes(0, CmdWrite, uint64(2+i), off, 4096, make([]byte, 4096))...)
	}
	b = append(b, writes(6, 2, func(i int) byte { return byte(i + 1) })...)
	r.write(b)
	got := map[uint64]Errno{}
	for range 8 {
		e, c := r.reply()
		got[c] = e
	}
	for i := range uint64(8) {
		want := Errno(0)
		if i >= 2 && i < 6 {
			want = ENOSPC
		}
		if e, ok := got[i]; !ok || e != want {
			t.Errorf("write %d: replied %v (error %d), want error %d", i, ok, e, want)
		}
	}
}

// TestABatchWaitsForNoReplyToBeRead: a client may send its requests (up to
// the requests in flight the server takes) before it reads a reply, and
// the server must read them all meanwhile: the read loop never waits for
// the client to take the replies of the writes it served itself. Over
// net.Pipe, which buffers nothing, a reply written by the read loop waits
// until the client reads it; the client's stream is longer than the
// server's read buffer, so the read loop's write comes while the client
// still writes.
func TestABatchWaitsForNoReplyToBeRead(t *testing.T) {
	m := &promptExport{memExport: newMemExport(1 << 20)}
	srv := &Server{Exports: exportMap{"rw": m}, Logger: testLogger(t)}
	client, server := net.Pipe()
	done := make(chan struct{})
	go func() {
		srv.serveConn(server)
		close(done)
	}()
	defer func() {
		client.Close()
		<-done
	}()
	r := &rawClient{t: t, nc: client, br: bufio.NewReader(client)}
	client.SetDeadline(time.Now().Add(10 * time.Second))
	r.open("rw")
	const n = 40 // 40 writes of 4 KiB: more than the read loop's 64 KiB buffer
	b := writes(0, 2, func(i int) byte { return byte(i + 1) })
	b = append(b, requestBytes(0, CmdFlush, 2, 0, 0, nil)...)
	b = append(b, writes(3, n-3, func(i int) byte { return byte(i + 1) })...)
	if _, err := client.Write(b); err != nil {
		t.Fatalf("the server stopped reading requests, none of its replies read: %v", err)
	}
	r.repliedOK(n)
}

// holdingPrompter promises every write, as a Prompter does whose state
// then changes before the write (a switchover pausing the writes between
// Prompt and the write): while held is set, a write waits in WriteAt for
// release, and WriteNow says so without writing.
type holdingPrompter struct {
	*memExport
	held    atomic.Bool
	release chan struct{}
}

func (h *holdingPrompter) Prompt(int64, int) bool { return true }

func (h *holdingPrompter) WriteAt(p []byte, off int64) error {
	if h.held.Load() {
		<-h.release
	}
	return h.memExport.WriteAt(p, off)
}

func (h *holdingPrompter) WriteNow(p []byte, off int64) (bool, error) {
	if h.held.Load() {
		return true, nil
	}
	return false, h.memExport.WriteAt(p, off)
}

// TestAWriteHeldAfterItsPromiseHoldsUpNoOtherRequest: a write the Export
// promised but then holds for long goes to a worker: the replies of the
// writes the read loop served before it go out, and the READ behind it is
// served, while it waits (with the writes after it, held as well).
func TestAWriteHeldAfterItsPromiseHoldsUpNoOtherRequest(t *testing.T) {
	m := &holdingPrompter{memExport: newMemExport(1 << 20), release: make(chan struct{})}
	var once sync.Once
	defer once.Do(func() { close(m.release) })
	m.writeHook = func(off int64) {
		if off == 2*4096 {
			m.held.Store(true)
		}
	}
	addr := startServer(t, &Server{Exports: exportMap{"rw": m}})
	r := rawDial(t, addr)
	r.open("rw")
	b := writes(0, 4, func(i int) byte { return byte(i + 1) })
	b = append(b, requestBytes(0, CmdRead, 4, 0, 4096, nil)...)
	b = append(b, writes(5, 2, func(i int) byte { return byte(i + 1) })...)
	r.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	r.write(b)
	// Write 2 is served, and holds the writes from then on: writes 0-2
	// and the READ are answered meanwhile, then the others.
	got := map[uint64]bool{}
	for i := range 7 {
		if i == 4 {
			once.Do(func() { close(m.release) })
		}
		e, c := r.reply()
		if e != 0 || got[c] || (i < 4) != (c < 3 || c == 4) {
			t.Fatalf("reply %d: error %d cookie %d", i, e, c)
		}
		if c == 4 {
			r.read(4096)
		}
		got[c] = true
	}
}

// TestABatchEndedByDiscIsRepliedBeforeTheClose: writes sent together with
// NBD_CMD_DISC are all served and replied before the server hangs up.
func TestABatchEndedByDiscIsRepliedBeforeTheClose(t *testing.T) {
	const n = 8
	m := &promptExport{memExport: newMemExport(1 << 20)}
	addr := startServer(t, &Server{Exports: exportMap{"rw": m}})
	r := rawDial(t, addr)
	r.open("rw")
	r.write(append(writes(0, n, func(i int) byte { return byte(i + 1) }), requestBytes(0, CmdDisc, n, 0, 0, nil)...))
	for i := range n {
		r.expectReply(uint64(i), 0)
	}
	if _, err := r.br.ReadByte(); err != io.EOF {
		t.Fatalf("after the replies: %v, want EOF", err)
	}
	if got := m.prompted.Load(); got != n {
		t.Fatalf("%d writes served by the read loop, want %d", got, n)
	}
}
