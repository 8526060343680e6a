package nbd

import (
	"errors"
	"sync"
	"testing"
	"time"
)

// pinningExport gives each connection a memExport of its own, filled with
// the connection's number, and counts the ones still open.
type pinningExport struct {
	*memExport
	mu     sync.Mutex
	pinned int
	open   int
	fail   bool
}

func (p *pinningExport) Pin() (Export, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail {
		return nil, errors.New("no view")
	}
	p.pinned++
	p.open++
	m := newMemExport(len(p.data))
	for i := range m.data {
		m.data[i] = byte(p.pinned)
	}
	return &pinnedMem{memExport: m, p: p}, nil
}

type pinnedMem struct {
	*memExport
	p *pinningExport
}

func (x *pinnedMem) Close() error {
	x.p.mu.Lock()
	x.p.open--
	x.p.mu.Unlock()
	return nil
}

// TestPinner: each connection to a Pinner export reads the export its Pin
// gave it, and it is closed when the connection ends; a Pin that fails
// refuses the connection. Its connections are not advertised as
// interchangeable (no NBD_FLAG_CAN_MULTI_CONN).
func TestPinner(t *testing.T) {
	p := &pinningExport{memExport: newMemExport(4096)}
	addr := startServer(t, &Server{Exports: exportMap{"v": p}, Logger: testLogger(t)})
	var cs []*Client
	for i := 1; i <= 2; i++ {
		c, err := Dial(addr, "v")
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
		b := make([]byte, 512)
		if err := c.ReadAt(b, 0); err != nil {
			t.Fatal(err)
		}
		if b[0] != byte(i) || b[511] != byte(i) {
			t.Fatalf("connection %d reads %d: not the export its Pin gave it", i, b[0])
		}
		// Each connection reads its own export: a client told it may
		// spread its reads over several connections (nbdcopy does) would
		// read a mix of them.
		if c.Flags()&FlagCanMultiConn != 0 {
			t.Fatalf("connection %d: a Pinner export is advertised as NBD_FLAG_CAN_MULTI_CONN", i)
		}
	}
	for _, c := range cs {
		c.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		p.mu.Lock()
		open := p.open
		p.mu.Unlock()
		if open == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d pinned exports still open after their connections ended", open)
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.mu.Lock()
	p.fail = true
	p.mu.Unlock()
	if c, err := Dial(addr, "v"); err == nil {
		c.Close()
		t.Fatal("a connection whose Pin failed was served")
	}
}
