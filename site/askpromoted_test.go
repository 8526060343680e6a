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
// lost asks the other site's status whether it took over. The old primary
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
		mu.Lock()
		defer mu.Unlock()
		json.NewEncoder(w).Encode(st)
	}))
	defer srv.Close()
	ep := control.Endpoint{Addr: strings.TrimPrefix(srv.URL, "http://")}
	if promotedAt, known := p.askPromoted(ep); promotedAt != "" || !known {
		t.Errorf("the other site, a secondary saying this site is primary: promoted at %q (known %v), want not promoted, known", promotedAt, known)
	}
	// Once it took over, it says since when it is primary.
	later := control.FormatTime(at + int64(time.Hour))
	mu.Lock()
	st = control.Status{Session: "s", Role: "primary", PromotedAt: later}
	mu.Unlock()
	if promotedAt, known := p.askPromoted(ep); promotedAt != later || !known {
		t.Errorf("the other site promoted: %q (known %v), want %q", promotedAt, known, later)
	}
}
