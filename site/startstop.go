package site

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// A start may wait on a disk that stopped answering (its state
// directory's, its volumes'), without bound: nothing cancels a read or
// an fsync the kernel holds. A daemon asked to stop then (SIGTERM) would
// go on waiting, and only kill -9 would end it. It has served nothing
// yet, so nothing acknowledged depends on the rest of the start: the
// start is given up as a kill at that point would end it, and the next
// start reads the state directory as this one left it, which a kill at
// any point of a start must leave readable anyway.

// startGivenUp is the error of a start given up on ctx's end: what it
// waited for, and since when.
type startGivenUp struct {
	what  string
	since time.Time
}

func (e *startGivenUp) Error() string {
	at := "the start"
	if e.what != "" {
		at = fmt.Sprintf("the start waiting for %s for %s (since %s)", e.what, time.Since(e.since).Round(time.Millisecond), e.since.UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf("stopped while starting: %s given up; it served nothing, so nothing acknowledged is lost, "+
		"and the next start goes on from its state directory as a start after a kill does", at)
}

// openUnlessStopped runs open, a site's start, and returns what it
// returns, unless ctx ends first: then it returns a startGivenUp at
// once (after grace, in which a start that ends of itself at the stop,
// as a journal's replay does, returns what it returns), the start left
// to end (or not) in the background, and a site it opens late closed
// (closeLate) without serving (a daemon exits meanwhile). started is
// set to follow the start's steps.
func openUnlessStopped[S any](ctx context.Context, grace time.Duration, started *func(*startWait), open func() (*S, error), closeLate func(*S)) (*S, error) {
	var steps atomic.Pointer[startWait]
	*started = steps.Store
	type opened struct {
		s   *S
		err error
	}
	ch := make(chan opened, 1)
	go func() {
		s, err := open()
		ch <- opened{s, err}
	}()
	select {
	case r := <-ch:
		return r.s, r.err
	case <-ctx.Done():
	}
	select {
	case r := <-ch: // ended as the stop came: its Run stops at once
		return r.s, r.err
	default:
	}
	if grace > 0 {
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case r := <-ch:
			return r.s, r.err
		case <-t.C:
		}
	}
	e := &startGivenUp{}
	if w := steps.Load(); w != nil {
		w.mu.Lock()
		e.what, e.since = w.current()
		w.mu.Unlock()
	}
	go func() {
		if r := <-ch; r.s != nil {
			closeLate(r.s)
		}
	}()
	return nil, e
}
