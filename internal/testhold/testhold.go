// Package testhold holds one call of a test's stand-in (a clock's reading,
// a save's file) until the test lets it go: the call stands for a disk that
// takes seconds on a loaded machine, and the test looks at what answers
// meanwhile and what does not. Tests only.
package testhold

import (
	"sync"
	"time"
)

// Once holds the first Pass after Arm until Release. Its zero value holds
// nothing.
type Once struct {
	mu       sync.Mutex
	armed    bool
	released bool
	entered  chan struct{}
	release  chan struct{}
}

// Arm makes the next Pass wait until Release.
func (h *Once) Arm() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.armed, h.released, h.entered, h.release = true, false, make(chan struct{}), make(chan struct{})
}

// Pass returns at once unless armed; armed, it says so on Entered and
// waits for Release.
func (h *Once) Pass() {
	h.mu.Lock()
	armed, entered, release := h.armed, h.entered, h.release
	h.armed = false
	h.mu.Unlock()
	if armed {
		close(entered)
		<-release
	}
}

// Entered is closed once the call Arm holds waits.
func (h *Once) Entered() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.entered
}

// Release lets the held call go; again, it does nothing.
func (h *Once) Release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.release != nil && !h.released {
		h.released = true
		close(h.release)
	}
}

// Clock is a clock that, once armed, holds its next reading until
// released: a write held in its stamp under its subsystem's ordering lock,
// as one is while the primary's timer writes its mark to a slow disk. Now
// is what timer.NewWithClock takes.
type Clock struct{ Once }

// Now passes (see Once.Pass), then reads the time.
func (c *Clock) Now() int64 {
	c.Pass()
	return time.Now().UnixNano()
}
