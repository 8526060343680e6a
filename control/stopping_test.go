package control

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Serve returns once the calls under way have answered, not as its ctx
// ends: the site closes what they read (a promoted site's changed
// regions, a secondary's journal) as soon as Serve has returned.
func TestServeReturnsOnceTheCallsUnderWayHaveAnswered(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	s := &Server{Status: func() Status { return Status{} }, Changes: func() (Changes, error) {
		close(entered)
		<-release
		return Changes{PromotedAt: "then"}, nil
	}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan struct{})
	go func() { s.Serve(ctx, ln); close(served) }()
	got := make(chan error, 1)
	go func() {
		_, err := FetchChanges(context.Background(), Endpoint{Addr: ln.Addr().String()})
		got <- err
	}()
	<-entered
	cancel()
	// What must not happen, given the time to happen.
	select {
	case <-served:
		t.Error("Serve returned while a call it took had not answered")
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	if err := <-got; err != nil {
		t.Errorf("the call under way when Serve's ctx ended: %v, want its answer", err)
	}
	<-served
}

// stopPairs holds a suspend until its ctx ends, and says with what.
type stopPairs struct {
	fakePairs
	entered  chan struct{}
	cause    chan error
	returned atomic.Bool
}

func (f *stopPairs) Suspend(ctx context.Context, vol string, drain bool) error {
	defer f.returned.Store(true)
	close(f.entered)
	<-ctx.Done()
	f.cause <- context.Cause(ctx)
	return context.Cause(ctx)
}

// Once the site's stop begins (StopChanges), a call under way has its ctx
// ended and answers before StopChanges returns; every call that changes
// the site's state is refused from then on, 503 "stopping", while status
// answers.
func TestStopChangesRefusesChangesAndWaitsForThoseUnderWay(t *testing.T) {
	pairs := &stopPairs{entered: make(chan struct{}), cause: make(chan error, 1)}
	var changed []string
	s := &Server{Status: func() Status { return Status{Session: "s"} }, Pairs: pairs, Token: "t",
		Fence:    func() (int64, error) { changed = append(changed, "fence"); return 1, nil },
		SetRates: func(c, l *int64) (Rates, error) { changed = append(changed, "rate"); return Rates{}, nil },
		Promote: func(PromoteRequest) (PromoteResult, error) {
			changed = append(changed, "promote")
			return PromoteResult{State: PromoteDone}, nil
		},
		CancelPromote: func(CancelRequest) (PromoteResult, error) {
			changed = append(changed, "cancel")
			return PromoteResult{State: PromoteRefused}, nil
		},
		Switchover: func(context.Context, time.Duration) (SwitchoverResult, error) {
			changed = append(changed, "switchover")
			return SwitchoverResult{}, nil
		},
		Drill: func(DrillRequest) (DrillResult, error) { changed = append(changed, "drill"); return DrillResult{}, nil },
		Rejoin: func(RejoinRequest) (RejoinResult, error) {
			changed = append(changed, "rejoin")
			return RejoinResult{}, nil
		}}
	ctx := context.Background()
	at := serving(t, s)

	under := make(chan error, 1)
	go func() {
		_, err := PairOp(ctx, at, "t", "vol1", "suspend", true)
		under <- err
	}()
	<-pairs.entered
	stopped := make(chan struct{})
	go func() { s.StopChanges(Stopping("the primary")); close(stopped) }()
	if cause := <-pairs.cause; !errors.Is(cause, ErrStopping) {
		t.Errorf("the suspend under way ended with %v, want ErrStopping", cause)
	}
	<-stopped
	if !pairs.returned.Load() {
		t.Error("StopChanges returned before the suspend under way had")
	}
	if err := <-under; err == nil || !strings.Contains(err.Error(), "stopping") {
		t.Errorf("the suspend under way at the stop: %v, want its refusal, stopping", err)
	}

	for _, c := range []struct{ path, body string }{
		{"/v1/pairs/vol1/add", ""}, {"/v1/pairs/vol1/resume", ""}, {"/v1/pairs/vol1/delete", ""},
		{"/v1/all-pairs/suspend", ""}, {"/v1/all-pairs/resume", ""}, {"/v1/fence", ""},
		{"/v1/rate", `{"copy_bytes_per_second":1}`}, {"/v1/promote", `{"session":"s","id":"1"}`},
		{"/v1/promote/cancel", `{"session":"s","id":"1"}`}, {"/v1/switchover", ""}, {"/v1/drill", `{}`},
		{"/v1/rejoin", `{}`},
	} {
		req, _ := http.NewRequest(http.MethodPost, "http://"+at.Addr+c.path, strings.NewReader(c.body))
		req.Header.Set("Authorization", "Bearer t")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		_, _ = io.Copy(&b, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(b.String(), `"error":"stopping: the primary is stopping`) {
			t.Errorf("POST %s after the stop began: %s %s, want 503 stopping", c.path, resp.Status, b.String())
		}
	}
	if len(changed) > 0 {
		t.Errorf("carried out after the stop began: %v", changed)
	}
	if st, err := Fetch(ctx, at); err != nil || st.Session != "s" {
		t.Errorf("status after the stop began: %+v, %v", st, err)
	}
}

// Every client of a call that changes a site's state says the site's
// refusal as it stops in words: "stopping: ...", which the README tells
// the operator to look for, not the answer's JSON.
func TestTheClientsSayAStoppingSitesRefusal(t *testing.T) {
	s := &Server{Status: func() Status { return Status{} }, Token: "t", Pairs: &fakePairs{},
		Fence:         func() (int64, error) { return 1, nil },
		SetRates:      func(c, l *int64) (Rates, error) { return Rates{}, nil },
		Promote:       func(PromoteRequest) (PromoteResult, error) { return PromoteResult{State: PromoteDone}, nil },
		CancelPromote: func(CancelRequest) (PromoteResult, error) { return PromoteResult{State: PromoteRefused}, nil },
		Switchover:    func(context.Context, time.Duration) (SwitchoverResult, error) { return SwitchoverResult{}, nil },
		Drill:         func(DrillRequest) (DrillResult, error) { return DrillResult{}, nil },
		Rejoin:        func(RejoinRequest) (RejoinResult, error) { return RejoinResult{}, nil }}
	ctx := context.Background()
	at := serving(t, s)
	s.StopChanges(Stopping("the secondary"))
	rate := int64(1)
	for what, call := range map[string]func() error{
		"fence": func() error { return FenceSecondary(ctx, at, "t") },
		"pair":  func() error { _, err := PairOp(ctx, at, "t", "vol1", "suspend", false); return err },
		"all":   func() error { _, err := AllPairsOp(ctx, at, "t", "resume", false); return err },
		"rate":  func() error { _, err := SetRates(ctx, at, "t", &rate, nil); return err },
		"promote": func() error {
			_, err := PromoteSecondary(ctx, at, "t", PromoteRequest{Session: "s", ID: "1"})
			return err
		},
		"cancel": func() error {
			_, err := CancelPromotion(ctx, at, "t", CancelRequest{Session: "s", ID: "1"})
			return err
		},
		"switchover": func() error { _, err := Switchover(ctx, at, "t", time.Minute); return err },
		"drill":      func() error { _, err := Drill(ctx, at, "t", DrillRequest{}); return err },
		"rejoin":     func() error { _, err := RequestRejoin(ctx, at, "t", RejoinRequest{}); return err },
	} {
		err := call()
		if err == nil || !strings.Contains(err.Error(), "stopping: the secondary is stopping") || strings.Contains(err.Error(), `{"error"`) {
			t.Errorf("%s at a stopping site: %v, want its refusal in words, stopping: the secondary is stopping", what, err)
		}
	}
}

// serving serves s on a loopback address until the test ends.
func serving(t *testing.T, s *Server) Endpoint {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go s.Serve(ctx, ln)
	return Endpoint{Addr: ln.Addr().String()}
}
