// Package control is a site's control address: HTTP endpoints for status (the
// contract's JSON), Prometheus metrics and, for operators, pair operations.
// It is how `duplex status` and scripts observe the method at work: how far
// the secondary's consistency time trails the primary, how full the sidefile
// is, how many consistency groups were applied.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Status is one site's state, as `duplex status --json` prints it. Fields that
// belong to the other role are omitted.
type Status struct {
	Session         string  `json:"session"`
	Role            string  `json:"role"` // "primary" | "secondary"
	ConsistencyTime string  `json:"consistency_time"`
	LagSeconds      float64 `json:"lag_seconds"`
	Link            string  `json:"link"` // "connected" | "disconnected" | "suspended"

	SidefileBytes      *int64 `json:"sidefile_bytes,omitempty"`
	SidefileLimitBytes *int64 `json:"sidefile_limit_bytes,omitempty"`

	GroupsApplied *uint64 `json:"groups_applied,omitempty"`
	JournalBytes  *int64  `json:"journal_bytes,omitempty"`

	Volumes []VolumeStatus `json:"volumes"`

	// Beyond the contract: helpful when a consistency time stalls.
	Peer           string `json:"peer,omitempty"`
	Laggard        string `json:"laggard_subsystem,omitempty"`
	BytesReplicate uint64 `json:"bytes_replicated"`
	Resends        uint64 `json:"resends,omitempty"`
	CorruptFrames  uint64 `json:"corrupt_frames,omitempty"`
}

// VolumeStatus is one volume of a site.
type VolumeStatus struct {
	Name        string `json:"name"`
	Subsystem   string `json:"subsystem"`
	State       string `json:"state"` // "pending" | "duplex" | "suspended"
	SizeBytes   int64  `json:"size_bytes"`
	CopiedBytes int64  `json:"copied_bytes"`
}

// FormatTime renders a consistency time as the contract wants it: RFC 3339
// with nanoseconds, UTC; the zero time (nothing consistent yet) is "".
func FormatTime(ns int64) string {
	if ns == 0 {
		return ""
	}
	return time.Unix(0, ns).UTC().Format(time.RFC3339Nano)
}

// Lag returns seconds from a consistency time to now (0 if none yet).
func Lag(ns int64, now time.Time) float64 {
	if ns == 0 {
		return 0
	}
	return max(0, now.Sub(time.Unix(0, ns)).Seconds())
}

// Server serves a site's control endpoints.
type Server struct {
	Status  func() Status
	Metrics http.Handler // optional
	Logger  *slog.Logger

	srv *http.Server
}

// Handler returns the HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(s.Status())
	})
	if s.Metrics != nil {
		mux.Handle("GET /metrics", s.Metrics)
	}
	return mux
}

// Serve serves on ln until ctx ends.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s.srv.Shutdown(sctx)
	}()
	if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("control %s: %w", ln.Addr(), err)
	}
	return nil
}

// Fetch asks a site's control address for its status.
func Fetch(ctx context.Context, addr string) (Status, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v1/status", nil)
	if err != nil {
		return Status{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return Status{}, fmt.Errorf("status from %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return Status{}, fmt.Errorf("status from %s: %s: %s", addr, resp.Status, b)
	}
	var st Status
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&st); err != nil {
		return Status{}, fmt.Errorf("status from %s: %w", addr, err)
	}
	return st, nil
}
