package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"duplex/control"
)

// pairWaitAt runs waitDuplex for vol1, with --timeout patience, against a
// primary whose status at the nth poll (from 1) is status(n); the test's own
// bound is 20 s. It returns the error, what was printed and how long the wait
// took.
func pairWaitAt(t *testing.T, patience time.Duration, status func(n int32) control.Status) (error, string, time.Duration) {
	t.Helper()
	var polls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(status(polls.Add(1)))
	}))
	defer srv.Close()
	at := control.Endpoint{Addr: strings.TrimPrefix(srv.URL, "http://")}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out bytes.Buffer
	start := time.Now()
	err := waitDuplex(ctx, at, []string{"vol1"}, patience, &out)
	return err, out.String(), time.Since(start)
}

// journaled is a consistency or journaled time n seconds into a day: one
// that advances with n says the secondary acknowledges groups.
func journaled(n int32) string {
	return control.FormatTime(time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC).Add(time.Duration(n) * time.Second).UnixNano())
}

const dialRefused = "dial tcp 127.0.0.1:20401: connect: connection refused"

// wantEndedWithin checks that a wait with --timeout patience against a copy
// that makes no progress ended after patience, not much later, with an
// error that names --timeout and each of saw (what it saw last).
func wantEndedWithin(t *testing.T, what string, patience time.Duration, err error, out string, took time.Duration, saw ...string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), "--timeout") {
		t.Fatalf("%s: %v after %s (printed %q), want the wait to end for --timeout", what, err, took.Round(time.Millisecond), out)
	}
	for _, s := range saw {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("%s: %v, want it to say %q", what, err, s)
		}
	}
	if took < patience || took > patience+4*time.Second {
		t.Errorf("%s with --timeout %s ended after %s", what, patience, took.Round(time.Millisecond))
	}
}

// `duplex pair add|resume --wait` against a secondary whose disk stays
// broken: it refuses the primary (a refusal it says passes: it retries the
// disk by itself), then is not reached at all while it opens again, then
// refuses again, and so on. Before, each status without the refusal began
// the stretch that --timeout bounds again, so the wait never ended; now it
// ends once the copy has made no progress for --timeout, saying what it saw.
func TestPairWaitEndsAgainstASecondaryThatStaysBroken(t *testing.T) {
	const patience = 2 * time.Second
	err, out, took := pairWaitAt(t, patience, func(n int32) control.Status {
		st := control.Status{Session: "s", Role: "primary", Link: "disconnected", ConsistencyTime: journaled(0),
			LastError: dialRefused,
			Volumes:   []control.VolumeStatus{{Name: "vol1", State: "pending", SizeBytes: 1 << 20, CopiedBytes: 1 << 19}}}
		if n%2 == 1 {
			st.RefusalPasses = true
			st.LastError = "secondary refused the session: secondary stopped at group 2: journal group 3: fsync: input/output error; the secondary retries by itself"
			st.Volumes[0].Note = control.RefusedNote + ", so nothing of this pair reaches it: secondary stopped at group 2 (last_error says the ways on)"
		}
		return st
	})
	wantEndedWithin(t, "waiting for vol1 against a secondary that stays broken", patience, err, out, took, "refuses this primary", "duplex status")
}

// `duplex pair add|resume --wait` with the link down (the secondary not
// reached at all) ends once the copy has made no progress for --timeout,
// naming the link's last error: before, it drew the progress for ever.
func TestPairWaitEndsWhenTheLinkStaysDown(t *testing.T) {
	const patience = 2 * time.Second
	err, out, took := pairWaitAt(t, patience, func(n int32) control.Status {
		return control.Status{Session: "s", Role: "primary", Link: "disconnected", ConsistencyTime: journaled(0),
			LastError: dialRefused, LastErrorAt: journaled(n),
			Volumes: []control.VolumeStatus{{Name: "vol1", State: "pending", SizeBytes: 1 << 20, CopiedBytes: 1 << 19}}}
	})
	wantEndedWithin(t, "waiting for vol1 with the link down", patience, err, out, took, "connection refused", "disconnected", "512.0 KiB of 1.0 MiB")
}

// A copy read into the sidefile while the link is down reaches nothing of
// the secondary: its bytes growing are no progress toward duplex.
func TestPairWaitEndsWhenOnlyTheReadGoesOnWithTheLinkDown(t *testing.T) {
	const patience = 2 * time.Second
	err, out, took := pairWaitAt(t, patience, func(n int32) control.Status {
		return control.Status{Session: "s", Role: "primary", Link: "disconnected", ConsistencyTime: journaled(0),
			LastError: dialRefused,
			Volumes:   []control.VolumeStatus{{Name: "vol1", State: "pending", SizeBytes: 1 << 30, CopiedBytes: int64(n) << 20}}}
	})
	wantEndedWithin(t, "waiting for vol1 read into the sidefile with the link down", patience, err, out, took, "connection refused")
}

// A pair that the session suspended during the wait, to resume it by
// itself, makes no progress while suspended, however well the link goes:
// the wait ends for --timeout, naming its state and reason. Before, it
// waited for ever. (One that waits for an operator's resume ends the wait
// at once: TestPairWaitShowsAPairSuspendedByHandAsSuch.)
func TestPairWaitEndsOnAPairSuspendedMeanwhile(t *testing.T) {
	const patience = 2 * time.Second
	err, out, took := pairWaitAt(t, patience, func(n int32) control.Status {
		return control.Status{Session: "s", Role: "primary", Link: "connected", ConsistencyTime: journaled(n),
			Volumes: []control.VolumeStatus{{Name: "vol1", State: "suspended", SizeBytes: 1 << 20, CopiedBytes: 1 << 19,
				Auto: true, Reason: "the secondary's journal is full"}}}
	})
	wantEndedWithin(t, "waiting for vol1 suspended meanwhile", patience, err, out, took, "suspended", "journal is full")
}

// --timeout bounds a stretch without progress, not the whole wait: a copy
// that goes on (its bytes reach the secondary, which acknowledges them),
// then waits for the secondary's acknowledgement of its end, outlasts it
// and ends duplex. The secondary's acknowledgements move the consistency
// time, or, while a resync holds its groups unapplied, the journaled time
// alone.
func TestPairWaitOutlastsTimeoutWhileTheCopyGoesOn(t *testing.T) {
	const patience = 1500 * time.Millisecond
	for _, held := range []bool{false, true} {
		t.Run(fmt.Sprintf("held=%v", held), func(t *testing.T) {
			err, out, took := pairWaitAt(t, patience, func(n int32) control.Status {
				st := control.Status{Session: "s", Role: "primary", Link: "connected", ConsistencyTime: journaled(n),
					Volumes: []control.VolumeStatus{{Name: "vol1", State: "pending", SizeBytes: 4 << 20, CopiedBytes: min(int64(n), 4) << 20}}}
				if held {
					st.ConsistencyTime, st.JournaledTime = journaled(0), journaled(n)
				}
				if n >= 7 {
					st.Volumes[0].State, st.Volumes[0].ResyncedBytes = "duplex", 4<<20
				}
				return st
			})
			if err != nil || !strings.Contains(out, "duplex;") {
				t.Errorf("waiting for vol1 whose copy goes on for longer than --timeout %s: %v after %s (printed %q), want it duplex",
					patience, err, took.Round(time.Millisecond), out)
			}
		})
	}
}
