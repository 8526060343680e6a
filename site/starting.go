package site

import (
	"io"
	"log/slog"
	"net"
	"time"

	"duplex/config"
	"duplex/control"
)

// startingHelp is the metric a starting site's control address serves.
const startingHelp = "1 while the site starts (its state not read yet: status says what the start waits for); absent once it runs."

// serveStarting binds the control address of a site that starts (addr;
// kept, if set, a listener handed over for it; with the certificate of
// the config's site role) once the site's lock is held, and serves there
// what w says of the start: status (its status role, and
// what the start waits for, and since when), metrics, and every command
// refused "not yet: starting"; the site's control server takes it over
// once it runs (control.Server's Early). Without an address, nothing.
// The lock first: a second process of the site is refused on it, naming
// its holder, not on the address the first one holds.
func (l *listeners) serveStarting(cfg *config.Config, role, statusRole, what, addr string, kept net.Listener, w *startWait, log *slog.Logger) (*control.Starting, error) {
	if addr == "" {
		if kept != nil {
			kept.Close()
		}
		return nil, nil
	}
	if err := l.listen(cfg, role, what, "", addr, Listeners{Control: kept}); err != nil {
		return nil, err
	}
	session := cfg.Session
	m := control.NewMetrics(session, statusRole, func() []control.Sample {
		return []control.Sample{
			control.Gauge("starting", startingHelp, 1),
			control.Gauge("start_step_seconds", "While the site starts: seconds the step it waits for (status: starting) has taken.", w.stepTaken().Seconds()),
			control.Gauge("link_up", linkUpHelp, 0),
		}
	})
	cs := &control.Server{Status: func() control.Status { return w.status(session, statusRole) }, Metrics: m.Handler(), TLS: l.ctlTLS, Logger: log,
		Changes: func() (control.Changes, error) { return control.Changes{}, errStarting(what) }}
	return control.ServeStarting(l.ctlLn, cs, startingWhy(what)), nil
}

// startingWhy is why a starting site refuses a command.
func startingWhy(what string) string {
	return "the " + what + " is starting: it has not read its state yet (duplex status says what the start waits for); run the command again once it runs"
}

func errStarting(what string) error { return control.ErrStartingRefusal(startingWhy(what)) }

// status is a starting site's status: who it is and what its start does.
func (w *startWait) status(session, role string) control.Status {
	now := time.Now()
	st := &control.StartingStatus{Since: w.began.UTC().Format(time.RFC3339)}
	w.mu.Lock()
	if what, since := w.current(); what != "" {
		st.Step, st.StepSince, st.StepSeconds = what, since.UTC().Format(time.RFC3339), max(now.Sub(since).Seconds(), 0)
	}
	w.mu.Unlock()
	return control.Status{Session: session, Role: role, Link: "disconnected", Starting: st}
}

// stepTaken is how long the start's step under way has taken; 0 if none.
func (w *startWait) stepTaken() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	what, since := w.current()
	if what == "" {
		return 0
	}
	return time.Since(since)
}

// lockThenServe takes a site's lock (lock) and then serves its control
// address while it starts (serve), in that order: a second process of
// the site is refused on the lock, naming its holder, rather than on the
// address the first one holds. The lock's take is an flock that never
// waits, but its file's open and truncation may wait on a disk that
// stopped answering: once lock has not returned within slow, the address
// is served all the same, status saying the start waits for name (or
// the step lock names after it: lock may read what decides whether the
// site may start at all, for its refusal to come before the address's);
// an address that cannot be bound then is the error only if lock
// succeeds (its error, a held lock, is the error whenever it is said).
func lockThenServe(lock func() (io.Closer, error), serve func() error, w *startWait, name string, slow time.Duration) (io.Closer, error) {
	type taken struct {
		c   io.Closer
		err error
	}
	ch := make(chan taken, 1)
	w.step(name)
	go func() {
		c, err := lock()
		ch <- taken{c, err}
	}()
	t := time.NewTimer(slow)
	defer t.Stop()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, r.err
		}
		if err := serve(); err != nil {
			r.c.Close()
			return nil, err
		}
		return r.c, nil
	case <-t.C:
	}
	served := serve()
	r := <-ch
	switch {
	case r.err != nil:
		return nil, r.err
	case served != nil:
		r.c.Close()
		return nil, served
	}
	return r.c, nil
}
