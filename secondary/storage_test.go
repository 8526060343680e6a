package secondary

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"duplex/disk"
	"duplex/internal/testenv"
	"duplex/recordset"
	"duplex/transport"
	"duplex/volume"
)

// syncBuffer is a log destination that tests read while the secondary writes.
type syncBuffer = testenv.LogBuffer

// storageRig is a secondary on a disk that can fail, fed by a hand-made
// primary over an in-memory link.
type storageRig struct {
	t       *testing.T
	dir     string
	cfg     Config
	vol     *volume.Volume
	net     *transport.MemNetwork
	sec     *Secondary
	cancel  context.CancelFunc
	runDone chan struct{}
	runErr  error
	logs    *syncBuffer
	// listen, if set, is what the secondary accepts its links on, given
	// the in-memory network's listener.
	listen func(transport.Listener) transport.Listener
}

const rigVolSize = 1 << 20

func newStorageRig(t *testing.T, fsys disk.FS) *storageRig {
	return newStorageRigOn(t, fsys, nil)
}

// newStorageRigOn is newStorageRig whose secondary accepts its links on
// what listen makes of the in-memory network's listener.
func newStorageRigOn(t *testing.T, fsys disk.FS, listen func(transport.Listener) transport.Listener) *storageRig {
	t.Helper()
	dir := t.TempDir()
	vol, err := volume.Open(filepath.Join(dir, "vol1.img"), rigVolSize)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vol.Close() })
	r := &storageRig{t: t, dir: dir, vol: vol, logs: &syncBuffer{}, listen: listen}
	r.cfg = Config{
		Session: "s", Subsystems: []string{"ss1"}, Volumes: map[string]*volume.Volume{"vol1": vol},
		JournalDir: filepath.Join(dir, "journal"), StatePath: filepath.Join(dir, "state.json"),
		Limits: recordset.Limits{MaxHeader: 1 << 20, MaxPayload: 16 << 20, MaxRecords: 1 << 16},
		FS:     fsys, Logger: slog.New(slog.NewTextHandler(r.logs, nil)),
	}
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *storageRig) start() {
	sec, err := Open(r.cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.sec, r.cancel, r.runDone, r.net = sec, cancel, make(chan struct{}), transport.NewMemNetwork(1, transport.Faults{})
	var ln transport.Listener = r.net
	if r.listen != nil {
		ln = r.listen(ln)
	}
	go func() {
		defer close(r.runDone)
		r.runErr = sec.Run(ctx, ln)
	}()
}

func (r *storageRig) stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	select {
	case <-r.runDone:
	case <-time.After(30 * time.Second):
		r.t.Fatal("secondary Run did not return within 30s of cancel")
	}
	r.sec.Close()
	r.cancel = nil
}

// link is the primary's end of one connection.
type link struct {
	t    *testing.T
	conn transport.Conn
}

// connect says hello and returns the welcome, or the refusal's reason.
func (r *storageRig) connect() (*link, transport.Position, string) {
	r.t.Helper()
	conn, err := r.net.Dial(context.Background())
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { conn.Close() })
	if err := conn.Send(transport.EncodeHello(transport.Hello{Session: "s", Subsystems: []string{"ss1"}, Instance: 7, Volumes: []transport.VolumeInfo{{Name: "vol1", Size: rigVolSize}}})); err != nil {
		r.t.Fatal(err)
	}
	l := &link{t: r.t, conn: conn}
	typ, body := l.recv()
	switch typ {
	case transport.TypeWelcome:
		p, err := transport.DecodePosition(body)
		if err != nil {
			r.t.Fatal(err)
		}
		return l, p, ""
	case transport.TypeRefuse:
		reason, _ := refusalReason(body)
		return nil, transport.Position{}, reason
	}
	r.t.Fatalf("frame type %d instead of a welcome", typ)
	return nil, transport.Position{}, ""
}

