//go:build !linux

package nbd

import (
	"io"
	"net"
	"time"
)

// rawSocket is only done on Linux; elsewhere nc itself serves.
func rawSocket(nc net.Conn) (r *rawReader, w buffersWriter, ok bool) { return nil, nil, false }

// rawReader is never made off Linux.
type rawReader struct{ limit int }

func (*rawReader) Read([]byte) (int, error)          { return 0, io.EOF }
func (*rawReader) waitReadable(d time.Duration) bool { return false }
