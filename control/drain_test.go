package control

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// drainPairs records the bound a suspend's drain gets.
type drainPairs struct {
	fakePairs
	left  chan time.Duration // time left to the drain's deadline, -1 without one
	cause chan error
}

func (f *drainPairs) Suspend(ctx context.Context, vol string, drain bool) error {
	left := time.Duration(-1)
	if dl, ok := ctx.Deadline(); ok {
		left = time.Until(dl)
	}
	f.left <- left
	if vol == "wait" {
		<-ctx.Done()
		f.cause <- context.Cause(ctx)
		return context.Cause(ctx)
	}
	return nil
}

// TestSuspendDrainIsBounded: a suspend's drain runs under the timeout the
// caller's deadline leaves (less the margin for the answer), under
// DefaultDrainTimeout without one, and a malformed timeout is refused.
func TestSuspendDrainIsBounded(t *testing.T) {
	pairs := &drainPairs{left: make(chan time.Duration, 1), cause: make(chan error, 1)}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go (&Server{Status: func() Status { return Status{} }, Pairs: pairs, Token: "t"}).Serve(ctx, ln)
	addr := ln.Addr().String()

	if _, err := PairOp(ctx, Endpoint{Addr: addr}, "t", "vol1", "suspend", true); err != nil {
		t.Fatal(err)
	}
	if left := <-pairs.left; left <= DefaultDrainTimeout-time.Minute || left > DefaultDrainTimeout {
		t.Errorf("without a deadline the drain has %v, want about %v", left, DefaultDrainTimeout)
	}

	dctx, dcancel := context.WithTimeout(ctx, AnswerMargin+2*time.Second)
	defer dcancel()
	_, err := PairOp(dctx, Endpoint{Addr: addr}, "t", "wait", "suspend", true)
	if left := <-pairs.left; left <= 0 || left > 2*time.Second {
		t.Errorf("with %v left to the caller the drain has %v, want at most 2s", AnswerMargin+2*time.Second, left)
	}
	if cause := <-pairs.cause; !errors.Is(cause, ErrDrainTimeout) {
		t.Errorf("the drain ended with %v, want ErrDrainTimeout", cause)
	}
	if err == nil || !strings.Contains(err.Error(), "timeout ran out after") {
		t.Errorf("the caller got %v, want the drain's timeout", err)
	}

	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/pairs/vol1/suspend?drain=1&timeout=soon", nil)
	req.Header.Set("Authorization", "Bearer t")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("timeout=soon: %s, want 400", resp.Status)
	}
}
