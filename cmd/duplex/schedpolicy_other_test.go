//go:build !linux

package main

import "errors"

// denySchedSetattr: only Linux has the policies to refuse.
func denySchedSetattr() error { return errors.New("not on this system") }
