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
// it shows, and the bytes its writes hold.
type DrillResult struct {
	NBD             string `json:"nbd,omitempty"`
	Group           uint64 `json:"group,omitempty"`
	ConsistencyTime string `json:"consistency_time,omitempty"`
	ScratchBytes    int64  `json:"scratch_bytes"`
	Error           string `json:"error,omitempty"`
}

func (s *Server) drill(w http.ResponseWriter, r *http.Request) {
	serveCall(s, w, r, "drill", "drills run at a running secondary", s.Drill)
}

// Drill sends a DrillRequest to a secondary's control address.
func Drill(ctx context.Context, at Endpoint, token string, dr DrillRequest) (DrillResult, error) {
	return postOK[DrillResult](ctx, at, token, "/v1/drill", "drill", dr)
}
