package mover

import (
	"errors"
	"strings"
	"testing"

	"duplex/internal/testenv"
	"duplex/transport"
)

// TestTheRefusalsKindIsTheFramesFlag: whether the last refusal passes,
// and its kind, are what the secondary's Refuse frame said, whatever its
// words; a frame without the flag (a secondary from before it) is
// lasting, one without a kind unnamed, and one that does not decode both.
func TestTheRefusalsKindIsTheFramesFlag(t *testing.T) {
	p := startPrimary(t, options{subsystems: []string{"ss1"}})
	for i, tc := range []struct {
		name    string
		frame   []byte
		passing bool
		kind    transport.RefusalKind
		reason  string
	}{
		{"passing", transport.EncodeRefuse(transport.Refusal{Reason: "back in a second", Passing: true}), true, 0, "back in a second"},
		{"lasting, in the words of a passing one", transport.EncodeRefuse(transport.Refusal{Reason: "secondary stopped at group 3: EIO; the secondary retries by itself"}), false, 0,
			"secondary stopped at group 3: EIO; the secondary retries by itself"},
		{"passing, in other words", transport.EncodeRefuse(transport.Refusal{Reason: "another session's", Passing: true}), true, 0, "another session's"},
		{"a section this build does not know", transport.Frame(transport.TypeRefuse, []byte{0, 1, 'r', 9}), false, 0, "r"},
		{"stale, in other words", transport.EncodeRefuse(transport.Refusal{Reason: "the clock went back", Passing: true, Kind: transport.RefusalStale}), true, transport.RefusalStale,
			"the clock went back"},
		{"a kind this build does not know", transport.EncodeRefuse(transport.Refusal{Reason: "newer", Kind: 77}), false, 77, "newer"},
		{"a damaged stale one", transport.Frame(transport.TypeRefuse, []byte{0, 1, 'r', 1, 2, 1, 9}), false, 0, "r"},
	} {
		l, _ := p.accept(t)
		if err := l.conn.Send(tc.frame); err != nil {
			t.Fatal(err)
		}
		l.awaitClosed()
		waitFor(t, "the refusal counted", func() bool { return p.mover.Stats().Refusals == uint64(i+1) })
		st := p.mover.Stats()
		if st.LastRefusalPasses != tc.passing || !st.FailedDialRefused || !st.LastErrorRefused {
			t.Errorf("%s: LastRefusalPasses %v, FailedDialRefused %v, LastErrorRefused %v (%q); want %v, true, true",
				tc.name, st.LastRefusalPasses, st.FailedDialRefused, st.LastErrorRefused, st.LastRefusal, tc.passing)
		}
		if st.LastRefusalKind != tc.kind || st.LastRefusalReason != tc.reason {
			t.Errorf("%s: LastRefusalKind %d, LastRefusalReason %q; want %d, %q", tc.name, st.LastRefusalKind, st.LastRefusalReason, tc.kind, tc.reason)
		}
	}
}

// TestAStaleRefusalOfASecondaryBeforeKindsIsKnownByItsWords: on a link
// whose secondary does not name kinds (its Welcome without
// FeatureNamesRefusals, one from before them), the refusal of a stale
// record set, in the words such a secondary used, is read as stale, for
// the pair manager suspends on that; on a link whose secondary names
// them, the words are nothing, and only the kind is read.
func TestAStaleRefusalOfASecondaryBeforeKindsIsKnownByItsWords(t *testing.T) {
	const before = `refusing a record set: record set ss1/3: update 1 of 1 (volume "vol1") is stamped 5000 (1970-01-01T00:00:00.000005Z), ` +
		`not after the consistency time 20000 (1970-01-01T00:00:00.00002Z) already reached: the primary's clock is behind the clock ` +
		`that stamped what the secondary holds: update stamped at or before the consistency time`
	p := startPrimary(t, options{subsystems: []string{"ss1"}})
	for i, tc := range []struct {
		name     string
		features uint64
		r        transport.Refusal
		kind     transport.RefusalKind
	}{
		{"before kinds, in its words", 0, transport.Refusal{Reason: before}, transport.RefusalStale},
		{"before kinds, in other words", 0, transport.Refusal{Reason: "refusing a record set the secondary cannot apply"}, 0},
		{"naming kinds, unnamed in those words", transport.FeatureNamesRefusals, transport.Refusal{Reason: before}, 0},
		{"naming kinds, named", transport.FeatureNamesRefusals, transport.Refusal{Reason: "the clock went back", Passing: true, Kind: transport.RefusalStale}, transport.RefusalStale},
	} {
		l, _ := p.accept(t)
		l.welcome(transport.Position{Features: tc.features})
		waitFor(t, "the link", func() bool { return p.mover.Stats().Connected })
		if err := l.conn.Send(transport.EncodeRefuse(tc.r)); err != nil {
			t.Fatal(err)
		}
		l.awaitClosed()
		waitFor(t, "the refusal counted", func() bool { return p.mover.Stats().Refusals == uint64(i+1) })
		if st := p.mover.Stats(); st.LastRefusalKind != tc.kind || !st.LastErrorRefused || st.LastRefusalReason != tc.r.Reason {
			t.Errorf("%s: LastRefusalKind %d, LastErrorRefused %v, LastRefusalReason %q; want %d, true, the frame's", tc.name, st.LastRefusalKind, st.LastErrorRefused, st.LastRefusalReason, tc.kind)
		}
	}
}

