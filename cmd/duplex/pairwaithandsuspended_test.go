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

// waitFor runs the wait of pair add|resume --wait for vols against a
// primary whose status is st, with --timeout patience.
func waitFor(t *testing.T, vols []string, patience time.Duration, st control.Status) (error, string, time.Duration) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(st)
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out bytes.Buffer
	start := time.Now()
	err := waitDuplex(ctx, control.Endpoint{Addr: strings.TrimPrefix(srv.URL, "http://")}, vols, patience, &out)
	return err, out.String(), time.Since(start)
}

// TestPairWaitShowsAPairSuspendedByHandAsSuch: a pair an operator
// suspended while pair add|resume --wait waits for it (or the session
// suspended for an operator to resume) is shown suspended, not copied
// whole (the primary reports a suspended pair's copied bytes as its size),
// and the wait ends at once, saying its copy waits for duplex pair resume:
// nothing goes on until an operator acts. Before, the progress line drew
// the pair at 100 %, and the wait went on for --timeout to end saying
// "the copy goes on at the primary once it can".
func TestPairWaitShowsAPairSuspendedByHandAsSuch(t *testing.T) {
	const patience = 10 * time.Second
	byHand := control.VolumeStatus{Name: "vol2", State: "suspended", SizeBytes: 1 << 20, CopiedBytes: 1 << 20}
	copying := control.VolumeStatus{Name: "vol1", State: "pending", SizeBytes: 1 << 20, CopiedBytes: 1 << 19}
	for _, tc := range []struct {
		name string
		vols []control.VolumeStatus
	}{
		{"vol2 alone", []control.VolumeStatus{byHand}},
		{"vol1 copying, vol2 suspended by hand", []control.VolumeStatus{copying, byHand}},
		{"vol2 suspended by the session for an operator", []control.VolumeStatus{{Name: "vol2", State: "suspended", SizeBytes: 1 << 20,
			CopiedBytes: 1 << 20, Reason: "its copy's read of the primary volume hung"}}},
	} {
		st := control.Status{Session: "s", Role: "primary", Link: "connected", ConsistencyTime: journaled(1), Volumes: tc.vols}
		var names []string
		for _, v := range tc.vols {
			names = append(names, v.Name)
		}
		err, out, took := waitFor(t, names, patience, st)
		if err == nil || took > 3*time.Second {
			t.Errorf("%s: the wait ended after %s with %v; want it to end at once, saying vol2 waits for its resume", tc.name, took.Round(time.Millisecond), err)
			continue
		}
		for _, want := range []string{"vol2", "suspended", "duplex pair resume vol2"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: %v; want it to say %q", tc.name, err, want)
			}
		}
		if strings.Contains(err.Error(), "goes on at the primary once it can") || strings.Contains(err.Error(), "--timeout") {
			t.Errorf("%s: %v; a pair suspended by hand goes on only once resumed", tc.name, err)
		}
		if strings.Contains(out, "100.0%") || !strings.Contains(out, "vol2 suspended") {
			t.Errorf("%s: progress %q; want vol2 shown suspended, not copied whole", tc.name, out)
		}
		if len(tc.vols) == 2 && !strings.Contains(out, "50.0%") {
			t.Errorf("%s: progress %q; want vol1's copy shown, half done", tc.name, out)
		}
	}
}
