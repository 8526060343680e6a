package nbd

import (
	"bytes"
	"runtime"
	"testing"
	"time"
)

// TestWritesReturningAsTheirBoundRunsOutAreEachRepliedOnce: writes served
// on the read loop whose volume write returns right about when the read
// loop would be handed over (the watch firing as the write returns, before
// or after) are each replied once, with their data in the export, and the
// READ behind each reads it; the connection ends cleanly, leaving no
// goroutine behind and none in transmission.
func TestWritesReturningAsTheirBoundRunsOutAreEachRepliedOnce(t *testing.T) {
	for _, c := range []struct {
		name  string
		one   bool
		batch bool
	}{
		{name: "alone", one: true},
		{name: "batch", batch: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.one {
				oneProcessor(t)
				defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
			} else {
				seeProcessors(t, func() int { return 2 })
			}
			before := runtime.NumGoroutine()
			const n = 60
			bound := inlineBound(4096)
			m := &promptExport{memExport: newMemExport((n + 2) * 4096)}
			var i int
			m.writeHook = func(off int64) {
				if off == 0 {
					return
				}
				// Around the bound: from 200 µs before to 200 µs after.
				i++
				time.Sleep(bound - 200*time.Microsecond + time.Duration(i%9)*50*time.Microsecond)
			}
			r := openPrompt(t, m)
			for k := 1; k <= n; k++ {
				data := bytes.Repeat([]byte{byte(k)}, 4096)
				off := uint64(k) * 4096
				if c.batch {
					var b []byte
					b = append(b, requestBytes(0, CmdWrite, 1000+uint64(k), 0, 4096, data)...)
					b = append(b, requestBytes(0, CmdWrite, uint64(k), off, 4096, data)...)
					b = append(b, requestBytes(0, CmdRead, 2000+uint64(k), 0, 4096, nil)...)
					r.write(b)
					got := map[uint64]bool{}
					for range 3 {
						errno, cookie := r.reply()
						if errno != 0 || got[cookie] {
							t.Fatalf("write %d: reply %d errno %d, twice %v", k, cookie, errno, got[cookie])
						}
						got[cookie] = true
						if cookie == 2000+uint64(k) {
							if !bytes.Equal(r.read(4096), data) {
								t.Fatalf("write %d: the READ behind the batch's first write read other data", k)
							}
						}
					}
				} else {
					r.request(0, CmdWrite, uint64(k), off, 4096, data)
					r.expectReply(uint64(k), 0)
				}
				r.request(0, CmdRead, 3000+uint64(k), off, 4096, nil)
				r.expectReply(3000+uint64(k), 0)
				if !bytes.Equal(r.read(4096), data) {
					t.Fatalf("write %d replied without its data", k)
				}
			}
			if p := m.prompted.Load(); int(p) < n {
				t.Fatalf("%d writes served on the read loop, want at least %d", p, n)
			}
			r.request(0, CmdDisc, 9, 0, 0, nil)
			r.expectClosed()
			for deadline := time.Now().Add(10 * time.Second); transmitting.Load() != 0 || runtime.NumGoroutine() > before+2; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					buf := make([]byte, 1<<20)
					t.Fatalf("%d in transmission, %d goroutines against %d before:\n%s", transmitting.Load(), runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
				}
			}
		})
	}
}

// lateExport promises every write, but its promise (lateFalse) or its
// WriteNow (lateHeld) takes longer than the bound and then goes back on
// it: the write must be served as a worker serves it.
type lateExport struct {
	*memExport
	late      time.Duration
	lateFalse bool
}

func (e *lateExport) Prompt(int64, int) bool {
	if e.lateFalse {
		time.Sleep(e.late)
		return false
	}
	return true
}

func (e *lateExport) WriteNow([]byte, int64) (bool, error) {
	time.Sleep(e.late)
	return true, nil
}

// TestAWriteHandedOverThatIsNotServedNowIsServedAsAWorkers: a write served
// on the read loop whose promise, or WriteNow, outlasts its bound and then
// does not write it (the Export's state moved) is written all the same,
// replied once, while the READ behind it is answered.
func TestAWriteHandedOverThatIsNotServedNowIsServedAsAWorkers(t *testing.T) {
	for _, lateFalse := range []bool{false, true} {
		t.Run(map[bool]string{false: "held", true: "unpromised"}[lateFalse], func(t *testing.T) {
			oneProcessor(t)
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
			m := &lateExport{memExport: newMemExport(1 << 20), late: 300 * time.Millisecond, lateFalse: lateFalse}
			r := openPrompt(t, m)
			data := bytes.Repeat([]byte{7}, 4096)
			r.request(0, CmdWrite, 1, 0, 4096, data)
			r.request(0, CmdRead, 2, 8192, 4096, nil)
			r.expectReplyWhileHung("a READ", 2, 0)
			r.read(4096)
			r.expectReply(1, 0)
			if !bytes.Equal(m.snapshot(0, 4096), data) {
				t.Fatal("the write replied without its data in the export")
			}
			r.request(0, CmdDisc, 3, 0, 0, nil)
			r.expectClosed()
		})
	}
}

// TestAProtocolErrorBehindAHungWriteHangsUpAtOnce: a request with a bad
// magic behind a write served on the read loop whose volume write hangs
// is read while it hangs and the connection is closed at once; once the
// disk answers, the write is in the export and the connection's requests
// all end (no connection left in transmission, no goroutine behind).
func TestAProtocolErrorBehindAHungWriteHangsUpAtOnce(t *testing.T) {
	oneProcessor(t)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	before := runtime.NumGoroutine()
	m := &promptExport{memExport: newMemExport(1 << 20)}
	s := newStall(t, m.memExport, 0)
	srv := &Server{Exports: exportMap{"rw": m}}
	r := rawDial(t, startServer(t, srv))
	r.open("rw")
	s.releaseAtEnd()
	data := bytes.Repeat([]byte{7}, 4096)
	r.request(0, CmdWrite, 1, 0, 4096, data)
	s.wait()
	bad := requestBytes(0, CmdRead, 2, 0, 4096, nil)
	bad[0] ^= 0xff
	r.write(bad)
	r.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := r.br.ReadByte(); err == nil {
		t.Fatal("a reply came while the write hangs and the stream is out of sync")
	} else if ne, ok := err.(interface{ Timeout() bool }); ok && ne.Timeout() {
		t.Fatal("the connection is not closed at once behind a hung write on a protocol error")
	}
	s.release()
	// Close waits for the connection's requests.
	srv.Close()
	for deadline := time.Now().Add(10 * time.Second); transmitting.Load() != 0 || runtime.NumGoroutine() > before; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d in transmission, %d goroutines against %d before:\n%s", transmitting.Load(), runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
	}
	if !bytes.Equal(m.snapshot(0, 4096), data) {
		t.Fatal("the hung write is not in the export once the disk answered")
	}
}
