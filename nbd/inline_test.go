package nbd

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"sync"
	"testing"
	"time"
)

// TestAWriteHeldInTheExportDoesNotHoldUpTheNext: a lone write the Export
// holds up (a wait for room in the sidefile, a disk that stalls) must not
// stop the server from reading and serving the requests the client sends
// after it. Here the first write waits until every write is in the Export:
// a server that served it on the goroutine that reads the connection, and
// read nothing more until it was done, would never get there.
func TestAWriteHeldInTheExportDoesNotHoldUpTheNext(t *testing.T) {
	const parallel = 8
	m := newMemExport(1 << 20)
	var (
		mu      sync.Mutex
		arrived int
		first   = make(chan struct{})
		all     = make(chan struct{})
	)
	giveUp, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m.writeHook = func(int64) {
		mu.Lock()
		arrived++
		switch arrived {
		case 1:
			close(first)
		case parallel:
			close(all)
		}
		mu.Unlock()
		select {
		case <-all:
		case <-giveUp.Done():
		}
	}
	addr := startServer(t, &Server{Exports: exportMap{"rw": m}})
	r := rawDial(t, addr)
	r.open("rw")

	write := func(i int) []byte {
		return requestBytes(0, CmdWrite, uint64(i), uint64(i)*4096, 4096, bytes.Repeat([]byte{byte(i + 1)}, 4096))
	}
	if _, err := r.nc.Write(write(0)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-first:
	case <-giveUp.Done():
		t.Fatal("the first write never reached the export")
	}
	go func() {
		for i := 1; i < parallel; i++ {
			if _, err := r.nc.Write(write(i)); err != nil {
				t.Errorf("send write %d: %v", i, err)
				return
			}
		}
	}()
	seen := map[uint64]bool{}
	for range parallel {
		e, cookie := r.reply()
		if e != 0 || cookie >= parallel || seen[cookie] {
			t.Fatalf("reply error %d cookie %d", e, cookie)
		}
		seen[cookie] = true
	}
	if giveUp.Err() != nil {
		t.Fatal("the writes after a held one were not served while it was held")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range parallel {
		if got := m.data[i*4096 : (i+1)*4096]; !bytes.Equal(got, bytes.Repeat([]byte{byte(i + 1)}, 4096)) {
			t.Fatalf("write %d: wrong data", i)
		}
	}
}

// TestAProtocolViolationBehindAHeldWriteHangsUpAtOnce: a client that breaks
// the protocol is hung up on at once, in-flight requests or not, so that it
// notices. Here the violation is read while a lone write is held in the
// Export: the goroutine the connection began on may be the one serving that
// write, and the read loop that meets the violation another.
func TestAProtocolViolationBehindAHeldWriteHangsUpAtOnce(t *testing.T) {
	m := newMemExport(1 << 20)
	first, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	m.writeHook = func(int64) {
		once.Do(func() { close(first) })
		<-release
	}
	addr := startServer(t, &Server{Exports: exportMap{"rw": m}})
	defer close(release) // before the server's Close, which waits for it
	r := rawDial(t, addr)
	r.open("rw")
	r.request(0, CmdWrite, 1, 0, 4096, make([]byte, 4096))
	<-first
	bad := make([]byte, requestHeaderLen)
	binary.BigEndian.PutUint32(bad, 0x12345678)
	r.write(bad)
	r.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := io.Copy(io.Discard, r.br)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("the server did not hang up while a write was held")
	}
	if n != 0 {
		t.Fatalf("the server sent %d bytes before hanging up", n)
	}
}
