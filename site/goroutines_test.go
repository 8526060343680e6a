package site

import "runtime"

// goroutines returns the stack of every goroutine, for a test that gives
// up waiting: what waits, and on what, is what a failure in CI needs.
func goroutines() string {
	for n := 1 << 20; ; n *= 2 {
		buf := make([]byte, n)
		if m := runtime.Stack(buf, true); m < n {
			return string(buf[:m])
		}
	}
}
