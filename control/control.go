// Package control is a site's control address: HTTP endpoints for status (the
// contract's JSON), Prometheus metrics and, for operators, pair operations.
// It is how `duplex status` and scripts observe the method at work: how far
// the secondary's consistency time trails the primary, how full the sidefile
// is, how many consistency groups were applied.
package control

import (
	"bytes"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strconv"
	"strings"
	"time"
)

// Status is one site's state, as `duplex status --json` prints it. Fields that
// belong to the other role are omitted.
type Status struct {
	Session         string `json:"session"`
	Role            string `json:"role"` // "primary" | "secondary"
	ConsistencyTime string `json:"consistency_time"`
	// JournaledTime, at a primary, is the time through which the secondary
	// journaled and acknowledged every write, where that is past the
	// consistency time (what it recovers to): a resync, or a coupled
	// group's master time, holds the groups after it unapplied.
	JournaledTime string `json:"journaled_time,omitempty"`
	// LagSeconds is null while ConsistencyTime is unknown: a lag of 0
	// would say the secondary is current.
	LagSeconds *float64 `json:"lag_seconds"`
	Link       string   `json:"link"` // "connected" | "disconnected" | "suspended"
	// LinkAckAgeSeconds, at a primary, is how long ago its secondary last
	// acknowledged anything on the link (a Welcome, a receipt of record
	// sets or of an idle primary's heartbeats), absent before the first.
	// It says whether the secondary is heard now: a partition that drops
	// every packet leaves the link "connected" for the mover's silence
	// time, and the lag is long while a backlog ships to a secondary that
	// follows.
	LinkAckAgeSeconds *float64 `json:"link_ack_age_seconds,omitempty"`

	SidefileBytes      *int64 `json:"sidefile_bytes,omitempty"`
	SidefileLimitBytes *int64 `json:"sidefile_limit_bytes,omitempty"`
	// The primary's rate limits as they are now, in bytes per second; 0 is
	// no limit.
	CopyRateLimit *int64 `json:"copy_rate_limit_bytes_per_second,omitempty"`
	LinkRateLimit *int64 `json:"link_rate_limit_bytes_per_second,omitempty"`
	// NoPairs, at a site that is the session's primary and holds no pairs
	// (a promoted site run without the reverse direction), says why and
	// what brings replication back: its role alone would send pair
	// operations, and a read of the rate limits, there.
	NoPairs string `json:"no_pairs,omitempty"`
	// At the primary: what the link compresses record sets with now
	// ("zstd", or "none": not configured, or a secondary that does not
	// take them), and the record sets' plain bytes over the bytes they
	// took on the link, since the primary started (absent until one is
	// sent).
	Compression      string   `json:"compression,omitempty"`
	CompressionRatio *float64 `json:"compression_ratio,omitempty"`
	// BurstWaitSeconds, at the primary, is how long a burst of large
	// writes is held unsent at most ([primary] burst_wait), so that the
	// CPU serves its writes first; 0: never.
	BurstWaitSeconds *float64 `json:"burst_wait_seconds,omitempty"`
	// ActivityLogOff, at the primary, says why this run goes on without
	// its activity log (it could not be opened at start, or written
	// since), and what that means; empty while the log is on.
	ActivityLogOff string `json:"activity_log_off,omitempty"`
	// ActivityLogFlushSeconds, at the primary, is how long the activity
	// log's flush of each volume whose flush has been running for a second
	// or more has been running (its disk may have stopped answering: the
	// volume's regions stay marked meanwhile); absent while none has.
	ActivityLogFlushSeconds map[string]float64 `json:"activity_log_flush_seconds,omitempty"`

	GroupsApplied *uint64 `json:"groups_applied,omitempty"`
	// Group is the last consistency group applied, which the secondary's
	// volumes hold (durable across restarts, unlike groups_applied, which
	// counts this process's).
	Group *uint64 `json:"group,omitempty"`
	// JournaledGroup is the last group journaled at the secondary: ahead
	// of Group by the groups still to apply and those a resync holds.
	JournaledGroup *uint64 `json:"journaled_group,omitempty"`
	JournalBytes   *int64  `json:"journal_bytes,omitempty"`

	// At a secondary that keeps history ([secondary] history): the window
	// duplex recover --at reaches, from the oldest recoverable time (and
	// its group) to the newest (the consistency time), and the bytes the
	// history takes.
	HistoryOldest      string  `json:"history_oldest,omitempty"`
	HistoryOldestGroup *uint64 `json:"history_oldest_group,omitempty"`
	HistoryNewest      string  `json:"history_newest,omitempty"`
	HistoryBytes       *int64  `json:"history_bytes,omitempty"`
	// HistoryOverLimit says that the history is kept over its window or
	// history_bytes, readers of the past holding its old end from a trim,
	// since when and what happens next.
	HistoryOverLimit string `json:"history_over_limit,omitempty"`
	// Drill is the failover drill running at a secondary (duplex drill
	// start), if any: where it serves, the group it shows and the bytes
	// its writes hold.
	Drill *DrillResult `json:"drill,omitempty"`
	// DrillEnded says that a drill ran when the secondary last stopped,
	// and so ended (a drill does not outlive its secondary), until a
	// drill is started or stopped.
	DrillEnded string `json:"drill_ended,omitempty"`

	Volumes []VolumeStatus `json:"volumes"`

	// At the secondary while a resync holds the volumes at the last group
	// before it: the groups journaled (and acknowledged) but not applied,
	// their data bytes, and the volumes whose resync is open.
	HeldGroups *uint64  `json:"held_groups,omitempty"`
	HeldBytes  *int64   `json:"held_bytes,omitempty"`
	Resyncing  []string `json:"resyncing,omitempty"`
	// HoldReleased says, at the secondary, when and why it last gave up a
	// resync's hold for lack of journal room, with the numbers.
	HoldReleased string `json:"hold_released,omitempty"`

	// Beyond the contract: helpful when a consistency time stalls.
	Peer    string `json:"peer,omitempty"`
	Laggard string `json:"laggard_subsystem,omitempty"`
	// BytesReplicate is what duplex_bytes_replicated_total counts: the data
	// (writes and copies) of the updates journaled at the secondary since
	// this site started, as acknowledged at the primary.
	BytesReplicate uint64 `json:"bytes_replicated"`
	// LinkBytesSent, at the primary, is every byte of the frames sent on
	// the link (headers, heartbeats, resends included).
	LinkBytesSent *uint64 `json:"link_bytes_sent,omitempty"`
	Resends       uint64  `json:"resends,omitempty"`
	CorruptFrames uint64  `json:"corrupt_frames,omitempty"`
	// LastError is why the link last failed or the other site last refused
	// (a volume mismatch, another data generation, an update it cannot
	// apply); empty once replication makes progress again.
	LastError string `json:"last_error,omitempty"`
	// LastErrorAt is when LastError happened (RFC 3339): an error that
	// recurs is set again at each retry, so an old time says it has not
	// recurred since.
	LastErrorAt string `json:"last_error_at,omitempty"`
	// RefusalPasses, at a primary the secondary refuses (each pair's note
	// begins with RefusedNote), says that the secondary said the refusal
	// passes (transport.Refusal.Passing): it takes this primary again by
	// itself, with no operator acting (it opens again after a disk fault,
	// writes again a record it could not, ends an apply under way). `pair
	// --wait` waits through it; a refusal that lasts until an operator
	// acts ends the wait.
	RefusalPasses bool `json:"refusal_passes,omitempty"`
	// Refused, at a primary, says that its secondary refuses it, whether
	// or not a pair's note says so: a suspended pair's does not, and a
	// primary whose pairs are all suspended (by hand, or by the session
	// once the sidefile filled while refused) is refused all the same,
	// each resume meeting the refusal.
	Refused bool `json:"refused,omitempty"`
	// Stopped says why the site stopped replicating (the secondary's
	// journal disk is full or failing); "" while it works.
	Stopped string `json:"stopped,omitempty"`
	// GroupsWait, at the secondary, says why journaled groups wait
	// unapplied for a primary (they name a volume its config no longer
	// has), naming the volume and what the operator does; the volumes are
	// not read meanwhile.
	GroupsWait string `json:"groups_wait,omitempty"`
	// DiskWait says what has waited on the site's disk longer than a
	// working disk takes (5s), and since when: at the secondary its
	// journal, volumes or checkpoint; at the primary its activity log's
	// write and the pair state's save. A hung disk returns no error, so
	// nothing stops, and what needs it waits with it.
	DiskWait string `json:"disk_wait,omitempty"`
	// CheckpointOwed, at the secondary, says what a checkpoint could not
	// do and is retried on a backoff, at most every minute: the state
	// file's write (a restart meanwhile replays the journal from the group
	// it names) or the journal's release of its applied segments (they
	// hold their space meanwhile); since when, how many tries, the last
	// error and what a try costs. Empty while nothing is owed.
	CheckpointOwed string `json:"checkpoint_owed,omitempty"`
	// DiskRetry, while the secondary is stopped on a disk fault, says
	// when it opens its journal and volumes again to try once more.
	DiskRetry *DiskRetry `json:"disk_retry,omitempty"`
	// Generation is the data generation the site holds (16 hex digits): the
	// primary's own, the one a secondary follows, or, with Fenced, the one
	// recover started at the secondary.
	Generation string `json:"generation,omitempty"`
	// Fenced: recover fenced the secondary. Not while the fence is under
	// way (it waits for the volumes first), which a restart undoes.
	Fenced bool `json:"fenced,omitempty"`
	// PromotedAt is set at a secondary site that `duplex promote` made the
	// session's primary: since when it is. PromotedFrom is the consistency
	// time its volumes held then; the regions it has written since are
	// each volume's changed_bytes.
	PromotedAt   string `json:"promoted_at,omitempty"`
	PromotedFrom string `json:"promoted_consistency_time,omitempty"`
	// PrimarySite and PrimarySince say, once the roles have changed, which
	// site is the session's primary now ("primary" or "secondary": the
	// config section that describes it) and since when (RFC 3339).
	PrimarySite  string `json:"primary_site,omitempty"`
	PrimarySince string `json:"primary_since,omitempty"`
	// SwitchedOverAt is set at an old primary that `duplex switchover`
	// handed the session to the other site: it serves no writes since.
	SwitchedOverAt string `json:"switched_over_at,omitempty"`
	// SwitchoverInDoubt is set at a primary whose switchover asked the
	// other site to take over and does not know whether it will: the
	// writes are held until it does, and it says why and what to do.
	SwitchoverInDoubt string `json:"switchover_in_doubt,omitempty"`
	// Coupling is set at the secondary of a session in a coupled group
	// ([coupling]).
	Coupling *CouplingStatus `json:"coupling,omitempty"`
	// Starting is set while the site starts (see ServeStarting): it has
	// not read its state yet, and nothing above but Session, Role and
	// Link ("disconnected") is known; every call that changes its state
	// is refused until it runs.
	Starting *StartingStatus `json:"starting,omitempty"`
}

