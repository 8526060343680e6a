package nbd

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"
)

// fuzzPrefix is a valid client handshake: flags, then NBD_OPT_GO "rw".
func fuzzPrefix(export string) []byte {
	b := binary.BigEndian.AppendUint32(nil, flagCFixedNewstyle|flagCNoZeroes)
	data := infoData(export, infoName, infoBlockSize)
	b = binary.BigEndian.AppendUint64(b, optMagic)
	b = binary.BigEndian.AppendUint32(b, optGo)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

// FuzzServeConnStream feeds arbitrary bytes to a connection as the client
// side of the stream. The server must neither panic nor hang: once the
// client hangs up, serveConn has to return.
func FuzzServeConnStream(f *testing.F) {
	go1 := fuzzPrefix("rw")
	f.Add([]byte{})
	f.Add(go1)
	f.Add(append(go1, requestBytes(0, CmdRead, 1, 0, 512, nil)...))
	f.Add(append(append(go1, requestBytes(CmdFlagFUA, CmdWrite, 1, 512, 8, []byte("abcdefgh"))...),
		requestBytes(0, CmdDisc, 2, 0, 0, nil)...))
	f.Add(append(append(go1, requestBytes(0, CmdTrim, 1, 0, 4096, nil)...),
		requestBytes(CmdFlagNoHole, CmdWriteZeroes, 2, 0, 1<<30, nil)...))
	f.Add(append(fuzzPrefix("ro"), requestBytes(0, CmdWrite, 1, 0, 4, []byte("nope"))...))
	f.Add(append(go1, requestBytes(0, CmdWrite, 1, 0, 0xffffffff, nil)...))
	f.Add(append(binary.BigEndian.AppendUint32(nil, 0), binary.BigEndian.AppendUint64(nil, optMagic)...))
	exportName := binary.BigEndian.AppendUint32(nil, flagCFixedNewstyle)
	exportName = binary.BigEndian.AppendUint64(exportName, optMagic)
	exportName = binary.BigEndian.AppendUint32(exportName, optExportName)
	exportName = binary.BigEndian.AppendUint32(exportName, 2)
	exportName = append(exportName, "rw"...)
	f.Add(append(exportName, requestBytes(0, CmdFlush, 9, 0, 0, nil)...))

	f.Fuzz(func(t *testing.T, stream []byte) {
		fuzzServe(t, &Server{MaxRequest: 8192}, stream)
	})
}

// FuzzServeConnStreamTCP is FuzzServeConnStream over a loopback TCP
// connection, whose socket the server reads with raw system calls (a
// net.Pipe has none): the path where, after a large WRITE, the next header
// is read alone.
func FuzzServeConnStreamTCP(f *testing.F) {
	go1 := fuzzPrefix("rw")
	large := bytes.Repeat([]byte{0xa5}, 64<<10)
	f.Add(append(go1, requestBytes(0, CmdWrite, 1, 0, uint32(len(large)), large)...))
	f.Add(slicesConcat(go1, requestBytes(0, CmdWrite, 1, 0, uint32(len(large)), large),
		requestBytes(0, CmdWrite, 2, 0, uint32(len(large)), large), requestBytes(0, CmdRead, 3, 0, 512, nil)))
	f.Add(slicesConcat(go1, requestBytes(0, CmdWrite, 1, 0, uint32(len(large)), large),
		requestBytes(0, CmdWrite, 2, 512, 8, []byte("abcdefgh"))[:20]))
	f.Add(slicesConcat(go1, requestBytes(0, CmdWrite, 1, 0, uint32(len(large)), large[:1000])))
	small := []byte("abcdefgh")
	f.Add(slicesConcat(go1, requestBytes(0, CmdWrite, 1, 0, 8, small), requestBytes(0, CmdWrite, 2, 1<<63, 8, small),
		requestBytes(0, CmdWrite, 3, 64<<10, 8, small), requestBytes(0, CmdFlush, 4, 0, 0, nil),
		requestBytes(0, CmdWrite, 5, 8, 8, small), requestBytes(0, CmdTrim, 6, 0, 8, nil), requestBytes(0, CmdWrite, 7, 16, 8, small)))
	f.Fuzz(func(t *testing.T, stream []byte) {
		fuzzServeOver(t, &Server{MaxRequest: 8192}, stream, tcpPair)
	})
}

// tcpPair is a connected loopback TCP pair: the client's end, the server's.
func tcpPair(t *testing.T) (client, server net.Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		client.Close()
		t.Fatal(err)
	}
	return client, server
}

