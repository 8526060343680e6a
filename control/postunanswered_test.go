package control

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestAPostSentButNeverAnsweredSaysItsEffectIsUnknown: a call that changes
// state, sent whole but not answered before the caller's deadline (a
// suspend whose state save hangs on the site's disk past the margin left
// for its answer), may yet take effect: the error says so, as of a call
// cut mid-call, rather than read as a call that failed. Before: "pair
// suspend vol1: the control address ... did not answer in time: context
// deadline exceeded", not a word of its effect.
func TestAPostSentButNeverAnsweredSaysItsEffectIsUnknown(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
	}))
	defer srv.Close()
	defer close(release)
	// The call must be written whole before the deadline, as a suspend
	// whose save hangs is: a deadline of a fraction of a second may run
	// out first on a loaded machine, the call then never sent.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := PairOp(ctx, Endpoint{Addr: strings.TrimPrefix(srv.URL, "http://")}, "t", "vol1", "suspend", false)
	if err == nil || !strings.Contains(err.Error(), "did not answer in time") || !strings.Contains(err.Error(), "whether it took effect is not known") {
		t.Fatalf("%v; want the call said unanswered in time, and that whether it took effect is not known", err)
	}
}

// TestAPostNeverSentSaysNothingOfItsEffect: a call whose dial did not end
// before the caller's deadline was never sent, and cannot have taken
// effect: its error says nothing of an effect unknown.
func TestAPostNeverSentSaysNothingOfItsEffect(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := PairOp(ctx, Endpoint{Addr: "192.0.2.1:9"}, "t", "vol1", "suspend", false)
	if err == nil || strings.Contains(err.Error(), "took effect") {
		t.Fatalf("%v; want a failure that says nothing of an effect", err)
	}
}
