package main

import (
	"slices"
	"testing"
)

// Over two rounds in a row (a warm-up round included) every pair of servers
// runs once in each order, and each round runs every server exactly once a
// pass: a build's figure cannot be the figure of its place in the round.
func TestRunOrderBalancesEveryPairOverTwoRounds(t *testing.T) {
	for n := 2; n <= 4; n++ {
		for r := -1; r < 5; r++ {
			a, b := runOrder(n, r), runOrder(n, r+1)
			for _, o := range [][]int{a, b} {
				s := slices.Clone(o)
				slices.Sort(s)
				for i := range s {
					if s[i] != i {
						t.Fatalf("n %d, round %d: order %v is not every server once", n, r, o)
					}
				}
			}
			for x := range n {
				for y := range n {
					if x == y {
						continue
					}
					before := func(o []int) bool { return slices.Index(o, x) < slices.Index(o, y) }
					if before(a) == before(b) {
						t.Errorf("n %d, rounds %d and %d (%v, %v): server %d runs on the same side of %d in both", n, r, r+1, a, b, x, y)
					}
				}
			}
		}
	}
	// The first counted round runs as listed: nbdkit, then the builds in
	// the order given on the command line.
	if got := runOrder(3, 0); !slices.Equal(got, []int{0, 1, 2}) {
		t.Errorf("round 0: %v, want [0 1 2]", got)
	}
}

// In the burst's repeats, where the order repeats within a round, the
// server run just before each server changes from one round to the next
// (rotating the order would keep it): with three servers each Duplex build
// follows nbdkit in every other round.
func TestRoundRunsChangesEachServersPredecessor(t *testing.T) {
	const n, reps = 3, 5
	preds := func(r int) map[int]map[int]bool {
		seq := roundRuns(n, r, reps)
		if len(seq) != n*reps {
			t.Fatalf("round %d: %d runs, want %d", r, len(seq), n*reps)
		}
		p := map[int]map[int]bool{}
		for i := 1; i < len(seq); i++ {
			if seq[i] == seq[i-1] {
				t.Fatalf("round %d: %v runs server %d twice in a row", r, seq, seq[i])
			}
			if p[seq[i]] == nil {
				p[seq[i]] = map[int]bool{}
			}
			p[seq[i]][seq[i-1]] = true
		}
		return p
	}
	for r := range 4 {
		a, b := preds(r), preds(r+1)
		for s := range n {
			for q := range a[s] {
				if b[s][q] {
					t.Errorf("rounds %d and %d: server %d follows %d in both", r, r+1, s, q)
				}
			}
		}
		followsNbdkit := func(p map[int]map[int]bool) []int {
			var f []int
			for s := 1; s < n; s++ {
				if p[s][0] {
					f = append(f, s)
				}
			}
			return f
		}
		fa, fb := followsNbdkit(a), followsNbdkit(b)
		if len(fa) != 1 || len(fb) != 1 || fa[0] == fb[0] {
			t.Errorf("rounds %d and %d: the builds run right after nbdkit are %v and %v, want one each, not the same", r, r+1, fa, fb)
		}
	}
}