// fuzzOption is one option as a client sends it.
func fuzzOption(opt uint32, data []byte) []byte {
	b := binary.BigEndian.AppendUint64(nil, optMagic)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

// FuzzServeConnStreamTLS is FuzzServeConnStream against a server that
// requires TLS: the option decoder's path before NBD_OPT_STARTTLS, the
// upgrade, and a TLS handshake fed whatever follows.
func FuzzServeConnStreamTLS(f *testing.F) {
	flags := binary.BigEndian.AppendUint32(nil, flagCFixedNewstyle|flagCNoZeroes)
	starttls := append(slicesConcat(flags), fuzzOption(optStartTLS, nil)...)
	f.Add(starttls)
	f.Add(fuzzPrefix("rw"))
	f.Add(slicesConcat(flags, fuzzOption(optList, nil), fuzzOption(optStartTLS, []byte("x")), fuzzOption(optStartTLS, nil),
		[]byte{0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00})) // a truncated ClientHello
	f.Add(slicesConcat(flags, fuzzOption(optExportName, []byte("rw"))))
	f.Add(slicesConcat(flags, fuzzOption(optAbort, nil)))
	f.Add(slicesConcat(binary.BigEndian.AppendUint32(nil, 0), fuzzOption(optStartTLS, nil)))
	f.Add(slicesConcat(flags, fuzzOption(optInfo, infoData("ro")), fuzzOption(optStartTLS, nil), bytes.Repeat([]byte{0x16}, 64)))

	pki := newTestPKI(f, "fuzz CA")
	conf := pki.serverTLS(f)
	f.Fuzz(func(t *testing.T, stream []byte) {
		fuzzServe(t, &Server{MaxRequest: 8192, TLS: conf}, stream)
	})
}

// fuzzServe serves stream, as the client's side of a connection, to srv
// with a read-write export "rw" and a read-only "ro". The server must
// neither panic nor hang: once the client hangs up, serveConn has to
// return.
func fuzzServe(t *testing.T, srv *Server, stream []byte) {
	fuzzServeOver(t, srv, stream, func(*testing.T) (net.Conn, net.Conn) { return net.Pipe() })
}

// fuzzServeOver is fuzzServe over the connection pair conns makes.
func fuzzServeOver(t *testing.T, srv *Server, stream []byte, conns func(*testing.T) (client, server net.Conn)) {
	// A Prompter: over TCP the read loop serves buffered writes itself.
	rw := &rangeCheckingPrompter{memExport: newMemExport(64 << 10), t: t}
	ro := newMemExport(4096)
	ro.ro = true
	srv.Exports = exportMap{"rw": rw, "ro": ro}
	client, server := conns(t)
	done := make(chan struct{})
	go func() {
		srv.serveConn(server)
		close(done)
	}()
	// net.Pipe is unbuffered: replies must be drained or the
	// server blocks writing them.
	drained := make(chan struct{})
	go func() {
		io.Copy(io.Discard, client)
		close(drained)
	}()
	client.Write(stream) // fails early if the server hangs up
	if cw, ok := client.(interface{ CloseWrite() error }); ok {
		// Half closed, so that the server reads the whole stream: a TCP
		// socket closed with replies unread resets the connection, and
		// the server's kernel drops what it has not read yet.
		cw.CloseWrite()
	} else {
		client.Close()
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("serveConn did not return after the client hung up")
	}
	client.Close()
	<-drained
}
