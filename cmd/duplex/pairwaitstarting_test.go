package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
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
	err := waitDuplex(ctx, at, []string{"vol1"}, &out)
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
	err := waitDuplex(ctx, at, []string{"vol1"}, &out)
	if err == nil || !strings.Contains(err.Error(), "refuses this primary") || !strings.Contains(err.Error(), "data generation") ||
		!strings.Contains(err.Error(), "duplex status") {
		t.Errorf("waiting for vol1 at a refused primary: %v (printed %q), want the refusal and where to see the ways on", err, out.String())
	}
}
