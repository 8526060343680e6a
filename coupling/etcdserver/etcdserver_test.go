package etcdserver

import (
	"strings"
	"testing"

	"duplex/internal/testenv"
)

type syncBuffer = testenv.LogBuffer

// freeURL is an http URL on a reserved port (testenv.FreeAddr) for an etcd
// to listen on: it binds later, and again when a test restarts it.
func freeURL(t *testing.T) string {
	t.Helper()
	return "http://" + testenv.FreeAddr(t)
}

// TestCloseLogsNoError: a server stopped as duplex etcd stops it (Ctrl-C)
// logs nothing at its default level, error: etcd logged each of its
// listeners' "use of closed network connection" and "server closed" as an
// error with a stack trace, so a clean stop read as four failures.
func TestCloseLogsNoError(t *testing.T) {
	var logs syncBuffer
	srv, err := Start(t.TempDir(), freeURL(t), freeURL(t), "error", &logs)
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
	if got := logs.String(); strings.TrimSpace(got) != "" {
		t.Errorf("a clean stop logged:\n%s", got)
	}
}
