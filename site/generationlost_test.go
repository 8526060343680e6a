package site

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAReversePairStateWhoseGenerationIsLostIsRefused: the reverse
// direction's pair state, made from the promotion, holds the generation
// the promotion started; its generation.json lost, the start is refused,
// naming that generation and how to write it back, as for a damaged one.
// A new generation started there would be followed by no secondary: the
// old primary's rejoin, which follows the promotion's, would be refused
// for good.
func TestAReversePairStateWhoseGenerationIsLostIsRefused(t *testing.T) {
	cfg, pr := promotedReversing(t)
	p, err := OpenReversePrimary(cfg, slog.New(slog.DiscardHandler), PrimaryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.close()
	if err := os.Remove(filepath.Join(ReverseDir(cfg), "generation.json")); err != nil {
		t.Fatal(err)
	}
	p, err = OpenReversePrimary(cfg, slog.New(slog.DiscardHandler), PrimaryOptions{})
	if err == nil {
		g := p.generation
		p.close()
		t.Fatalf("the reverse primary opened with its generation.json lost, at generation %s (the promotion's: %s)", g, pr.Generation)
	}
	t.Logf("refused: %v", err)
	if !strings.Contains(err.Error(), pr.Generation.String()) {
		t.Errorf("the refusal does not name the promotion's generation %s: %v", pr.Generation, err)
	}
}
