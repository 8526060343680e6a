package nbd

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"duplex/internal/testenv"
)

// These tests drive the server with the clients users actually run. Each
// skips, saying what to install, when its tool is missing.

// toolServer serves a 64 MiB read-write "disk", a 1 MiB read-only "ro"
// (both file-backed) and returns the base URI.
func toolServer(t *testing.T) (uri string, disk, ro *fileExport) {
	disk = newFileExport(t, 64<<20, false)
	ro = newFileExport(t, 1<<20, true)
	srv := &Server{
		Exports:     exportMap{"disk": disk, "ro": ro},
		Description: func(name string) string { return "test export " + name },
	}
	return "nbd://" + startServer(t, srv), disk, ro
}

func TestNbdinfo(t *testing.T) {
	testenv.NeedTool(t, "nbdinfo", "libnbd-bin")
	uri, _, _ := toolServer(t)

	info := testenv.NBDInfo(t, uri+"/disk")
	if info.Protocol != "newstyle-fixed" || len(info.Exports) != 1 {
		t.Fatalf("nbdinfo: %+v", info)
	}
	e := info.Exports[0]
	if e.Size != 64<<20 || e.ReadOnly || !e.CanFlush || !e.CanFUA || !e.CanTrim || !e.CanZero || !e.CanMultiConn {
		t.Errorf("disk: %+v", e)
	}
	if e.MaxBlockSize != DefaultMaxRequest {
		t.Errorf("block_size_maximum %d, want %d", e.MaxBlockSize, DefaultMaxRequest)
	}
	if e.Description != "test export disk" {
		t.Errorf("description %q", e.Description)
	}

	info = testenv.NBDInfo(t, uri+"/ro")
	if len(info.Exports) != 1 {
		t.Fatalf("nbdinfo: %+v", info)
	}
	e = info.Exports[0]
	if e.Size != 1<<20 || !e.ReadOnly || e.CanTrim || e.CanZero || e.CanFUA || !e.CanMultiConn {
		t.Errorf("ro: %+v", e)
	}

	info = testenv.NBDInfo(t, "--list", uri)
	var names []string
	for _, e := range info.Exports {
		names = append(names, e.Name)
	}
	if strings.Join(names, ",") != "disk,ro" {
		t.Errorf("--list names %q, want disk,ro", names)
	}

	// An unknown export is refused, not served.
	if out, err := testenv.RunTool(t, "nbdinfo", uri+"/nosuch"); err == nil {
		t.Errorf("nbdinfo of unknown export succeeded:\n%s", out)
	}
}

func TestQemuIO(t *testing.T) {
	testenv.NeedTool(t, "qemu-io", "qemu-utils")
	uri, disk, _ := toolServer(t)
	out := testenv.MustRunTool(t, "qemu-io", "-f", "raw", uri+"/disk",
		"-c", "write -P 0xab 0 1M",
		"-c", "read -P 0xab 0 1M",
		"-c", "discard 0 64k",
		"-c", "read -P 0 0 64k",
		"-c", "write -z 1M 64k",
		"-c", "read -P 0 1M 64k",
		"-c", "write -P 0xcd -f 2M 4k", // FUA
		"-c", "flush",
	)
	if strings.Contains(out, "Pattern verification failed") || strings.Contains(out, "error") {
		t.Fatalf("qemu-io:\n%s", out)
	}
	// The backing file holds what qemu-io saw.
	got := make([]byte, 2<<20+4096)
	if err := disk.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, len(got))
	for i := 64 << 10; i < 1<<20; i++ {
		want[i] = 0xab
	}
	for i := 2 << 20; i < len(want); i++ {
		want[i] = 0xcd
	}
	if !bytes.Equal(got, want) {
		t.Fatal("backing file differs from what qemu-io wrote")
	}

	// The read-only export refuses qemu-io's writes.
	out, err := testenv.RunTool(t, "qemu-io", "-f", "raw", uri+"/ro", "-c", "write -P 1 0 4k")
	if err == nil && !strings.Contains(out, "failed") {
		t.Errorf("write to read-only export did not fail:\n%s", out)
	}
}

func TestNbdcopy(t *testing.T) {
	testenv.NeedTool(t, "nbdcopy", "libnbd-bin")
	uri, disk, _ := toolServer(t)
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	data := make([]byte, 64<<20)
	rand.Read(data)
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// nbdcopy uses several connections when CAN_MULTI_CONN is set, and
	// many requests in flight on each.
	testenv.MustRunTool(t, "nbdcopy", "--flush", src, uri+"/disk")
	testenv.MustRunTool(t, "nbdcopy", uri+"/disk", dst)
	want := sha256.Sum256(data)
	if got := testenv.SHA256File(t, dst); got != want {
		t.Errorf("copied back out: sha256 %x, want %x", got, want)
	}
	if got := testenv.SHA256File(t, disk.f.Name()); got != want {
		t.Errorf("backing file: sha256 %x, want %x", got, want)
	}
}

