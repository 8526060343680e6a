package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"duplex/nbd"
	"duplex/workload"
)

// NBDTarget makes a set of NBD exports a workload target. nbd.Client serves
// one request at a time, so each volume gets a pool of connections and a
// write takes a free one: with as many connections as workload clients, no
// client waits for another's reply.
type NBDTarget struct {
	pools []chan *nbd.Client
	all   []*nbd.Client
	conns []net.Conn
	// Base is added to every offset, so that runs against the same volumes
	// can write disjoint regions.
	Base int64
}

// DialTarget opens conns connections to each export of names at addr.
func DialTarget(addr string, names []string, conns int) (*NBDTarget, error) {
	t := &NBDTarget{}
	for _, name := range names {
		pool := make(chan *nbd.Client, conns)
		for range conns {
			// Dialled here rather than by nbd.Dial so that Abort can close
			// the socket under a request that never gets its reply.
			nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
			if err != nil {
				t.Close()
				return nil, fmt.Errorf("nbd %s/%s: %w", addr, name, err)
			}
			c, err := nbd.NewClient(nc, name)
			if err != nil {
				nc.Close()
				t.Close()
				return nil, fmt.Errorf("nbd %s/%s: %w", addr, name, err)
			}
			t.all = append(t.all, c)
			t.conns = append(t.conns, nc)
			pool <- c
		}
		t.pools = append(t.pools, pool)
	}
	return t, nil
}

// WriteAt implements workload.Target.
func (t *NBDTarget) WriteAt(ctx context.Context, vol int, p []byte, off int64) error {
	var c *nbd.Client
	select {
	case c = <-t.pools[vol]:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { t.pools[vol] <- c }()
	return c.WriteAt(p, t.Base+off)
}

// Abort closes every socket at once: writes waiting for a reply (a primary
// whose sidefile is full and stays full) fail instead of blocking forever.
// Close still has to be called.
func (t *NBDTarget) Abort() {
	for _, nc := range t.conns {
		nc.Close()
	}
}

// Close closes every connection.
func (t *NBDTarget) Close() {
	for _, c := range t.all {
		c.Close()
	}
}

// Images opens image files for reading, in volume order.
type Images struct {
	files []*os.File
}

// OpenImages opens the files at paths read-only.
func OpenImages(paths []string) (*Images, error) {
	im := &Images{}
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			im.Close()
			return nil, err
		}
		im.files = append(im.files, f)
	}
	return im, nil
}

// Reader returns a workload.Reader of the images, offset by base bytes.
func (im *Images) Reader(base int64) workload.Reader {
	return func(vol int, p []byte, off int64) error {
		_, err := im.files[vol].ReadAt(p, base+off)
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%s: read past the end at %d", im.files[vol].Name(), base+off)
		}
		return err
	}
}

// Close closes the files.
func (im *Images) Close() {
	for _, f := range im.files {
		f.Close()
	}
}

// DiffBlocks counts the blockSize blocks that differ between two files in the
// size bytes from off.
func DiffBlocks(a, b string, off, size int64, blockSize int) (int, error) {
	fa, err := os.Open(a)
	if err != nil {
		return 0, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return 0, err
	}
	defer fb.Close()
	const chunk = 1 << 20
	ba, bb := make([]byte, chunk), make([]byte, chunk)
	diff := 0
	for pos := int64(0); pos < size; pos += chunk {
		n := int(min(chunk, size-pos))
		if _, err := fa.ReadAt(ba[:n], off+pos); err != nil {
			return 0, fmt.Errorf("%s: %w", a, err)
		}
		if _, err := fb.ReadAt(bb[:n], off+pos); err != nil {
			return 0, fmt.Errorf("%s: %w", b, err)
		}
		for i := 0; i < n; i += blockSize {
			j := min(i+blockSize, n)
			if !bytes.Equal(ba[i:j], bb[i:j]) {
				diff++
			}
		}
	}
	return diff, nil
}