// recv returns the next frame, or type 0 when the connection closed; it
// fails the test after 10s without one.
func (l *link) recv() (byte, []byte) {
	l.t.Helper()
	type frame struct {
		f   []byte
		err error
	}
	ch := make(chan frame, 1)
	go func() {
		f, err := l.conn.Recv()
		ch <- frame{f, err}
	}()
	select {
	case fr := <-ch:
		if fr.err != nil {
			return 0, nil
		}
		typ, body, err := transport.Open(fr.f)
		if err != nil {
			l.t.Fatal(err)
		}
		return typ, body
	case <-time.After(10 * time.Second):
		l.t.Fatal("no frame from the secondary within 10s")
		return 0, nil
	}
}

// send sends record set seq of ss1 holding one 4 KiB write of fill at off.
func (l *link) send(seq uint64, off int64, fill byte) {
	l.t.Helper()
	ts := int64(seq) * 1000
	rs := &recordset.RecordSet{Session: "s", Subsystem: "ss1", Seq: seq, Group: seq, ReadTime: ts, Horizon: ts + 10,
		Updates: []recordset.Update{{Volume: "vol1", Kind: recordset.KindWrite, Offset: uint64(off), Length: 4096, Timestamp: ts, Seq: seq,
			Data: bytes.Repeat([]byte{fill}, 4096)}}}
	f, err := recordset.Encode([]byte{transport.TypeRecordSet}, rs)
	if err != nil {
		l.t.Fatal(err)
	}
	if err := l.conn.Send(transport.Seal(f)); err != nil {
		l.t.Fatal(err)
	}
}

// journaled waits for the ack of group g, or for a refusal or the end of the
// connection; it returns the group acknowledged and the refusal's reason.
func (l *link) journaled(g uint64) (uint64, string) {
	l.t.Helper()
	var acked uint64
	for {
		typ, body := l.recv()
		switch typ {
		case 0:
			return acked, ""
		case transport.TypeRefuse:
			reason, _ := refusalReason(body)
			return acked, reason
		case transport.TypeAck:
			p, err := transport.DecodePosition(body)
			if err != nil {
				l.t.Fatal(err)
			}
			acked = max(acked, p.Group)
			if acked >= g {
				return acked, ""
			}
		}
	}
}

