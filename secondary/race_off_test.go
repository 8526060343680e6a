//go:build !race

package secondary

const raceDetector = false
