//go:build !race

package subsystem

const raceEnabled = false
