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

// `duplex pair add|resume --wait` takes a pair for refused by its typed
// refused field where the primary gives it, whatever its note's words: a
// refused pair whose note says it otherwise ends the wait with the
// refusal, and a pair not refused whose note begins as a refusal's (a
// copy's failure quoting one) is waited for until duplex.
func TestPairWaitReadsTheTypedRefusal(t *testing.T) {
	yes, no := true, false
	t.Run("refused, worded otherwise", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(control.Status{Session: "s", Role: "primary", Link: "disconnected",
				LastError: "secondary refused the session: the primary's data generation 9a53b8ce58025a46 is not ...",
				Volumes: []control.VolumeStatus{{Name: "vol1", State: "pending", SizeBytes: 1 << 20, CopiedBytes: 1 << 20,
					Refused: &yes, Note: "nothing of this pair reaches the secondary, which turns this primary away: data generation 9a53b8ce58025a46"}}})
		}))
		defer srv.Close()
		err := waitAt(t, srv.URL, time.Minute)
		if err == nil || !strings.Contains(err.Error(), "turns this primary away") || !strings.Contains(err.Error(), "duplex status") {
			t.Errorf("waiting for vol1 at a refused primary: %v, want the refusal and where to see the ways on", err)
		}
	})
	t.Run("not refused, a note like a refusal's", func(t *testing.T) {
		var polls atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			st := control.Status{Session: "s", Role: "primary", Link: "connected",
				Volumes: []control.VolumeStatus{{Name: "vol1", State: "duplex", SizeBytes: 1 << 20, CopiedBytes: 1 << 20, Refused: &no}}}
			if polls.Add(1) <= 3 {
				st.Link = "disconnected"
				st.Volumes[0].State = "pending"
				st.Volumes[0].Note = control.RefusedNote + " was the copy's last failure; it is tried again"
			}
			json.NewEncoder(w).Encode(st)
		}))
		defer srv.Close()
		if err := waitAt(t, srv.URL, time.Minute); err != nil {
			t.Errorf("waiting for vol1 at a primary not refused: %v (%d polls), want it duplex", err, polls.Load())
		}
	})
}

// waitAt waits for vol1 to be duplex at the status served at url.
func waitAt(t *testing.T, url string, patience time.Duration) error {
	t.Helper()
	at := control.Endpoint{Addr: strings.TrimPrefix(url, "http://")}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out bytes.Buffer
	return waitDuplex(ctx, at, []string{"vol1"}, patience, &out)
}
