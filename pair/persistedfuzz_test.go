package pair

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

// FuzzReadPersisted: a pair state read from disk, as any version saved
// it (with or without rejoin_owed_kept), and taken at a promoted site for
// one whose pairs may await the old primary's rejoin, is refused as
// damaged or read without a panic; a pair marked as awaiting the rejoin
// is one still suspended as of the promotion.
func FuzzReadPersisted(f *testing.F) {
	for _, s := range []string{
		`{"clean":true,"pairs":[{"volume":"a","subsystem":"ss","state":"suspended","size":65536,"consistent":1000,"since":1000}]}`,
		`{"clean":true,"rejoin_owed_kept":true,"pairs":[{"volume":"a","state":"suspended","since":1000,"rejoin_owed":true}]}`,
		`{"clean":false,"pairs":[null]}`, `{"clean":true,"pairs":[{"volume":""}]}`, `{}`, `null`, "\x00",
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	log := slog.New(slog.DiscardHandler)
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, "pairs.json"), b, 0o644); err != nil {
			t.Fatal(err)
		}
		st, found, err := readPersisted(nil, dir)
		if err != nil || !found {
			return
		}
		owed := map[*Pair]bool{}
		for _, p := range st.Pairs {
			owed[p] = p.RejoinOwed
		}
		mg := &Manager{log: log}
		if !st.RejoinOwedKept {
			mg.owedBeforeKept(st.Pairs, 1000)
		}
		for _, p := range st.Pairs {
			if p.RejoinOwed && !owed[p] && (p.State != Suspended || p.Deleted || p.Since != 1000 || p.Auto) {
				t.Fatalf("%s taken as awaiting the rejoin: %+v", p.Volume, *p)
			}
		}
	})
}
