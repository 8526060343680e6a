package site

import (
	"strings"
	"testing"
	"unicode/utf8"

	"duplex/mover"
)

// A refusal's first clause longer than the note shows is cut between
// characters: a note ending in half a character is bytes that are no
// text in the status's JSON and in `duplex pair --wait`'s error.
func TestARefusedNoteIsCutBetweenCharacters(t *testing.T) {
	for _, char := range []string{"é", "€", "𝄞"} {
		for pad := range len(char) {
			why := strings.Repeat("a", 240-pad) + strings.Repeat(char, 10)
			ms := refusedStats(why + ": the ways on")
			note := refusedNote(ms)
			if note == "" {
				t.Fatalf("%q after %d bytes: no note for a refusal", char, 240-pad)
			}
			if !utf8.ValidString(note) {
				t.Errorf("%q after %d bytes: the note cuts a character: %q", char, 240-pad, note[len(note)-60:])
			}
		}
	}
}

// refusedStats are a mover's stats while the secondary refuses it for
// reason, as the mover keeps them.
func refusedStats(reason string) mover.Stats {
	err := mover.RefusedError{}
	err.Reason = reason
	return mover.Stats{LastError: err.Error(), LastErrorRefused: true, Refusals: 1, LastRefusal: err.Error(), LastRefusalReason: reason}
}

// The note says the secondary refuses this primary when the mover says
// its link last failed on a refusal, and why in the refusal's own reason,
// not when LastError's words begin as a refusal's do: those are for the
// operator, and free to change.
func TestARefusedNoteReadsTheMoversFacts(t *testing.T) {
	ms := refusedStats("this primary's session is other: run this and that")
	ms.LastError = "the link's last error, in words of its own"
	if note := refusedNote(ms); !strings.Contains(note, "this primary's session is other") || strings.Contains(note, "run this and that") {
		t.Errorf("the link refused, LastError in other words: note %q; want the refusal's first clause", note)
	}
	ms = refusedStats("this primary's session is other")
	ms.LastErrorRefused = false
	ms.LastError = mover.ErrRefused.Error() + ": a dial's error that reads as a refusal"
	if note := refusedNote(ms); note != "" {
		t.Errorf("the link last failed on no refusal: note %q; want none", note)
	}
}
