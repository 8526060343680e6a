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

// TestAReversePairStateWhoseGenerationIsWrittenBackAsToldOpens: the way
// forward the refusal of a lost generation.json gives, the file written
// as it says, opens the reverse primary at the promotion's generation,
// which the old primary's rejoin follows.
func TestAReversePairStateWhoseGenerationIsWrittenBackAsToldOpens(t *testing.T) {
	cfg, pr := promotedReversing(t)
	p, err := OpenReversePrimary(cfg, slog.New(slog.DiscardHandler), PrimaryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.close()
	path := filepath.Join(ReverseDir(cfg), "generation.json")
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	_, err = OpenReversePrimary(cfg, slog.New(slog.DiscardHandler), PrimaryOptions{})
	if err == nil {
		t.Fatal("the reverse primary opened with its generation.json lost")
	}
	// The file's content as the refusal quotes it, between its braces.
	msg := err.Error()
	i, j := strings.Index(msg, `{"generation":`), strings.LastIndex(msg, "}")
	if i < 0 || j < i || !strings.Contains(msg, path) {
		t.Fatalf("the refusal does not say what to write in %s: %v", path, err)
	}
	if err := os.WriteFile(path, []byte(msg[i:j+1]), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err = OpenReversePrimary(cfg, slog.New(slog.DiscardHandler), PrimaryOptions{})
	if err != nil {
		t.Fatalf("written back as the refusal said (%s): %v", msg[i:j+1], err)
	}
	defer p.close()
	if p.generation != pr.Generation {
		t.Errorf("written back as the refusal said, the reverse primary opened at generation %s, want the promotion's %s", p.generation, pr.Generation)
	}
}

// TestAPairStateWithoutItsPairsStartsANewGeneration: generation.json says
// the secondary's copies are this pair state's, pairs.json what they
// hold. Kept beside a pairs.json lost, the generation would have the
// secondary take the primary whose initial copies overwrite them; a new
// one has it refused unless the operator consents. With pairs.json there,
// a restart keeps the generation.
func TestAPairStateWithoutItsPairsStartsANewGeneration(t *testing.T) {
	dir := t.TempDir()
	first, err := openGeneration(dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pairs.json"), []byte(`{"clean":true,"pairs":[]}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if again, err := openGeneration(dir, nil, nil); err != nil || again != first {
		t.Fatalf("with pairs.json, the generation is %s (%v), want %s kept", again, err, first)
	}
	if err := os.Remove(filepath.Join(dir, "pairs.json")); err != nil {
		t.Fatal(err)
	}
	lost, err := openGeneration(dir, nil, nil)
	if err != nil || lost == first || lost == 0 {
		t.Fatalf("pairs.json lost, the generation is %s (%v), want a new one, not %s", lost, err, first)
	}
	if kept, err := readGeneration(dir, nil); err != nil || kept != lost {
		t.Fatalf("generation.json holds %s (%v), want the new %s", kept, err, lost)
	}
}
