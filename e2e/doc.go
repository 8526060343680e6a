// Package e2e holds end-to-end tests of the whole method, both sites together:
// the dependent-write invariant under link faults and crashes, convergence,
// and group atomicity. It has no code of its own outside tests.
package e2e
