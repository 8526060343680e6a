// Package e2e holds end-to-end tests of the whole method, both sites together:
// the dependent-write invariant under link faults and crashes, convergence,
// and group atomicity. It has no code of its own outside tests.
//
// Most tests wait on timers, links and processes far more than they compute,
// so they run in parallel (t.Parallel), each with its own directory and
// ports (picked by the system, or reserved by testenv.FreeAddr where a
// daemon binds them later, perhaps again after a kill). Tests stay serial
// when they measure rates or timing, or use what the host shares: loop
// devices, mounts, a browser.
package e2e
