package nbd

import (
	"bytes"
	"sync"
	"testing"
)

// keepingExport keeps every payload the server hands it, as a replicating
// export holds a write's data until it has shipped it.
type keepingExport struct {
	*memExport
	mu     sync.Mutex
	given  int      // buffers NewPayload returned
	kept   [][]byte // the payloads of KeepWriteAt, in order
	copied int      // WriteAt calls: payloads the server did not hand over
}

func (k *keepingExport) NewPayload(n int) []byte {
	k.mu.Lock()
	k.given++
	k.mu.Unlock()
	return make([]byte, n)
}

func (k *keepingExport) KeepWriteAt(p []byte, off int64) error {
	k.mu.Lock()
	k.kept = append(k.kept, p)
	k.mu.Unlock()
	return k.memExport.WriteAt(p, off)
}

func (k *keepingExport) WriteAt(p []byte, off int64) error {
	k.mu.Lock()
	k.copied++
	k.mu.Unlock()
	return k.memExport.WriteAt(p, off)
}

// TestKeeperKeepsPayloads: an export that keeps payloads gets every WRITE's
// payload in a buffer of its own NewPayload, through KeepWriteAt, and the
// server never writes into it again: each kept buffer still holds its
// write's data after the later writes and reads of the connection.
func TestKeeperKeepsPayloads(t *testing.T) {
	k := &keepingExport{memExport: newMemExport(1 << 20)}
	addr := startServer(t, &Server{Exports: exportMap{"v": k}, Logger: testLogger(t)})
	c, err := Dial(addr, "v")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var want [][]byte
	for i, n := range []int{512, 4096, 64 << 10, 256 << 10, 4096} {
		p := bytes.Repeat([]byte{byte(i + 1)}, n)
		if err := c.WriteAt(p, int64(i)*4096); err != nil {
			t.Fatal(err)
		}
		want = append(want, p)
		got := make([]byte, n)
		if err := c.ReadAt(got, int64(i)*4096); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, p) {
			t.Fatalf("write %d read back differs", i)
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.copied != 0 || k.given != len(want) || len(k.kept) != len(want) {
		t.Fatalf("WriteAt %d times, NewPayload %d, KeepWriteAt %d; want 0, %d, %d", k.copied, k.given, len(k.kept), len(want), len(want))
	}
	for i, p := range k.kept {
		if !bytes.Equal(p, want[i]) {
			t.Errorf("kept payload %d changed after it was handed over", i)
		}
	}
}
