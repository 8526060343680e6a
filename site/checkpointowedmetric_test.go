package site

import (
	"io"
	"net/http/httptest"
	"regexp"
	"testing"
	"time"

	"duplex/control"
	"duplex/secondary"
)

// TestACheckpointOwedShowsInTheMetrics: while a checkpoint owes the state
// file's write or the journal's release (status's checkpoint_owed), the
// secondary's /metrics serves duplex_checkpoint_owed 1, and 0 once nothing
// is owed: an alert finds a release failing for good, which holds the
// journal's space, without reading status. Before, only status said it.
func TestACheckpointOwedShowsInTheMetrics(t *testing.T) {
	const owed = "the journal's release of its applied segments through group 5 has failed since 2026-12-06T12:00:00Z (61 tries, ...)"
	for _, tc := range []struct {
		owed string
		want string
	}{
		{owed, "1"},
		{"", "0"},
	} {
		st := secondary.Stats{Connected: true, Time: time.Now().UnixNano(), CheckpointOwed: tc.owed}
		m := control.NewMetrics("s", "secondary", func() []control.Sample { return secondarySamples(st, 0, time.Now()) })
		rec := httptest.NewRecorder()
		m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		b, _ := io.ReadAll(rec.Result().Body)
		re := regexp.MustCompile(`(?m)^duplex_checkpoint_owed\{role="secondary",session="s"\} ` + tc.want + `$`)
		if !re.Match(b) {
			t.Errorf("checkpoint_owed %q: the metrics do not serve duplex_checkpoint_owed %s:\n%s", tc.owed, tc.want, b)
		}
	}
}
