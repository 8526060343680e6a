package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"duplex/config"
	"duplex/control"
	"duplex/site"
)

// A rejoin whose delivery reaches the promoted site while that site
// stops (refused "stopping: ..."), then while it starts again (refused
// "not yet: starting: ..."), asks it again, as it asks a site that does
// not answer, rather than give the rejoin up as refused.
func TestARejoinAsksAStartingPromotedSiteAgain(t *testing.T) {
	var asked atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch asked.Add(1) {
		case 1:
			w.WriteHeader(http.StatusServiceUnavailable)
			json.NewEncoder(w).Encode(map[string]string{"error": control.ErrStopping.Error() + ": " + control.Stopping("the promoted site")})
			return
		case 2:
			w.WriteHeader(http.StatusServiceUnavailable)
			json.NewEncoder(w).Encode(map[string]string{"error": control.ErrStartingRefusal("the promoted site is starting").Error()})
			return
		}
		json.NewEncoder(w).Encode(control.RejoinResult{Resumed: []string{"vol1"}, CopyBytes: map[string]int64{"vol1": 4096}})
	}))
	defer srv.Close()
	dir := t.TempDir()
	cfg := &config.Config{Session: "s", Dir: dir, ControlTokenFile: filepath.Join(dir, "token")}
	cfg.Secondary.Control = strings.TrimPrefix(srv.URL, "http://")
	if err := os.WriteFile(cfg.ControlTokenFile, []byte("t\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(site.PairStateDir(cfg), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out bytes.Buffer
	err := deliverRejoin(ctx, cfg, "secondary", slog.New(slog.DiscardHandler), site.Rejoined{}, make(chan error, 1), &out)
	if err != nil || asked.Load() != 3 || !strings.Contains(out.String(), "resumed 1 pairs") {
		t.Errorf("a rejoin delivered to a starting promoted site: %v, asked %d times, printed %q; want it asked again and delivered",
			err, asked.Load(), out.String())
	}
}
