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
