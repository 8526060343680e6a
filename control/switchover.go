package control

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// PromoteRequest asks a running secondary to promote itself in place, for a
// planned switchover: the primary has stopped its writes and every one it
// acknowledged is in Group, which the secondary has journaled (the
// consistency time the primary heard for it, ConsistencyTime, may be that of
// the empty groups formed after it, which are not journaled: the group is
// what the secondary checks). The secondary refuses, changing nothing, unless
// it holds that group and can apply every group it journaled; otherwise it
// fences (the primary is cut off), applies, records the promotion, and
// serves its volumes read-write as `duplex promote` does.
//
// ID names the request: the secondary answers every delivery of one ID as
// it answered the first, and a request cancelled (CancelPromotion) before it
// was carried out never is. An answer lost on the way back (a reset, the
// client's deadline) thus leaves the primary a way to know: it cancels the
// request, and the answer to that says whether the site is promoted, or
// never will be by that request.
type PromoteRequest struct {
	Session         string `json:"session"`
	Group           uint64 `json:"group"`
	ConsistencyTime int64  `json:"consistency_time_ns"`
	ID              string `json:"id,omitempty"`
}

// The states a PromoteResult reports the site in.
const (
	// PromoteDone: the site is promoted (PromotedAt says since when).
	PromoteDone = "promoted"
	// PromoteRefused: the request was refused, or cancelled, and will
	// never be carried out; the site is a secondary that takes its primary,
	// nothing changed.
	PromoteRefused = "refused"
	// PromoteFenced: the site is fenced and not promoted: it takes no
	// primary, and serves no writes either, until the operator acts.
	PromoteFenced = "fenced"
)

// CancelRequest asks a site to make sure the promotion request ID is never
// carried out; the answer (a PromoteResult) says what the site is once no
// promotion is under way there.
type CancelRequest struct {
	Session string `json:"session"`
	ID      string `json:"id"`
}

// PromoteResult answers a PromoteRequest: what the promoted volumes hold.
type PromoteResult struct {
	PromotedAt      string `json:"promoted_at,omitempty"`
	Group           uint64 `json:"group,omitempty"`
	ConsistencyTime int64  `json:"consistency_time_ns,omitempty"`
	Generation      string `json:"generation,omitempty"`
	// State is one of PromoteDone, PromoteRefused and PromoteFenced; empty
	// from a site that predates it, whose refusal says nothing for sure.
	State string `json:"state,omitempty"`
	Error string `json:"error,omitempty"`
}

// SwitchoverResult answers a switchover at the primary: the other site holds
// everything this one acknowledged, as of Group and ConsistencyTime, and is
// the session's primary since PromotedAt. Pause is how long writes were
// held here, from the moment the last write was let through to the other
// site serving read-write: the downtime a client sees.
type SwitchoverResult struct {
	Group           uint64  `json:"group,omitempty"`
	ConsistencyTime string  `json:"consistency_time,omitempty"`
	PromotedAt      string  `json:"promoted_at,omitempty"`
	PausedAt        string  `json:"paused_at,omitempty"`
	PauseSeconds    float64 `json:"pause_seconds,omitempty"`
	// DrainSeconds is how long the drain before the pause took, while
	// writes went on.
	DrainSeconds float64 `json:"drain_seconds,omitempty"`
	// Warning says what is amiss after a switchover that took place: the
	// new primary did not answer as one in time.
	Warning string `json:"warning,omitempty"`
	Error   string `json:"error,omitempty"`
}

func (s *Server) promote(w http.ResponseWriter, r *http.Request) {
	serveCall(s, w, r, "promote", "this site is not a running secondary: it cannot be promoted in place", s.Promote)
}

func (s *Server) cancelPromote(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(w, r, "promote") {
		return
	}
	var req CancelRequest
	if err := decodeRequest(r, &req); err != nil {
		writeJSON(w, http.StatusBadRequest, PromoteResult{Error: fmt.Sprintf("cancel request: %v", err)})
		return
	}
	if s.CancelPromote == nil {
		// A site promoted already (running as the primary now) says so:
		// whichever request did it, the site asking must not serve.
		if s.Status != nil {
			if st := s.Status(); st.PromotedAt != "" && st.Session == req.Session {
				writeJSON(w, http.StatusOK, PromoteResult{State: PromoteDone, PromotedAt: st.PromotedAt})
				return
			}
		}
		writeJSON(w, http.StatusNotFound, PromoteResult{Error: "this site is neither a running secondary nor a promoted site"})
		return
	}
	res, err := s.CancelPromote(req)
	if err != nil {
		res.Error = err.Error()
		writeJSON(w, http.StatusConflict, res)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) switchover(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(w, r, "switchover") {
		return
	}
	if s.Switchover == nil {
		writeJSON(w, http.StatusNotFound, SwitchoverResult{Error: "this site is not a running primary: a switchover runs at the primary"})
		return
	}
	d := DefaultDrainTimeout
	if v := r.URL.Query().Get("timeout"); v != "" {
		t, err := time.ParseDuration(v)
		if err != nil || t <= 0 {
			writeJSON(w, http.StatusBadRequest, SwitchoverResult{Error: fmt.Sprintf("timeout %q: want a positive duration such as 90s or 5m", v)})
			return
		}
		d = t
	}
	res, err := s.Switchover(r.Context(), d)
	if err != nil {
		res.Error = err.Error()
		writeJSON(w, http.StatusConflict, res)
		return
	}
	if s.Logger != nil {
		s.Logger.Info("switchover done", "promoted_at", res.PromotedAt, "pause_seconds", res.PauseSeconds)
	}
	writeJSON(w, http.StatusOK, res)
}

// PromoteSecondary asks a running secondary to promote itself in place (see
// PromoteRequest).
func PromoteSecondary(ctx context.Context, at Endpoint, token string, pr PromoteRequest) (PromoteResult, error) {
	what := "promote " + at.String()
	res, code, err := post[PromoteResult](ctx, at, token, "/v1/promote", what, pr)
	if err == nil && code != http.StatusOK {
		return res, &RefusedError{What: what, Reason: res.Error, Code: code}
	}
	return res, err
}

// CancelPromotion asks the site at at to make sure the promotion request id
// is never carried out, and what the site is once no promotion is under way
// there (see CancelRequest): an error if it did not say.
func CancelPromotion(ctx context.Context, at Endpoint, token string, cr CancelRequest) (PromoteResult, error) {
	what := "cancel the promotion at " + at.String()
	res, code, err := post[PromoteResult](ctx, at, token, "/v1/promote/cancel", what, cr)
	if err == nil && (code != http.StatusOK || res.State == "") {
		return res, fmt.Errorf("%s: %d %s (%s)", what, code, http.StatusText(code), res.Error)
	}
	return res, err
}

// RefusedError is a control call the site answered with a refusal: it did
// not do what was asked (unlike a call whose answer never came).
type RefusedError struct {
	What, Reason string
	// Code is the HTTP status of the answer.
	Code int
}

func (e *RefusedError) Error() string { return e.What + ": " + e.Reason }

// Switchover asks a primary's control address to hand the session to the
// other site, within timeout; ctx allows the answer AnswerMargin more.
func Switchover(ctx context.Context, at Endpoint, token string, timeout time.Duration) (SwitchoverResult, error) {
	return postOK[SwitchoverResult](ctx, at, token, "/v1/switchover?timeout="+timeout.String(), "switchover", nil)
}
