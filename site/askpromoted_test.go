package site

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"duplex/control"
	"duplex/failover"
)

// A promoted site handing the session back whose promotion answer was
// lost, and whose cancel gets no answer either, asks the other site's
// status whether it took over. The old primary
// running as its secondary says since when the promoted site is primary
// (promoted_at, this site's own promotion): that is no promotion of the
// other site, and the switchover did not happen, where it was taken for
// one, leaving both sites refusing writes.
func TestAskPromotedIgnoresThisSitesOwnPromotion(t *testing.T) {
	at := time.Date(2026, 12, 3, 1, 2, 3, 4, time.UTC).UnixNano()
	p := &Primary{promotion: &failover.Promotion{At: at}}
	var mu sync.Mutex
	st := control.Status{Session: "s", Role: "secondary", PromotedAt: control.FormatTime(at)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/status" {
			http.Error(w, "no answer", http.StatusInternalServerError)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		json.NewEncoder(w).Encode(st)
	}))
	defer srv.Close()
	ep := control.Endpoint{Addr: strings.TrimPrefix(srv.URL, "http://")}
	req := control.PromoteRequest{Session: "s", ID: "r1"}
	if pr := p.settlePromotion(t.Context(), ep, req, time.Now().Add(time.Second)); pr.State == control.PromoteDone {
		t.Errorf("the other site, a secondary saying this site is primary: taken for promoted (%+v)", pr)
	}
	// Once it took over, it says since when it is primary.
	later := control.FormatTime(at + int64(time.Hour))
	mu.Lock()
	st = control.Status{Session: "s", Role: "primary", PromotedAt: later}
	mu.Unlock()
	if pr := p.settlePromotion(t.Context(), ep, req, time.Now().Add(5*time.Second)); pr.State != control.PromoteDone || pr.PromotedAt != later {
		t.Errorf("the other site promoted: %+v, want done at %q", pr, later)
	}
}
