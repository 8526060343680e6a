package main

import (
	"strings"
	"testing"
	"time"

	"duplex/control"
)

// TestStatusShowsHowLongAgoTheSecondaryAcknowledged: a primary's status
// says how long ago its secondary last acknowledged anything on the link,
// beside the link's state, which stays "connected" behind a partition that
// drops every packet until the silence time; a daemon from before it, or
// a primary not yet heard, shows nothing of it.
func TestStatusShowsHowLongAgoTheSecondaryAcknowledged(t *testing.T) {
	age := 0.25
	var b strings.Builder
	printStatus(&b, control.Status{Session: "s", Role: "primary", ConsistencyTime: "2026-12-03T12:00:00Z", Link: "connected", LinkAckAgeSeconds: &age})
	if !strings.Contains(b.String(), "link-acked:250ms ago") {
		t.Errorf("status lacks link-acked:250ms ago:\n%s", b.String())
	}
	b.Reset()
	printStatus(&b, control.Status{Session: "s", Role: "primary", ConsistencyTime: "2026-12-03T12:00:00Z", Link: "connected"})
	if strings.Contains(b.String(), "link-acked") {
		t.Errorf("status shows link-acked with none reported:\n%s", b.String())
	}
}

// TestLinkHeardByTheLastAcknowledgement: the command line's pair routing
// takes a primary's link as vouching for its secondary when the secondary
// acknowledged anything within max(2 s, 20 intervals), read from
// link_ack_age_seconds where the daemon reports it: a long lag (a backlog
// shipping) with a young acknowledgement is heard, a young lag with an old
// acknowledgement (the last receipt before a partition) is not. A daemon
// from before it is judged by its lag, as before.
func TestLinkHeardByTheLastAcknowledgement(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	const interval = 20 * time.Millisecond
	for _, tc := range []struct {
		name     string
		link     string
		lag, ack *float64
		want     bool
	}{
		{"acknowledged of late, lag long (a backlog)", "connected", f(30), f(0.1), true},
		{"acknowledged long ago, lag short", "connected", f(0.5), f(3), false},
		{"acknowledged of late, no consistency time yet", "connected", nil, f(0.1), true},
		{"acknowledged of late, link down", "disconnected", f(0.5), f(0.1), false},
		{"before the fact: lag short", "connected", f(0.5), nil, true},
		{"before the fact: lag long", "connected", f(30), nil, false},
		{"before the fact: no lag", "connected", nil, nil, false},
	} {
		st := control.Status{Role: "primary", Link: tc.link, LagSeconds: tc.lag, LinkAckAgeSeconds: tc.ack}
		if got := linkHeard(st, interval); got != tc.want {
			t.Errorf("%s: linkHeard %v, want %v", tc.name, got, tc.want)
		}
	}
	// The bound grows with the interval past 2 s.
	st := control.Status{Role: "primary", Link: "connected", LagSeconds: f(0.5), LinkAckAgeSeconds: f(3)}
	if !linkHeard(st, 200*time.Millisecond) {
		t.Error("acknowledged 3 s ago at a 200 ms interval (bound 4 s): not heard")
	}
}
