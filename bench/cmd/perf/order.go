package main

import "slices"

// runOrder is the order in which the n servers (or builds) of an A/B
// section run in round r (0 the first counted; a warm-up round before it
// is -1): as listed in even rounds, reversed in odd ones.
// In a fixed order the Duplex build listed first always ran right after
// nbdkit and the second right after the first, and the first cost 11–20 %
// more CPU a MiB in the burst whichever build it was (bench/RESULTS.md):
// a figure must not depend on its place. Reversing, rather than rotating,
// changes which server runs right before each one too, which matters
// where a round repeats the order (the burst's repeats): rotated, the
// sequence A B C A B C … keeps every server's predecessor.
func runOrder(n, r int) []int {
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	if r%2 != 0 {
		slices.Reverse(order)
	}
	return order
}

// roundRuns is the servers a round runs, in turn: the round's order, reps
// times over (the burst job's repeats).
func roundRuns(n, r, reps int) []int {
	order := runOrder(n, r)
	var runs []int
	for range max(reps, 1) {
		runs = append(runs, order...)
	}
	return runs
}
