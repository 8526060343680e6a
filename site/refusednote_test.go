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
			ms := mover.Stats{LastError: mover.ErrRefused.Error() + ": " + why + ": the ways on", Refusals: 1, LastRefusal: mover.ErrRefused.Error() + ": " + why}
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
