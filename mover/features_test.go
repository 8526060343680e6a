package mover

import (
	"slices"
	"testing"

	"duplex/transport"
)

// A secondary whose Welcome asks what the primary reads is told, in a
// Features frame before anything else, that this primary reads the
// inconsistent section; the mover goes on from the Welcome that answers
// it (which no longer asks), and takes the volumes it names.
func TestMoverTellsASecondaryThatAsksWhatItReads(t *testing.T) {
	p := startPrimary(t, options{})
	l, _ := p.accept(t)
	l.welcome(transport.Position{Group: 3, Time: 1, Features: transport.FeatureAsksPrimary})
	typ, body := l.next()
	if typ != transport.TypeFeatures {
		t.Fatalf("first frame after a Welcome that asks: type %d, want Features", typ)
	}
	reads, err := transport.DecodeFeatures(body)
	if err != nil || reads&transport.PrimaryReadsInconsistent == 0 {
		t.Fatalf("Features %#x (err %v): the primary does not say it reads the inconsistent section", reads, err)
	}
	if up, _ := p.mover.Link(); up {
		t.Fatal("the link is up before the secondary answered the Features frame")
	}
	l.welcome(transport.Position{Group: 3, Time: 1, Inconsistent: []string{"v"}})
	waitFor(t, "the link up", func() bool { up, _ := p.mover.Link(); return up })
	if got := p.mover.Stats().Acked.Inconsistent; !slices.Equal(got, []string{"v"}) {
		t.Fatalf("the mover took %q as consistent as of no time from the second Welcome, want v", got)
	}
}

// A secondary from before the Features frame does not ask, and is sent
// none: record sets follow its Welcome at once.
func TestMoverSendsNoFeaturesToASecondaryThatDoesNotAsk(t *testing.T) {
	p := startPrimary(t, options{})
	l, _ := p.accept(t)
	l.welcome(transport.Position{Group: 3, Time: 1, Through: map[string]uint64{"ss1": 5, "ss2": 9}})
	p.mover.Cut()
	if typ, _ := l.next(); typ != transport.TypeRecordSet {
		t.Fatalf("first frame after a Welcome that does not ask: type %d, want a record set", typ)
	}
}

// A link that duplicates frames can deliver the first Welcome twice: the
// repeat, which still asks, is no answer to the Features frame, and the
// mover goes on from the Welcome that answers it, which no longer asks and
// names the volumes consistent as of no time.
func TestMoverTakesTheAnswerNotARepeatedWelcome(t *testing.T) {
	p := startPrimary(t, options{})
	l, _ := p.accept(t)
	first := transport.Position{Group: 3, Time: 1, Features: transport.FeatureBundles | transport.FeatureAsksPrimary}
	l.welcome(first)
	l.welcome(first) // the link's duplicate
	if typ, _ := l.next(); typ != transport.TypeFeatures {
		t.Fatalf("first frame after a Welcome that asks: type %d, want Features", typ)
	}
	l.welcome(transport.Position{Group: 3, Time: 1, Features: transport.FeatureBundles, Inconsistent: []string{"v"}})
	waitFor(t, "the link up", func() bool { up, _ := p.mover.Link(); return up })
	if got := p.mover.Stats().Acked.Inconsistent; !slices.Equal(got, []string{"v"}) {
		t.Fatalf("the mover took %q as consistent as of no time: it went on from the repeated first Welcome, not from the answer naming v", got)
	}
}
