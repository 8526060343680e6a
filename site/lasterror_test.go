package site

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"duplex/control"
)

// TestLastErrorIsTheTruthAtBothSites: while a primary of another session is
// refused, both sites show the refusal with its time; once a primary of the
// session replicates, neither shows it as if current.
func TestLastErrorIsTheTruthAtBothSites(t *testing.T) {
	cfg := linkConfig(t)
	s, _ := runSecondary(t, cfg)
	wrong := linkConfig(t)
	wrong.Session = "payroll"
	wrong.Primary.Secondary = s.ListenAddr()
	bad, err := OpenPrimary(wrong, slog.New(slog.NewTextHandler(io.Discard, nil)), PrimaryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stopBad := runUntil(t, func(ctx context.Context) { bad.Run(ctx, 0) })
	waitFor(t, 30*time.Second, "last errors at both sites", func() bool {
		return bad.Status().LastError != "" && s.Status().LastError != ""
	})
	for _, st := range []control.Status{bad.Status(), s.Status()} {
		at, err := time.Parse(time.RFC3339Nano, st.LastErrorAt)
		if err != nil || time.Since(at) > time.Minute || time.Until(at) > time.Second {
			t.Errorf("%s: last_error %q at %q, want the time it happened (%v)", st.Role, st.LastError, st.LastErrorAt, err)
		}
	}
	stopBad()

	cfg.Primary.Secondary = s.ListenAddr()
	p, _, _ := runPrimary(t, cfg)
	waitFor(t, 30*time.Second, "the pairs to be duplex", func() bool {
		for _, v := range p.Status().Volumes {
			if v.State != "duplex" {
				return false
			}
		}
		return true
	})
	waitFor(t, 30*time.Second, "the secondary to journal a group of the new primary", func() bool {
		return s.Replica().Stats().JournaledGroup > 0 && s.Status().Link == "connected"
	})
	// The secondary journals a group at least once a second, however idle.
	waitFor(t, 10*time.Second, "both sites to stop showing the refusal", func() bool {
		return p.Status().LastError == "" && s.Status().LastError == ""
	})
	for _, st := range []control.Status{p.Status(), s.Status()} {
		if st.LastErrorAt != "" {
			t.Errorf("%s: no last error, yet one at %q", st.Role, st.LastErrorAt)
		}
	}
}
