package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"duplex/control"
)

// `duplex pair add|resume --wait` against a primary that started again
// meanwhile (its status says it starts: no volumes yet) does not say the
// pairs are duplex: the wait ends with the error that the primary starts,
// as it ended when the primary did not answer.
func TestPairWaitDoesNotTakeAStartingPrimaryForDuplex(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(control.Status{Session: "s", Role: "primary", Link: "disconnected",
			Starting: &control.StartingStatus{Since: "2026-12-05T10:00:00Z", Step: "timer.json", StepSeconds: 3}})
	}))
	defer srv.Close()
	at := control.Endpoint{Addr: strings.TrimPrefix(srv.URL, "http://")}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out bytes.Buffer
	err := waitDuplex(ctx, at, []string{"vol1"}, time.Minute, &out)
	if err == nil || !strings.Contains(err.Error(), "starting") {
		t.Errorf("waiting for vol1 to be duplex at a starting primary: %v (printed %q), want the error that it starts", err, out.String())
	}
	if strings.Contains(out.String(), "duplex;") {
		t.Errorf("waiting for vol1 to be duplex at a starting primary printed %q", out.String())
	}
}

// `duplex pair add|resume --wait` at a primary the secondary refuses (a
// new pair state, its copies the secondary's to keep) ends with the
// refusal, which the pair's status note says: before, it drew the copy's
// progress, full once the copy had read the volume into the sidefile,
// and waited for ever, as if the copy went on.
func TestPairWaitEndsWithTheSecondarysRefusal(t *testing.T) {
	const note = "the secondary refuses this primary, so nothing of this pair reaches it, its copy neither (what it shows copied " +
		"is read here, and held): the primary's data generation 9a53b8ce58025a46 is not the generation e5e97863ae1d78ce this " +
		"secondary follows (last_error says the ways on)"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(control.Status{Session: "s", Role: "primary", Link: "disconnected",
			LastError: "secondary refused the session: the primary's data generation 9a53b8ce58025a46 is not ...",
			Volumes:   []control.VolumeStatus{{Name: "vol1", State: "pending", SizeBytes: 1 << 20, CopiedBytes: 1 << 20, Note: note}}})
	}))
	defer srv.Close()
	at := control.Endpoint{Addr: strings.TrimPrefix(srv.URL, "http://")}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out bytes.Buffer
	err := waitDuplex(ctx, at, []string{"vol1"}, time.Minute, &out)
	if err == nil || !strings.Contains(err.Error(), "refuses this primary") || !strings.Contains(err.Error(), "data generation") ||
		!strings.Contains(err.Error(), "duplex status") {
		t.Errorf("waiting for vol1 at a refused primary: %v (printed %q), want the refusal and where to see the ways on", err, out.String())
	}
}

// `duplex pair add|resume --wait` at a primary whose secondary refuses it
// for now (stopped on a disk fault it retries by itself: the status says
// the refusal passes) waits through the refusal: the copy goes on once the
// secondary opens again, and the wait ends when the pair is duplex.
func TestPairWaitWaitsThroughAPassingRefusal(t *testing.T) {
	for _, c := range []struct {
		name     string
		refusals int32
		patience time.Duration
	}{{"passes", 3, 30 * time.Second}, {"outlasts --timeout", 1 << 30, 2 * time.Second}} {
		t.Run(c.name, func(t *testing.T) { pairWaitThroughPassingRefusals(t, c.refusals, c.patience) })
	}
}

// pairWaitThroughPassingRefusals waits, with --timeout patience, for vol1
// at a primary whose first refusals statuses say the secondary refuses it
// for now: the wait ends duplex once it takes the primary again, and with
// the refusal once that lasted past the timeout.
func pairWaitThroughPassingRefusals(t *testing.T, refusals int32, patience time.Duration) {
	var polls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		st := control.Status{Session: "s", Role: "primary", Link: "connected",
			Volumes: []control.VolumeStatus{{Name: "vol1", State: "duplex", SizeBytes: 1 << 20, CopiedBytes: 1 << 20}}}
		if polls.Add(1) <= refusals {
			st.Link, st.RefusalPasses = "disconnected", true
			st.LastError = "secondary refused the session: secondary stopped at group 2: journal group 3: fsync: input/output error; the secondary retries by itself"
			st.Volumes[0].State = "pending"
			st.Volumes[0].Note = control.RefusedNote + ", so nothing of this pair reaches it: secondary stopped at group 2 (last_error says the ways on)"
		}
		json.NewEncoder(w).Encode(st)
	}))
	defer srv.Close()
	at := control.Endpoint{Addr: strings.TrimPrefix(srv.URL, "http://")}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out bytes.Buffer
	start := time.Now()
	err := waitDuplex(ctx, at, []string{"vol1"}, patience, &out)
	took := time.Since(start)
	if refusals < 10 {
		if err != nil || !strings.Contains(out.String(), "duplex;") {
			t.Errorf("waiting for vol1 through a refusal that passes: %v (printed %q, %d polls), want it duplex", err, out.String(), polls.Load())
		}
		return
	}
	if err == nil || !strings.Contains(err.Error(), "refuses this primary") || !strings.Contains(err.Error(), "--timeout") {
		t.Errorf("waiting for vol1 through a refusal that passes for ever: %v (printed %q), want the refusal, for --timeout", err, out.String())
	}
	if took < patience || took > patience+3*time.Second {
		t.Errorf("the wait through a refusal that outlasts --timeout %s ended after %s", patience, took.Round(time.Millisecond))
	}
}