// TestRefusedIsErrRefused: the error of a Refuse frame is an ErrRefused
// that says the reason as ever, and keeps what the frame said.
func TestRefusedIsErrRefused(t *testing.T) {
	_, body, err := transport.Open(transport.EncodeRefuse(transport.Refusal{Reason: "no", Passing: true}))
	if err != nil {
		t.Fatal(err)
	}
	var e error = Refused(body)
	var re *RefusedError
	if !errors.Is(e, ErrRefused) || !errors.As(e, &re) || !re.Passing || e.Error() != "secondary refused the session: no" {
		t.Fatalf("Refused = %v (%+v): want an ErrRefused, passing, saying the reason", e, re)
	}
}

// TestAPassingRefusalIsLoggedAsPassing: a refusal the secondary says
// passes is logged as a warning that says the secondary takes this
// primary again by itself, not as an error saying an operator must act,
// which is what a lasting one says.
func TestAPassingRefusalIsLoggedAsPassing(t *testing.T) {
	var log testenv.LogBuffer
	p := startPrimary(t, options{subsystems: []string{"ss1"}, log: &log})
	for i, tc := range []struct {
		r           transport.Refusal
		level, says string
	}{
		{transport.Refusal{Reason: "disk retried", Passing: true}, "level=WARN", "takes this primary again by itself"},
		{transport.Refusal{Reason: "clock behind", Passing: true, Kind: transport.RefusalStale}, "level=WARN", "takes this primary again by itself"},
		{transport.Refusal{Reason: "another session"}, "level=ERROR", "until an operator acts"},
	} {
		l, _ := p.accept(t)
		if err := l.conn.Send(transport.EncodeRefuse(tc.r)); err != nil {
			t.Fatal(err)
		}
		l.awaitClosed()
		var line string
		waitFor(t, "the refusal logged", func() bool {
			for _, s := range strings.Split(log.String(), "\n") {
				if strings.Contains(s, tc.r.Reason) {
					line = s
					return true
				}
			}
			return false
		})
		if !strings.Contains(line, tc.level) || !strings.Contains(line, tc.says) {
			t.Errorf("refusal %d (%+v) logged %q; want %s saying %q", i, tc.r, line, tc.level, tc.says)
		}
	}
}

// TestAStaleRefusalKnownByItsWordsPasses: a secondary from before kinds
// sent its refusal of a stale record set as lasting, for it could not say
// otherwise, but this primary ends that refusal by itself as it ends a
// named one (the pair manager suspends on the kind, dropping the record
// set, and the secondary takes the next connection): read as lasting, the
// primary's status says an operator must act, its log says so at ERROR,
// and duplex pair --wait gives up at once on pairs duplex again shortly,
// where the same refusal from a newer secondary is waited through.
func TestAStaleRefusalKnownByItsWordsPasses(t *testing.T) {
	const before = `refusing a record set: record set ss1/3: update 1 of 1 (volume "vol1") is stamped 5000, ` +
		`not after the consistency time 20000 already reached: update stamped at or before the consistency time`
	var log testenv.LogBuffer
	p := startPrimary(t, options{subsystems: []string{"ss1"}, log: &log})
	l, _ := p.accept(t)
	l.welcome(transport.Position{})
	waitFor(t, "the link", func() bool { return p.mover.Stats().Connected })
	if err := l.conn.Send(transport.EncodeRefuse(transport.Refusal{Reason: before})); err != nil {
		t.Fatal(err)
	}
	l.awaitClosed()
	waitFor(t, "the refusal counted", func() bool { return p.mover.Stats().Refusals == 1 })
	if st := p.mover.Stats(); st.LastRefusalKind != transport.RefusalStale || !st.LastRefusalPasses {
		t.Errorf("LastRefusalKind %d, LastRefusalPasses %v; want stale (%d), passing", st.LastRefusalKind, st.LastRefusalPasses, transport.RefusalStale)
	}
	var line string
	waitFor(t, "the refusal logged", func() bool {
		for _, s := range strings.Split(log.String(), "\n") {
			if strings.Contains(s, "update stamped at or before") {
				line = s
				return true
			}
		}
		return false
	})
	if !strings.Contains(line, "level=WARN") || !strings.Contains(line, "takes this primary again by itself") {
		t.Errorf("logged %q; want level=WARN saying it takes this primary again by itself", line)
	}
}

// TestStaleRefusalsCountedWhateverFollows: the pair manager looks at the
// mover's Stats now and then; two refusals between two looks, the stale
// one first, leave the other as the last refusal. The stale ones are
// counted apart, so that none is lost to a later refusal of another kind:
// missed, the record set is sent again, refused again, and the session
// suspends a round late, or not at all if the other kind keeps coming.
func TestStaleRefusalsCountedWhateverFollows(t *testing.T) {
	p := startPrimary(t, options{subsystems: []string{"ss1"}})
	for i, r := range []transport.Refusal{
		{Reason: "the clock went back", Passing: true, Kind: transport.RefusalStale},
		{Reason: "an apply is under way", Passing: true},
	} {
		l, _ := p.accept(t)
		l.welcome(transport.Position{Features: transport.FeatureNamesRefusals})
		waitFor(t, "the link", func() bool { return p.mover.Stats().Connected })
		if err := l.conn.Send(transport.EncodeRefuse(r)); err != nil {
			t.Fatal(err)
		}
		l.awaitClosed()
		waitFor(t, "the refusal counted", func() bool { return p.mover.Stats().Refusals == uint64(i+1) })
	}
	st := p.mover.Stats()
	if st.LastRefusalKind != transport.RefusalUnnamed {
		t.Fatalf("LastRefusalKind %d, want the last refusal's (unnamed)", st.LastRefusalKind)
	}
	if st.StaleRefusals != 1 {
		t.Fatalf("StaleRefusals %d after a stale refusal and another, want 1", st.StaleRefusals)
	}
	if st.LastStaleRefusal != "the clock went back" {
		t.Fatalf("LastStaleRefusal %q after a stale refusal and another, want the stale one's reason", st.LastStaleRefusal)
	}
}
