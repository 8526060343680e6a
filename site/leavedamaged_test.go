package site

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"duplex/coupling"
)

// A promoted site whose record of the leave its switchover owes is
// damaged owes the leave all the same: its changes say so (a rejoin of the
// old primary is refused meanwhile), and the log says what to do, since
// the membership the leave takes out is lost with the record and no leave
// can be made without it.
func TestADamagedLeaveOwedIsOwedAllTheSame(t *testing.T) {
	for name, content := range map[string]string{"null": "null\n", "{}": "{}\n", "cut short": `{"group":"g","mem`} {
		t.Run(name, func(t *testing.T) {
			cfg := coupledSwitchoverConfig(t, "a")
			if err := os.MkdirAll(filepath.Dir(StatePath(cfg)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(leavePath(cfg), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			var logged bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logged, nil))
			if g := leaveOwed(nil, cfg, log); g != "g" {
				t.Errorf("the leave owed with %s damaged (%q): %q, want group g", leavePath(cfg), content, g)
			}
			done := finishLeave(t.Context(), cfg, nil, coupling.NewMemStore(), log)
			select {
			case <-done:
				t.Errorf("the leave owed is done with %s damaged", leavePath(cfg))
			default:
			}
			wantWords(t, "the log", strings.ReplaceAll(logged.String(), `\"`, `"`), leavePath(cfg), "damaged", "duplex couple remove a", "then remove")
		})
	}
}
