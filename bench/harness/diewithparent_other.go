//go:build !linux

package harness

import "os/exec"

// DieWithParent does nothing here: only Linux kills a child with its parent.
func DieWithParent(*exec.Cmd) {}
