//go:build !race

package e2e

// raceDetector says the tests run under the race detector, which slows
// them several times over.
const raceDetector = false
