package control

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// DrillRequest starts a failover drill at a running secondary: writable
// NBD exports of its volumes as of At (RFC 3339 or -15m; empty: the group
// applied now), whose writes are kept apart from the replicated volumes
// while replication goes on; or, with Stop, ends it and discards its
// writes.
type DrillRequest struct {
	At   string `json:"at,omitempty"`
	Stop bool   `json:"stop,omitempty"`
}

// DrillResult is the answer: the drill's NBD address, the group and time
// it shows, and the bytes its writes hold.
type DrillResult struct {
	NBD             string `json:"nbd,omitempty"`
	Group           uint64 `json:"group,omitempty"`
	ConsistencyTime string `json:"consistency_time,omitempty"`
	ScratchBytes    int64  `json:"scratch_bytes"`
	Error           string `json:"error,omitempty"`
}

func (s *Server) drill(w http.ResponseWriter, r *http.Request) {
	reply := func(code int, res DrillResult) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(res)
	}
	if !s.authorized(w, r, "drill") {
		return
	}
	if s.Drill == nil {
		reply(http.StatusNotFound, DrillResult{Error: "drills run at a running secondary"})
		return
	}
	var req DrillRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil {
		reply(http.StatusBadRequest, DrillResult{Error: fmt.Sprintf("drill request: %v", err)})
		return
	}
	res, err := s.Drill(req)
	if err != nil {
		res.Error = err.Error()
		reply(http.StatusConflict, res)
		return
	}
	reply(http.StatusOK, res)
}

// Drill sends a DrillRequest to a secondary's control address.
func Drill(ctx context.Context, at Endpoint, token string, dr DrillRequest) (DrillResult, error) {
	body, err := json.Marshal(dr)
	if err != nil {
		return DrillResult{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, at.url("/v1/drill"), strings.NewReader(string(body)))
	if err != nil {
		return DrillResult{}, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := at.do(req)
	if err != nil {
		return DrillResult{}, fmt.Errorf("drill: the secondary's control address %s: %w", at, err)
	}
	defer resp.Body.Close()
	var res DrillResult
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&res); err != nil {
		return DrillResult{}, fmt.Errorf("drill: %s", resp.Status)
	}
	if resp.StatusCode != http.StatusOK {
		return res, fmt.Errorf("drill: %s", res.Error)
	}
	return res, nil
}
