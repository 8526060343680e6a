//go:build !linux

package nbd

import (
	"io"
	"net"
)

// rawSocket is only done on Linux; elsewhere nc itself serves.
func rawSocket(nc net.Conn) (r io.Reader, w buffersWriter, ok bool) { return nil, nil, false }
