//go:build race

package secondary

// raceDetector says the tests run under the race detector, whose sync.Pool
// drops a share of what is put in it at random.
const raceDetector = true
