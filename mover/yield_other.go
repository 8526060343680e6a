//go:build !linux

package mover

import "errors"

var errNoThreadPriority = errors.New("no per-thread priority")

// lowerPriority cannot lower one thread's priority here: sends do not yield.
func lowerPriority() error { return errNoThreadPriority }

func setPriority(tid, nice int) error { return errNoThreadPriority }

func threadID() int { return 0 }
