package mover

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"duplex/transport"
)

// A coupled secondary holding groups past the master time for a member
// that is silent waits for journal room once its file system is down to
// the journal's reserve: it answers with receipts that say nothing new and
// no room in its journal (JournalFree 1). The link is given up after
// HeldSend all the same, so that the session sees it down and suspends
// its pairs rather than let the application wait for ever on a full
// sidefile; but the reason given must be the one the secondary said, not
// a disk that may hang. Before, the last error said "its disk may hang".
// Its receipts say too that it waits, to a primary that reads it, which
// holds its resends then, not its HeldSend.
func TestALinkToASecondaryWaitingForJournalRoomSaysSo(t *testing.T) {
	for _, waited := range []time.Duration{0, time.Second} {
		t.Run("waited "+waited.String(), func(t *testing.T) { linkWaitingForJournalRoom(t, waited) })
	}
}

func linkWaitingForJournalRoom(t *testing.T, waited time.Duration) {
	const silence, heldSend = 300 * time.Millisecond, 1500 * time.Millisecond
	p := startPrimary(t, options{subsystems: []string{"ss1"}, interval: 20 * time.Millisecond, retransmit: 100 * time.Millisecond,
		silence: silence, heldSend: heldSend, coupled: true})
	l, _ := p.accept(t)
	l.welcome(transport.Position{Features: transport.FeatureBundles})
	waitFor(t, "the link", func() bool { return p.mover.Stats().Connected })
	go func() {
		for range l.frames {
			if l.conn.Send(transport.EncodePosition(transport.TypeAck, transport.Position{JournalFree: 1, Waited: waited})) != nil {
				return
			}
		}
	}()
	written := time.Now()
	p.write(t, "ss1", bytes.Repeat([]byte{7}, 4096), 0)
	for p.mover.Stats().Connected {
		if time.Since(written) > 10*heldSend {
			t.Fatalf("a secondary waiting for journal room, acknowledging nothing for %v (HeldSend %v), still counts as connected",
				time.Since(written).Round(time.Millisecond), heldSend)
		}
		time.Sleep(5 * time.Millisecond)
	}
	st := p.mover.Stats()
	if !strings.Contains(st.LastError, "no room in its journal") || strings.Contains(st.LastError, "disk may hang") {
		t.Errorf("the link to a secondary waiting for journal room was given up with last error %q, want one that says its journal has no room", st.LastError)
	}
}

// A secondary that is not coupled reports no room in its journal
// (JournalFree 1) once its file system is down to the journal's reserve:
// it has no room for a resync, and still journals the groups it is sent,
// waiting for nothing. A link given up after HeldSend with it
// acknowledging nothing new must not say it waits for a silent member of
// a coupled group, which it has none of: its disk may hang.
func TestALinkToAPlainSecondaryAtItsReserveSaysNoCoupledWait(t *testing.T) {
	const silence, heldSend = 300 * time.Millisecond, 1500 * time.Millisecond
	p := startPrimary(t, options{subsystems: []string{"ss1"}, interval: 20 * time.Millisecond, retransmit: 100 * time.Millisecond,
		silence: silence, heldSend: heldSend})
	l, _ := p.accept(t)
	l.welcome(transport.Position{Features: transport.FeatureBundles})
	waitFor(t, "the link", func() bool { return p.mover.Stats().Connected })
	go func() {
		for range l.frames {
			if l.conn.Send(transport.EncodePosition(transport.TypeAck, transport.Position{JournalFree: 1})) != nil {
				return
			}
		}
	}()
	written := time.Now()
	p.write(t, "ss1", bytes.Repeat([]byte{7}, 4096), 0)
	for p.mover.Stats().Connected {
		if time.Since(written) > 10*heldSend {
			t.Fatalf("a secondary acknowledging nothing for %v (HeldSend %v) still counts as connected",
				time.Since(written).Round(time.Millisecond), heldSend)
		}
		time.Sleep(5 * time.Millisecond)
	}
	st := p.mover.Stats()
	if strings.Contains(st.LastError, "coupled") || !strings.Contains(st.LastError, "disk may hang") {
		t.Errorf("the link to a secondary that is not coupled, at its journal's reserve and acknowledging nothing, was given up with "+
			"last error %q, want one that says its disk may hang, and nothing of a coupled wait", st.LastError)
	}
}