// CouplingStatus is a coupled secondary's view of its group.
type CouplingStatus struct {
	Group   string   `json:"group"`
	Members []string `json:"members"`
	// MasterTime is the group's master consistency time as last read (RFC
	// 3339), "" while it is unknown; AppliedThrough the time this
	// secondary may apply through, the highest master time it saw.
	MasterTime     string `json:"master_time"`
	AppliedThrough string `json:"applied_through"`
	// Laggard is the member whose time is the master time, silent for
	// LaggardSilentSeconds (since its time last advanced); LaggardGone once
	// its lease of life expired.
	Laggard              string  `json:"laggard,omitempty"`
	LaggardSilentSeconds float64 `json:"laggard_silent_seconds"`
	LaggardGone          bool    `json:"laggard_gone,omitempty"`
	// Held says why the master time does not advance ("" while it does),
	// since HeldSince.
	Held      string `json:"held,omitempty"`
	HeldSince string `json:"held_since,omitempty"`
	// AddUnfinished says why this session's add to the group, cut short
	// and its moment forgotten by etcd, is not finished yet, and what to
	// do: a group recovery is refused until it is.
	AddUnfinished string `json:"add_unfinished,omitempty"`
	// GatedGroups are the groups journaled here past AppliedThrough.
	GatedGroups uint64 `json:"gated_groups"`
	// JournalFullSince is when the gated groups left the journal's file
	// system no room for another: the secondary acknowledges nothing, and
	// its primary paces, until the master time moves or there is room.
	JournalFullSince string `json:"journal_full_since,omitempty"`
	RecoveryTime     string `json:"recovery_time,omitempty"`
}

