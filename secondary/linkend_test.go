package secondary

import (
	"context"
	"encoding/binary"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"duplex/disk"
	"duplex/recordset"
	"duplex/transport"
)

// countingListener counts the frames its connections' Recv returned, the
// Hello's included.
type countingListener struct {
	transport.Listener
	frames atomic.Int64
}

func (l *countingListener) Accept(ctx context.Context) (transport.Conn, error) {
	c, err := l.Listener.Accept(ctx)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, l: l}, nil
}

type countingConn struct {
	transport.Conn
	l *countingListener
}

func (c *countingConn) Recv() ([]byte, error) {
	f, err := c.Conn.Recv()
	if err == nil {
		c.l.frames.Add(1)
	}
	return f, err
}

// waitFrames waits until the listener's connections have read n frames,
// and a little more, for the reader to pass the last one on.
func (l *countingListener) waitFrames(t *testing.T, n int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for l.frames.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("the secondary read %d frames in 30 s, want %d", l.frames.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
}

// openCountedRig runs a storageRig's secondary (ss1 over vol1) on a
// countingListener over an in-memory network, its journal on fsys.
func openCountedRig(t *testing.T, fsys disk.FS) (*storageRig, *countingListener) {
	t.Helper()
	ln := &countingListener{}
	r := newStorageRigOn(t, fsys, func(l transport.Listener) transport.Listener {
		ln.Listener = l
		return ln
	})
	return r, ln
}

// corruptFrame is a frame whose CRC does not hold: a record set frame of
// ss1's set seq with its frame checksum flipped.
func corruptFrame(t *testing.T, seq uint64) []byte {
	t.Helper()
	ts := int64(seq) * 1000
	rs := &recordset.RecordSet{Session: "s", Subsystem: "ss1", Seq: seq, Group: seq, ReadTime: ts, Horizon: ts + 10}
	f, err := recordset.Encode([]byte{transport.TypeRecordSet}, rs)
	if err != nil {
		t.Fatal(err)
	}
	f = transport.Seal(f)
	f[len(f)-1] ^= 0xff
	return f
}

// TestFramesReadBeforeCorruptFramesEndTheLinkAreReceived: the link ends
// after three corrupt frames in a row (the stream is out of step), and a
// whole frame read before them, waiting in the same batch while a group
// was journaled, is received first, as it is before a link's end: its set
// is taken, its group journaled and acknowledged. The link's end is
// logged, with why.
func TestFramesReadBeforeCorruptFramesEndTheLinkAreReceived(t *testing.T) {
	fsys := &stallJournalSync{FS: disk.OS, entered: make(chan struct{}), released: make(chan struct{})}
	r, ln := openCountedRig(t, fsys)
	// Group 2's fsync waits while set 3 and the corrupt frames are read.
	l := r.pastGroup1()
	release := fsys.stallGroup2(t, l)
	l.send(3, 8192, 3)
	for range 3 {
		if err := l.conn.Send(corruptFrame(t, 4)); err != nil {
			t.Fatal(err)
		}
	}
	ln.waitFrames(t, 1+3+3) // the Hello, sets 1 to 3, the corrupt frames
	release()
	if g, reason := l.journaled(3); g != 3 {
		t.Fatalf("the link ended with group %d acknowledged (refusal %q): set 3, read whole before the corrupt frames, was dropped", g, reason)
	}
	waitLogged(t, r.logs, "level=WARN", "3 corrupt frames in a row")
	l2, w, reason := r.connect()
	if reason != "" {
		t.Fatal(reason)
	}
	if w.Through["ss1"] != 3 {
		t.Fatalf("the next Welcome holds ss1 through %d, want 3", w.Through["ss1"])
	}
	l2.conn.Close()
}

// waitLogged waits until a line of the secondary's log holds every one of
// words, and fails the test after 10 s without one.
func waitLogged(t *testing.T, logs *syncBuffer, words ...string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, line := range strings.Split(logs.String(), "\n") {
			if strings.Contains(line, "link ended") && containsAll(line, words) {
				return line
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line of the link's end holding %q in 10 s; the log:\n%s", words, logs.String())
		}
		time.Sleep(time.Millisecond)
	}
}

func containsAll(s string, words []string) bool {
	for _, w := range words {
		if !strings.Contains(s, w) {
			return false
		}
	}
	return true
}

// TestTheLinkEndIsLogged: why a primary's link ended is in the
// secondary's log, with the primary (its address and subsystems) and the
// error: at Warn for a link cut in the middle of a frame, for a frame
// length corrupted past the limit and, over the in-memory link, for a cut
// (TestFramesReadBeforeCorruptFramesEndTheLinkAreReceived: for frames out
// of step); at Info for a primary that closes it between frames. The
// sets of a frame cut short are not taken: the next Welcome says what to
// send again.
func TestTheLinkEndIsLogged(t *testing.T) {
	const chunk = 64 << 10
	for _, tc := range []struct {
		name  string
		end   func(t *testing.T, c net.Conn, frame []byte)
		words []string
	}{
		{"cut in the middle of a frame", func(t *testing.T, c net.Conn, frame []byte) {
			var hdr [4]byte
			binary.BigEndian.PutUint32(hdr[:], uint32(len(frame)))
			if _, err := c.Write(append(hdr[:], frame[:len(frame)/2]...)); err != nil {
				t.Fatal(err)
			}
		}, []string{"level=WARN", "reading the next frame", "unexpected EOF"}},
		{"a frame length corrupted", func(t *testing.T, c net.Conn, frame []byte) {
			var hdr [4]byte
			binary.BigEndian.PutUint32(hdr[:], uint32(len(frame))|0xf0000000)
			if _, err := c.Write(append(hdr[:], frame...)); err != nil {
				t.Fatal(err)
			}
		}, []string{"level=WARN", "reading the next frame", transport.ErrFrameTooLarge.Error()}},
		{"closed between frames", func(t *testing.T, c net.Conn, frame []byte) {
		}, []string{"level=INFO", "the primary closed it", "EOF"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := transport.ListenTCP("127.0.0.1:0", nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			r := startFramesRig(t, 4*chunk, nil, ln)
			want := map[string][]byte{"vol1": make([]byte, 4*chunk), "vol2": make([]byte, 4*chunk)}
			p := r.dialTCPPrimary(ln.Addr())
			defer p.c.Close()
			// A group journaled first: the link carried data before it
			// ended, and the primary read its acknowledgement, so that
			// closing it resets nothing.
			send(t, p.c, transport.EncodeBundle(transport.Bundle{Sets: [][]byte{
				oneUpdateSet(t, want, chunk, "ss1", "vol1", 1, 1000), oneUpdateSet(t, want, chunk, "ss2", "vol2", 1, 1001)}}))
			p.waitThrough(t, 1)
			frame := transport.EncodeBundle(transport.Bundle{Sets: [][]byte{
				oneUpdateSet(t, want, chunk, "ss1", "vol1", 2, 2000), oneUpdateSet(t, want, chunk, "ss2", "vol2", 2, 2001)}})
			tc.end(t, p.c, frame)
			p.c.Close()
			line := waitLogged(t, r.logs, append(tc.words, "peer="+p.c.LocalAddr().String(), `subsystems="[ss1 ss2]"`)...)
			t.Log(line)
			st := r.sec.Stats()
			for st.Connected {
				time.Sleep(time.Millisecond)
				st = r.sec.Stats()
			}
			p = r.dialTCPPrimary(ln.Addr())
			defer p.c.Close()
			if w := p.welcome; w.Through["ss1"] != 1 || w.Received["ss1"] != 1 || w.Received["ss2"] != 1 {
				t.Fatalf("the next Welcome says through %v, received %v: want 1 of each, the frame after group 1 not taken", w.Through, w.Received)
			}
		})
	}
}

// TestTheEndOfAnInMemoryLinkIsLogged: over the in-memory link, a cut (the
// frames in flight lost) is logged at Warn, a primary's close between
// frames at Info, as over TCP.
func TestTheEndOfAnInMemoryLinkIsLogged(t *testing.T) {
	r := newStorageRig(t, disk.OS)
	r.pastGroup1()
	r.net.Cut()
	t.Log(waitLogged(t, r.logs, "level=WARN", "reading the next frame", transport.ErrClosed.Error(), "peer=mem-primary", "subsystems=[ss1]"))
	l, _, reason := r.connect()
	if reason != "" {
		t.Fatal(reason)
	}
	l.send(2, 4096, 2)
	if g, reason := l.journaled(2); g != 2 {
		t.Fatalf("group 2 not acknowledged: acked %d, %q", g, reason)
	}
	// A link closed once its group is acknowledged may still be owed a
	// receipt (the one that ends every batch, or one sent while the group
	// waits for the applier), whose send the in-memory link fails at once
	// where a socket would take it: the secondary then closes the
	// connection, and may do so before it reads the primary's end, which
	// it logs at Warn, as a send that failed before the end was read. The
	// close between frames is the next link's, once its Welcome is read:
	// nothing more is owed it.
	l.conn.Close()
	linkEnds(t, r.logs, 2)
	l, _, reason = r.connect()
	if reason != "" {
		t.Fatal(reason)
	}
	l.conn.Close()
	line := linkEnds(t, r.logs, 3)[2]
	t.Log(line)
	if !containsAll(line, []string{"level=INFO", "the primary closed it", "EOF", "peer=mem-primary"}) || strings.Contains(line, "send_err") {
		t.Fatalf("a primary's close between frames logged as %q, want at Info, saying the primary closed it, with no failed send", line)
	}
}

// linkEnds returns the lines of the secondary's log that say a link
// ended, in order, once there are n, and fails the test after 10 s
// without as many.
func linkEnds(t *testing.T, logs *syncBuffer, n int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var ends []string
		for _, line := range strings.Split(logs.String(), "\n") {
			if strings.Contains(line, "link ended") {
				ends = append(ends, line)
			}
		}
		if len(ends) >= n {
			return ends
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d log lines of a link's end in 10 s, want %d; the log:\n%s", len(ends), n, logs.String())
		}
		time.Sleep(time.Millisecond)
	}
}
