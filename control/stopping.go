package control

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

// ErrStopping is why a site refuses a call that changes its state once its
// stop has begun (see Server.StopChanges).
var ErrStopping = errors.New("stopping")

// changeGate admits the calls that change a site's state (pair operations,
// rates, fence, promote and its cancel, switchover, rejoin, drill) until
// the site's stop begins; from then on it refuses them, while status,
// metrics and the status page go on answering. A site's stop saves its
// state once, after the calls under way have answered: a call answered
// after that save would be lost at the next start, or would spoil the
// save (a primary's pair state, saved clean, saved again unclean).
type changeGate struct {
	mu      sync.Mutex
	refusal error // set once the stop began
	under   map[uint64]context.CancelCauseFunc
	next    uint64
	idle    chan struct{} // closed once refusal is set and under is empty
}

// enter admits a call, returning its context (which the stop ends) and
// the function that ends it; or the refusal, once the stop began.
func (g *changeGate) enter(ctx context.Context) (context.Context, func(), error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.refusal != nil {
		return nil, nil, g.refusal
	}
	if g.under == nil {
		g.under = map[uint64]context.CancelCauseFunc{}
	}
	id := g.next
	g.next++
	cctx, cancel := context.WithCancelCause(ctx)
	g.under[id] = cancel
	return cctx, func() {
		cancel(nil)
		g.mu.Lock()
		defer g.mu.Unlock()
		delete(g.under, id)
		if len(g.under) == 0 && g.idle != nil {
			close(g.idle)
			g.idle = nil
		}
	}, nil
}

// stop refuses every call from now on with refusal, ends the contexts of
// those under way with it, and returns a channel closed once they have
// all ended.
func (g *changeGate) stop(refusal error) <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	done := make(chan struct{})
	if g.refusal == nil {
		g.refusal = refusal
	}
	if len(g.under) == 0 {
		close(done)
		return done
	}
	if g.idle == nil {
		g.idle = make(chan struct{})
	}
	for _, cancel := range g.under {
		cancel(refusal)
	}
	idle := g.idle
	go func() { <-idle; close(done) }()
	return done
}

// StopChanges begins the site's stop at its control address: every call
// that changes the site's state is refused from now on, answered 503 with
// an error that begins "stopping: " and goes on with why (what the site
// does, and what the operator may do: see Stopping), and those under way
// have their context
// ended and are waited for, so that each has answered before StopChanges
// returns, and the stop saves what they did. A call whose context ends
// gives up where it can (a drain), and says so. Status, metrics and the
// status page answer until Serve's ctx ends. A nil Server has nothing to
// stop.
func (s *Server) StopChanges(why string) {
	if s == nil {
		return
	}
	refusal := fmt.Errorf("%w: %s", ErrStopping, why)
	done := s.changes.stop(refusal)
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			if s.Logger != nil {
				s.Logger.Warn("stopping: waiting for the control calls under way to answer before the state is saved")
			}
		}
	}
}

// RefusedStopping reports whether err is a site's refusal of a call
// because its stop had begun (see StopChanges): the call was not carried
// out, nor begun.
func RefusedStopping(err error) bool {
	var r *RefusedError
	return errors.As(err, &r) && r.Code == http.StatusServiceUnavailable && strings.HasPrefix(r.Reason, ErrStopping.Error()+": ")
}

// Stopping is why a site refuses the calls that change its state during
// its stop: the site named (e.g. "the primary") is stopping.
func Stopping(site string) string {
	return site + " is stopping: it takes no command that changes its state now (status still answers); " +
		"run the command again once it is started"
}

// changing serves h only until the site's stop begins (see StopChanges).
func (s *Server) changing(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, end, err := s.changes.enter(r.Context())
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
			return
		}
		defer end()
		h(w, r.WithContext(ctx))
	}
}