// DiskRetry is a secondary's retries after a disk fault stopped it.
type DiskRetry struct {
	// Attempt is how many times the secondary has stopped on its disk, or
	// failed to open again, since it last ran clean.
	Attempt int `json:"attempt"`
	// Error is the disk's error that stopped it, or that the last attempt
	// to open it again failed with.
	Error string `json:"error"`
	// Next is when it closes what it has open and opens it again (RFC 3339).
	Next string `json:"next"`
}

// VolumeStatus is one volume of a site.
type VolumeStatus struct {
	Name        string `json:"name"`
	Subsystem   string `json:"subsystem"`
	State       string `json:"state"` // "pending" | "duplex" | "suspended"
	SizeBytes   int64  `json:"size_bytes"`
	CopiedBytes int64  `json:"copied_bytes"`
	// CopyBytes and CopyLeftBytes, at the primary, are a pending pair's
	// planned copy (an initial copy, a resync, a rejoin's) and what of it is
	// still to read: CopiedBytes counts from the volume's size less the plan,
	// which shows neither. Said for every pending pair, 0 included: a plan
	// of none (a resume with nothing changed, its end put off for the
	// timer's lease) and none left are states, not a daemon without them.
	CopyBytes     *int64 `json:"copy_bytes,omitempty"`
	CopyLeftBytes *int64 `json:"copy_left_bytes,omitempty"`
	// CopyEndAwaitsSecondary says a pending pair's copy was read whole: it
	// is duplex once the secondary acknowledges the copy's end.
	CopyEndAwaitsSecondary bool `json:"copy_end_awaits_secondary,omitempty"`
	// ConsistencyTime is this volume's own last-consistent time at the
	// secondary (for a suspended pair, when it was suspended).
	ConsistencyTime string `json:"consistency_time,omitempty"`
	// ConsistencyTimeLowerBound, at the primary, says ConsistencyTime is
	// the time the last run stored, reported while the secondary has
	// acknowledged nothing to this one (a restart, the secondary not
	// reached since): the secondary holds the volume as of it or a later
	// time, which the primary learns when it answers. A duplex pair's time
	// is stored every 10 s at most, and the secondary may have journaled
	// groups whose acknowledgement the last run never got. Never for a
	// pair awaiting the other site's rejoin (RejoinOwed): its time is the
	// promotion's, and that site holds no later one of this site's.
	ConsistencyTimeLowerBound bool  `json:"consistency_time_lower_bound,omitempty"`
	ResyncedBytes             int64 `json:"resynced_bytes,omitempty"`
	// Refused, at the primary, says whether the secondary refuses this
	// primary so that nothing of this pair reaches it (Note then begins
	// with RefusedNote and says why). A primary sets it for every pair, true
	// or false; nil is a daemon from before it, whose note alone says so.
	Refused *bool `json:"refused,omitempty"`
	// Auto is set for a pair the session suspended itself: it resumes by
	// itself once the secondary takes record sets again. Reason says why the
	// session suspended it, Auto or not: a pair whose copy's read of the
	// primary volume hung waits for the operator's resume.
	Auto   bool   `json:"auto,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Note says, at the primary, why a suspended pair does not resume, or
	// why a pending pair's copy does not go on (its last try failed, and
	// it waits to be tried again).
	Note string `json:"note,omitempty"`
	// Consistency says, at the secondary, in words what the volume's copy
	// is: "consistent as of T (group G)", "consistent as of its suspension
	// time T", "not consistent: initial copy not complete".
	Consistency string `json:"consistency,omitempty"`
	// ChangedBytes, at a promoted site, is what the regions written since
	// the promotion cover: what a rejoin copies from it.
	ChangedBytes *int64 `json:"changed_bytes,omitempty"`
	// RejoinOwed, at a site promoted to run as the primary of the reverse
	// direction (or promoted back), says the pair awaits the old primary's
	// rejoin request, which names the regions where that site may hold
	// writes this one never had: its resume is refused until then, and
	// Note says the way forward.
	RejoinOwed bool `json:"rejoin_owed,omitempty"`
}

// RefusedNote begins the note of a pair at a primary the secondary
// refuses (a new pair state, another data generation, a fence): nothing
// of the pair reaches it, and `pair --wait` ends with it.
const RefusedNote = "the secondary refuses this primary"

// FormatTime renders a consistency time as the contract wants it: RFC 3339
// with nanoseconds, UTC; the zero time (nothing consistent yet) is "".
func FormatTime(ns int64) string {
	if ns == 0 {
		return ""
	}
	return time.Unix(0, ns).UTC().Format(time.RFC3339Nano)
}

// ParseTime reads a past time as recover --at and NAME@TIME exports take
// it: RFC 3339, or a duration before now written with a minus sign ("-15m",
// "-1h30m").
func ParseTime(s string, now time.Time) (time.Time, error) {
	if rel, ok := strings.CutPrefix(s, "-"); ok {
		d, err := time.ParseDuration(rel)
		if err != nil {
			return time.Time{}, fmt.Errorf("%q: not a duration before now such as -15m: %w", s, err)
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: not an RFC 3339 time (2026-01-02T15:04:05Z) or a duration before now (-15m)", s)
	}
	return t, nil
}

// FormatWall formats a wall-clock time as FormatTime does ("" for the zero
// time).
func FormatWall(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return FormatTime(t.UnixNano())
}

// Lag returns seconds from a consistency time to now, or NaN if there is
// none yet: Prometheus's unknown, which no threshold matches and an absent()
// or NaN check catches, where 0 would pass for a current secondary.
func Lag(ns int64, now time.Time) float64 {
	if ns == 0 {
		return math.NaN()
	}
	return max(0, now.Sub(time.Unix(0, ns)).Seconds())
}

// PairOps are the operator's pair operations at the primary.
type PairOps interface {
	Add(vol string) error
	Suspend(ctx context.Context, vol string, drain bool) error
	Resume(vol string) error
	// ResumeInconsistent resumes accepting an inconsistent secondary copy
	// until the resync completes (when its journal cannot hold the resync).
	ResumeInconsistent(vol string) error
	Delete(vol string) (time.Time, error)
}

// AllPairOps suspend and resume every pair of the session as one operation,
// at one point of the common timer: one pair after another while writes go
// on would leave the secondary in a state the primary never held.
type AllPairOps interface {
	SuspendAll(ctx context.Context, drain bool) ([]string, error)
	ResumeAll() ([]string, error)
}

// AllPairsResult answers an operation on every pair: the pairs it changed.
type AllPairsResult struct {
	Op      string   `json:"op"`
	Volumes []string `json:"volumes"`
	Error   string   `json:"error,omitempty"`
}

// Server serves a site's control endpoints.
type Server struct {
	Status  func() Status
	Metrics http.Handler // optional
	Pairs   PairOps      // optional: pair operations (primary)
	// NoPairs, if set, refuses pair operations and rate changes instead
	// of the default, which sends them to the primary: at a primary with
	// no pairs that would send the operator back here.
	NoPairs string
	// Fence, if set, stops replication into this site (secondary) and
	// returns its consistency time; an error means the fence is not durable.
	Fence func() (int64, error)
	// SetRates, if set, changes the primary's copy and link rate limits
	// (those not nil; bytes per second, 0: no limit) and returns both.
	SetRates func(copyRate, linkRate *int64) (Rates, error)
	// History, if set, is served at /v1/history for the status page's
	// charts; the site samples into it.
	History *History
	// Changes, if set (a promoted site), is served at /v1/changes: the
	// promotion and the regions changed since, for a rejoin.
	Changes func() (Changes, error)
	// Rejoin, if set (a promoted site running as the primary of the
	// reverse direction), takes the regions an old primary that rejoins
	// may hold writes of that this site never had, adds them durably to
	// the changed regions of each suspended pair, and resumes the pairs:
	// the resync copies their union to the old primary.
	Rejoin func(RejoinRequest) (RejoinResult, error)
	// Promote, if set (a running secondary), promotes the site in place
	// for a planned switchover: see PromoteRequest.
	Promote func(PromoteRequest) (PromoteResult, error)
	// CancelPromote, if set (a running secondary), cancels a promotion
	// request: see CancelRequest. Unset, a promoted site answers that it
	// is promoted.
	CancelPromote func(CancelRequest) (PromoteResult, error)
	// Switchover, if set (the primary), hands the session to the other
	// site within the timeout: see SwitchoverResult.
	Switchover func(ctx context.Context, timeout time.Duration) (SwitchoverResult, error)
	// Drill, if set (a running secondary), starts or stops a failover
	// drill: see DrillRequest.
	Drill func(DrillRequest) (DrillResult, error)
	// Sites are both sites of the session, for the status page.
	Sites []Site
	// Token guards every mutating call; without it they are all refused.
	Token string
	// TLS, if set, makes the control address HTTPS only: a plain HTTP
	// request is answered 400 and served nothing.
	TLS    *tls.Config
	Logger *slog.Logger
	// Early, if set, is what has answered on the control address while
	// the site started (ServeStarting): Serve takes it over.
	Early *Starting

	srv *http.Server
	// changes admits the calls that change the site's state until its
	// stop begins (StopChanges).
	changes changeGate
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
	// The status page reads what `duplex status` reads, and needs no
	// token: it never asks for one, so it cannot leak it.
	index, assets := pageHandler()
	mux.Handle("GET /{$}", index)
	mux.Handle("GET /page/", assets)
	mux.HandleFunc("GET /v1/sites", s.sites)
	if s.Changes != nil {
		mux.HandleFunc("GET /v1/changes", func(w http.ResponseWriter, r *http.Request) {
			ch, err := s.Changes()
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(ch)
		})
	}
	if s.History != nil {
		mux.HandleFunc("GET /v1/history", s.history)
	}
	mux.HandleFunc("POST /v1/pairs/{volume}/{op}", s.changing(s.pairOp))
	mux.HandleFunc("POST /v1/all-pairs/{op}", s.changing(s.allPairsOp))
	mux.HandleFunc("POST /v1/fence", s.changing(s.fence))
	mux.HandleFunc("POST /v1/rate", s.changing(s.rate))
	mux.HandleFunc("POST /v1/rejoin", s.changing(s.rejoin))
	mux.HandleFunc("POST /v1/promote", s.changing(s.promote))
	mux.HandleFunc("POST /v1/promote/cancel", s.changing(s.cancelPromote))
	mux.HandleFunc("POST /v1/switchover", s.changing(s.switchover))
	mux.HandleFunc("POST /v1/drill", s.changing(s.drill))
	// Profiles, for finding a hot path under a real load (go tool pprof
	// http://127.0.0.1:PORT/debug/pprof/profile on the site's host). They
	// show stacks, command lines and memory contents' shape, and a profile
	// costs CPU: other hosts need the token.
	mux.HandleFunc("/debug/pprof/", s.profiles(pprof.Index))
	mux.HandleFunc("/debug/pprof/profile", s.profiles(pprof.Profile))
	mux.HandleFunc("/debug/pprof/trace", s.profiles(pprof.Trace))
	return mux
}

// profiles serves h to a client on this machine (a loopback peer asking for
// a loopback host), and to any other only with the control token.
func (s *Server) profiles(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !fromLoopback(r) && !s.authorized(w, r, "profiling from another host") {
			return
		}
		h(w, r)
	}
}

// fromLoopback reports whether the request came over a loopback address and
// names a loopback host: a web page whose DNS name was rebound to 127.0.0.1,
// read by a browser on this machine, asks for its own name.
func fromLoopback(r *http.Request) bool {
	remote, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	if ip := net.ParseIP(remote); ip == nil || !ip.IsLoopback() {
		return false
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// PairResult is the answer to a pair operation.
type PairResult struct {
	Volume string `json:"volume"`
	Op     string `json:"op"`
	// ConsistentAsOf is, for delete, the last time the volume's secondary
	// copy was consistent.
	ConsistentAsOf string `json:"consistent_as_of,omitempty"`
	Error          string `json:"error,omitempty"`
}

// authorized checks the control token of a mutating call, answering it if not.
func (s *Server) authorized(w http.ResponseWriter, r *http.Request, what string) bool {
	fail := func(code int, msg string) bool {
		writeJSON(w, code, map[string]string{"error": msg})
		return false
	}
	if s.Token == "" {
		return fail(http.StatusForbidden, what+" is disabled: the session has no control_token_file")
	}
	got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if subtle.ConstantTimeCompare([]byte(got), []byte(s.Token)) != 1 {
		if s.Logger != nil {
			s.Logger.Warn("refused a control call without the control token", "remote", r.RemoteAddr, "call", what)
		}
		return fail(http.StatusUnauthorized, "missing or wrong control token: the caller's must be the one in the file "+
			"this site's control_token_file names (the session config's, as the site read it at its start)")
	}
	// Sessions may share a token: the caller's check of the site's status
	// before the call says nothing of what takes it.
	if want := r.Header.Get(SessionHeader); want != "" {
		if st := s.Status(); st.Session != "" && st.Session != want {
			return fail(http.StatusConflict, fmt.Sprintf("the site at %s answers as the %s of session %q, not of session %q, which the call is for: "+
				"it takes no call of another session's; check the control address the call was sent to", r.Host, st.Role, st.Session, want))
		}
	}
	return true
}

// SessionHeader names the session a call that changes a site's state is
// for (Endpoint.Session).
const SessionHeader = "Duplex-Session"

func (s *Server) fence(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(w, r, "fence") {
		return
	}
	if s.Fence == nil {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	t, err := s.Fence()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]string{"consistency_time": FormatTime(t)})
}

// Rates are the primary's rate limits in bytes per second (0: no limit),
// and the answer to a change of them. In a request, a field left out (null)
// keeps its rate.
type Rates struct {
	Copy  int64  `json:"copy_bytes_per_second"`
	Link  int64  `json:"link_bytes_per_second"`
	Error string `json:"error,omitempty"`
}

type rateRequest struct {
	Copy *int64 `json:"copy_bytes_per_second"`
	Link *int64 `json:"link_bytes_per_second"`
}

func (s *Server) rate(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(w, r, "pair rate") {
		return
	}
	if s.SetRates == nil {
		writeJSON(w, http.StatusNotFound, Rates{Error: s.noPairs("this site has no rate limits (they pace the primary)")})
		return
	}
	var req rateRequest
	if err := decodeRequest(r, &req); err != nil {
		writeJSON(w, http.StatusBadRequest, Rates{Error: fmt.Sprintf("rate request: %v", err)})
		return
	}
	if req.Copy == nil && req.Link == nil {
		writeJSON(w, http.StatusBadRequest, Rates{Error: "rate request names neither the copy nor the link rate"})
		return
	}
	res, err := s.SetRates(req.Copy, req.Link)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, Rates{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// SetRates asks a primary's control address to change its copy and link
// rate limits (those not nil; bytes per second, 0: no limit), and returns
// both as they now are.
func SetRates(ctx context.Context, at Endpoint, token string, copyRate, linkRate *int64) (Rates, error) {
	return postOK[Rates](ctx, at, token, "/v1/rate", "pair rate", rateRequest{Copy: copyRate, Link: linkRate})
}

// FenceSecondary asks a running secondary to stop accepting its primary.
func FenceSecondary(ctx context.Context, at Endpoint, token string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, at.url("/v1/fence"), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := at.do(req)
	if err != nil {
		return fmt.Errorf("fence %s: %w", at, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		// A refusal before the fence's own handler (the token, a stop
		// begun) is JSON; the fence's own errors are text.
		var refusal struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &refusal) == nil && refusal.Error != "" {
			return fmt.Errorf("fence %s: %s", at, refusal.Error)
		}
		return fmt.Errorf("fence %s: %s: %s", at, resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}

// noPairs is the refusal of a pair operation or a rate change at a site
// without pairs: NoPairs if set, else def.
func (s *Server) noPairs(def string) string {
	if s.NoPairs != "" {
		return s.NoPairs
	}
	return def
}

func (s *Server) pairOp(w http.ResponseWriter, r *http.Request) {
	vol, op := r.PathValue("volume"), r.PathValue("op")
	reply := func(code int, res PairResult) {
		res.Volume, res.Op = vol, op
		writeJSON(w, code, res)
	}
	if !s.authorized(w, r, "pair "+op) {
		return
	}
	if s.Pairs == nil {
		reply(http.StatusNotFound, PairResult{Error: s.noPairs("this site has no pairs (pair operations run at the primary)")})
		return
	}
	var err error
	var res PairResult
	switch op {
	case "add":
		err = s.Pairs.Add(vol)
	case "suspend":
		drain := r.URL.Query().Get("drain") == "1"
		ctx, cancel, terr := drainContext(r)
		if terr != nil {
			reply(http.StatusBadRequest, PairResult{Error: terr.Error()})
			return
		}
		err = s.Pairs.Suspend(ctx, vol, drain)
		cancel()
	case "resume":
		err = s.Pairs.Resume(vol)
	case "resume-inconsistent":
		err = s.Pairs.ResumeInconsistent(vol)
	case "delete":
		var t time.Time
		t, err = s.Pairs.Delete(vol)
		if err == nil && t.UnixNano() > 0 {
			res.ConsistentAsOf = t.UTC().Format(time.RFC3339Nano)
		}
	default:
		reply(http.StatusBadRequest, PairResult{Error: "unknown operation: want add, suspend, resume or delete"})
		return
	}
	if err != nil {
		reply(http.StatusConflict, PairResult{Error: err.Error()})
		return
	}
	if s.Logger != nil {
		s.Logger.Info("pair operation", "op", op, "volume", vol)
	}
	reply(http.StatusOK, res)
}

func (s *Server) allPairsOp(w http.ResponseWriter, r *http.Request) {
	op := r.PathValue("op")
	reply := func(code int, res AllPairsResult) {
		res.Op = op
		writeJSON(w, code, res)
	}
	if !s.authorized(w, r, "pair "+op+" --all") {
		return
	}
	all, ok := s.Pairs.(AllPairOps)
	if !ok {
		reply(http.StatusNotFound, AllPairsResult{Error: s.noPairs("this site cannot change every pair at once (pair operations run at the primary)")})
		return
	}
	var vols []string
	var err error
	switch op {
	case "suspend":
		ctx, cancel, terr := drainContext(r)
		if terr != nil {
			reply(http.StatusBadRequest, AllPairsResult{Error: terr.Error()})
			return
		}
		vols, err = all.SuspendAll(ctx, r.URL.Query().Get("drain") == "1")
		cancel()
	case "resume":
		vols, err = all.ResumeAll()
	default:
		reply(http.StatusBadRequest, AllPairsResult{Error: "unknown operation on every pair: want suspend or resume"})
		return
	}
	if err != nil {
		reply(http.StatusConflict, AllPairsResult{Volumes: vols, Error: err.Error()})
		return
	}
	if s.Logger != nil {
		s.Logger.Info("pair operation on every pair", "op", op, "volumes", vols)
	}
	reply(http.StatusOK, AllPairsResult{Volumes: vols})
}

// DefaultDrainTimeout bounds a suspend's drain when the request names no
// timeout: like the primary's drain at a stop, long enough to ship a full
// sidefile over a slow link, and never for ever.
const DefaultDrainTimeout = 5 * time.Minute

// AnswerMargin is kept of a caller's deadline for the answer to come back
// once the drain has given up: a caller that allows a drain d sets its
// deadline d + AnswerMargin ahead.
const AnswerMargin = 5 * time.Second

// drainContext bounds a suspend's drain by the request's timeout parameter
// (a Go duration), DefaultDrainTimeout without one. The cause says which
// bound ran out, for the operator's error.
func drainContext(r *http.Request) (context.Context, context.CancelFunc, error) {
	d := DefaultDrainTimeout
	if v := r.URL.Query().Get("timeout"); v != "" {
		t, err := time.ParseDuration(v)
		if err != nil || t <= 0 {
			return nil, nil, fmt.Errorf("timeout %q: want a positive duration such as 90s or 5m", v)
		}
		d = t
	}
	ctx, cancel := context.WithTimeoutCause(r.Context(), d, fmt.Errorf("%w after %s", ErrDrainTimeout, d))
	return ctx, cancel, nil
}

// ErrDrainTimeout is the cause of a drain that ran out of time.
var ErrDrainTimeout = errors.New("the drain's timeout ran out")

// drainQuery is the query of a suspend: with drain, a timeout that lets the
// answer reach a caller whose ctx has a deadline before it gives up. The
// drain gets what the deadline leaves and no more, truncated, never
// rounded up: a drain that ended past the caller's --timeout would suspend
// the pair though the command's bound ran out. Nothing left, it gets 1ns
// (the site takes no timeout of 0), in which it is done only if nothing
// is held.
func drainQuery(ctx context.Context, drain bool) string {
	if !drain {
		return ""
	}
	q := "?drain=1"
	if dl, ok := ctx.Deadline(); ok {
		d := max(time.Until(dl)-AnswerMargin, time.Nanosecond)
		if d > time.Millisecond {
			d = d.Truncate(time.Millisecond)
		}
		q += "&timeout=" + d.String()
	}
	return q
}

// AllPairsOp asks a primary's control address to suspend or resume every
// pair as one operation. A suspend with drain gives up draining in time to
// answer before ctx's deadline, DefaultDrainTimeout without one.
func AllPairsOp(ctx context.Context, at Endpoint, token, op string, drain bool) (AllPairsResult, error) {
	return postOK[AllPairsResult](ctx, at, token, "/v1/all-pairs/"+op+drainQuery(ctx, drain), "pair "+op+" --all", nil)
}

// PairOp asks a primary's control address to run a pair operation. A
// suspend with drain gives up draining in time to answer before ctx's
// deadline, DefaultDrainTimeout without one.
func PairOp(ctx context.Context, at Endpoint, token, vol, op string, drain bool) (PairResult, error) {
	// Errors name the operation as the operator gives it.
	what, verb := "pair "+op+" "+vol, "pair "+op
	if op == "resume-inconsistent" {
		what, verb = "pair resume "+vol+" --inconsistent", "pair resume --inconsistent"
	}
	res, code, err := post[PairResult](ctx, at, token, "/v1/pairs/"+vol+"/"+op+drainQuery(ctx, drain), what, nil)
	if err == nil && code != http.StatusOK {
		err = pairRefusal(what, verb, strings.TrimSuffix(op, "-inconsistent"), vol, res.Error)
	}
	return res, err
}

// pairRefusal is the error of the pair operation what (verb without the
// volume) that the site refused for reason. The pair manager's refusals
// name the volume, some the operation too, as its log needs: the error
// says each once.
func pairRefusal(what, verb, op, vol, reason string) error {
	switch {
	case strings.HasPrefix(reason, vol+" "):
		return fmt.Errorf("%s: %s", verb, reason)
	case strings.HasPrefix(reason, op+" "+vol+": "):
		return fmt.Errorf("%s: %s", what, strings.TrimPrefix(reason, op+" "+vol+": "))
	case strings.HasPrefix(reason, strconv.Quote(vol)+": "):
		return fmt.Errorf("%s: %s", what, strings.TrimPrefix(reason, strconv.Quote(vol)+": "))
	}
	return refusal(what, reason)
}

// ErrEmptyToken is wrapped by ReadToken's error for a token file that holds
// nothing but white space: read as no token, mutating calls would go
// without one.
var ErrEmptyToken = errors.New("is empty")

// ReadToken reads a control token file, refusing one that others can read:
// the token authorises suspending replication.
func ReadToken(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("control token: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("control token %s is accessible to other users (mode %v): chmod 600 it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("control token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("control token %s %w", path, ErrEmptyToken)
	}
	return tok, nil
}

// Serve serves on ln until ctx ends; with Early set, it takes over the
// address Early serves (ln is then Early's) rather than serve ln itself.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.Early != nil {
		return s.Early.serveAs(ctx, s)
	}
	warnReachable(ln, s.TLS, s.Logger)
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, TLSConfig: s.TLS}
	shut := make(chan struct{})
	go func() {
		defer close(shut)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if s.srv.Shutdown(sctx) != nil {
			s.srv.Close()
		}
	}()
	if err := serveOn(s.srv, ln, s.TLS); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("control %s: %w", ln.Addr(), err)
	}
	// Serve returns as Shutdown begins, before the handlers under way have
	// answered: they read the site's state, which the caller closes next.
	<-shut
	return nil
}

// Changes is what a promoted site tells the old primary that rejoins it:
// its promotion and, per volume, the regions it wrote since (an encoded
// bitmap, package bitmap).
type Changes struct {
	PromotedAt      string `json:"promoted_at"`
	ConsistencyTime int64  `json:"consistency_time_ns"`
	Generation      string `json:"generation"`
	Follows         string `json:"follows"`
	// HeldGroups were journaled at the promoted site after
	// ConsistencyTime and never applied there (a resync was in progress).
	HeldGroups uint64            `json:"held_groups,omitempty"`
	Volumes    map[string][]byte `json:"volumes"`
	// CouplingLeaveOwed names the coupled group the site's switchover
	// took the session out of, while etcd has not yet answered that leave:
	// a rejoin waits for it, since it couples the session again.
	CouplingLeaveOwed string `json:"coupling_leave_owed,omitempty"`
	// CouplingLeaveUnread, with CouplingLeaveOwed, says why the site does
	// not make that leave by itself (its record cannot be read, or names
	// another group or session than its config), naming the file and what
	// to do: the leave is owed all the same, so the rejoin waits until the
	// operator acts.
	CouplingLeaveUnread string `json:"coupling_leave_unread,omitempty"`
}

// RejoinRequest is what an old primary that rejoins tells the promoted
// site: the generation it follows from now on (the promoted site's), and
// per volume the regions it may hold writes of that the promoted site
// never had (an encoded bitmap, package bitmap), which the promoted site
// copies to it.
type RejoinRequest struct {
	Generation string            `json:"generation"`
	Volumes    map[string][]byte `json:"volumes"`
}

// RejoinResult answers a RejoinRequest: the pairs resumed, and per volume
// the bytes its resync copies.
type RejoinResult struct {
	Resumed   []string         `json:"resumed"`
	CopyBytes map[string]int64 `json:"copy_bytes"`
	Error     string           `json:"error,omitempty"`
}

func (s *Server) rejoin(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(w, r, "rejoin") {
		return
	}
	if s.Rejoin == nil {
		http.Error(w, "this site is not a promoted site running as the primary of the reverse direction", http.StatusNotFound)
		return
	}
	var req RejoinRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<30)).Decode(&req); err != nil {
		http.Error(w, "rejoin: "+err.Error(), http.StatusBadRequest)
		return
	}
	res, err := s.Rejoin(req)
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		res.Error = err.Error()
		w.WriteHeader(http.StatusConflict)
	}
	json.NewEncoder(w).Encode(res)
}

// RequestRejoin tells the promoted site at at that the old primary rejoins
// it (see RejoinRequest), with the session's control token.
func RequestRejoin(ctx context.Context, at Endpoint, token string, req RejoinRequest) (RejoinResult, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return RejoinResult{}, err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, at.url("/v1/rejoin"), bytes.NewReader(body))
	if err != nil {
		return RejoinResult{}, err
	}
	hreq.Header.Set("Authorization", "Bearer "+token)
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := at.do(hreq)
	if err != nil {
		return RejoinResult{}, fmt.Errorf("rejoin at %s: %w", at, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	var res RejoinResult
	if resp.Header.Get("Content-Type") == "application/json" {
		if err := json.Unmarshal(b, &res); err != nil && resp.StatusCode == http.StatusOK {
			return RejoinResult{}, fmt.Errorf("rejoin at %s: %w", at, err)
		}
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		return res, nil
	case resp.StatusCode == http.StatusNotFound:
		// Asking again changes nothing until that site is restarted so.
		res.Error = "the site is not a promoted site running as the primary of the reverse direction: " +
			"set [primary] listen and journal in its config and run duplex promote there again"
		return res, fmt.Errorf("rejoin at %s: %s", at, res.Error)
	case res.Error != "":
		return res, &RefusedError{What: "rejoin at " + at.String(), Reason: res.Error, Code: resp.StatusCode}
	}
	return res, fmt.Errorf("rejoin at %s: %s: %s", at, resp.Status, bytes.TrimSpace(b))
}

// FetchChanges asks a promoted site at addr for its Changes.
func FetchChanges(ctx context.Context, at Endpoint) (Changes, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, at.url("/v1/changes"), nil)
	if err != nil {
		return Changes{}, err
	}
	resp, err := at.do(req)
	if err != nil {
		return Changes{}, fmt.Errorf("changed regions from %s: %w", at, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if resp.StatusCode == http.StatusNotFound {
			return Changes{}, fmt.Errorf("the site at %s is not a promoted site", at)
		}
		return Changes{}, fmt.Errorf("changed regions from %s: %s: %s", at, resp.Status, b)
	}
	var ch Changes
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<30)).Decode(&ch); err != nil {
		return Changes{}, fmt.Errorf("changed regions from %s: %w", at, err)
	}
	return ch, nil
}

// Fetch asks a site's control address for its status.
func Fetch(ctx context.Context, at Endpoint) (Status, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, at.url("/v1/status"), nil)
	if err != nil {
		return Status{}, err
	}
	resp, err := at.do(req)
	if err != nil {
		return Status{}, fmt.Errorf("status from %s: %w", at, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if resp.StatusCode == http.StatusNotFound {
			// Every duplex site serves its status, from its start on.
			return Status{}, fmt.Errorf("status from %s: %s: what answers there serves no duplex status: not a control address "+
				"(a site's control address is its config's primary.control or secondary.control)", at, resp.Status)
		}
		if body := strings.TrimSpace(string(b)); body != "" {
			return Status{}, fmt.Errorf("status from %s: %s: %s", at, resp.Status, body)
		}
		return Status{}, fmt.Errorf("status from %s: %s", at, resp.Status)
	}
	var st Status
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&st); err != nil {
		return Status{}, fmt.Errorf("status from %s: %w", at, err)
	}
	return st, nil
}
