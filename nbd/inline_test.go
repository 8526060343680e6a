package nbd

import (
	"bytes"
	"context"
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
