package control

import (
	"context"
	"net/http"
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
// it shows, and what its scratch file holds: its writes (ScratchBytes),
// the before images its point in time needs, and the bound of both
// ([secondary] drill_bytes); and the memory its index of both holds
// (IndexBytes), bounded as a read view's. Failed says why the drill can no
// longer serve (its scratch file full, or its index: reads fail with EIO,
// or writes with ENOSPC), empty while it can.
type DrillResult struct {
	NBD               string `json:"nbd,omitempty"`
	Group             uint64 `json:"group,omitempty"`
	ConsistencyTime   string `json:"consistency_time,omitempty"`
	ScratchBytes      int64  `json:"scratch_bytes"`
	BeforeImageBytes  int64  `json:"before_image_bytes"`
	ScratchLimitBytes int64  `json:"scratch_limit_bytes,omitempty"`
	IndexBytes        int64  `json:"index_bytes"`
	Failed            string `json:"failed,omitempty"`
	Error             string `json:"error,omitempty"`
}

func (s *Server) drill(w http.ResponseWriter, r *http.Request) {
	serveCall(s, w, r, "drill", "drills run at a running secondary", s.Drill)
}

// Drill sends a DrillRequest to a secondary's control address.
func Drill(ctx context.Context, at Endpoint, token string, dr DrillRequest) (DrillResult, error) {
	return postOK[DrillResult](ctx, at, token, "/v1/drill", "drill", dr)
}
