// Command nbdfloor serves one image file through Duplex's NBD server with
// nothing behind it but the volume: no capture, no sidefile, no mover. Run
// in the pinned topology of the primary-side benchmark beside nbdkit and the
// Duplex primary, it splits the primary's CPU per write into the Go NBD
// server's own share (the protocol, the runtime's scheduler and netpoller,
// its monitor thread) and the share of replication.
//
//	nbdfloor -listen 127.0.0.1:10899 -file IMAGE
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"duplex/internal/schedpolicy"
	"duplex/internal/sysmon"
	"duplex/nbd"
	"duplex/volume"
)

func main() {
	// As the primary runs (packages sysmon and schedpolicy), so that
	// the floor is its own.
	sysmon.KeepAwake()
	_, _ = schedpolicy.Batch()
	listen := flag.String("listen", "127.0.0.1:10899", "NBD listen address")
	file := flag.String("file", "", "image file to serve (its size is the export's)")
	flag.Parse()
	if err := run(*listen, *file); err != nil {
		fmt.Fprintln(os.Stderr, "nbdfloor:", err)
		os.Exit(1)
	}
}

func run(listen, file string) error {
	fi, err := os.Stat(file)
	if err != nil {
		return err
	}
	v, err := volume.Open(file, fi.Size())
	if err != nil {
		return err
	}
	defer v.Close()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	s := &nbd.Server{Exports: exports{export{v}}}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	go func() {
		<-sig
		s.Close()
	}()
	return s.Serve(ln)
}

type exports struct{ e export }

func (x exports) Lookup(name string) (nbd.Export, bool) { return x.e, true }
func (x exports) Names() []string                       { return []string{"floor"} }

// export is the volume alone.
type export struct{ v *volume.Volume }

func (e export) Size() int64                         { return e.v.Size() }
func (e export) ReadOnly() bool                      { return false }
func (e export) ReadAt(p []byte, off int64) error    { return e.v.ReadAt(p, off) }
func (e export) WriteAt(p []byte, off int64) error   { return e.v.WriteAt(p, off) }
func (e export) WriteZeroes(off, length int64) error { return e.v.WriteZeroes(off, length) }
func (e export) Trim(off, length int64) error        { return e.v.Trim(off, length) }
func (e export) Flush() error                        { return e.v.Flush() }
