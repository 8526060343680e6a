package control

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// HistoryInterval is how often a site samples its history, and
// HistoryLength how many samples it keeps: the status page charts the last
// 15 minutes.
const (
	HistoryInterval = time.Second
	HistoryLength   = 900
)

// HistorySample is a site's state at one instant: what the status page
// charts. Taking one must stay cheap whatever the number of volumes: it reads
// the site's counters, never a per-volume list.
type HistorySample struct {
	UnixMilli int64 `json:"t"`
	// LagSeconds is left out while the site has no consistency time yet:
	// a lag of 0 would claim the secondary is current.
	LagSeconds *float64 `json:"lag_seconds,omitempty"`
	// SidefileBytes is held for replication at the primary; the secondary
	// has no sidefile and leaves it out.
	SidefileBytes int64 `json:"sidefile_bytes,omitempty"`
	// BytesReplicated is the site's count of duplex_bytes_replicated_total
	// (the data of the updates journaled at the secondary, as acknowledged
	// at the primary): throughput is its rise between samples, and an idle
	// session's is 0 whatever its heartbeats send.
	BytesReplicated uint64 `json:"bytes_replicated"`
}

// History is a fixed ring of a site's last HistoryLength samples, held in
// memory only: a restarted site starts a new chart.
type History struct {
	mu    sync.Mutex
	ring  [HistoryLength]HistorySample
	next  int // where the next sample goes
	count int
}

// Add records a sample. Its time is raised to a millisecond after the last
// sample's if it is not later: the wall clock can step back (NTP, a resumed
// VM), and a page polling with the t of the last sample it holds must still
// get every sample taken after it, not a frozen chart until the clock
// passes its old time again.
func (h *History) Add(s HistorySample) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.count > 0 {
		last := h.ring[(h.next-1+len(h.ring))%len(h.ring)].UnixMilli
		s.UnixMilli = max(s.UnixMilli, last+1)
	}
	h.ring[h.next] = s
	h.next = (h.next + 1) % len(h.ring)
	h.count = min(h.count+1, len(h.ring))
}

// Since returns the samples taken after sinceMilli (Unix milliseconds),
// oldest first: a page that polls passes the time of the last sample it has,
// and gets only what is new.
func (h *History) Since(sinceMilli int64) []HistorySample {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := []HistorySample{}
	for i := range h.count {
		s := h.ring[(h.next-h.count+i+len(h.ring))%len(h.ring)]
		if s.UnixMilli > sinceMilli {
			out = append(out, s)
		}
	}
	return out
}

// LagSample is the lag of a consistency time (Unix nanoseconds, 0: none yet)
// for a HistorySample.
func LagSample(ns int64, now time.Time) *float64 {
	if ns == 0 {
		return nil
	}
	lag := Lag(ns, now)
	return &lag
}

// Run adds a sample every HistoryInterval until ctx ends. sample fills in
// everything but the time.
func (h *History) Run(ctx context.Context, sample func() HistorySample) {
	t := time.NewTicker(HistoryInterval)
	defer t.Stop()
	for {
		s := sample()
		s.UnixMilli = time.Now().UnixMilli()
		h.Add(s)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// HistoryResponse is the answer of GET /v1/history.
type HistoryResponse struct {
	IntervalSeconds float64         `json:"interval_seconds"`
	Capacity        int             `json:"capacity"`
	Samples         []HistorySample `json:"samples"`
}

func (s *Server) history(w http.ResponseWriter, r *http.Request) {
	var since int64
	if v := r.URL.Query().Get("since"); v != "" {
		var err error
		if since, err = strconv.ParseInt(v, 10, 64); err != nil {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(map[string]string{"error": "since: want Unix milliseconds, the t of the last sample held"})
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(HistoryResponse{IntervalSeconds: HistoryInterval.Seconds(), Capacity: HistoryLength,
		Samples: s.History.Since(since)})
}
