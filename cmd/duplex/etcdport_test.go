package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestAnEtcdURLsPortOutOfRangeIsBadUsage: an etcd --listen or --peer URL
// whose port no listener can take is the command's input, exit 2, found
// before --dir is made. Before: exit 1 with "listen tcp: address 99999:
// invalid port", its --dir made first.
func TestAnEtcdURLsPortOutOfRangeIsBadUsage(t *testing.T) {
	dir := t.TempDir()
	etcdDir := filepath.Join(dir, "etcd")
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"etcd", "--dir", etcdDir, "--listen", "http://127.0.0.1:99999"}, []string{`--listen "http://127.0.0.1:99999"`, "port"}},
		{[]string{"etcd", "--dir", etcdDir, "--peer", "http://127.0.0.1:65536"}, []string{`--peer "http://127.0.0.1:65536"`, "port"}},
	} {
		checkBadUsage(t, tc.args, tc.want...)
	}
	if _, err := os.Stat(etcdDir); err == nil {
		t.Errorf("etcd made its --dir %s, its --listen or --peer refused", etcdDir)
	}
}
