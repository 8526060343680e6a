//go:build !linux

package mover

import "errors"

// lowerPriority cannot lower one thread's priority here: sends do not yield.
func lowerPriority() error { return errors.New("no per-thread priority") }