// TestJournalFaultStopsSecondary fails the journal's write (a full disk) or
// its fsync (EIO, once) while a group is journaled. The secondary must not
// acknowledge the group, must stop receiving with the reason in its log, its
// status and a refusal to every primary, must keep refusing after the fault
// is gone (a failed fsync cannot be retried), and after a restart (without
// a reboot: the page cache as it was) must hold every group it acknowledged,
// none that no fsync covered, and accept the rest.
func TestJournalFaultStopsSecondary(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault disk.Fault
		want  string
	}{
		{"disk full on write", disk.Fault{Op: disk.OpWrite, Err: disk.ENOSPC}, "no space left on device"},
		{"EIO from fsync", disk.Fault{Op: disk.OpSync, Err: disk.EIO, Once: true}, "input/output error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := disk.NewInjector(nil)
			r := newStorageRig(t, in)
			l, _, reason := r.connect()
			if l == nil {
				t.Fatalf("refused: %s", reason)
			}
			l.send(1, 0, 0xa1)
			if g, reason := l.journaled(1); g != 1 {
				t.Fatalf("group 1 not acknowledged (reason %q)", reason)
			}

			tc.fault.Under = r.cfg.JournalDir
			in.Inject(tc.fault)
			l.send(2, 4096, 0xa2)
			g, reason := l.journaled(2)
			if g >= 2 {
				t.Fatalf("group 2 acknowledged although the journal failed")
			}
			if in.Injected(tc.fault.Op) == 0 {
				t.Fatalf("the %s fault never fired", tc.fault.Op)
			}
			if !strings.Contains(reason, tc.want) {
				t.Errorf("the primary was told %q, want the reason (%q)", reason, tc.want)
			}
			st := r.sec.Stats()
			if !strings.Contains(st.Stopped, tc.want) {
				t.Errorf("Stats().Stopped = %q, want the reason (%q)", st.Stopped, tc.want)
			}
			if logs := r.logs.String(); !strings.Contains(logs, "stopped") || !strings.Contains(logs, tc.want) {
				t.Errorf("log does not say the secondary stopped and why:\n%s", logs)
			}
			select {
			case <-r.runDone:
				t.Fatalf("Run returned %v: the stopped secondary must go on serving status and refusing primaries", r.runErr)
			case <-time.After(50 * time.Millisecond):
			}

			// The disk works again, but nothing is acknowledged until restart.
			in.Clear()
			if l, _, reason := r.connect(); l != nil || !strings.Contains(reason, "restart") {
				t.Fatalf("a stopped secondary welcomed a primary (refusal %q); want a refusal that says to restart it", reason)
			}

			r.stop()
			if !errors.Is(r.runErr, ErrStopped) {
				t.Errorf("Run of a stopped secondary returned %v at shutdown, want ErrStopped", r.runErr)
			}
			r.start()
			l, welcome, reason := r.connect()
			if l == nil {
				t.Fatalf("refused after restart: %s", reason)
			}
			// No fsync covered group 2. Restarted without a reboot, the
			// page cache may still hold its record, written or not (after a
			// failed fsync the kernel may leave the pages it could not write
			// clean): the secondary must not take it as journaled, and the
			// primary, which still holds it, sends it again.
			if welcome.Group != 1 || welcome.Through["ss1"] != 1 {
				t.Fatalf("after restart the secondary holds group %d, ss1 through %d; want group 1, the last one an fsync covered", welcome.Group, welcome.Through["ss1"])
			}
			l.send(2, 4096, 0xa2)
			if g, reason := l.journaled(2); g != 2 {
				t.Fatalf("group 2 not acknowledged after restart (reason %q)", reason)
			}
			// The acknowledgment goes out once group 2 is journaled, before
			// it is applied.
			for deadline := time.Now().Add(10 * time.Second); r.sec.Stats().Group < 2; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("group 2 not applied 10s after its acknowledgment (applied through %d)", r.sec.Stats().Group)
				}
			}
			buf := make([]byte, 8192)
			if err := r.sec.ReadAt("vol1", buf, 0); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf[:4096], bytes.Repeat([]byte{0xa1}, 4096)) || !bytes.Equal(buf[4096:], bytes.Repeat([]byte{0xa2}, 4096)) {
				t.Fatal("the secondary volume does not hold both writes after restart")
			}
		})
	}
}

// TestOpenRefusesJournalWithoutRoom: a secondary whose journal's file system
// cannot hold two segments and two of the largest groups refuses to start,
// naming the numbers, rather than filling the disk and stopping later.
func TestOpenRefusesJournalWithoutRoom(t *testing.T) {
	dir := t.TempDir()
	vol, err := volume.Open(filepath.Join(dir, "vol1.img"), rigVolSize)
	if err != nil {
		t.Fatal(err)
	}
	defer vol.Close()
	_, err = Open(Config{
		Session: "s", Subsystems: []string{"ss1"}, Volumes: map[string]*volume.Volume{"vol1": vol},
		JournalDir: filepath.Join(dir, "journal"), StatePath: filepath.Join(dir, "state.json"),
		FS: roomFS{disk.OS, 64 << 20}, LargestGroup: 256 << 20,
	})
	if err == nil {
		t.Fatal("Open succeeded with 64 MiB free for groups of up to 256 MiB")
	}
	if !strings.Contains(err.Error(), "64.0 MiB") || !strings.Contains(err.Error(), "needs") {
		t.Fatalf("error %q does not name what the journal needs and what is free", err)
	}
	if errors.Is(err, ErrStopped) {
		t.Fatal("a refusal to start is not a stop")
	}
}

type roomFS struct {
	disk.FS
	free int64
}

func (f roomFS) Available(string) (int64, error) { return f.free, nil }