func TestFio(t *testing.T) {
	testenv.NeedTool(t, "fio", "fio")
	if out, _ := testenv.RunTool(t, "fio", "--enghelp=nbd"); !strings.Contains(out, "uri") {
		t.Skipf("fio has no nbd engine: apt-get install fio (built with libnbd)\n%s", out)
	}
	uri, _, _ := toolServer(t)
	out := testenv.MustRunTool(t, "fio", "--name=t", "--ioengine=nbd", "--uri="+uri+"/disk",
		"--rw=randwrite", "--bs=4k", "--iodepth=16", "--size=32M",
		"--verify=crc32c", "--do_verify=1", "--verify_fatal=1")
	// err= 0 is the job's status; total=8192,8192 says every 4k block
	// written was also read back and verified (a verify failure with
	// verify_fatal would have made fio exit non-zero already).
	if !strings.Contains(out, "err= 0") || !strings.Contains(out, "total=8192,8192") ||
		strings.Contains(out, "verify: bad") || strings.Contains(out, "verify failed") {
		t.Fatalf("fio reported errors:\n%s", out)
	}
}

// clientCertDir writes the files qemu's tls-creds-x509 (endpoint=client)
// and libnbd's tls-certificates directory read: ca-cert.pem, the CA that
// signed the server's certificate, and the client certificate and key of
// client (which may come from another CA). qemu checks its own certificate
// against ca-cert.pem before it connects, so when client is another CA,
// ca-cert.pem holds both: the refusal then has to come from the server.
func clientCertDir(t *testing.T, server, client *testPKI) string {
	t.Helper()
	dir := t.TempDir()
	ca, err := os.ReadFile(filepath.Join(server.dir, "ca-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if client != server {
		b, err := os.ReadFile(filepath.Join(client.dir, "ca-cert.pem"))
		if err != nil {
			t.Fatal(err)
		}
		ca = append(ca, b...)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca-cert.pem"), ca, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct{ from, to string }{
		{filepath.Join(client.dir, "client-cert.pem"), "client-cert.pem"},
		{filepath.Join(client.dir, "client-key.pem"), "client-key.pem"},
	} {
		b, err := os.ReadFile(f.from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f.to), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// tlsToolServer serves toolServer's exports with TLS required.
func tlsToolServer(t *testing.T, pki *testPKI) (addr string, disk *fileExport) {
	disk = newFileExport(t, 64<<20, false)
	ro := newFileExport(t, 1<<20, true)
	srv := &Server{Exports: exportMap{"disk": disk, "ro": ro}, TLS: pki.serverTLS(t)}
	return startServer(t, srv), disk
}

// qemuTLSArgs opens export over TLS with the certificates in dir.
func qemuTLSArgs(addr, export, dir string) []string {
	host, port, _ := net.SplitHostPort(addr)
	return []string{
		"--object", "tls-creds-x509,id=tls0,endpoint=client,dir=" + dir,
		"--image-opts", "driver=nbd,host=" + host + ",port=" + port + ",export=" + export + ",tls-creds=tls0",
	}
}

func TestQemuIOTLS(t *testing.T) {
	testenv.NeedTool(t, "qemu-io", "qemu-utils")
	pki := newTestPKI(t, "duplex test CA")
	addr, disk := tlsToolServer(t, pki)
	good := clientCertDir(t, pki, pki)

	args := append(qemuTLSArgs(addr, "disk", good),
		"-c", "write -P 0x5a 0 1M",
		"-c", "read -P 0x5a 0 1M",
		"-c", "write -z 64k 64k",
		"-c", "read -P 0 64k 64k",
		"-c", "write -P 0xc3 -f 2M 4k", // FUA
		"-c", "flush")
	out := testenv.MustRunTool(t, "qemu-io", args...)
	if strings.Contains(out, "Pattern verification failed") || strings.Contains(out, "error") {
		t.Fatalf("qemu-io over TLS:\n%s", out)
	}
	got := make([]byte, 2<<20+4096)
	if err := disk.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, len(got))
	for i := range 1 << 20 {
		want[i] = 0x5a
	}
	clear(want[64<<10 : 128<<10])
	for i := 2 << 20; i < len(want); i++ {
		want[i] = 0xc3
	}
	if !bytes.Equal(got, want) {
		t.Fatal("backing file differs from what qemu-io wrote over TLS")
	}

	t.Run("plaintext refused", func(t *testing.T) {
		host, port, _ := net.SplitHostPort(addr)
		out, err := testenv.RunTool(t, "qemu-io", "--image-opts", "driver=nbd,host="+host+",port="+port+",export=disk",
			"-c", "write -P 1 0 4k")
		if err == nil && !strings.Contains(out, "failed") {
			t.Fatalf("qemu-io without TLS was served:\n%s", out)
		}
		if !strings.Contains(out, "TLS") {
			t.Errorf("qemu-io's error does not say TLS is required:\n%s", out)
		}
		t.Logf("qemu-io without TLS: %s", strings.TrimSpace(out))
	})

	t.Run("client certificate from another CA refused", func(t *testing.T) {
		other := newTestPKI(t, "other CA")
		out, err := testenv.RunTool(t, "qemu-io", append(qemuTLSArgs(addr, "disk", clientCertDir(t, pki, other)),
			"-c", "write -P 2 0 4k")...)
		if err == nil && !strings.Contains(out, "failed") {
			t.Fatalf("qemu-io with another CA's client certificate was served:\n%s", out)
		}
		t.Logf("qemu-io with another CA's certificate: %s", strings.TrimSpace(out))
	})
	b := make([]byte, 4096)
	if err := disk.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	if b[0] != 0x5a {
		t.Errorf("a refused client changed the export: byte 0 is %#x", b[0])
	}
}

func TestNbdinfoTLS(t *testing.T) {
	testenv.NeedTool(t, "nbdinfo", "libnbd-bin")
	testenv.NeedTool(t, "nbdcopy", "libnbd-bin")
	pki := newTestPKI(t, "duplex test CA")
	addr, disk := tlsToolServer(t, pki)
	good := clientCertDir(t, pki, pki)
	uri := func(export, dir string) string {
		return "nbds://" + addr + "/" + export + "?tls-certificates=" + dir
	}

	info := testenv.NBDInfo(t, uri("disk", good))
	if len(info.Exports) != 1 || info.Exports[0].Size != 64<<20 || info.Exports[0].ReadOnly {
		t.Fatalf("nbdinfo over TLS: %+v", info)
	}
	info = testenv.NBDInfo(t, uri("ro", good))
	if len(info.Exports) != 1 || !info.Exports[0].ReadOnly {
		t.Fatalf("nbdinfo over TLS, read-only export: %+v", info)
	}
	if out := testenv.MustRunTool(t, "nbdinfo", "--list", uri("", good)); !strings.Contains(out, "disk") || !strings.Contains(out, "ro") {
		t.Errorf("nbdinfo --list over TLS:\n%s", out)
	}

	// Data both ways through libnbd over TLS.
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	data := make([]byte, 8<<20)
	rand.Read(data)
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.MustRunTool(t, "nbdcopy", "--flush", src, uri("disk", good))
	got := make([]byte, len(data))
	if err := disk.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("backing file differs from what nbdcopy wrote over TLS")
	}
	testenv.MustRunTool(t, "nbdcopy", uri("disk", good), dst)
	if back, err := os.ReadFile(dst); err != nil || len(back) != 64<<20 || !bytes.Equal(back[:len(data)], data) {
		t.Fatalf("nbdcopy read back over TLS differs (err %v)", err)
	}

	t.Run("plaintext refused", func(t *testing.T) {
		out, err := testenv.RunTool(t, "nbdinfo", "nbd://"+addr+"/disk")
		if err == nil {
			t.Fatalf("nbdinfo without TLS was served:\n%s", out)
		}
		t.Logf("nbdinfo without TLS: %s", strings.TrimSpace(out))
	})
	t.Run("client certificate from another CA refused", func(t *testing.T) {
		other := newTestPKI(t, "other CA")
		out, err := testenv.RunTool(t, "nbdinfo", uri("disk", clientCertDir(t, pki, other)))
		if err == nil {
			t.Fatalf("nbdinfo with another CA's client certificate was served:\n%s", out)
		}
		if !strings.Contains(out, "TLS") && !strings.Contains(out, "certificate") {
			t.Errorf("nbdinfo's error does not point at TLS:\n%s", out)
		}
		t.Logf("nbdinfo with another CA's certificate: %s", strings.TrimSpace(out))
	})
	t.Run("server not trusted", func(t *testing.T) {
		// The client's ca-cert.pem is another CA: libnbd must refuse
		// the server's certificate.
		other := newTestPKI(t, "other CA")
		dir := clientCertDir(t, pki, pki)
		b, err := os.ReadFile(filepath.Join(other.dir, "ca-cert.pem"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "ca-cert.pem"), b, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := testenv.RunTool(t, "nbdinfo", uri("disk", dir))
		if err == nil {
			t.Fatalf("nbdinfo trusted a server certificate its CA did not sign:\n%s", out)
		}
	})
}
